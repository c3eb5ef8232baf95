package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailvault/mailvault/archive"
)

// TestWriteOnlyKeyCLI: `key add --write-only` makes a key that backs up
// (the second run reading nothing, thanks to the parent cache under
// $XDG_CACHE_HOME) and that every reading command refuses with exit code
// 12, while the full key restores the write-only host's snapshot.
func TestWriteOnlyKeyCLI(t *testing.T) {
	cache := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", cache)
	e := newCLIEnv(t)
	src := genCorpus(t, 31, 1e6)

	woKey := filepath.Join(t.TempDir(), "wo.txt")
	id := newIdentityFile(t, woKey)
	stdout, stderr, code := e.cli(t, "--json", "key", "add", "--write-only", "--recipient", id.Recipient().String())
	if code != 0 {
		t.Fatalf("key add --write-only: exit %d: %s", code, stderr)
	}
	var added struct {
		Added []archive.ID    `json:"added"`
		Kind  archive.KeyKind `json:"kind"`
	}
	if err := json.Unmarshal([]byte(stdout), &added); err != nil || len(added.Added) != 1 || added.Kind != archive.WriteOnlyKey {
		t.Fatalf("key add output %q: %v", stdout, err)
	}
	wo := &cliEnv{repo: e.repo, identity: woKey}

	stdout, stderr, code = wo.cli(t, "--json", "key", "list")
	if code != 0 {
		t.Fatalf("key list: exit %d: %s", code, stderr)
	}
	var keys []archive.KeyInfo
	if err := json.Unmarshal([]byte(stdout), &keys); err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if k.Current && (k.ID != added.Added[0] || k.Kind != archive.WriteOnlyKey) {
			t.Errorf("key list: current key %+v, want %s write-only", k, added.Added[0])
		}
	}
	if stdout, _, _ = wo.cli(t, "key", "list"); !strings.Contains(stdout, "write-only") {
		t.Errorf("key list does not show the kind:\n%s", stdout)
	}

	first := wo.backup(t, src)
	if first.Summary.MessagesNew == 0 || len(first.Warnings) != 0 {
		t.Fatalf("write-only backup: %+v", first)
	}
	second := wo.backup(t, src)
	if second.Summary.BytesRead != 0 || second.Summary.BlobsNew != 0 {
		t.Errorf("second write-only backup: %+v, want nothing read or stored", second.Summary)
	}
	repoID := func() string {
		raw, err := os.ReadFile(filepath.Join(e.repo, "config"))
		if err != nil {
			t.Fatal(err)
		}
		var cfg archive.Config
		if err := json.Unmarshal(raw, &cfg); err != nil {
			t.Fatal(err)
		}
		return cfg.ID.String()
	}()
	if fi, err := os.Stat(filepath.Join(cache, "mailvault", repoID, "parents")); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("parent cache: %v, %v", fi, err)
	}

	for _, args := range [][]string{
		{"snapshots"},
		{"ls", "latest"},
		{"ls", first.Snapshot.String(), "--user", "", "--folder", "INBOX"},
		{"cat", "snapshot", "latest"},
		{"restore", first.Snapshot.String(), "--target", filepath.Join(t.TempDir(), "r")},
		{"check"},
		{"check", "--read-data"},
	} {
		_, stderr, code := wo.cli(t, args...)
		if code != exitWrongKey || !strings.Contains(stderr, "write-only") {
			t.Errorf("%v with a write-only key: exit %d, %q; want %d naming the write-only key", args, code, stderr, exitWrongKey)
		}
	}

	target := filepath.Join(t.TempDir(), "restored")
	if _, stderr, code := e.cli(t, "restore", second.Snapshot.String(), "--target", target); code != 0 {
		t.Fatalf("restore with the full key: exit %d: %s", code, stderr)
	}
	sameTree(t, src, target)
}
