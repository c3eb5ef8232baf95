package cache

import (
	"errors"
	"io/fs"
	"maps"
	"math/bits"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"filippo.io/age"
	"github.com/mailvault/mailvault/archive"
	"github.com/mailvault/mailvault/archive/local"
	"github.com/mailvault/mailvault/maildir"
	"github.com/mailvault/mailvault/restore"
)

// uncachedIndex loads the repository's index without any cache: what
// every table must agree with.
func (r *testRepo) uncachedIndex(t *testing.T) *archive.Index {
	t.Helper()
	repo, err := archive.Open(t.Context(), local.New(r.dir), archive.Credentials{Identities: []age.Identity{r.id}}, archive.Options{Compression: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { repo.Close() })
	if _, err := repo.LoadIndex(t.Context()); err != nil {
		t.Fatal(err)
	}
	return repo.Index()
}

// sameIndex fails unless a and b place every blob alike.
func sameIndex(t *testing.T, a, b *archive.Index) {
	t.Helper()
	pa, pb := a.PackBlobs(), b.PackBlobs()
	if a.Len() != b.Len() || len(pa) != len(pb) {
		t.Fatalf("indexes differ: %d blobs in %d packs, %d in %d", a.Len(), len(pa), b.Len(), len(pb))
	}
	for p, blobs := range pa {
		other := pb[p]
		cmp := func(x, y archive.PackedBlob) int { return int(x.Offset) - int(y.Offset) }
		slices.SortFunc(blobs, cmp)
		slices.SortFunc(other, cmp)
		if !slices.Equal(blobs, other) {
			t.Fatalf("pack %s: %v, want %v", p.Short(), other, blobs)
		}
	}
	if !slices.Equal(slices.Sorted(slices.Values(idStrings(a.Packs()))), slices.Sorted(slices.Values(idStrings(b.Packs())))) {
		t.Fatalf("pack lists differ")
	}
}

func idStrings(ids []archive.ID) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = id.String()
	}
	return out
}

func (r *testRepo) tablePath(repo *archive.Repository) string {
	return filepath.Join(r.cacheDir, repo.Config().ID.String(), indexTableDir, indexTableFile)
}

// tableAfterBackup backs up mail of seed, opens the repository again (which
// writes the table) and returns it open, with the table's path and bytes.
func (r *testRepo) tableAfterBackup(t *testing.T, seed uint64) (*archive.Repository, string, []byte) {
	t.Helper()
	repo, _, _ := r.open(t)
	r.backup(t, repo, genMail(t, seed))
	repo.Close()
	repo, _, _ = r.open(t)
	path := r.tablePath(repo)
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return repo, path, raw
}

// TestIndexTableServesLoad: a backup leaves the cached table up to date
// with the index files it wrote, so that the next command maps it: it
// downloads and decodes no index file and builds no table, and looking
// one blob up compares about log2(n) entries.
func TestIndexTableServesLoad(t *testing.T) {
	r := newTestRepo(t)
	repo, _, _ := r.open(t)
	r.backup(t, repo, genMail(t, 21))
	if st := repo.Index().Stats(); st.TablesBuilt != 2 {
		// The empty repository's, then the backup's.
		t.Fatalf("backup: %+v, want 2 tables built", st)
	}
	repo.Close()

	want := r.uncachedIndex(t)
	for i := range 2 {
		next, cb, _ := r.open(t)
		x := next.Index()
		st := x.Stats()
		if !st.Mapped || st.Decoded != 0 || st.TablesBuilt != 0 {
			t.Fatalf("open %d after the backup: %+v, want the table mapped, nothing decoded and no table built", i+1, st)
		}
		if n, _ := cb.reads(archive.IndexFile); n != 0 {
			t.Errorf("%d index files read, want 0", n)
		}
		sameIndex(t, want, x)
	}
	second, _, _ := r.open(t)
	x := second.Index()

	// One blob (a one-message restore reads a header and a body blob):
	// a binary search of the one table.
	var some archive.ID
	for _, blobs := range want.PackBlobs() {
		some = blobs[0].ID
		break
	}
	before := x.Stats().Probed
	if _, _, ok := x.Lookup(some); !ok {
		t.Fatal("blob not found")
	}
	probed := x.Stats().Probed - before
	// A small index has one bucket of ~16 entries or fewer.
	if limit := int64(bits.Len(uint(min(x.Len(), 64)))) + 1; probed > limit {
		t.Errorf("one lookup compared %d entries of %d, want <= %d", probed, x.Len(), limit)
	}
	if x.Stats().Decoded != 0 {
		t.Errorf("a lookup decoded %d entries", x.Stats().Decoded)
	}
}

