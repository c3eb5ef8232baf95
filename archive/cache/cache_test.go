package cache

import (
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"filippo.io/age"

	"github.com/mailvault/mailvault/archive"
	"github.com/mailvault/mailvault/archive/backendtest"
	"github.com/mailvault/mailvault/archive/local"
	"github.com/mailvault/mailvault/bench/corpus"
)

// counting is a backend that counts the requests and bytes read through
// it per file type: what a remote backend would download.
type counting struct {
	archive.Backend
	mu    sync.Mutex
	gets  map[archive.FileType]int
	bytes map[archive.FileType]int64
}

func newCounting(be archive.Backend) *counting {
	return &counting{Backend: be, gets: map[archive.FileType]int{}, bytes: map[archive.FileType]int64{}}
}

type countingReader struct {
	io.ReadCloser
	c *counting
	t archive.FileType
}

func (r countingReader) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	r.c.mu.Lock()
	r.c.bytes[r.t] += int64(n)
	r.c.mu.Unlock()
	return n, err
}

func (c *counting) Get(ctx context.Context, t archive.FileType, name string) (io.ReadCloser, error) {
	return c.GetRange(ctx, t, name, 0, 0)
}

func (c *counting) GetRange(ctx context.Context, t archive.FileType, name string, off, n int64) (io.ReadCloser, error) {
	c.mu.Lock()
	c.gets[t]++
	c.mu.Unlock()
	rc, err := c.Backend.GetRange(ctx, t, name, off, n)
	if err != nil {
		return nil, err
	}
	return countingReader{rc, c, t}, nil
}

// metadata is what was downloaded of the cached types: requests, bytes.
func (c *counting) metadata() (int, int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var n int
	var b int64
	for _, t := range []archive.FileType{archive.KeyFile, archive.IndexFile, archive.SnapshotFile} {
		n += c.gets[t]
		b += c.bytes[t]
	}
	return n, b
}

func (c *counting) reads(t archive.FileType) (int, int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gets[t], c.bytes[t]
}

// testRepo is a repository in a local directory, reached through a
// counting backend and the cache as a remote one would be.
type testRepo struct {
	dir, cacheDir string
	id            *age.X25519Identity
}

func newTestRepo(t *testing.T) *testRepo {
	t.Helper()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	r := &testRepo{dir: filepath.Join(t.TempDir(), "repo"), cacheDir: filepath.Join(t.TempDir(), "cache"), id: id}
	if err := local.New(r.dir).Create(); err != nil {
		t.Fatal(err)
	}
	if _, err := archive.Init(t.Context(), local.New(r.dir), archive.KeyRecipients{Recipients: []string{id.Recipient().String()}}); err != nil {
		t.Fatal(err)
	}
	return r
}

// open opens the repository through a fresh counting backend and the
// cache, and loads its index and snapshots, as every command does.
func (r *testRepo) open(t *testing.T) (*archive.Repository, *counting, []*archive.Snapshot) {
	t.Helper()
	cb := newCounting(local.New(r.dir))
	repo, err := archive.Open(t.Context(), New(cb, r.cacheDir, nil), archive.Credentials{Identities: []age.Identity{r.id}}, archive.Options{Compression: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { repo.Close() })
	if _, err := repo.LoadIndex(t.Context()); err != nil {
		t.Fatal(err)
	}
	if errs := repo.DamagedIndexes(); len(errs) > 0 {
		t.Fatalf("damaged index files: %v", errs)
	}
	snaps, damaged, err := repo.Snapshots(t.Context())
	if err != nil || len(damaged) > 0 {
		t.Fatalf("snapshots: %v %v", err, damaged)
	}
	return repo, cb, snaps
}

func (r *testRepo) backup(t *testing.T, repo *archive.Repository, src string) {
	t.Helper()
	if _, err := repo.Backup(t.Context(), archive.BackupOptions{Paths: []string{src}, Host: "test"}); err != nil {
		t.Fatal(err)
	}
}

// cacheFiles lists the cache's files of one type.
func (r *testRepo) cacheFiles(t *testing.T, repo *archive.Repository, ft archive.FileType) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(r.cacheDir, repo.Config().ID.String(), string(ft)))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func genMail(t *testing.T, seed uint64) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "mail")
	if _, err := corpus.Generate(t.Context(), dir, corpus.Options{Seed: seed, TargetBytes: 300 << 10, Domains: 1, UsersPerDomain: 2}); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestCacheContract(t *testing.T) {
	lb := local.New(t.TempDir())
	if err := lb.Create(); err != nil {
		t.Fatal(err)
	}
	be := New(lb, t.TempDir(), nil)
	backendtest.Run(t, be)
	backendtest.RefusesUnsafeNames(t, be)
}

