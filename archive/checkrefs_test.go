package archive_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/mailvault/mailvault/archive"
	"github.com/mailvault/mailvault/archive/cache"
)

// TestCheckBlobsByMerge: check looks up no blob the trees name one at a
// time: it sorts them (here in runs of a few IDs, on disk) and reads the
// cached table once, each page checked at most once. A blob that no pack
// holds is still named, with every message that uses it.
func TestCheckBlobsByMerge(t *testing.T) {
	archive.SetRefRunIDs(t, 5)
	tr := newTestRepo(t, 1<<20)
	r := tr.open(t)
	if _, err := r.Backup(t.Context(), archive.BackupOptions{Paths: []string{genCorpus(t, 31, 8<<20)}, Host: "test"}); err != nil {
		t.Fatal(err)
	}
	cacheDir := filepath.Join(t.TempDir(), "cache")
	check := func() (*archive.CheckResult, archive.IndexStats) {
		t.Helper()
		repo, err := archive.Open(t.Context(), cache.NewIndexTable(tr.be, cacheDir, nil), tr.creds(), archive.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer repo.Close()
		res, err := repo.Check(t.Context(), archive.CheckOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return res, repo.Index().Stats()
	}
	res, st := check()
	if !res.OK() {
		t.Fatalf("check of a sound repository: %+v", res.Errors)
	}
	// Lookups are the trees', read to be walked and read again by the
	// Message-ID index's verifier; never the content's.
	var trees, data int64
	for _, blobs := range r.Index().PackBlobs() {
		for _, b := range blobs {
			if b.Type == archive.TreeBlob {
				trees++
			} else {
				data++
			}
		}
	}
	pages := int64(res.Blobs+1023) / 1024
	if data <= 2*trees {
		t.Fatalf("%d blobs of content, %d of trees: corpus too small to tell lookups of content from those of trees", data, trees)
	}
	if !st.Mapped || st.Lookups > 2*trees || st.PagesChecked > pages {
		t.Fatalf("check: %+v; want the table mapped, at most %d lookups (twice the trees; %d blobs of content), at most its %d pages checked", st, 2*trees, data, pages)
	}

	// A pack of message content lost, and the index rebuilt without it.
	var lost map[archive.ID]bool
	var lostPack archive.ID
	for p, blobs := range r.Index().PackBlobs() {
		lost = map[archive.ID]bool{}
		for _, b := range blobs {
			if b.Type != archive.DataBlob {
				lost = nil
				break
			}
			lost[b.ID] = true
		}
		if lost != nil {
			lostPack = p
			break
		}
	}
	if lost == nil {
		t.Fatal("no pack holds message content only")
	}
	if err := os.Remove(tr.packPath(lostPack.String())); err != nil {
		t.Fatal(err)
	}
	if _, err := tr.open(t).RebuildIndex(t.Context()); err != nil {
		t.Fatal(err)
	}
	res, st = check()
	// A third reading of the trees names who uses the lost blobs.
	if st.Lookups > 3*trees {
		t.Errorf("check of a damaged repository: %+v, want at most %d lookups", st, 3*trees)
	}
	named := map[archive.ID]bool{}
	for _, p := range res.Errors {
		id, err := archive.ParseID(p.Object[len("blob "):])
		if err != nil || p.Err != "not in any pack" || len(p.Affected) != 1 || !lost[id] {
			t.Fatalf("problem %+v; want a blob of the lost pack, not in any pack, and who uses it", p)
		}
		named[id] = true
	}
	if len(named) != len(lost) {
		t.Fatalf("%d blobs named of the %d lost", len(named), len(lost))
	}
}
