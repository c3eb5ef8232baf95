package s3

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/minio/minio-go/v7"

	"github.com/mailvault/mailvault/archive"
	"github.com/mailvault/mailvault/archive/backendtest"
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
	backendtest.Run(t, b)
	key := func(k string) string {
		if prefix != "" {
			return prefix + "/" + k
		}
		return k
	}
	if _, err := b.client.StatObject(ctx, b.cfg.Bucket, key("data/ab/"+backendtest.Pack), minio.StatObjectOptions{}); err != nil {
		t.Errorf("pack not stored as %s: %v", key("data/ab/"+backendtest.Pack), err)
	}
	// Objects that are not the repository's (wrong depth, wrong pack
	// subdirectory) are not listed.
	for _, k := range []string{"data/" + backendtest.Pack, "data/cd/" + backendtest.Pack, "data/ab/x/" + backendtest.Pack, "index/sub/idx2"} {
		if _, err := b.client.PutObject(ctx, b.cfg.Bucket, key(k), nil, 0, minio.PutObjectOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if got := backendtest.List(t, b, archive.PackFile); len(got) != 1 || got[0] != backendtest.Pack {
		t.Errorf("List = %q, want [%s]", got, backendtest.Pack)
	}
	if got := backendtest.List(t, b, archive.IndexFile); len(got) != 1 || got[0] != "idx1" {
		t.Errorf("List index = %q, want [idx1]", got)
	}
}

// TestBackendRefusesUnsafeNames: names come from the repository's own
// listings and IDs; anything that could address another object is refused
// before a request is made.
func TestBackendRefusesUnsafeNames(t *testing.T) {
	b := newBackend(t, "repo")
	ctx := t.Context()
	backendtest.RefusesUnsafeNames(t, b)
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

// TestPutChecksSHA256: a file named by a SHA-256 goes up with that hash as
// x-amz-checksum-sha256, so the server refuses bytes that do not match
// their name (damaged between hashing and upload) instead of storing them.
func TestPutChecksSHA256(t *testing.T) {
	b := newBackend(t, "sum")
	ctx := t.Context()
	data := []byte("the bytes a pack's name is the SHA-256 of")
	sum := sha256.Sum256(data)
	name := hex.EncodeToString(sum[:])
	if err := b.Put(ctx, archive.PackFile, name, data); err != nil {
		t.Fatalf("put under its SHA-256: %v", err)
	}
	wrong := strings.Repeat("ab", sha256.Size)
	err := b.Put(ctx, archive.IndexFile, wrong, data)
	if err == nil {
		t.Fatal("put under another SHA-256 succeeded")
	}
	if _, serr := b.Stat(ctx, archive.IndexFile, wrong); !errors.Is(serr, archive.ErrNotExist) {
		t.Errorf("after the refused put: stat %v, want not found (put error: %v)", serr, err)
	}
	// config and lock files are not named by their hash.
	if err := b.Put(ctx, archive.LockFile, wrong, data); err != nil {
		t.Errorf("lock file: %v", err)
	}
}