// TestIndexTableDamaged: a table whose tail (counts, file and pack IDs,
// page MACs, directory) is damaged in any way is not trusted: the index
// comes from the index files, the same as without a cache, and the table
// is written again. (A damaged page of entries is found when it is used:
// TestIndexTablePageDamaged.)
func TestIndexTableDamaged(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, path string, raw []byte)
	}{
		{"bit flipped in the trailer", func(t *testing.T, path string, raw []byte) {
			raw[len(raw)-40] ^= 4
			write(t, path, raw)
		}},
		{"bit flipped in the directory", func(t *testing.T, path string, raw []byte) {
			raw[len(raw)-80] ^= 1
			write(t, path, raw)
		}},
		{"old format", func(t *testing.T, path string, raw []byte) {
			copy(raw[len(raw)-72:], "MVIXTAB1")
			write(t, path, raw)
		}},
		{"truncated", func(t *testing.T, path string, raw []byte) { write(t, path, raw[:len(raw)-49]) }},
		{"empty", func(t *testing.T, path string, raw []byte) { write(t, path, nil) }},
		{"another repository's table", func(t *testing.T, path string, raw []byte) {
			other := newTestRepo(t)
			o, _, _ := other.open(t)
			other.backup(t, o, genMail(t, 23))
			o.Close()
			o, _, _ = other.open(t)
			b, err := os.ReadFile(other.tablePath(o))
			if err != nil {
				t.Fatal(err)
			}
			write(t, path, b)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newTestRepo(t)
			repo, path, raw := r.tableAfterBackup(t, 22)
			tc.damage(t, path, raw)

			repo, _, _ = r.open(t)
			want := r.uncachedIndex(t)
			if st := repo.Index().Stats(); st.Decoded == 0 {
				t.Fatalf("damaged table: %+v, want the index files decoded", st)
			}
			sameIndex(t, want, repo.Index())
			repo, _, _ = r.open(t)
			if st := repo.Index().Stats(); !st.Mapped || st.Decoded != 0 {
				t.Fatalf("after the rebuild: %+v, want the new table mapped", st)
			}
			sameIndex(t, want, repo.Index())
		})
	}
}

