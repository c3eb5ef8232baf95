package mailserver

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/emersion/go-smtp"

	"github.com/mailvault/mailvault/mailserver/store"
)

// message returns a message of about n octets.
func message(n int) string {
	head := "From: carol@remote.test\r\nSubject: size\r\n\r\n"
	line := strings.Repeat("x", 70) + "\r\n"
	var b strings.Builder
	b.WriteString(head)
	for b.Len() < n {
		b.WriteString(line)
	}
	return b.String()
}

func smtpCode(err error) int {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se.Code
	}
	return 0
}

// TestReloadLowersMessageSize: after a reload with a smaller
// max_message_bytes, a message over it gets 552 (RFC 5321 section
// 4.5.3.1.10), at DATA and at MAIL FROM's SIZE (RFC 1870 section 6.1),
// and one under it is still accepted.
func TestReloadLowersMessageSize(t *testing.T) {
	srv, cfg := startServer(t, nil)
	addr := srv.Addrs()["smtp"]
	big := message(20000)
	if err := sendPlain(addr, "carol@remote.test", "bob@example.test", big); err != nil {
		t.Fatalf("before reload: %v", err)
	}

	next := cfg
	next.SMTP.MaxMessageBytes = 10000
	if err := srv.ReloadConfig(t.Context(), next); err != nil {
		t.Fatal(err)
	}
	if got := srv.Config().SMTP.MaxMessageBytes; got != 10000 {
		t.Fatalf("config in force: %d", got)
	}
	if err := sendPlain(addr, "carol@remote.test", "bob@example.test", big); smtpCode(err) != 552 {
		t.Fatalf("over the new limit: %v, want 552", err)
	}
	if err := sendPlain(addr, "carol@remote.test", "bob@example.test", message(5000)); err != nil {
		t.Fatalf("under the new limit: %v", err)
	}

	c, err := smtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Mail("carol@remote.test", &smtp.MailOptions{Size: 20000}); smtpCode(err) != 552 {
		t.Fatalf("MAIL SIZE=20000: %v, want 552", err)
	}
	if err := c.Mail("carol@remote.test", &smtp.MailOptions{Size: 5000}); err != nil {
		t.Fatalf("MAIL SIZE=5000: %v", err)
	}
}

// TestReloadInvalidKeepsOld: an invalid configuration is refused with an
// error and the limits in force stay.
func TestReloadInvalidKeepsOld(t *testing.T) {
	srv, cfg := startServer(t, func(c *Config) { c.SMTP.MaxMessageBytes = 10000 })
	addr := srv.Addrs()["smtp"]
	for name, mutate := range map[string]func(*Config){
		"zero size":       func(c *Config) { c.SMTP.MaxMessageBytes = 0 },
		"negative rate":   func(c *Config) { c.SMTP.MaxMessageBytes, c.IMAP.ConnsPerMinute = 5000, -1 },
		"half tls":        func(c *Config) { c.SMTP.MaxMessageBytes, c.TLS.Cert = 5000, "cert.pem" },
		"negative lockup": func(c *Config) { c.SMTP.MaxMessageBytes, c.Auth.LockDuration = 5000, -1 },
	} {
		next := cfg
		mutate(&next)
		if err := srv.ReloadConfig(t.Context(), next); err == nil {
			t.Fatalf("%s: reload accepted", name)
		}
	}
	if got := srv.Config(); got != cfg {
		t.Fatalf("config changed by refused reloads:\n%+v\nwant\n%+v", got, cfg)
	}
	if err := sendPlain(addr, "carol@remote.test", "bob@example.test", message(8000)); err != nil {
		t.Fatalf("under the old limit: %v", err)
	}
	if err := sendPlain(addr, "carol@remote.test", "bob@example.test", message(12000)); smtpCode(err) != 552 {
		t.Fatalf("over the old limit: %v, want 552", err)
	}
}

