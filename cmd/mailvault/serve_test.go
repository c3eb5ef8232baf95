package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/mailvault/mailvault/mailserver/tlsutil"
)

// runServe runs `mailvault serve` (the cobra command, over real sockets)
// with the configuration config on dataDir, and returns the addresses of
// the first n listeners it prints, by name. stop cancels it, as SIGTERM
// does through main's context, and returns what it returned; if the test
// has not called it, it is called when the test ends.
func runServe(t *testing.T, config, dataDir string, n int) (addrs map[string]string, stop func() error) {
	t.Helper()
	cfgPath := filepath.Join(t.TempDir(), "mailvault.yaml")
	if err := os.WriteFile(cfgPath, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	cmd := newServeCmd()
	cmd.SetArgs([]string{"--config", cfgPath, "--data", dataDir})
	cmd.SetOut(pw)
	cmd.SetErr(io.Discard)
	done := make(chan error, 1)
	go func() {
		done <- cmd.ExecuteContext(ctx)
		pw.Close()
	}()
	stop = sync.OnceValue(func() error {
		cancel()
		return <-done
	})
	addrs = map[string]string{}
	bad := ""
	sc := bufio.NewScanner(pr)
	for len(addrs) < n && bad == "" && sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 2 {
			addrs[f[0]] = f[1]
		} else {
			bad = sc.Text()
		}
	}
	go io.Copy(io.Discard, pr)
	if len(addrs) != n {
		t.Fatalf("serve printed %v, then %q (%v)", addrs, bad, stop())
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("serve returned %v", err)
		}
	})
	return addrs, stop
}

func TestServeCommand(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	addrs, stop := runServe(t, `
hostname: mx.test
listen:
  smtp: 127.0.0.1:0
  submission: 127.0.0.1:0
  submissions: 127.0.0.1:0
  imap: 127.0.0.1:0
  imaps: 127.0.0.1:0
  pop3: 127.0.0.1:0
  pop3s: 127.0.0.1:0
log_level: warn
drain_timeout: 1m
`, dir, 3)

	// The account commands work against the running server's directory.
	if _, err := runCmd(t, newUserCmd(), "alice password\n", "add", "--data", dir, "alice@example.test", "--password-stdin"); err != nil {
		t.Fatal(err)
	}
	c, err := smtp.DialStartTLS(addrs["submission"], &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Auth(sasl.NewPlainClient("", "alice@example.test", "alice password")); err != nil {
		t.Fatal(err)
	}
	if err := c.SendMail("alice@example.test", []string{"alice@example.test"}, strings.NewReader("Subject: self\r\n\r\nnote\r\n")); err != nil {
		t.Fatal(err)
	}
	c.Quit()
	if e, _ := os.ReadDir(filepath.Join(dir, "mail", "example.test", "alice", "Maildir", "new")); len(e) != 1 {
		t.Fatalf("delivered: %v", e)
	}

	// SIGHUP reloads the certificate.
	serial := func() string {
		conn, err := tls.Dial("tcp", addrs["submissions"], &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	before := serial()
	certFile, keyFile := filepath.Join(dir, "tls", "cert.pem"), filepath.Join(dir, "tls", "key.pem")
	os.Remove(certFile)
	if _, err := tlsutil.EnsureSelfSigned(certFile, keyFile, []string{"mx.test"}, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	for serial() == before {
		// Wait for the signal to be handled; the test's own timeout bounds this.
	}

	if err := stop(); err != nil {
		t.Fatalf("serve returned %v", err)
	}
}

func TestServeHelpListsIMAPAndPOP3(t *testing.T) {
	out, err := runCmd(t, newServeCmd(), "", "--help")
	for _, want := range []string{"2143  IMAP", "2993  IMAPS", "2110  POP3", "2995  POP3S"} {
		if err != nil || !strings.Contains(out, want) {
			t.Fatalf("help lacks %q: %v\n%s", want, err, out)
		}
	}
	if strings.Contains(out, "not served yet") {
		t.Fatalf("help still says IMAP/POP3 are absent:\n%s", out)
	}
}
