package archive

import (
	"errors"
	"testing"
)

// TestRemoveDurableWriteOnly: the one delete path refuses a write-only key
// whatever the file, so that a caller that forgets to refuse it (as
// `repair index` once did, issue 9) still deletes nothing.
func TestRemoveDurableWriteOnly(t *testing.T) {
	for _, ft := range []FileType{PackFile, IndexFile, SnapshotFile, KeyFile, ConfigFile} {
		t.Run(string(ft), func(t *testing.T) {
			be := newMemBackend()
			if err := be.Put(t.Context(), ft, "f", []byte("x")); err != nil {
				t.Fatal(err)
			}
			r := &Repository{be: be, key: &KeyFileContent{Kind: WriteOnlyKey}}
			w, err := r.removeDurable(t.Context(), ft, "f")
			if !errors.Is(err, ErrWriteOnly) || w != nil {
				t.Fatalf("removeDurable with a write-only key: %v, %v; want ErrWriteOnly", w, err)
			}
			if _, err := be.Stat(t.Context(), ft, "f"); err != nil {
				t.Fatalf("the file is gone: %v", err)
			}
		})
	}
}