// TestReloadKeepsLockout: an account locked out before a reload stays
// locked after it, even when the new settings would not have locked it.
func TestReloadKeepsLockout(t *testing.T) {
	srv, cfg := startServer(t, func(c *Config) { c.Auth.AccountFailures = 2 })
	addr := srv.Addrs()["submission"]
	good := "Subject: a\r\n\r\na\r\n"
	for range 2 {
		err := submit(addr, "alice@example.test", "wrong", "alice@example.test", []string{"bob@example.test"}, good)
		if smtpCode(err) != 535 {
			t.Fatalf("wrong password: %v", err)
		}
	}
	if err := submit(addr, "alice@example.test", "alice password", "alice@example.test", []string{"bob@example.test"}, good); smtpCode(err) != 454 {
		t.Fatalf("before reload: %v, want 454 (locked)", err)
	}
	next := cfg
	next.Auth.AccountFailures = 100
	next.Auth.LockDuration = 1
	if err := srv.ReloadConfig(t.Context(), next); err != nil {
		t.Fatal(err)
	}
	if err := submit(addr, "alice@example.test", "alice password", "alice@example.test", []string{"bob@example.test"}, good); smtpCode(err) != 454 {
		t.Fatalf("after reload: %v, want 454 (still locked)", err)
	}
	// The new settings apply to other accounts: two failures no longer
	// lock bob out.
	for range 2 {
		submit(addr, "bob@example.test", "wrong", "bob@example.test", []string{"alice@example.test"}, good)
	}
	if err := submit(addr, "bob@example.test", "bob password", "bob@example.test", []string{"alice@example.test"}, good); err != nil {
		t.Fatalf("bob after reload: %v", err)
	}
}

// TestReloadRestartSettingsKept: addresses, data directory and host name
// keep their running values (a warning names them); the rest applies,
// a raised message size limit included.
func TestReloadRestartSettingsKept(t *testing.T) {
	srv, cfg := startServer(t, nil)
	next := cfg
	next.Hostname = "other.test"
	next.DataDir = t.TempDir()
	next.Listen.SMTP = "127.0.0.1:1"
	next.SMTP.MaxRecipients = 1
	next.SMTP.MaxMessageBytes = cfg.SMTP.MaxMessageBytes * 2
	if err := srv.ReloadConfig(t.Context(), next); err != nil {
		t.Fatal(err)
	}
	got := srv.Config()
	if got.Hostname != cfg.Hostname || got.DataDir != cfg.DataDir || got.Listen != cfg.Listen {
		t.Fatalf("restart-only settings changed live: %+v", got)
	}
	if got.SMTP.MaxMessageBytes != 2*cfg.SMTP.MaxMessageBytes || got.SMTP.MaxRecipients != 1 {
		t.Fatalf("smtp settings in force: %+v", got.SMTP)
	}
	err := sendPlainTo(srv.Addrs()["smtp"], "carol@remote.test", []string{"bob@example.test", "alice@example.test"}, "Subject: x\r\n\r\nx\r\n")
	if smtpCode(err) != 452 {
		t.Fatalf("second recipient: %v, want 452", err)
	}
}

func sendPlainTo(addr, from string, to []string, body string) error {
	c, err := smtp.Dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.SendMail(from, to, strings.NewReader(body)); err != nil {
		return err
	}
	return c.Quit()
}

// ehloSize returns the SIZE a new session's EHLO announces (RFC 1870).
func ehloSize(t *testing.T, c *smtp.Client) int64 {
	t.Helper()
	if err := c.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	ok, v := c.Extension("SIZE")
	n, err := strconv.ParseInt(v, 10, 64)
	if !ok || err != nil {
		t.Fatalf("EHLO SIZE %q (%v)", v, ok)
	}
	return n
}

