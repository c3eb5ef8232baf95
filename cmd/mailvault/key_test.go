package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailvault/mailvault/archive"
)

// TestKeyListEveryColumn: `key list` fills kind, host and created for
// every key, not only the one in use: the admin sees the write-only key's
// row whole, and the write-only host the admin's.
func TestKeyListEveryColumn(t *testing.T) {
	e := newCLIEnv(t)
	woKey := filepath.Join(t.TempDir(), "wo.txt")
	id := newIdentityFile(t, woKey)
	stdout, stderr, code := e.cli(t, "--json", "key", "add", "--write-only", "--recipient", id.Recipient().String())
	if code != 0 {
		t.Fatalf("key add --write-only: exit %d: %s", code, stderr)
	}
	var added struct {
		Added []archive.ID `json:"added"`
	}
	if err := json.Unmarshal([]byte(stdout), &added); err != nil || len(added.Added) != 1 {
		t.Fatalf("key add output %q: %v", stdout, err)
	}
	host, _ := os.Hostname()
	wo := &cliEnv{repo: e.repo, identity: woKey}
	for who, env := range map[string]*cliEnv{"admin": e, "write-only host": wo} {
		stdout, stderr, code := env.cli(t, "--json", "key", "list")
		if code != 0 {
			t.Fatalf("%s: key list: exit %d: %s", who, code, stderr)
		}
		var keys []archive.KeyInfo
		if err := json.Unmarshal([]byte(stdout), &keys); err != nil {
			t.Fatal(err)
		}
		if len(keys) != 2 {
			t.Fatalf("%s: key list: %d keys, want 2:\n%s", who, len(keys), stdout)
		}
		for _, k := range keys {
			want := archive.FullKey
			if k.ID == added.Added[0] {
				want = archive.WriteOnlyKey
			}
			if k.Kind != want || k.Host != host || k.Created.IsZero() || k.Label == "" {
				t.Errorf("%s: key list: %+v, want kind %s, host %s, a date and a label", who, k, want, host)
			}
		}
		stdout, _, _ = env.cli(t, "key", "list")
		for _, line := range strings.Split(strings.TrimSpace(stdout), "\n")[1:] {
			if f := strings.Fields(line); len(f) < 6 || f[2] != host || strings.Contains(line, "?") {
				t.Errorf("%s: key list row %q lacks a column", who, line)
			}
		}
		if !strings.Contains(stdout, "write-only") {
			t.Errorf("%s: key list does not show the write-only key:\n%s", who, stdout)
		}
	}
	// key remove takes the description with the key.
	if _, stderr, code := e.cli(t, "key", "remove", added.Added[0].String()[:8]); code != 0 {
		t.Fatalf("key remove: exit %d: %s", code, stderr)
	}
	if infos, _ := filepath.Glob(filepath.Join(e.repo, "keys", "*.info")); len(infos) != 1 {
		t.Errorf("key info files after key remove: %v, want the admin's only", infos)
	}
}
