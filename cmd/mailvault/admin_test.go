package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
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
