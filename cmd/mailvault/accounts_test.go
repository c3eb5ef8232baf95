package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/mailvault/mailvault/mailserver"
	"github.com/mailvault/mailvault/mailserver/auth"
)

// runCmd executes a command tree with args and stdin, returning stdout.
func runCmd(t *testing.T, cmd *cobra.Command, stdin string, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	cmd.SetArgs(args)
	cmd.SetIn(strings.NewReader(stdin))
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SilenceUsage = true
	cmd.SilenceErrors = true
	err := cmd.ExecuteContext(t.Context())
	return out.String(), err
}

func TestAccountCommands(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	steps := []struct {
		cmd     func() *cobra.Command
		stdin   string
		args    []string
		wantOut string
		wantErr bool
	}{
		// A new data directory has the example domain.
		{newDomainCmd, "", []string{"list", "--data", dir}, "example.test\n", false},
		{newDomainCmd, "", []string{"add", "Corp.Test", "--data", dir}, "", false},
		{newDomainCmd, "", []string{"add", "corp.test", "--data", dir}, "", true},
		{newDomainCmd, "", []string{"add", "bad domain", "--data", dir}, "", true},
		{newUserCmd, "alice password\n", []string{"add", "--data", dir, "alice@example.test", "--password-stdin"}, "", false},
		{newUserCmd, "admin password\n", []string{"add", "--data", dir, "root@corp.test", "--password-stdin", "--role", "admin"}, "", false},
		{newUserCmd, "x password\n", []string{"add", "--data", dir, "x@nowhere.test", "--password-stdin"}, "", true},
		{newUserCmd, "short\n", []string{"add", "--data", dir, "y@example.test", "--password-stdin"}, "", true},
		{newUserCmd, "pw password\n", []string{"add", "--data", dir, "z@example.test", "--password-stdin", "--role", "king"}, "", true},
		{newUserCmd, "", []string{"add", "--data", dir, "z@example.test"}, "", true}, // no terminal, no --password-stdin
		{newUserCmd, "new alice password\n", []string{"passwd", "--data", dir, "alice@example.test", "--password-stdin"}, "", false},
		{newUserCmd, "", []string{"alias", "add", "--data", dir, "sales@example.test", "alice@example.test"}, "", false},
		{newUserCmd, "", []string{"alias", "list", "--data", dir}, "sales@example.test -> alice@example.test\n", false},
		{newUserCmd, "", []string{"list", "--data", dir}, "alice@example.test", false},
		{newUserCmd, "", []string{"del", "--data", dir, "root@corp.test"}, "", false},
		{newUserCmd, "", []string{"del", "--data", dir, "root@corp.test"}, "", true},
	}
	for i, s := range steps {
		out, err := runCmd(t, s.cmd(), s.stdin, s.args...)
		if (err != nil) != s.wantErr || !strings.Contains(out, s.wantOut) {
			t.Fatalf("step %d %v: out %q err %v", i, s.args, out, err)
		}
	}
	db, err := auth.Open(mailserver.AccountsPath(dir), auth.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Authenticate(t.Context(), "alice@example.test", "new alice password"); err != nil {
		t.Fatalf("password not set: %v", err)
	}
	if fi, _ := os.Stat(mailserver.AccountsPath(dir)); fi.Mode().Perm() != 0o600 {
		t.Fatalf("accounts file mode %v", fi.Mode())
	}

	// App passwords are printed once and work.
	secret, err := runCmd(t, newUserCmd(), "", "app-password", "add", "--data", dir, "alice@example.test", "phone")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Authenticate(t.Context(), "alice@example.test", strings.TrimSpace(secret)); err != nil {
		t.Fatalf("app password: %v", err)
	}

	// Every admin action, failed ones too, is in a valid audit chain.
	out, err := runCmd(t, newAuditCmd(), "", "verify", "--data", dir)
	if err != nil || !strings.HasPrefix(out, "ok: 13 lines") {
		t.Fatalf("audit verify: %q %v", out, err)
	}
	head := strings.Fields(out)[4]

	// Tampering is detected with exit code 13 and the line number.
	path := mailserver.AuditPath(dir)
	b, _ := os.ReadFile(path)
	os.WriteFile(path, bytes.Replace(b, []byte(`"action":"user.del"`), []byte(`"action":"user.dee"`), 1), 0o600)
	_, err = runCmd(t, newAuditCmd(), "", "verify", "--data", dir)
	var ec *exitCodeError
	if !errors.As(err, &ec) || ec.code != exitCheckFailed || !strings.Contains(err.Error(), "line 11") {
		t.Fatalf("tampered log: %v", err)
	}
	// Cutting the tail is caught by --expect-head.
	lines := bytes.SplitAfter(b, []byte("\n"))
	os.WriteFile(path, bytes.Join(lines[:len(lines)-2], nil), 0o600)
	if _, err := runCmd(t, newAuditCmd(), "", "verify", "--data", dir, "--expect-head", head); !errors.As(err, &ec) {
		t.Fatalf("truncated log with --expect-head: %v", err)
	}
}

// user add and passwd hash with the server configuration's auth.argon2
// cost (its PHC string shows it, and it verifies), and refuse a
// configuration below OWASP's minimum.
func TestUserAddArgon2Config(t *testing.T) {
	tmp := t.TempDir()
	dir := filepath.Join(tmp, "data")
	conf := filepath.Join(tmp, "mailvault.yaml")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(conf, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("data_dir: " + dir + "\nauth: {argon2: {memory: 20, time: 2, threads: 3}}\n")
	if out, err := runCmd(t, newUserCmd(), "carol password\n", "add", "--config", conf, "carol@example.test", "--password-stdin"); err != nil {
		t.Fatalf("user add: %q %v", out, err)
	}
	db, err := auth.Open(mailserver.AccountsPath(dir), auth.Options{})
	if err != nil {
		t.Fatal(err)
	}
	u, err := db.LookupUser(t.Context(), "carol@example.test")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(u.PasswordHash, "$argon2id$v=19$m=20480,t=2,p=3$") {
		t.Fatalf("hash %s", u.PasswordHash)
	}
	if _, err := db.Authenticate(t.Context(), "carol@example.test", "carol password"); err != nil {
		t.Fatalf("custom-cost hash does not verify: %v", err)
	}

	// Below the minimum: refused, and the password is unchanged.
	write("data_dir: " + dir + "\nauth: {argon2: {memory: 19, time: 1, threads: 1}}\n")
	_, err = runCmd(t, newUserCmd(), "other password\n", "passwd", "--config", conf, "carol@example.test", "--password-stdin")
	if err == nil || !strings.Contains(err.Error(), "OWASP") {
		t.Fatalf("weak cost: %v", err)
	}
	// Another cost for passwd; carol's old hash verified until then.
	write("data_dir: " + dir + "\nauth: {argon2: {memory: 46, time: 1, threads: 1}}\n")
	if _, err := runCmd(t, newUserCmd(), "new carol password\n", "passwd", "--config", conf, "carol@example.test", "--password-stdin"); err != nil {
		t.Fatal(err)
	}
	if u, err = db.LookupUser(t.Context(), "carol@example.test"); err != nil || !strings.HasPrefix(u.PasswordHash, "$argon2id$v=19$m=47104,t=1,p=1$") {
		t.Fatalf("hash after passwd: %s %v", u.PasswordHash, err)
	}
	if _, err := db.Authenticate(t.Context(), "carol@example.test", "new carol password"); err != nil {
		t.Fatal(err)
	}
}