// TestReloadRaisesMessageSize: a reload that raises max_message_bytes
// above the start-up value applies without a restart: new sessions see
// it as EHLO's SIZE and may send that much; a session opened before the
// reload keeps the SIZE it was told.
func TestReloadRaisesMessageSize(t *testing.T) {
	srv, cfg := startServer(t, func(c *Config) { c.SMTP.MaxMessageBytes = 10000 })
	addr := srv.Addrs()["smtp"]
	big := message(20000)
	if err := sendPlain(addr, "carol@remote.test", "bob@example.test", big); smtpCode(err) != 552 {
		t.Fatalf("before reload: %v, want 552", err)
	}
	before, err := smtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer before.Close()
	if n := ehloSize(t, before); n != 10000 {
		t.Fatalf("SIZE before reload: %d", n)
	}

	next := cfg
	next.SMTP.MaxMessageBytes = 30000
	if err := srv.ReloadConfig(t.Context(), next); err != nil {
		t.Fatal(err)
	}
	if got := srv.Config().SMTP.MaxMessageBytes; got != 30000 {
		t.Fatalf("config in force: %d", got)
	}
	c, err := smtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if n := ehloSize(t, c); n != 30000 {
		t.Fatalf("SIZE after reload: %d, want 30000", n)
	}
	if err := c.Mail("carol@remote.test", &smtp.MailOptions{Size: 20000}); err != nil {
		t.Fatalf("MAIL SIZE=20000: %v", err)
	}
	if err := sendPlain(addr, "carol@remote.test", "bob@example.test", big); err != nil {
		t.Fatalf("after reload: %v", err)
	}
	if err := sendPlain(addr, "carol@remote.test", "bob@example.test", message(40000)); smtpCode(err) != 552 {
		t.Fatalf("over the new limit: %v, want 552", err)
	}
	// The session from before keeps its SIZE=10000 (RFC 1870: the client
	// was told so): go-smtp refuses the larger declaration.
	if err := before.Mail("carol@remote.test", &smtp.MailOptions{Size: 20000}); smtpCode(err) != 552 {
		t.Fatalf("old session MAIL SIZE=20000: %v, want 552", err)
	}
	// The bound of the store, under SMTP and IMAP APPEND, moved too.
	if _, err := srv.Store().Deliver(t.Context(), store.Account{Domain: ExampleDomain, User: "bob"}, "", strings.NewReader(message(50000))); err != nil {
		t.Fatalf("store bound after reload: %v", err)
	}
	if _, err := srv.Store().Deliver(t.Context(), store.Account{Domain: ExampleDomain, User: "bob"}, "", strings.NewReader(message(30000+70*1024))); err == nil {
		t.Fatal("store took a message over its bound")
	}
}

// TestReloadSizeWhileServing: reloads that change the size limit while
// sessions run race with nothing (go test -race) and every session sees
// one of the limits whole.
func TestReloadSizeWhileServing(t *testing.T) {
	srv, cfg := startServer(t, func(c *Config) {
		c.SMTP.MaxMessageBytes = 10000
		c.SMTP.ConnsPerMinute, c.SMTP.MessagesPerMinute, c.SMTP.MaxConnsPerIP = 1e6, 1e6, 1000
	})
	addr := srv.Addrs()["smtp"]
	const senders, rounds = 4, 10
	var wg sync.WaitGroup
	errs := make(chan error, senders*rounds)
	for range senders {
		wg.Go(func() {
			for range rounds {
				c, err := smtp.Dial(addr)
				if err != nil {
					errs <- err
					return
				}
				if err := c.Hello("client.test"); err != nil {
					errs <- err
				}
				if _, v := c.Extension("SIZE"); v != "10000" && v != "30000" {
					errs <- fmt.Errorf("EHLO SIZE %q", v)
				}
				if err := c.SendMail("carol@remote.test", []string{"bob@example.test"}, strings.NewReader(message(5000))); err != nil {
					errs <- err
				}
				c.Close()
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	// Reload until the senders are done, so that sessions start, run and
	// end across generations.
	for i := 0; ; i++ {
		select {
		case <-done:
		default:
			next := cfg
			next.SMTP.MaxMessageBytes = []int64{30000, 10000}[i%2]
			if err := srv.ReloadConfig(t.Context(), next); err != nil {
				t.Fatal(err)
			}
			continue
		}
		break
	}
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
