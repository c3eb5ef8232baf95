package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/mailvault/mailvault/mailserver"
)

// TestSIGHUPReload drives serve's SIGHUP handling: the file is re-read,
// its valid settings apply, and a bad file keeps the running
// configuration.
func TestSIGHUPReload(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "mailvault.yaml")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(file, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	noEnv := func(string) string { return "" }
	data := filepath.Join(dir, "data")
	write("listen: {smtp: off, submission: off, submissions: off, imap: off, imaps: off, pop3: off, pop3s: off}\nsmtp: {max_message_bytes: 20000}\n")
	load := func() (mailserver.Config, error) { return loadConfig(file, noEnv, data, true, "") }
	cfg, err := load()
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	srv, err := mailserver.New(t.Context(), cfg, mailserver.Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(context.Background())
	if err := srv.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	level := new(slog.LevelVar)

	write("listen: {smtp: off, submission: off, submissions: off, imap: off, imaps: off, pop3: off, pop3s: off}\nsmtp: {max_message_bytes: 10000}\nlog_level: debug\n")
	cfg = reload(t.Context(), srv, cfg, load, level, log)
	if cfg.SMTP.MaxMessageBytes != 10000 || srv.Config().SMTP.MaxMessageBytes != 10000 || level.Level() != slog.LevelDebug {
		t.Fatalf("reload not applied: %d %d %v", cfg.SMTP.MaxMessageBytes, srv.Config().SMTP.MaxMessageBytes, level.Level())
	}

	for _, bad := range []string{"smtp: {max_message_bytes: -1}\n", "smtp: {no_such_key: 1}\n", "smtp: [\n"} {
		write(bad)
		cfg = reload(t.Context(), srv, cfg, load, level, log)
		if cfg.SMTP.MaxMessageBytes != 10000 || srv.Config().SMTP.MaxMessageBytes != 10000 {
			t.Fatalf("bad file %q changed the configuration: %d", bad, srv.Config().SMTP.MaxMessageBytes)
		}
	}
}

// TestSIGHUPRaisesMessageSize sends serve a real SIGHUP after raising
// smtp.max_message_bytes above the start-up value in its file: without a
// restart, new SMTP sessions are told the new SIZE in EHLO (RFC 1870) and
// may declare that much.
func TestSIGHUPRaisesMessageSize(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "mailvault.yaml")
	write := func(size int) {
		t.Helper()
		s := fmt.Sprintf("listen: {smtp: \"127.0.0.1:0\", submission: off, submissions: off, imap: off, imaps: off, pop3: off, pop3s: off}\nsmtp: {max_message_bytes: %d}\n", size)
		if err := os.WriteFile(file, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	noEnv := func(string) string { return "" }
	load := func() (mailserver.Config, error) {
		return loadConfig(file, noEnv, filepath.Join(dir, "data"), true, "")
	}
	write(20000)
	cfg, err := load()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- runServer(ctx, cfg, load, new(slog.LevelVar), slog.New(slog.DiscardHandler), pw)
		pw.Close()
	}()
	// runServer prints its addresses once it serves (and handles SIGHUP).
	sc := bufio.NewScanner(pr)
	addr := ""
	for addr == "" && sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 2 && f[0] == "smtp" {
			addr = f[1]
		}
	}
	go io.Copy(io.Discard, pr)
	if addr == "" {
		t.Fatalf("no smtp address printed: %v", <-done)
	}
	size := func() string {
		t.Helper()
		c, err := smtp.Dial(addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Hello("client.test"); err != nil {
			t.Fatal(err)
		}
		_, v := c.Extension("SIZE")
		return v
	}
	if v := size(); v != "20000" {
		t.Fatalf("SIZE at start: %q", v)
	}

	write(50000)
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	// The signal is handled asynchronously: poll (the test's own timeout
	// bounds the wait).
	for v := size(); v != "50000"; v = size() {
		if v != "20000" {
			t.Fatalf("SIZE after SIGHUP: %q", v)
		}
		time.Sleep(10 * time.Millisecond)
	}
	c, err := smtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Mail("carol@remote.test", &smtp.MailOptions{Size: 40000}); err != nil {
		t.Fatalf("MAIL SIZE=40000 after SIGHUP: %v", err)
	}
	c.Close() // or serve would wait drain_timeout for the session
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("serve: %v", err)
	}
}

// TestSIGUSR1DumpsStacks: SIGUSR1 makes a running serve write every
// goroutine's stack to a file in its data directory and go on serving —
// what to collect when the server seems to hang (issue 10).
func TestSIGUSR1DumpsStacks(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	cfg, err := loadConfig("", func(string) string { return "" }, data, true, "")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Listen = mailserver.Listen{SMTP: "127.0.0.1:0", Submission: "off", Submissions: "off", IMAP: "off", IMAPS: "off", POP3: "off", POP3S: "off"}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- runServer(ctx, cfg, nil, nil, slog.New(slog.DiscardHandler), pw)
		pw.Close()
	}()
	sc := bufio.NewScanner(pr)
	if !sc.Scan() {
		t.Fatalf("serve printed nothing: %v", <-done)
	}
	go io.Copy(io.Discard, pr)
	if err := syscall.Kill(os.Getpid(), syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	var dump []string
	for len(dump) == 0 { // handled asynchronously; the test's timeout bounds this
		dump, _ = filepath.Glob(filepath.Join(data, "stacks-*.txt"))
		time.Sleep(10 * time.Millisecond)
	}
	raw, err := os.ReadFile(dump[0])
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(raw), "goroutine ") || !strings.Contains(string(raw), "runServer") {
		t.Errorf("dump does not hold the goroutines:\n%.500s", raw)
	}
	select {
	case err := <-done:
		t.Fatalf("serve stopped after SIGUSR1: %v", err)
	default:
	}
}
