package local

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/mailvault/mailvault/archive"
)

func TestBackend(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "repo")
	b := New(dir)
	if err := b.Create(); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	pack := "abcdef0123"
	files := []struct {
		t    archive.FileType
		name string
		data string
	}{
		{archive.ConfigFile, "config", `{"version":1}`},
		{archive.PackFile, pack, "0123456789"},
		{archive.IndexFile, "idx1", "index"},
		{archive.SnapshotFile, "snap1", "snapshot"},
	}
	for _, f := range files {
		if err := b.Put(ctx, f.t, f.name, []byte(f.data)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "data", "ab", pack)); err != nil {
		t.Errorf("pack not stored below its prefix directory: %v", err)
	}
	for _, f := range files {
		rc, err := b.Get(ctx, f.t, f.name)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(rc)
		rc.Close()
		if string(got) != f.data {
			t.Errorf("%s/%s = %q, want %q", f.t, f.name, got, f.data)
		}
		if n, err := b.Stat(ctx, f.t, f.name); err != nil || n != int64(len(f.data)) {
			t.Errorf("Stat %s/%s = %d, %v", f.t, f.name, n, err)
		}
	}

	ranges := []struct {
		off, length int64
		want        string
	}{
		{0, 0, "0123456789"},
		{3, 4, "3456"},
		{7, 0, "789"},
		{8, 10, "89"},
		{10, 5, ""},
	}
	for _, r := range ranges {
		rc, err := b.GetRange(ctx, archive.PackFile, pack, r.off, r.length)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(rc)
		rc.Close()
		if string(got) != r.want {
			t.Errorf("GetRange(%d, %d) = %q, want %q", r.off, r.length, got, r.want)
		}
	}

	// Temporary files of an interrupted Put are not listed.
	if err := os.WriteFile(filepath.Join(dir, "data", "ab", tmpPrefix+"123"), []byte("partial"), 0o600); err != nil {
		t.Fatal(err)
	}
	var names []string
	if err := b.List(ctx, archive.PackFile, func(name string, size int64) error {
		names = append(names, name)
		if size != 10 {
			t.Errorf("List size of %s = %d", name, size)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(names) != 1 || names[0] != pack {
		t.Errorf("List = %q, want [%s]", names, pack)
	}

	// Put of an existing name replaces it whole.
	if err := b.Put(ctx, archive.SnapshotFile, "snap1", []byte("other")); err != nil {
		t.Fatal(err)
	}
	if err := b.Remove(ctx, archive.SnapshotFile, "snap1"); err != nil {
		t.Fatal(err)
	}
	for _, op := range []func() error{
		func() error { _, err := b.Get(ctx, archive.SnapshotFile, "snap1"); return err },
		func() error { _, err := b.Stat(ctx, archive.SnapshotFile, "snap1"); return err },
		func() error { return b.Remove(ctx, archive.SnapshotFile, "snap1") },
	} {
		if err := op(); !errors.Is(err, archive.ErrNotExist) {
			t.Errorf("on a removed file: %v, want ErrNotExist", err)
		}
	}
	var left []string
	b.List(ctx, archive.SnapshotFile, func(name string, _ int64) error { left = append(left, name); return nil })
	sort.Strings(left)
	if len(left) != 0 {
		t.Errorf("snapshots left: %q", left)
	}
}

// TestBackendRefusesUnsafeNames: names come from the repository's own
// listings and IDs; anything that could leave its directory is refused.
func TestBackendRefusesUnsafeNames(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "repo")
	b := New(dir)
	if err := b.Create(); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	for _, name := range []string{"", ".", "..", "../evil", "a/b", `a\b`, "/etc/passwd", "x"} {
		for _, typ := range []archive.FileType{archive.IndexFile, archive.PackFile, archive.LockFile} {
			if typ != archive.PackFile && name == "x" {
				continue // one-letter names are fine except for packs
			}
			if err := b.Put(ctx, typ, name, []byte("x")); err == nil {
				t.Errorf("Put %s %q succeeded", typ, name)
			}
			if _, err := b.Get(ctx, typ, name); err == nil {
				t.Errorf("Get %s %q succeeded", typ, name)
			}
			if err := b.Remove(ctx, typ, name); err == nil {
				t.Errorf("Remove %s %q succeeded", typ, name)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(dir), "evil")); err == nil {
		t.Error("a file was written outside the repository")
	}
}
