// Package backendtest is the contract every archive.Backend must keep,
// written once and run by each backend's tests against a real store (a
// directory, a MinIO server, ...). Backend-specific facts — where a pack
// lands on disk, which foreign objects a listing must skip — stay in the
// backend's own tests.
package backendtest

import (
	"errors"
	"io"
	"slices"
	"sort"
	"testing"

	"github.com/mailvault/mailvault/archive"
)

// Pack is the name of the pack file Run stores (under data/ab/).
const Pack = "abcdef0123"

// Run checks put/get/stat/ranged get/list/replace/remove and the
// ErrNotExist contract on an empty repository b.
func Run(t *testing.T, b archive.Backend) {
	t.Helper()
	ctx := t.Context()
	files := []struct {
		t    archive.FileType
		name string
		data string
	}{
		{archive.ConfigFile, "config", `{"version":1}`},
		{archive.PackFile, Pack, "0123456789"},
		{archive.IndexFile, "idx1", "index"},
		{archive.SnapshotFile, "snap1", "snapshot"},
		{archive.LockFile, "empty", ""},
	}
	for _, f := range files {
		if err := b.Put(ctx, f.t, f.name, []byte(f.data)); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range files {
		rc, err := b.Get(ctx, f.t, f.name)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || string(got) != f.data {
			t.Errorf("%s/%s = %q, %v, want %q", f.t, f.name, got, err, f.data)
		}
		if n, err := b.Stat(ctx, f.t, f.name); err != nil || n != int64(len(f.data)) {
			t.Errorf("Stat %s/%s = %d, %v", f.t, f.name, n, err)
		}
	}

	for _, r := range []struct {
		off, length int64
		want        string
	}{
		{0, 0, "0123456789"},
		{3, 4, "3456"},
		{7, 0, "789"},
		{8, 10, "89"},
		{10, 5, ""},
		{12, 0, ""},
	} {
		rc, err := b.GetRange(ctx, archive.PackFile, Pack, r.off, r.length)
		if err != nil {
			t.Errorf("GetRange(%d, %d): %v", r.off, r.length, err)
			continue
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || string(got) != r.want {
			t.Errorf("GetRange(%d, %d) = %q, %v, want %q", r.off, r.length, got, err, r.want)
		}
	}

	for _, l := range []struct {
		t    archive.FileType
		want []string
	}{
		{archive.PackFile, []string{Pack}},
		{archive.IndexFile, []string{"idx1"}},
		{archive.KeyFile, nil},
	} {
		if got := List(t, b, l.t); !slices.Equal(got, l.want) {
			t.Errorf("List %s = %q, want %q", l.t, got, l.want)
		}
	}
	stop := errors.New("stop")
	if err := b.List(ctx, archive.PackFile, func(string, int64) error { return stop }); !errors.Is(err, stop) {
		t.Errorf("List returned %v, want the callback's error", err)
	}

	// Put of an existing name leaves one whole file, the old or the new
	// (archive.Backend): the local backend replaces it, S3 keeps the old
	// one (it never overwrites). In a repository both are the same file,
	// since names are content hashes.
	if err := b.Put(ctx, archive.SnapshotFile, "snap1", []byte("other")); err != nil {
		t.Fatal(err)
	}
	if rc, err := b.Get(ctx, archive.SnapshotFile, "snap1"); err != nil {
		t.Errorf("Get after replacing: %v", err)
	} else {
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || (string(got) != "other" && string(got) != "snapshot") {
			t.Errorf("after replacing: %q, %v; want the whole old or new file", got, err)
		}
	}
	if err := b.Remove(ctx, archive.SnapshotFile, "snap1"); err != nil {
		t.Fatal(err)
	}
	for _, op := range []func() error{
		func() error { _, err := b.Get(ctx, archive.SnapshotFile, "snap1"); return err },
		func() error { _, err := b.GetRange(ctx, archive.SnapshotFile, "snap1", 100, 1); return err },
		func() error { _, err := b.Stat(ctx, archive.SnapshotFile, "snap1"); return err },
		func() error { return b.Remove(ctx, archive.SnapshotFile, "snap1") },
	} {
		if err := op(); !errors.Is(err, archive.ErrNotExist) {
			t.Errorf("on a removed file: %v, want ErrNotExist", err)
		}
	}
	if left := List(t, b, archive.SnapshotFile); len(left) != 0 {
		t.Errorf("snapshots left: %q", left)
	}
}

// RefusesUnsafeNames checks that names which could address anything
// outside the repository's layout are refused by every operation. Names
// come from the repository's own listings and IDs; a hostile one must
// never reach the store.
func RefusesUnsafeNames(t *testing.T, b archive.Backend) {
	t.Helper()
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
			if _, err := b.Stat(ctx, typ, name); err == nil {
				t.Errorf("Stat %s %q succeeded", typ, name)
			}
			if err := b.Remove(ctx, typ, name); err == nil {
				t.Errorf("Remove %s %q succeeded", typ, name)
			}
		}
	}
}

// List returns the sorted names of a file type.
func List(t *testing.T, b archive.Backend, typ archive.FileType) []string {
	t.Helper()
	var names []string
	if err := b.List(t.Context(), typ, func(name string, _ int64) error {
		names = append(names, name)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	sort.Strings(names)
	return names
}
