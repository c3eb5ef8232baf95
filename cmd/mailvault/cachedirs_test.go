package main

import (
	"crypto/sha256"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailvault/mailvault/archive"
)

// TestWriteOnlyCacheDir: --cache-dir moves a write-only host's parent
// cache too; the one an older version kept under $XDG_CACHE_HOME is
// moved there, so the next backup still reads nothing; --no-cache keeps
// using it.
func TestWriteOnlyCacheDir(t *testing.T) {
	xdg := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", xdg)
	t.Setenv("MAILVAULT_CACHE_DIR", "")
	e := newCLIEnv(t)
	src := genCorpus(t, 41, 300e3)
	woKey := filepath.Join(t.TempDir(), "wo.txt")
	id := newIdentityFile(t, woKey)
	if _, stderr, code := e.cli(t, "key", "add", "--write-only", "--recipient", id.Recipient().String()); code != 0 {
		t.Fatalf("key add: exit %d: %s", code, stderr)
	}
	wo := &cliEnv{repo: e.repo, identity: woKey}
	raw, err := os.ReadFile(filepath.Join(e.repo, "config"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg archive.Config
	if err := json.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	repoID := cfg.ID.String()

	// Without --cache-dir: the default root, where older versions kept it.
	wo.backup(t, src)
	if _, err := os.Stat(filepath.Join(xdg, "mailvault", repoID, "parents")); err != nil {
		t.Fatalf("parent cache in the default root: %v", err)
	}
	other := filepath.Join(t.TempDir(), "cache")
	b := wo.backup(t, "--cache-dir", other, src)
	if b.Summary.BytesRead != 0 {
		t.Errorf("first backup with --cache-dir read %d bytes: the parent cache was lost", b.Summary.BytesRead)
	}
	if _, err := os.Stat(filepath.Join(other, repoID, "parents")); err != nil {
		t.Fatalf("parent cache not under --cache-dir: %v", err)
	}
	if _, err := os.Stat(filepath.Join(other, "CACHEDIR.TAG")); err != nil {
		t.Errorf("no CACHEDIR.TAG in --cache-dir: %v", err)
	}
	if _, err := os.Stat(filepath.Join(xdg, "mailvault", repoID, "parents")); !os.IsNotExist(err) {
		t.Errorf("parent cache still in the old place: %v", err)
	}
	if b := wo.backup(t, "--cache-dir", other, "--no-cache", src); b.Summary.BytesRead != 0 {
		t.Errorf("--no-cache backup read %d bytes: the parent cache was not used", b.Summary.BytesRead)
	}
}

// TestCleanupCache: a repository cache directory unused for 30 days is
// reported at open and removed with --cleanup-cache; the current
// repository's and anything not shaped like ours are kept.
func TestCleanupCache(t *testing.T) {
	e := newCLIEnv(t)
	e.backup(t, genCorpus(t, 42, 100e3))
	root := filepath.Join(t.TempDir(), "cache")
	if _, err := os.Stat(root); !os.IsNotExist(err) {
		t.Fatal(err)
	}
	mk := func(name string, files ...string) string {
		d := filepath.Join(root, archive.ID(sha256.Sum256([]byte(name))).String())
		for _, f := range files {
			p := filepath.Join(d, f)
			if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		old := time.Now().Add(-31 * 24 * time.Hour)
		if err := os.Chtimes(d, old, old); err != nil {
			t.Fatal(err)
		}
		return d
	}
	gone := mk("gone", "index/a", "parents/b", "trees/c")
	foreign := mk("foreign", "index/a", "README")
	// A local repository uses no metadata cache: the tag comes from a
	// write-only backup's parent cache or a remote repository; make it.
	if err := os.WriteFile(filepath.Join(root, "CACHEDIR.TAG"), []byte("Signature: 8a477f597d28d172789f06886806bc55\n# This file is a cache directory tag created by mailvault.\n# For information about cache directory tags, see https://bford.info/cachedir/\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, stderr, code := e.cli(t, "--cache-dir", root, "snapshots")
	if code != 0 || !strings.Contains(stderr, "found 1 old cache directories in "+root+", run with --cleanup-cache") {
		t.Fatalf("snapshots: exit %d, %q", code, stderr)
	}
	if _, err := os.Stat(gone); err != nil {
		t.Fatalf("removed without --cleanup-cache: %v", err)
	}
	_, stderr, code = e.cli(t, "--cache-dir", root, "--cleanup-cache", "snapshots")
	if code != 0 || !strings.Contains(stderr, "removed 1 old cache directories") {
		t.Fatalf("--cleanup-cache: exit %d, %q", code, stderr)
	}
	if _, err := os.Stat(gone); !os.IsNotExist(err) {
		t.Fatalf("old cache directory kept: %v", err)
	}
	if _, err := os.Stat(filepath.Join(foreign, "README")); err != nil {
		t.Fatalf("a directory with a foreign file was touched: %v", err)
	}
	if _, stderr, _ = e.cli(t, "--cache-dir", root, "snapshots"); strings.Contains(stderr, "old cache") {
		t.Fatalf("still reported: %q", stderr)
	}
}
