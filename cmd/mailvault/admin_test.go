package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
	audit, _ := os.ReadFile(mailserver.AuditPath(dir))
	if n := strings.Count(string(audit), `"action":"domain.del"`); n != 3 ||
		!strings.Contains(string(audit), "--force: 1 users and 1 aliases removed with it") {
		t.Fatalf("%d domain.del records:\n%s", n, audit)
	}
	if out, _, code := runCLI(t, "audit", "verify", "--data", dir); code != 0 {
		t.Fatalf("audit verify: %s", out)
	}
}