// TestCacheSecondOpenReadsNoMetadata: once a command has run, opening the
// repository again downloads no key, index or snapshot byte.
func TestCacheSecondOpenReadsNoMetadata(t *testing.T) {
	r := newTestRepo(t)
	src := genMail(t, 1)

	repo, first, _ := r.open(t)
	if n, b := first.metadata(); n == 0 || b == 0 {
		t.Fatalf("the first open read %d files, %d bytes of metadata; want some (the key file)", n, b)
	}
	r.backup(t, repo, src)
	repo.Close()

	// The backup's own index and snapshot went into the cache as it wrote them.
	repo, second, snaps := r.open(t)
	if len(snaps) != 1 || repo.Index().Len() == 0 {
		t.Fatalf("second open: %d snapshots, %d blobs indexed", len(snaps), repo.Index().Len())
	}
	if n, b := second.metadata(); n != 0 || b != 0 {
		t.Errorf("second open read %d files, %d bytes of keys, index and snapshots from the backend; want 0", n, b)
	}
	// A backup with nothing new finds its parent in the cache too.
	r.backup(t, repo, src)
	if n, b := second.reads(archive.SnapshotFile); n != 0 || b != 0 {
		t.Errorf("no-change backup read %d snapshot files (%d bytes) from the backend; want 0", n, b)
	}
	repo.Close()

	// A second cache directory (another host) downloads everything once.
	other := *r
	other.cacheDir = filepath.Join(t.TempDir(), "cache")
	_, cold, snaps := other.open(t)
	if n, _ := cold.reads(archive.SnapshotFile); n != len(snaps) || n != 2 {
		t.Errorf("cold cache: %d snapshot reads for %d snapshots, want 2", n, len(snaps))
	}
	_, warm, _ := other.open(t)
	if n, b := warm.metadata(); n != 0 || b != 0 {
		t.Errorf("warm cache: %d files, %d bytes read; want 0", n, b)
	}
}

