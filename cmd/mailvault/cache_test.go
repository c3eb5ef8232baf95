package main

import (
	"encoding/json"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/mailvault/mailvault/archive/s3/s3test"
)

// getCounter is a reverse proxy in front of MinIO that counts object GETs
// by the repository directory they read (keys, index, snapshots, data).
type getCounter struct {
	mu   sync.Mutex
	gets map[string]int
}

func newGetCounter(t *testing.T, target string) (*getCounter, string) {
	t.Helper()
	c := &getCounter{gets: map[string]int{}}
	rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: target})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// An object GET; a listing is a GET of the bucket with a query.
		if r.Method == http.MethodGet && r.URL.Query().Get("list-type") == "" {
			parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
			if len(parts) >= 2 {
				c.mu.Lock()
				c.gets[parts[len(parts)-2]]++
				c.mu.Unlock()
			}
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return c, strings.TrimPrefix(srv.URL, "http://")
}

// take returns the counts since the last take and starts again.
func (c *getCounter) take() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	got := c.gets
	c.gets = map[string]int{}
	return got
}

func metadataGets(m map[string]int) int { return m["keys"] + m["index"] + m["snapshots"] }

func total(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// TestCacheS3 runs snapshots and backups against MinIO through a counting
// proxy: with the metadata cache a command downloads no key, index or
// snapshot file that an earlier command on this host already had, and
// --no-cache downloads them every time.
func TestCacheS3(t *testing.T) {
	srv := s3test.StartT(t)
	t.Setenv("AWS_ACCESS_KEY_ID", s3test.User)
	t.Setenv("AWS_SECRET_ACCESS_KEY", s3test.Password)
	t.Setenv("AWS_DEFAULT_REGION", "us-east-1") // no location lookup to count
	t.Setenv("HOME", t.TempDir())
	counter, addr := newGetCounter(t, srv.Addr)

	e := &cliEnv{
		repo:     "s3:http://" + addr + "/" + s3test.NewBucketName() + "/mail",
		identity: filepath.Join(t.TempDir(), "key.txt"),
	}
	id := newIdentityFile(t, e.identity)
	if _, stderr, code := runCLI(t, "--repo", e.repo, "init", "--recipient", id.Recipient().String()); code != 0 {
		t.Fatalf("init: exit %d: %s", code, stderr)
	}
	cacheDir := filepath.Join(t.TempDir(), "cache")
	t.Setenv("MAILVAULT_CACHE_DIR", cacheDir)
	src := genCorpus(t, 7, 400e3)

	step := func(name string, args ...string) map[string]int {
		t.Helper()
		counter.take()
		if _, stderr, code := e.cli(t, append([]string{"--json"}, args...)...); code != 0 {
			t.Fatalf("%s: exit %d: %s", name, code, stderr)
		}
		got := counter.take()
		t.Logf("%s: object GETs %v", name, got)
		return got
	}

	step("backup 1", "backup", src)
	// The first backup read the key file and wrote the index file and
	// snapshot through the cache: nothing to download now.
	if m := step("snapshots", "snapshots"); metadataGets(m) != 0 {
		t.Errorf("snapshots after a backup on this host: %d key/index/snapshot GETs, want 0", metadataGets(m))
	}
	uncached := step("backup 2, --no-cache", "--no-cache", "backup", src)
	if uncached["keys"] != 1 || uncached["index"] != 1 || uncached["snapshots"] != 1 {
		t.Errorf("--no-cache backup: GETs %v, want one key, index and snapshot file", uncached)
	}
	// The --no-cache run wrote its snapshot around the cache: the next
	// run downloads that one file, and the one after nothing.
	if m := step("backup 3", "backup", src); m["snapshots"] != 1 || metadataGets(m) != 1 {
		t.Errorf("backup after a --no-cache one: GETs %v, want only the snapshot that run wrote", m)
	}
	cached := step("backup 4", "backup", src)
	if metadataGets(cached) != 0 {
		t.Errorf("cached no-change backup: %d key/index/snapshot GETs, want 0", metadataGets(cached))
	}
	if total(cached) >= total(uncached) {
		t.Errorf("cached no-change backup made %d object GETs, not fewer than the uncached one's %d", total(cached), total(uncached))
	}

	// Another cache directory, as on another host: everything once, then
	// nothing. Four snapshots, one index file per backup that stored
	// something (the first; the no-change ones store no pack).
	other := filepath.Join(t.TempDir(), "other")
	cold := step("snapshots, cold cache", "--cache-dir", other, "snapshots")
	if cold["snapshots"] != 4 || cold["keys"] != 1 {
		t.Errorf("cold cache: GETs %v, want 4 snapshots and 1 key file", cold)
	}
	if warm := step("snapshots, warm cache", "--cache-dir", other, "snapshots"); metadataGets(warm) != 0 {
		t.Errorf("warm cache: GETs %v, want no key/index/snapshot GET", warm)
	}
	if _, err := os.Stat(filepath.Join(other, "CACHEDIR.TAG")); err != nil {
		t.Errorf("no CACHEDIR.TAG in --cache-dir: %v", err)
	}

	// This host backs up other mail and the other host caches that
	// snapshot and its index file; then this host forgets it and prunes
	// its packs (rewriting the index). The other host must notice: its
	// listing evicts the snapshot and the replaced index files, and check
	// finds every pack the index names.
	step("backup of other mail", "backup", genCorpus(t, 9, 200e3))
	step("check, other host", "--cache-dir", other, "check")
	snaps := func(args ...string) []struct {
		ID string `json:"id"`
	} {
		t.Helper()
		stdout, stderr, code := e.cli(t, append(args, "--json", "snapshots")...)
		if code != 0 {
			t.Fatalf("snapshots: exit %d: %s", code, stderr)
		}
		var out []struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal([]byte(stdout), &out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	all := snaps()
	if len(all) != 5 {
		t.Fatalf("%d snapshots, want 5", len(all))
	}
	cachedIndex := func() []string {
		t.Helper()
		dirs, err := filepath.Glob(filepath.Join(other, "*", "index", "*"))
		if err != nil {
			t.Fatal(err)
		}
		return dirs
	}
	indexBefore := cachedIndex()
	step("forget --prune", "forget", "--prune", "latest")
	if got := snaps("--cache-dir", other); len(got) != 4 {
		t.Errorf("other host after the prune: %d snapshots, want 4", len(got))
	}
	repoDirs, err := filepath.Glob(filepath.Join(other, "*", "snapshots"))
	if err != nil || len(repoDirs) != 1 {
		t.Fatalf("other cache: %v %v", repoDirs, err)
	}
	if left, err := os.ReadDir(repoDirs[0]); err != nil || len(left) != 4 {
		t.Errorf("other cache holds %d snapshots after the prune, want 4 (%v)", len(left), err)
	}
	if _, err := os.Stat(filepath.Join(repoDirs[0], all[4].ID)); !os.IsNotExist(err) {
		t.Errorf("the forgotten snapshot is still cached: %v", err)
	}
	if stdout, stderr, code := e.cli(t, "--cache-dir", other, "--json", "check"); code != 0 {
		t.Errorf("check through the other host's cache after the prune: exit %d: %s\n%s", code, stderr, stdout)
	}
	// The prune deleted the index file that listed only the forgotten
	// snapshot's packs (any index it wrote would be new, not one of these).
	after := map[string]bool{}
	for _, f := range cachedIndex() {
		after[f] = true
	}
	evicted := 0
	for _, f := range indexBefore {
		if !after[f] {
			evicted++
		}
	}
	if evicted == 0 {
		t.Errorf("no cached index file was evicted after the prune (before %d, after %d)", len(indexBefore), len(after))
	}
}

// TestCacheNotForLocal: no file of a repository in a local directory is
// copied into the cache; only its index table is kept there.
func TestCacheNotForLocal(t *testing.T) {
	e := newCLIEnv(t)
	cacheDir := filepath.Join(t.TempDir(), "cache")
	e.backup(t, "--cache-dir", cacheDir, genCorpus(t, 8, 100e3))
	if _, stderr, code := e.cli(t, "--cache-dir", cacheDir, "snapshots"); code != 0 {
		t.Fatalf("snapshots: exit %d: %s", code, stderr)
	}
	var files []string
	err := filepath.WalkDir(cacheDir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files = append(files, filepath.Base(filepath.Dir(p))+"/"+d.Name())
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(files)
	if want := []string{"cache/CACHEDIR.TAG", "indextable/table-v2"}; !slices.Equal(files, want) {
		t.Errorf("cache of a local repository holds %v, want %v", files, want)
	}
}