func write(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestIndexTableFollowsRepository: the table is extended by the index
// files written since (only those are decoded), and dropped when a
// rebuild of the index supersedes files it holds.
func TestIndexTableFollowsRepository(t *testing.T) {
	r := newTestRepo(t)
	repo, _, _ := r.open(t)
	r.backup(t, repo, genMail(t, 24))
	repo.Close()
	repo, _, _ = r.open(t)
	base := repo.Index().Len()
	src := genMail(t, 25)
	r.backup(t, repo, src)
	if st := repo.Index().Stats(); st.TablesBuilt != 1 {
		t.Fatalf("incremental backup: %+v, want one table built", st)
	}
	// A backup that stores nothing new writes no index file and leaves
	// the table as it is.
	r.backup(t, repo, src)
	if st := repo.Index().Stats(); st.TablesBuilt != 1 {
		t.Fatalf("backup with nothing new: %+v, want no further table built", st)
	}
	repo.Close()

	repo, _, _ = r.open(t)
	st := repo.Index().Stats()
	if added := repo.Index().Len() - base; !st.Mapped || added <= 0 || st.Decoded != 0 || st.TablesBuilt != 0 {
		t.Fatalf("after a backup: %+v with %d blobs added; want the table mapped and nothing decoded or built", st, added)
	}
	sameIndex(t, r.uncachedIndex(t), repo.Index())

	// Index files written by someone that does not bring the table up
	// to date (an older release, AdoptPacks): the next command reads
	// only those and merges them with the table.
	r.backup(t, repo, genMail(t, 26))
	repo.Close()
	tab, err := os.ReadFile(r.tablePath(repo))
	if err != nil {
		t.Fatal(err)
	}
	base = repo.Index().Len()
	repo, _, _ = r.open(t)
	r.backup(t, repo, genMail(t, 27))
	repo.Close()
	write(t, r.tablePath(repo), tab)
	repo, _, _ = r.open(t)
	st = repo.Index().Stats()
	if added := int64(repo.Index().Len() - base); !st.Mapped || added <= 0 || st.Decoded != added || st.TablesBuilt != 1 {
		t.Fatalf("after a backup the table does not hold: %+v with %d blobs added; want only the new file's %d entries decoded, one table built", st, added, added)
	}
	sameIndex(t, r.uncachedIndex(t), repo.Index())
	repo, _, _ = r.open(t)
	if st := repo.Index().Stats(); !st.Mapped || st.Decoded != 0 {
		t.Fatalf("next open: %+v, want nothing decoded", st)
	}

	if _, err := repo.RebuildIndex(t.Context()); err != nil {
		t.Fatal(err)
	}
	repo.Close()
	repo, _, _ = r.open(t)
	if st := repo.Index().Stats(); st.Decoded == 0 {
		t.Fatalf("after repair index: %+v, want every file in force decoded again", st)
	}
	want := r.uncachedIndex(t)
	sameIndex(t, want, repo.Index())
	if got := slices.Collect(maps.Keys(repo.Index().PackBlobs())); len(got) == 0 {
		t.Fatal("no packs")
	}
}

// TestIndexTableNotForCheck: check decodes every index file even when a
// table would serve, so that it reports a damaged index file.
func TestIndexTableNotForCheck(t *testing.T) {
	r := newTestRepo(t)
	repo, _, _ := r.open(t)
	r.backup(t, repo, genMail(t, 26))
	repo.Close()
	repo, _, _ = r.open(t)
	repo.Close()

	cb := newCounting(local.New(r.dir))
	repo, err := archive.Open(t.Context(), New(cb, r.cacheDir, nil), archive.Credentials{Identities: []age.Identity{r.id}}, archive.Options{Compression: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer repo.Close()
	res, err := repo.Check(t.Context(), archive.CheckOptions{})
	if err != nil || !res.OK() {
		t.Fatalf("check: %v %+v", err, res)
	}
	if st := repo.Index().Stats(); st.Decoded == 0 || int(st.Decoded) < repo.Index().Len() {
		t.Fatalf("check's index: %+v, want every index file decoded", st)
	}
}

// TestIndexTableOnly: NewIndexTable (a local-directory repository) keeps
// the index table and no copy of any file.
func TestIndexTableOnly(t *testing.T) {
	r := newTestRepo(t)
	repo, _, _ := r.open(t)
	r.backup(t, repo, genMail(t, 27))
	repo.Close()
	r.cacheDir = filepath.Join(t.TempDir(), "tableonly")
	for i := range 2 {
		cb := newCounting(local.New(r.dir))
		repo, err := archive.Open(t.Context(), NewIndexTable(cb, r.cacheDir, nil), archive.Credentials{Identities: []age.Identity{r.id}}, archive.Options{Compression: 1})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := repo.LoadIndex(t.Context()); err != nil {
			t.Fatal(err)
		}
		st := repo.Index().Stats()
		n, _ := cb.reads(archive.IndexFile)
		if i == 1 && (!st.Mapped || st.Decoded != 0 || n != 0) {
			t.Errorf("second open: %+v, %d index files read; want the table mapped and no file read", st, n)
		}
		if _, _, err := repo.Snapshots(t.Context()); err != nil {
			t.Fatal(err)
		}
		repo.Close()
	}
	for _, ft := range []archive.FileType{archive.KeyFile, archive.IndexFile, archive.SnapshotFile} {
		entries, _ := os.ReadDir(filepath.Join(r.cacheDir, repoIDOf(t, r), string(ft)))
		if len(entries) > 0 {
			t.Errorf("%s: %d files copied, want none", ft, len(entries))
		}
	}
	if _, err := os.Stat(filepath.Join(r.cacheDir, repoIDOf(t, r), indexTableDir, indexTableFile)); err != nil {
		t.Errorf("no index table: %v", err)
	}
}

func repoIDOf(t *testing.T, r *testRepo) string {
	repo, err := archive.Open(t.Context(), local.New(r.dir), archive.Credentials{Identities: []age.Identity{r.id}}, archive.Options{Compression: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer repo.Close()
	return repo.Config().ID.String()
}

// TestIndexOneMessageRestore: restoring one message from a repository
// whose index table is cached decodes no index entry and compares a few
// entries per blob and tree it looks up.
func TestIndexOneMessageRestore(t *testing.T) {
	r := newTestRepo(t)
	repo, _, _ := r.open(t)
	src := genMail(t, 28)
	r.backup(t, repo, src)
	repo.Close()
	r.open(t) // writes the table with the backup's index file

	var unique string
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err == nil && unique == "" && !d.IsDir() && filepath.Base(filepath.Dir(p)) == "cur" {
			unique = maildir.ParseName(d.Name()).Unique
		}
		return err
	})
	if err != nil || unique == "" {
		t.Fatalf("no message in the corpus: %v", err)
	}

	repo, _, snaps := r.open(t)
	x := repo.Index()
	if st := x.Stats(); !st.Mapped || st.Decoded != 0 {
		t.Fatalf("open: %+v, want the table mapped", st)
	}
	res, err := restore.Restore(t.Context(), repo, snaps[0], restore.Options{Target: filepath.Join(t.TempDir(), "out"), Message: unique})
	if err != nil || res.Messages != 1 {
		t.Fatalf("restore of %s: %v, %+v", unique, err, res)
	}
	st := x.Stats()
	t.Logf("one-message restore from %d blobs: %d index entries decoded, %d lookups, %d entries compared", x.Len(), st.Decoded, st.Lookups, st.Probed)
	if st.Decoded != 0 {
		t.Errorf("a one-message restore decoded %d index entries, want 0", st.Decoded)
	}
	// The trees it walks and the message's header and body blobs, each
	// a search of one bucket (at most the whole table of this small
	// repository: log2(n)+1 comparisons).
	if limit := 20; st.Lookups > int64(limit) {
		t.Errorf("a one-message restore looked up %d blobs, want <= %d", st.Lookups, limit)
	}
	if limit := st.Lookups * int64(bits.Len(uint(x.Len()))+1); st.Probed > limit {
		t.Errorf("a one-message restore compared %d index entries in %d lookups, want <= %d", st.Probed, st.Lookups, limit)
	}
}

// TestIndexTablePageDamaged: a page of entries that does not match its
// MAC is found when a lookup first uses it — the table opens (its tail is
// intact), but the page's blobs read as absent, never as a wrong place —
// and the table is removed, so that the next command decodes the index
// files.
func TestIndexTablePageDamaged(t *testing.T) {
	r := newTestRepo(t)
	repo, path, raw := r.tableAfterBackup(t, 29)
	raw[40] ^= 1 // the first entry's offset: a wrong place, were it used
	write(t, path, raw)

	want := r.uncachedIndex(t)
	repo, _, _ = r.open(t)
	x := repo.Index()
	if st := x.Stats(); !st.Mapped || st.Decoded != 0 {
		t.Fatalf("open: %+v, want the table mapped (pages are checked when used)", st)
	}
	for _, blobs := range want.PackBlobs() {
		for _, b := range blobs {
			// This small table is one page: every blob is in it.
			if _, got, ok := x.Lookup(b.ID); ok {
				t.Fatalf("blob %s of a damaged page found at %+v", b.ID.Short(), got)
			}
		}
	}
	if c := x.Stats().PagesChecked; c != 1 {
		t.Errorf("%d pages checked, want 1 (a bad page is checked once)", c)
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("damaged table not removed: %v", err)
	}
	repo, _, _ = r.open(t)
	if st := repo.Index().Stats(); st.Decoded == 0 {
		t.Fatalf("next open: %+v, want the index files decoded", st)
	}
	sameIndex(t, want, repo.Index())
}