// TestCacheTamperedFileIsRefetched: a cached file whose bytes do not match
// its name is dropped and downloaded again, and the repository never sees
// the bad bytes.
func TestCacheTamperedFileIsRefetched(t *testing.T) {
	r := newTestRepo(t)
	repo, _, _ := r.open(t)
	r.backup(t, repo, genMail(t, 2))
	repo.Close()

	repo, _, _ = r.open(t)
	names := r.cacheFiles(t, repo, archive.SnapshotFile)
	idx := r.cacheFiles(t, repo, archive.IndexFile)
	if len(names) != 1 || len(idx) == 0 {
		t.Fatalf("cache holds snapshots %v, index files %v", names, idx)
	}
	repoID := repo.Config().ID.String()
	snapPath := filepath.Join(r.cacheDir, repoID, "snapshots", names[0])
	raw, err := os.ReadFile(snapPath)
	if err != nil {
		t.Fatal(err)
	}
	raw[len(raw)/2] ^= 1
	if err := os.WriteFile(snapPath, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	idxPath := filepath.Join(r.cacheDir, repoID, "index", idx[0])
	if err := os.WriteFile(idxPath, []byte("truncated"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Without the index table, so that the index files are read.
	if err := os.Remove(filepath.Join(r.cacheDir, repoID, indexTableDir, indexTableFile)); err != nil {
		t.Fatal(err)
	}

	repo, cb, snaps := r.open(t) // fails on a damaged snapshot or index
	if len(snaps) != 1 || snaps[0].ID.String() != names[0] {
		t.Fatalf("snapshots after tampering: %v", snaps)
	}
	if n, _ := cb.reads(archive.SnapshotFile); n != 1 {
		t.Errorf("%d snapshot files downloaded, want 1 (the tampered one)", n)
	}
	if n, _ := cb.reads(archive.IndexFile); n != 1 {
		t.Errorf("%d index files downloaded, want 1 (the truncated one)", n)
	}
	for _, p := range []string{snapPath, idxPath} {
		if raw, err := os.ReadFile(p); err != nil || sha256ID(raw) != filepath.Base(p) {
			t.Errorf("%s was not replaced by a sound copy: %v", p, err)
		}
	}
	repo.Close()
}

func sha256ID(b []byte) string {
	return archive.ID(sha256.Sum256(b)).String()
}

// TestCacheEvictsWhatIsGoneUpstream: a file removed by another host (not
// through this cache) is evicted by the next List; Remove removes both.
func TestCacheEvictsWhatIsGoneUpstream(t *testing.T) {
	r := newTestRepo(t)
	repo, _, _ := r.open(t)
	r.backup(t, repo, genMail(t, 3))
	r.backup(t, repo, genMail(t, 4))
	repo.Close()

	repo, _, snaps := r.open(t)
	if len(snaps) != 2 || len(r.cacheFiles(t, repo, archive.SnapshotFile)) != 2 {
		t.Fatalf("%d snapshots, cached %v", len(snaps), r.cacheFiles(t, repo, archive.SnapshotFile))
	}
	// Another host's prune: straight on the storage.
	if err := local.New(r.dir).Remove(t.Context(), archive.SnapshotFile, snaps[0].ID.String()); err != nil {
		t.Fatal(err)
	}
	// Before a List, a Get is answered from the cache (see the package doc).
	be := repo.Backend()
	if _, err := be.Stat(t.Context(), archive.SnapshotFile, snaps[0].ID.String()); !errors.Is(err, archive.ErrNotExist) {
		t.Errorf("Stat of a removed file = %v, want ErrNotExist (Stat must not answer from the cache)", err)
	}
	_, _, after := r.open(t)
	if len(after) != 1 || after[0].ID != snaps[1].ID {
		t.Fatalf("snapshots after the upstream removal: %v", after)
	}
	if got := r.cacheFiles(t, repo, archive.SnapshotFile); len(got) != 1 || got[0] != snaps[1].ID.String() {
		t.Errorf("cache after the listing holds %v, want only %s", got, snaps[1].ID)
	}

	// A removal through the cache removes the cached copy at once.
	if err := be.Remove(t.Context(), archive.SnapshotFile, snaps[1].ID.String()); err != nil {
		t.Fatal(err)
	}
	if got := r.cacheFiles(t, repo, archive.SnapshotFile); len(got) != 0 {
		t.Errorf("cache after Remove holds %v", got)
	}
	if _, err := be.Get(t.Context(), archive.SnapshotFile, snaps[1].ID.String()); !errors.Is(err, archive.ErrNotExist) {
		t.Errorf("Get after Remove = %v, want ErrNotExist", err)
	}
}

// TestCacheNeverKeepsBadDownloads: a file whose stored bytes do not match
// its name reaches the caller (which reports the damage) but not the cache.
func TestCacheNeverKeepsBadDownloads(t *testing.T) {
	r := newTestRepo(t)
	repo, _, _ := r.open(t)
	repo.Close()
	bad := sha256ID([]byte("the right content"))
	if err := local.New(r.dir).Put(t.Context(), archive.IndexFile, bad, []byte("other content")); err != nil {
		t.Fatal(err)
	}
	be := New(local.New(r.dir), r.cacheDir, nil)
	for range 2 {
		rc, err := be.Get(t.Context(), archive.IndexFile, bad)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(rc)
		rc.Close()
		if string(got) != "other content" {
			t.Errorf("Get = %q", got)
		}
	}
	if _, err := os.Stat(filepath.Join(r.cacheDir, repo.Config().ID.String(), "index", bad)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a download that does not match its name was cached: %v", err)
	}
}

// TestCacheFiles: permissions, the cache directory tag, nothing cached but
// keys, index files and snapshots, and config read from the backend every
// time.
func TestCacheFiles(t *testing.T) {
	r := newTestRepo(t)
	repo, _, _ := r.open(t)
	r.backup(t, repo, genMail(t, 5))
	repo.Close()
	repo, cb, _ := r.open(t)
	if n, _ := cb.reads(archive.ConfigFile); n != 1 {
		t.Errorf("config read %d times by an open, want 1 (never cached)", n)
	}
	tag, err := os.ReadFile(filepath.Join(r.cacheDir, tagFile))
	if err != nil || string(tag) != tagContent {
		t.Errorf("CACHEDIR.TAG: %q, %v", tag, err)
	}
	repoDir := filepath.Join(r.cacheDir, repo.Config().ID.String())
	seen := map[string]int{}
	err = filepath.WalkDir(repoDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if d.IsDir() {
			if fi.Mode().Perm() != 0o700 {
				t.Errorf("%s: mode %v, want 0700", p, fi.Mode().Perm())
			}
			return nil
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", p, fi.Mode().Perm())
		}
		seen[filepath.Base(filepath.Dir(p))]++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if seen["keys"] != 1 || seen["index"] == 0 || seen["snapshots"] != 1 || seen[indexTableDir] != 1 || len(seen) != 4 {
		t.Errorf("cached files per directory: %v; want keys, index, snapshots and the index table only", seen)
	}
}

// lockingLocal is a local backend that claims object lock, to check that
// the cache passes ObjectLocker on exactly when the backend has it.
type lockingLocal struct {
	*local.Backend
	set *archive.ObjectLock
}

func (l *lockingLocal) EnableObjectLock(context.Context) error { return nil }
func (l *lockingLocal) SetObjectLock(p archive.ObjectLock)     { l.set = &p }
func (l *lockingLocal) Retention(context.Context, archive.FileType, string) (archive.Retention, error) {
	return archive.Retention{}, nil
}
func (l *lockingLocal) ExtendRetention(context.Context, archive.FileType, string, archive.Retention) error {
	return nil
}

func TestCacheObjectLockerOnlyWhenWrapped(t *testing.T) {
	plain := New(local.New(t.TempDir()), t.TempDir(), nil)
	if _, ok := plain.(archive.ObjectLocker); ok {
		t.Error("the cache over a local directory claims object lock")
	}
	ll := &lockingLocal{Backend: local.New(t.TempDir())}
	locking := New(ll, t.TempDir(), nil)
	ol, ok := locking.(archive.ObjectLocker)
	if !ok {
		t.Fatal("the cache hides the backend's object lock")
	}
	ol.SetObjectLock(archive.ObjectLock{Mode: archive.Governance, Days: 3})
	if ll.set == nil || ll.set.Days != 3 {
		t.Errorf("SetObjectLock did not reach the backend: %v", ll.set)
	}
	if archive.Connections(locking) != 1 {
		t.Errorf("Connections = %d, want 1 for a backend that does not say", archive.Connections(locking))
	}
}

// TestCacheWithoutOpen: the cache learns the repository ID from config by
// itself when nothing has read it yet, and serves ranges of cached files.
func TestCacheWithoutOpen(t *testing.T) {
	r := newTestRepo(t)
	repo, _, _ := r.open(t)
	r.backup(t, repo, genMail(t, 6))
	repo.Close()
	snap := r.cacheFiles(t, repo, archive.SnapshotFile)[0]
	whole, err := os.ReadFile(filepath.Join(r.dir, "snapshots", snap))
	if err != nil {
		t.Fatal(err)
	}

	cb := newCounting(local.New(r.dir))
	be := New(cb, filepath.Join(t.TempDir(), "fresh"), nil)
	for _, tt := range []struct{ off, n int64 }{{0, 0}, {5, 10}, {int64(len(whole)) - 3, 10}, {int64(len(whole)) + 5, 1}} {
		rc, err := be.GetRange(t.Context(), archive.SnapshotFile, snap, tt.off, tt.n)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(rc)
		rc.Close()
		lo := min(tt.off, int64(len(whole)))
		hi := int64(len(whole))
		if tt.n > 0 {
			hi = min(hi, lo+tt.n)
		}
		if string(got) != string(whole[lo:hi]) {
			t.Errorf("GetRange(%d, %d) = %d bytes, want %d", tt.off, tt.n, len(got), hi-lo)
		}
	}
	if n, _ := cb.reads(archive.ConfigFile); n != 1 {
		t.Errorf("config read %d times, want once (to learn the repository ID)", n)
	}
	if n, _ := cb.reads(archive.SnapshotFile); n != 1 {
		t.Errorf("snapshot downloaded %d times for 4 ranges, want once", n)
	}
}

// TestCacheUnusableDirectory: when the cache directory cannot be made,
// every request goes to the backend and nothing fails.
func TestCacheUnusableDirectory(t *testing.T) {
	r := newTestRepo(t)
	notADir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notADir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	r.cacheDir = notADir
	repo, _, _ := r.open(t)
	r.backup(t, repo, genMail(t, 7))
	repo.Close()
	_, cb, snaps := r.open(t)
	if n, _ := cb.reads(archive.SnapshotFile); len(snaps) != 1 || n != 1 {
		t.Errorf("%d snapshots, %d downloaded; want 1 and 1 without a usable cache", len(snaps), n)
	}
}
