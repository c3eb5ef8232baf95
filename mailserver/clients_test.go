package mailserver

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailvault/mailvault/mailserver/store"
)

// needTool returns the path of an external client. Locally a missing tool
// skips the test; in CI (CI=true) it fails it, so that CI cannot pass
// without the real-client tests having run.
func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is required in CI (apt-get install -y %s): %v", name, name, err)
		}
		t.Skipf("%s not installed", name)
	}
	return p
}

func run(t *testing.T, stdin string, name string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func inbox(t *testing.T, srv *Server, user string) []string {
	t.Helper()
	l, err := srv.Store().List(t.Context(), store.Account{Domain: ExampleDomain, User: user}, store.Inbox)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range l.Messages {
		b, _ := os.ReadFile(m.Path)
		out = append(out, string(b))
	}
	return out
}

func hostPort(addr string) (string, string) {
	i := strings.LastIndexByte(addr, ':')
	return addr[:i], addr[i+1:]
}

func TestSwaks(t *testing.T) {
	swaks := needTool(t, "swaks")
	srv, _ := startServer(t, nil)
	a := srv.Addrs()
	common := []string{"--from", "alice@example.test", "--to", "bob@example.test", "--auth-user", "alice@example.test", "--auth-password", "alice password"}

	t.Run("587 STARTTLS AUTH PLAIN", func(t *testing.T) {
		out, err := run(t, "", swaks, append([]string{"--server", a["submission"], "--tls", "--auth", "PLAIN", "--header", "Subject: swaks-587"}, common...)...)
		if err != nil || !strings.Contains(out, "235 2.0.0") || !strings.Contains(out, "250 2.0.0") {
			t.Fatalf("swaks: %v\n%s", err, out)
		}
	})
	t.Run("465 implicit TLS AUTH LOGIN", func(t *testing.T) {
		out, err := run(t, "", swaks, append([]string{"--server", a["submissions"], "--tlsc", "--auth", "LOGIN", "--header", "Subject: swaks-465"}, common...)...)
		if err != nil || !strings.Contains(out, "235 2.0.0") {
			t.Fatalf("swaks: %v\n%s", err, out)
		}
	})
	t.Run("AUTH before STARTTLS refused", func(t *testing.T) {
		// Without TLS the server does not offer AUTH; swaks gives up.
		out, err := run(t, "", swaks, append([]string{"--server", a["submission"], "--auth", "PLAIN"}, common...)...)
		if err == nil || strings.Contains(out, "235 ") {
			t.Fatalf("swaks authenticated in cleartext: %v\n%s", err, out)
		}
	})
	t.Run("open relay probe refused", func(t *testing.T) {
		out, err := run(t, "", swaks, "--server", a["smtp"], "--from", "probe@example.net", "--to", "victim@gmail.com", "--helo", "probe.example.net")
		if err == nil || !strings.Contains(out, "550 5.7.1") {
			t.Fatalf("relay probe: %v\n%s", err, out)
		}
	})
	t.Run("wrong sender refused", func(t *testing.T) {
		args := []string{"--server", a["submission"], "--tls", "--auth", "PLAIN", "--from", "bob@example.test", "--to", "bob@example.test",
			"--auth-user", "alice@example.test", "--auth-password", "alice password"}
		out, err := run(t, "", swaks, args...)
		if err == nil || !strings.Contains(out, "553 5.7.1") {
			t.Fatalf("sender mismatch: %v\n%s", err, out)
		}
	})
	msgs := inbox(t, srv, "bob")
	if len(msgs) != 2 || !strings.Contains(msgs[0], "Subject: swaks-587") || !strings.Contains(msgs[1], "Subject: swaks-465") {
		t.Fatalf("bob's inbox: %q", msgs)
	}
}

func TestCurl(t *testing.T) {
	curl := needTool(t, "curl")
	srv, _ := startServer(t, nil)
	mail := "From: alice@example.test\r\nTo: bob@example.test\r\nSubject: curl\r\n\r\nvia curl\r\n"
	out, err := run(t, mail, curl, "-sS", "--ssl-reqd", "-k", "smtp://"+srv.Addrs()["submission"],
		"--mail-from", "alice@example.test", "--mail-rcpt", "bob@example.test", "--user", "alice@example.test:alice password", "-T", "-")
	if err != nil {
		t.Fatalf("curl: %v\n%s", err, out)
	}
	if msgs := inbox(t, srv, "bob"); len(msgs) != 1 || !strings.Contains(msgs[0], "via curl") {
		t.Fatalf("bob's inbox: %q", msgs)
	}
}

const smtplibScript = `
import smtplib, ssl, sys
host, port, port465 = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ctx = ssl._create_unverified_context()
msg = "From: alice@example.test\r\nTo: bob@example.test\r\nSubject: smtplib\r\n\r\nvia python\r\n"

# AUTH before STARTTLS is refused (the server does not even offer it).
s = smtplib.SMTP(host, port)
s.ehlo("py.example.test")
print("auth-offered-cleartext", s.has_extn("auth"))
try:
    s.login("alice@example.test", "alice password")
    print("cleartext-login ok")
except smtplib.SMTPException as e:
    print("cleartext-login refused")
s.quit()

# STARTTLS + AUTH + send.
s = smtplib.SMTP(host, port)
s.starttls(context=ctx)
s.login("alice@example.test", "alice password")
print("refused", s.sendmail("alice@example.test", ["bob@example.test"], msg))
s.quit()

# Implicit TLS.
s = smtplib.SMTP_SSL(host, port465, context=ctx)
s.login("alice@example.test", "alice password")
s.sendmail("alice@example.test", ["bob@example.test"], msg)
s.quit()

# Lockout: wrong passwords, then even the right one is refused.
codes = []
for pw in ["bad1", "bad2", "bad3", "alice password"]:
    s = smtplib.SMTP_SSL(host, port465, context=ctx)
    try:
        s.login("alice@example.test", pw)
        codes.append(235)
    except smtplib.SMTPAuthenticationError as e:
        codes.append(e.smtp_code)
    s.close()
print("lockout", codes)
`

func TestPythonSmtplib(t *testing.T) {
	python := needTool(t, "python3")
	// smtplib's login() tries PLAIN, then LOGIN: two failures per call.
	srv, _ := startServer(t, func(c *Config) { c.Auth.AccountFailures = 6 })
	a := srv.Addrs()
	host, port := hostPort(a["submission"])
	_, port465 := hostPort(a["submissions"])
	script := filepath.Join(t.TempDir(), "smtp_client.py")
	os.WriteFile(script, []byte(smtplibScript), 0o600)
	out, err := run(t, "", python, script, host, port, port465)
	if err != nil {
		t.Fatalf("python: %v\n%s", err, out)
	}
	for _, want := range []string{"auth-offered-cleartext False", "cleartext-login refused", "refused {}", "lockout [535, 535, 535, 454]"} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in output:\n%s", want, out)
		}
	}
	if msgs := inbox(t, srv, "bob"); len(msgs) != 2 {
		t.Fatalf("bob's inbox: %d messages", len(msgs))
	}
}
