package mailserver

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// auth.argon2 is read from the file and refused below OWASP's minimum
// cost (m=19 MiB with t>=2, or m=46 MiB with t>=1).
func TestArgon2Config(t *testing.T) {
	for _, tc := range []struct {
		yaml    string
		wantErr string // "" when valid
	}{
		{"", ""}, // the defaults: 64 MiB, 3 passes, 2 lanes
		{"auth: {argon2: {memory: 19, time: 2, threads: 1}}", ""},
		{"auth: {argon2: {memory: 46, time: 1, threads: 1}}", ""},
		{"auth: {argon2: {memory: 256, time: 4, threads: 8}}", ""},
		{"auth: {argon2: {memory: 18, time: 2, threads: 1}}", "below OWASP's minimum"},
		{"auth: {argon2: {memory: 45, time: 1, threads: 1}}", "below OWASP's minimum"},
		{"auth: {argon2: {memory: 64, time: 0, threads: 1}}", "below OWASP's minimum"},
		{"auth: {argon2: {memory: 64, time: 3, threads: 0}}", "threads must be 1-255"},
		{"auth: {argon2: {memory: 64, time: 3, threads: 256}}", "threads must be 1-255"},
		{"auth: {argon2: {memory: 4097, time: 3, threads: 2}}", "memory at most 4096 MiB"},
		{"auth: {argon2: {memory: 5000000, time: 3, threads: 2}}", "memory at most 4096 MiB"},
		{"auth: {argon2: {memory: -1}}", "cannot unmarshal"},
		{"auth: {argon2: {mem: 64}}", "not found"},
	} {
		path := filepath.Join(t.TempDir(), "mailvault.yaml")
		if err := os.WriteFile(path, []byte(tc.yaml+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		c := DefaultConfig()
		err := c.LoadFile(path)
		if err == nil {
			err = c.Validate()
		}
		if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("%q: %v, want %q", tc.yaml, err, tc.wantErr)
		}
	}
	p := DefaultConfig().Auth.Argon2.Params()
	if p.Memory != 64*1024 || p.Time != 3 || p.Threads != 2 || p.KeyLen != 32 {
		t.Fatalf("default params %+v", p)
	}
}

// A reload applies auth.argon2 (new hashes, and the dummy hash for
// unknown users) and auth.max_concurrent_hashes to the running server.
func TestReloadAuthHashing(t *testing.T) {
	srv, cfg := startServer(t, func(c *Config) { c.Auth.MaxConcurrentHashes = 1 })
	db := srv.data.Accounts
	if n := db.MaxConcurrentHashes(); n != 1 {
		t.Fatalf("bound %d at start, want 1", n)
	}
	next := cfg
	next.Auth.MaxConcurrentHashes = 3
	next.Auth.Argon2 = Argon2Config{Memory: 19, Time: 2, Threads: 1}
	if err := srv.ReloadConfig(t.Context(), next); err != nil {
		t.Fatal(err)
	}
	if n := db.MaxConcurrentHashes(); n != 3 || srv.Config().Auth.MaxConcurrentHashes != 3 {
		t.Fatalf("bound %d after the reload (config %d), want 3", n, srv.Config().Auth.MaxConcurrentHashes)
	}
	if err := db.AddUser(t.Context(), "dave@example.test", "dave's password", "user"); err != nil {
		t.Fatal(err)
	}
	u, err := db.LookupUser(t.Context(), "dave@example.test")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(u.PasswordHash, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Fatalf("hash after the reload: %s", u.PasswordHash)
	}
	// A reload that changes neither keeps them.
	next.SMTP.MaxRecipients = 7
	if err := srv.ReloadConfig(t.Context(), next); err != nil {
		t.Fatal(err)
	}
	if n := db.MaxConcurrentHashes(); n != 3 || db.Params() != next.Auth.Argon2.Params() {
		t.Fatalf("bound %d, params %+v after an unrelated reload", n, db.Params())
	}
}
