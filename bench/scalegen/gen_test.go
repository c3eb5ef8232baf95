package main

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailvault/mailvault/maildir"
)

// listing describes a tree by relative path, size, mtime and content hash,
// so two trees can be compared for determinism.
func listing(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		out[rel] = fmt.Sprintf("%d %d %x", info.Size(), info.ModTime().UnixNano(), sha256.Sum256(data))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestGenerate(t *testing.T) {
	const n = 2100 // three users, the last one short
	dir := filepath.Join(t.TempDir(), "a")
	st, err := Generate(dir, Options{Messages: n, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	if st.Messages != n || st.Users != 3 || st.Folders != 12 {
		t.Fatalf("stats %+v", st)
	}
	ids := map[string]string{}
	uniques := map[string]string{}
	msgs := 0
	for rel := range listing(t, dir) {
		p := filepath.Join(dir, rel)
		sub := filepath.Base(filepath.Dir(p))
		if sub != "cur" && sub != "new" {
			if filepath.Base(p) != "maildirfolder" {
				t.Errorf("unexpected file %s", rel)
			}
			continue
		}
		msgs++
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		m, err := mail.ReadMessage(bytes.NewReader(data))
		if err != nil {
			t.Fatalf("%s: %v", rel, err)
		}
		for _, h := range []string{"From", "To", "Subject"} {
			if m.Header.Get(h) == "" {
				t.Errorf("%s: no %s", rel, h)
			}
		}
		if _, err := m.Header.Date(); err != nil {
			t.Errorf("%s: Date: %v", rel, err)
		}
		id := m.Header.Get("Message-ID")
		if prev, dup := ids[id]; dup || id == "" {
			t.Errorf("Message-ID %q of %s repeats %s", id, rel, prev)
		}
		ids[id] = rel
		name := maildir.ParseName(filepath.Base(p))
		if name.Size != int64(len(data)) {
			t.Errorf("%s: S=%d, file has %d bytes", rel, name.Size, len(data))
		}
		if (sub == "new") == name.HasInfo {
			t.Errorf("%s: info part in %s/ is %v", rel, sub, name.HasInfo)
		}
		// The unique part names a message for its life within a user.
		user := strings.Split(rel, string(filepath.Separator))[1]
		if prev, dup := uniques[user+"/"+name.Unique]; dup {
			t.Errorf("unique name of %s repeats %s", rel, prev)
		}
		uniques[user+"/"+name.Unique] = rel
	}
	if msgs != n {
		t.Fatalf("%d message files, want %d", msgs, n)
	}
	if st.Probe.MessageID == "" || ids[st.Probe.MessageID] != st.Probe.Path {
		t.Errorf("probe %+v not found as stated (%q)", st.Probe, ids[st.Probe.MessageID])
	}

	// Same seed, different worker count: the same tree. Another seed:
	// another tree.
	dir2 := filepath.Join(t.TempDir(), "b")
	if _, err := Generate(dir2, Options{Messages: n, Seed: 7, Workers: 1}); err != nil {
		t.Fatal(err)
	}
	a, b := listing(t, dir), listing(t, dir2)
	if len(a) != len(b) {
		t.Fatalf("same seed: %d files vs %d", len(a), len(b))
	}
	for k, v := range a {
		if b[k] != v {
			t.Fatalf("same seed differs at %s: %s vs %s", k, v, b[k])
		}
	}
	dir3 := filepath.Join(t.TempDir(), "c")
	if _, err := Generate(dir3, Options{Messages: n, Seed: 8}); err != nil {
		t.Fatal(err)
	}
	same := 0
	for k := range listing(t, dir3) {
		if _, ok := a[k]; ok {
			same++
		}
	}
	if same > 20 { // the maildirfolder files only
		t.Errorf("seeds 7 and 8 share %d paths", same)
	}

	// A mutation renames, deletes and delivers what it says, and spares
	// the probe.
	mst, err := Mutate(dir, MutateOptions{Seed: 9, FlagChanges: 100, NewMessages: 50, Deletions: 30, Keep: st.Probe.Path})
	if err != nil {
		t.Fatal(err)
	}
	if mst.FlagChanges != 100 || mst.NewMessages != 50 || mst.Deletions != 30 {
		t.Fatalf("mutate %+v", mst)
	}
	after := listing(t, dir)
	if _, ok := after[st.Probe.Path]; !ok {
		t.Errorf("probe %s renamed", st.Probe.Path)
	}
	gone := 0
	for k := range a {
		if _, ok := after[k]; !ok {
			gone++
		}
	}
	if gone != 130 || len(after) != len(a)+50-30 {
		t.Errorf("after mutate: %d renamed or deleted, %d files (want 130, %d)", gone, len(after), len(a)+50-30)
	}
}
