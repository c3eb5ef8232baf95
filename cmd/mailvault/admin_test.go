package main

import (
	"crypto/tls"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/mailvault/mailvault/mailserver"
	"github.com/mailvault/mailvault/mailserver/auth"
)

// runCLIStdin is runCLI with stdin.
func runCLIStdin(t *testing.T, stdin string, args ...string) (string, string, int) {
	t.Helper()
	var out, errb strings.Builder
	code := run(args, strings.NewReader(stdin), &out, &errb)
	return out.String(), errb.String(), code
}

// TestUserAddConfirms: user add says what it did, as text or JSON, and
// nothing with --quiet (issue 9).
func TestUserAddConfirms(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	stdout, stderr, code := runCLIStdin(t, "alice password\n", "user", "add", "--data", dir, "Alice@Example.Test", "--password-stdin")
	if code != 0 || stdout != "user alice@example.test added (role user); it logs in with its full address\n" {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	stdout, _, code = runCLIStdin(t, "bob password\n", "--json", "user", "add", "--data", dir, "bob@example.test", "--password-stdin", "--role", "admin")
	var res struct {
		User  string `json:"user"`
		Role  string `json:"role"`
		Added bool   `json:"added"`
	}
	if code != 0 || json.Unmarshal([]byte(stdout), &res) != nil || res.User != "bob@example.test" || res.Role != "admin" || !res.Added {
		t.Fatalf("--json: exit %d, %q", code, stdout)
	}
	if stdout, _, code := runCLIStdin(t, "carol password\n", "-q", "user", "add", "--data", dir, "carol@example.test", "--password-stdin"); code != 0 || stdout != "" {
		t.Fatalf("--quiet: exit %d, %q", code, stdout)
	}
	stdout, _, _ = runCLI(t, "--json", "user", "list", "--data", dir)
	if strings.Contains(stdout, "argon2") || !strings.Contains(stdout, `"address": "carol@example.test"`) {
		t.Fatalf("user list --json: %s", stdout)
	}
}

// TestDomainDel: domain del refuses while the domain has users or aliases
// and names them; --force takes them along; each attempt is audited; the
// running server's view of local domains follows (issue 9).
func TestDomainDel(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	if _, stderr, code := runCLIStdin(t, "alice password\n", "user", "add", "--data", dir, "alice@example.test", "--password-stdin"); code != 0 {
		t.Fatal(stderr)
	}
	runCLI(t, "user", "alias", "add", "--data", dir, "info@example.test", "alice@example.test")
	stdout, stderr, code := runCLI(t, "domain", "del", "--data", dir, "example.test")
	if code != exitError || stdout != "" || !strings.Contains(stderr, "still has 1 users and 1 aliases") ||
		!strings.Contains(stderr, "users: alice@example.test") || !strings.Contains(stderr, "--force") {
		t.Fatalf("in use: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if stdout, _, _ := runCLI(t, "domain", "list", "--data", dir); stdout != "example.test\n" {
		t.Fatalf("a refused del changed the domains: %q", stdout)
	}
	if _, _, code := runCLI(t, "domain", "del", "--data", dir, "nowhere.test"); code != exitError {
		t.Fatalf("unknown domain: exit %d", code)
	}
	// A server's copy of the accounts (another process's) sees the change.
	db, err := auth.Open(mailserver.AccountsPath(dir), auth.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !db.IsLocalDomain("example.test") {
		t.Fatal("example.test not local before del")
	}
	stdout, stderr, code = runCLI(t, "--json", "domain", "del", "--data", dir, "example.test", "--force")
	var res struct {
		Domain  string   `json:"domain"`
		Deleted bool     `json:"deleted"`
		Users   []string `json:"users_deleted"`
		Aliases []string `json:"aliases_deleted"`
	}
	if code != 0 || json.Unmarshal([]byte(stdout), &res) != nil || !res.Deleted || len(res.Users) != 1 || len(res.Aliases) != 1 {
		t.Fatalf("--force: exit %d, %q, %s", code, stdout, stderr)
	}
	if db.IsLocalDomain("example.test") {
		t.Fatal("the deleted domain is still local to another process")
	}
	if stdout, _, _ := runCLI(t, "domain", "list", "--data", dir); stdout != "" {
		t.Fatalf("domains left: %q", stdout)
	}
	if stdout, _, _ := runCLI(t, "--json", "domain", "list", "--data", dir); stdout != "[]\n" {
		t.Fatalf("domain list --json without domains: %q", stdout)
	}
	audit, _ := os.ReadFile(mailserver.AuditPath(dir))
	if n := strings.Count(string(audit), `"action":"domain.del"`); n != 3 ||
		!strings.Contains(string(audit), "--force: 1 users and 1 aliases removed with it") {
		t.Fatalf("%d domain.del records:\n%s", n, audit)
	}
	if out, _, code := runCLI(t, "audit", "verify", "--data", dir); code != 0 {
		t.Fatalf("audit verify: %s", out)
	}
}

// TestUserUnlock: a user locked out of the running server by failed
// logins is let in again by `user unlock` (through the control socket,
// since lockouts live in the server's memory), which the server audits;
// with no server running there is nothing to unlock (issue 9).
func TestUserUnlock(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	if _, stderr, code := runCLI(t, "user", "unlock", "--data", dir, "alice@example.test"); code != 0 || !strings.Contains(stderr, "no mailvault serve runs on") {
		t.Fatalf("without a server: exit %d, %s", code, stderr)
	}
	if _, stderr, code := runCLIStdin(t, "alice password\n", "user", "add", "--data", dir, "alice@example.test", "--password-stdin"); code != 0 {
		t.Fatal(stderr)
	}
	addrs, _ := runServe(t, `
hostname: mx.test
listen: {smtp: off, submission: 127.0.0.1:0, submissions: off, imap: off, imaps: off, pop3: off, pop3s: off}
auth: {base_delay: 1ms, max_delay: 1ms}
log_level: warn
`, dir, 1)
	login := func(pw string) error {
		c, err := smtp.DialStartTLS(addrs["submission"], &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.Auth(sasl.NewPlainClient("", "alice@example.test", pw))
	}
	for range 5 {
		if login("wrong") == nil {
			t.Fatal("a wrong password was accepted")
		}
	}
	if err := login("alice password"); err == nil || !strings.Contains(err.Error(), "Too many") && !strings.Contains(err.Error(), "try again later") {
		t.Fatalf("not locked out after 5 failures: %v", err)
	}
	stdout, stderr, code := runCLI(t, "user", "unlock", "--data", dir, "alice@example.test")
	if code != 0 || !strings.HasPrefix(stdout, "alice@example.test: lockout lifted (5 failed logins") {
		t.Fatalf("unlock: exit %d, %q, %q", code, stdout, stderr)
	}
	if err := login("alice password"); err != nil {
		t.Fatalf("still locked out after unlock: %v", err)
	}
	stdout, _, code = runCLI(t, "--json", "user", "unlock", "--data", dir, "--ip", "127.0.0.1")
	var res struct {
		Running  bool `json:"server_running"`
		Unlocked []struct {
			Key      string `json:"key"`
			Failures int    `json:"failures"`
		} `json:"unlocked"`
	}
	if code != 0 || json.Unmarshal([]byte(stdout), &res) != nil || !res.Running || len(res.Unlocked) != 1 ||
		res.Unlocked[0].Key != "127.0.0.1" || res.Unlocked[0].Failures != 5 {
		t.Fatalf("--ip --json: exit %d, %s", code, stdout)
	}
	if _, _, code := runCLI(t, "user", "unlock", "--data", dir); code != exitUsage {
		t.Fatalf("no address: exit %d", code)
	}
	if _, stderr, code := runCLI(t, "user", "unlock", "--data", dir, "--ip", "not-an-ip"); code != exitError || !strings.Contains(stderr, "not an IP address") {
		t.Fatalf("bad IP: exit %d, %s", code, stderr)
	}
	audit, _ := os.ReadFile(mailserver.AuditPath(dir))
	if !strings.Contains(string(audit), `"action":"user.unlock","user":"alice@example.test","protocol":"control","success":true`) ||
		!strings.Contains(string(audit), `"action":"ip.unlock","ip":"127.0.0.1"`) {
		t.Fatalf("unlocks not audited:\n%s", audit)
	}
}
