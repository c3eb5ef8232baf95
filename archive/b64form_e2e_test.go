package archive_test

import (
	"testing"

	"github.com/mailvault/mailvault/archive"
	"github.com/mailvault/mailvault/archive/cache"
	"github.com/mailvault/mailvault/restore"
)

// TestBase64FormRoundTrip backs up a corpus with base64 attachments and
// checks that they are stored in the base64 form, in format 3 packs (and
// the packs of none in format 2, which earlier versions read), that the
// index — from its files, from the cached table, and rebuilt from the pack
// headers — says so, and that check --read-data and a restore get every
// byte back.
func TestBase64FormRoundTrip(t *testing.T) {
	src := genCorpus(t, 7, 4e6)
	tr := newTestRepo(t, 1<<20)
	r := tr.open(t)
	runBackup(t, r, src)

	kinds := func(r *archive.Repository) map[archive.Compression]int {
		n := map[archive.Compression]int{}
		for _, blobs := range r.Index().PackBlobs() {
			for _, b := range blobs {
				n[b.Compression]++
			}
		}
		return n
	}
	got := kinds(r)
	if got[archive.Base64] == 0 || got[archive.Base64Zstd] == 0 {
		t.Fatalf("blobs by compression: %v; want some of both base64 forms", got)
	}
	formats := map[string]int{}
	for name := range tr.packFiles(t) {
		id, err := archive.ParseID(name)
		if err != nil {
			t.Fatal(err)
		}
		plain, err := r.ReadPack(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		formats[string(plain[len(plain)-4:])]++
		blobs, err := archive.ParsePack(plain)
		if err != nil {
			t.Fatal(err)
		}
		b64 := false
		for _, b := range blobs {
			b64 = b64 || b.Compression > archive.Zstd
		}
		if want := map[bool]string{false: "MVP2", true: "MVP3"}[b64]; string(plain[len(plain)-4:]) != want {
			t.Errorf("pack %s: %s, want %s", name, plain[len(plain)-4:], want)
		}
	}
	if formats["MVP2"] == 0 || formats["MVP3"] == 0 {
		t.Errorf("pack formats %v: want both", formats)
	}

	// Through a cache: the second open maps the table the first wrote.
	cacheDir := t.TempDir()
	for range 2 {
		r, err := archive.Open(t.Context(), cache.New(tr.be, cacheDir, nil), tr.creds(), archive.Options{Compression: 2})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.LoadIndex(t.Context()); err != nil {
			t.Fatal(err)
		}
		if k := kinds(r); !equalCounts(k, got) {
			t.Errorf("index (mapped %v): %v, want %v", r.Index().Stats().Mapped, k, got)
		}
		r.Close()
	}

	// Rebuilt from the pack headers alone.
	if _, err := tr.open(t).RebuildIndex(t.Context()); err != nil {
		t.Fatal(err)
	}
	r = tr.open(t)
	if k := kinds(r); !equalCounts(k, got) {
		t.Errorf("rebuilt index: %v, want %v", k, got)
	}
	res, err := r.Check(t.Context(), archive.CheckOptions{ReadData: true})
	if err != nil || !res.OK() || res.PacksRead == 0 {
		t.Fatalf("check --read-data: %v, %+v", err, res)
	}
	snaps, _, err := r.Snapshots(t.Context())
	if err != nil || len(snaps) != 1 {
		t.Fatalf("snapshots: %v, %v", len(snaps), err)
	}
	dir, _ := restoreTo(t, r, snaps[0], restore.Options{})
	compareTrees(t, src, dir)
}

func equalCounts(a, b map[archive.Compression]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
