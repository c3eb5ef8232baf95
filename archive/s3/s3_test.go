package s3

import (
	"bytes"
	"errors"
	"io"
	"os"
	"sort"
	"testing"

	"github.com/minio/minio-go/v7"

	"github.com/mailvault/mailvault/archive"
)

// TestBackend is the backend contract, as for the local backend, with
// and without a prefix.
func TestBackend(t *testing.T) {
	for _, prefix := range []string{"", "repos/one"} {
		t.Run("prefix="+prefix, func(t *testing.T) { testBackend(t, prefix) })
	}
}

func testBackend(t *testing.T, prefix string) {
	b := newBackend(t, prefix)
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
		{archive.LockFile, "empty", ""},
	}
	for _, f := range files {
		if err := b.Put(ctx, f.t, f.name, []byte(f.data)); err != nil {
			t.Fatal(err)
		}
	}
	wantKey := "data/ab/" + pack
	if prefix != "" {
		wantKey = prefix + "/" + wantKey
	}
	if _, err := b.client.StatObject(ctx, b.cfg.Bucket, wantKey, minio.StatObjectOptions{}); err != nil {
		t.Errorf("pack not stored as %s: %v", wantKey, err)
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

	ranges := []struct {
		off, length int64
		want        string
	}{
		{0, 0, "0123456789"},
		{3, 4, "3456"},
		{7, 0, "789"},
		{8, 10, "89"},
		{10, 5, ""},
		{12, 0, ""},
	}
	for _, r := range ranges {
		rc, err := b.GetRange(ctx, archive.PackFile, pack, r.off, r.length)
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

	// Objects that are not the repository's (wrong depth, wrong pack
	// subdirectory) are not listed.
	for _, k := range []string{"data/" + pack, "data/cd/" + pack, "data/ab/x/" + pack, "index/sub/idx2"} {
		if prefix != "" {
			k = prefix + "/" + k
		}
		if _, err := b.client.PutObject(ctx, b.cfg.Bucket, k, nil, 0, minio.PutObjectOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	lists := []struct {
		t    archive.FileType
		want []string
	}{
		{archive.PackFile, []string{pack}},
		{archive.IndexFile, []string{"idx1"}},
		{archive.ConfigFile, []string{"config"}},
		{archive.KeyFile, nil},
	}
	for _, l := range lists {
		var names []string
		if err := b.List(ctx, l.t, func(name string, size int64) error {
			names = append(names, name)
			if l.t == archive.PackFile && size != 10 {
				t.Errorf("List size of %s = %d", name, size)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if !equal(names, l.want) {
			t.Errorf("List %s = %q, want %q", l.t, names, l.want)
		}
	}
	stop := errors.New("stop")
	if err := b.List(ctx, archive.PackFile, func(string, int64) error { return stop }); !errors.Is(err, stop) {
		t.Errorf("List returned %v, want the callback's error", err)
	}

	// Put of an existing name replaces it whole.
	if err := b.Put(ctx, archive.SnapshotFile, "snap1", []byte("other")); err != nil {
		t.Fatal(err)
	}
	if n, err := b.Stat(ctx, archive.SnapshotFile, "snap1"); err != nil || n != 5 {
		t.Errorf("Stat after replacing = %d, %v", n, err)
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
	var left []string
	b.List(ctx, archive.SnapshotFile, func(name string, _ int64) error { left = append(left, name); return nil })
	if len(left) != 0 {
		t.Errorf("snapshots left: %q", left)
	}
}

func equal(a, b []string) bool {
	sort.Strings(a)
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestBackendRefusesUnsafeNames: names come from the repository's own
// listings and IDs; anything that could address another object is refused
// before a request is made.
func TestBackendRefusesUnsafeNames(t *testing.T) {
	b := newBackend(t, "repo")
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
	n := 0
	for obj := range b.client.ListObjects(ctx, b.cfg.Bucket, minio.ListObjectsOptions{Recursive: true}) {
		if obj.Err != nil {
			t.Fatal(obj.Err)
		}
		t.Errorf("object written: %s", obj.Key)
		n++
	}
}

// TestMissingBucket: a repository whose bucket does not exist reads as
// empty, files in it as missing.
func TestMissingBucket(t *testing.T) {
	b, err := New(t.Context(), newBucket(t, ""))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Stat(t.Context(), archive.ConfigFile, "config"); !errors.Is(err, archive.ErrNotExist) {
		t.Errorf("Stat config: %v, want ErrNotExist", err)
	}
	if err := b.List(t.Context(), archive.SnapshotFile, func(string, int64) error { return nil }); err != nil {
		t.Errorf("List: %v", err)
	}
	// Create is idempotent.
	for range 2 {
		if err := b.Create(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
}

func TestPutFile(t *testing.T) {
	b := newBackend(t, "p")
	ctx := t.Context()
	data := make([]byte, 3<<20+17)
	for i := range data {
		data[i] = byte(i * 7)
	}
	f, err := createTemp(t, data)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.PutFile(ctx, archive.PackFile, "ff00", f); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(f.Name()); !os.IsNotExist(err) {
		t.Errorf("temporary file left: %v", err)
	}
	rc, err := b.GetRange(ctx, archive.PackFile, "ff00", 1<<20, 100)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if !bytes.Equal(got, data[1<<20:1<<20+100]) {
		t.Error("ranged read of a PutFile object differs")
	}
	if n, err := b.Stat(ctx, archive.PackFile, "ff00"); err != nil || n != int64(len(data)) {
		t.Errorf("Stat = %d, %v", n, err)
	}

	// A refused name still consumes the file.
	if f, err = createTemp(t, data[:10]); err != nil {
		t.Fatal(err)
	}
	if err := b.PutFile(ctx, archive.PackFile, "../x", f); err == nil {
		t.Error("PutFile of an unsafe name succeeded")
	}
	if _, err := os.Stat(f.Name()); !os.IsNotExist(err) {
		t.Errorf("temporary file left after a failure: %v", err)
	}
}

func createTemp(t testing.TB, data []byte) (*os.File, error) {
	f, err := os.CreateTemp(t.TempDir(), "pack-*")
	if err != nil {
		return nil, err
	}
	if _, err := f.Write(data); err != nil {
		return nil, err
	}
	return f, nil
}
