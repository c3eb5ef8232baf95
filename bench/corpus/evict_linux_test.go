package corpus

import (
	"testing"
)

// TestEvict: every message and metadata file is visited, their bytes
// counted, and the tree is unchanged afterwards.
func TestEvict(t *testing.T) {
	root, st := generate(t, small)
	before := treeHash(t, root)
	files, bytes, err := Evict(root)
	if err != nil {
		t.Fatal(err)
	}
	if want := st.Files + st.MetaFiles; files < want {
		t.Errorf("evicted %d files, want at least the %d message and metadata files", files, want)
	}
	if bytes < st.Bytes {
		t.Errorf("evicted %d bytes, want at least the %d of mail", bytes, st.Bytes)
	}
	if after := treeHash(t, root); after != before {
		t.Error("tree changed")
	}
}
