package mailserver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/mailvault/mailvault/mailserver/audit"
	"github.com/mailvault/mailvault/mailserver/auth"
	"github.com/mailvault/mailvault/mailserver/smtpd"
	"github.com/mailvault/mailvault/mailserver/store"
)

var cheapHash = auth.Options{Params: auth.Params{Time: 1, Memory: 64, Threads: 1, KeyLen: 32}}

// startServer runs a server with the embedded defaults, except that every
// listener is on 127.0.0.1:0 and DNS is a static map.
func startServer(t *testing.T, mutate func(*Config)) (*Server, Config) {
	t.Helper()
	return startServerDNS(t, &smtpd.StaticResolver{}, mutate)
}

// startServerDNS is startServer with the DNS answers of res.
func startServerDNS(t *testing.T, res *smtpd.StaticResolver, mutate func(*Config)) (*Server, Config) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.Hostname = "mx.test"
	cfg.Listen.SMTP, cfg.Listen.Submission, cfg.Listen.Submissions = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.Listen.IMAP, cfg.Listen.IMAPS, cfg.Listen.POP3, cfg.Listen.POP3S = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.IMAP.AccessConfig = AccessConfig{ConnsPerMinute: 1e6, MaxConnsPerIP: 1000}
	cfg.POP3 = AccessConfig{ConnsPerMinute: 1e6, MaxConnsPerIP: 1000}
	cfg.Auth.BaseDelay, cfg.Auth.MaxDelay = time.Millisecond, 4*time.Millisecond
	cfg.SMTP.ConnsPerMinute, cfg.SMTP.MessagesPerMinute, cfg.SMTP.MaxConnsPerIP = 1e6, 1e6, 1000
	if mutate != nil {
		mutate(&cfg)
	}
	srv, err := New(t.Context(), cfg, Options{Resolver: res, Auth: cheapHash})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		srv.Shutdown(ctx)
	})
	ctx := t.Context()
	db := srv.Data().Accounts
	for _, u := range []string{"alice", "bob"} {
		if err := db.AddUser(ctx, u+"@"+ExampleDomain, u+" password", auth.RoleUser); err != nil {
			t.Fatal(err)
		}
	}
	return srv, cfg
}

func TestDefaults(t *testing.T) {
	c := DefaultConfig()
	want := map[string]string{"smtp": c.Listen.SMTP, "submission": c.Listen.Submission, "submissions": c.Listen.Submissions,
		"imap": c.Listen.IMAP, "imaps": c.Listen.IMAPS, "pop3": c.Listen.POP3, "pop3s": c.Listen.POP3S}
	for name, port := range map[string]string{"smtp": "2525", "submission": "2587", "submissions": "2465", "imap": "2143", "imaps": "2993", "pop3": "2110", "pop3s": "2995"} {
		if want[name] != "127.0.0.1:"+port {
			t.Errorf("%s = %s", name, want[name])
		}
	}
	if c.DataDir != "./mailvault-data" {
		t.Errorf("data dir %s", c.DataDir)
	}
}

func TestConfigFileAndEnv(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "mailvault.yaml")
	os.WriteFile(path, []byte(`
data_dir: /srv/mail
hostname: mail.example.org
listen:
  smtp: 0.0.0.0:25
  submissions: "off"
smtp:
  max_message_bytes: 1000
  enforce_dmarc: true
auth:
  lock_duration: 5m
  max_concurrent_hashes: 3
imap:
  max_connections_per_ip: 7
  header_cache_bytes: -1
`), 0o600)
	c := DefaultConfig()
	if err := c.LoadFile(path); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"MAILVAULT_HOSTNAME": "mx.example.org", "MAILVAULT_SMTP_MAX_MESSAGE_BYTES": "2000"}
	if err := c.ApplyEnv(func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	if c.DataDir != "/srv/mail" || c.Hostname != "mx.example.org" || c.Listen.SMTP != "0.0.0.0:25" ||
		enabled(c.Listen.Submissions) || c.Listen.Submission != "127.0.0.1:2587" || c.SMTP.MaxMessageBytes != 2000 ||
		!c.SMTP.EnforceDMARC || c.Auth.LockDuration != 5*time.Minute || c.SMTP.MaxRecipients != 100 ||
		c.IMAP.MaxConnsPerIP != 7 || c.IMAP.ConnsPerMinute != 120 || c.IMAP.HeaderCacheBytes != -1 ||
		c.Auth.MaxConcurrentHashes != 3 {
		t.Fatalf("config = %+v", c)
	}
	os.WriteFile(path, []byte("smtp:\n  max_mesage_bytes: 1\n"), 0o600)
	if err := c.LoadFile(path); err == nil {
		t.Fatal("typo in key accepted")
	}
	if err := c.ApplyEnv(func(k string) string {
		if k == "MAILVAULT_SMTP_MAX_MESSAGE_BYTES" {
			return "lots"
		}
		return ""
	}); err == nil {
		t.Fatal("bad env value accepted")
	}
}

func TestFirstStartLayout(t *testing.T) {
	srv, cfg := startServer(t, nil)
	for _, p := range []string{"tls/cert.pem", "tls/key.pem", "accounts.json", "audit.jsonl", "mail", "spool"} {
		if _, err := os.Stat(filepath.Join(cfg.DataDir, p)); err != nil {
			t.Errorf("missing %s: %v", p, err)
		}
	}
	if !srv.Data().Accounts.IsLocalDomain(ExampleDomain) {
		t.Error("example domain not created")
	}
	if len(srv.Addrs()) != 7 { // smtp, submission(s), imap(s), pop3(s)
		t.Errorf("addrs = %v", srv.Addrs())
	}
}

func submit(addr, user, pass, from string, to []string, body string) error {
	c, err := smtp.DialStartTLS(addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Auth(sasl.NewPlainClient("", user, pass)); err != nil {
		return err
	}
	if err := c.SendMail(from, to, strings.NewReader(body)); err != nil {
		return err
	}
	return c.Quit()
}

// TestConcurrentSubmissionsAllStored: every message acknowledged with 250
// is in the recipient's Maildir, none twice.
func TestConcurrentSubmissionsAllStored(t *testing.T) {
	srv, _ := startServer(t, nil)
	addr := srv.Addrs()["submission"]
	const clients, perClient = 10, 10
	var wg sync.WaitGroup
	var mu sync.Mutex
	acked := map[string]bool{}
	for c := range clients {
		wg.Go(func() {
			for i := range perClient {
				id := fmt.Sprintf("msg-%d-%d", c, i)
				body := "From: alice@example.test\r\nSubject: " + id + "\r\n\r\n" + id + "\r\n"
				if err := submit(addr, "alice@example.test", "alice password", "alice@example.test", []string{"bob@example.test"}, body); err != nil {
					t.Error(err)
					continue
				}
				mu.Lock()
				acked[id] = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	l, err := srv.Store().List(t.Context(), store.Account{Domain: ExampleDomain, User: "bob"}, store.Inbox)
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]int{}
	for _, m := range l.Messages {
		b, _ := os.ReadFile(m.Path)
		for id := range acked {
			if strings.Contains(string(b), "Subject: "+id+"\r\n") {
				found[id]++
			}
		}
	}
	for id := range acked {
		if found[id] != 1 {
			t.Errorf("%s stored %d times", id, found[id])
		}
	}
	if len(acked) != clients*perClient {
		t.Errorf("%d acknowledged", len(acked))
	}
}

func TestQuiesceHoldsDeliveries(t *testing.T) {
	srv, _ := startServer(t, nil)
	resume, err := srv.Store().Quiesce(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		done <- submit(srv.Addrs()["submission"], "alice@example.test", "alice password", "alice@example.test", []string{"bob@example.test"}, "Subject: q\r\n\r\nq\r\n")
	}()
	bob := store.Account{Domain: ExampleDomain, User: "bob"}
	// Nothing lands while quiesced (List would wait for the quiesce too,
	// so look at the directory); once resumed the message is stored.
	if e, _ := os.ReadDir(filepath.Join(srv.Store().MaildirPath(bob), "new")); len(e) != 0 {
		t.Fatal("delivered during quiesce")
	}
	resume()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if l, _ := srv.Store().List(t.Context(), bob, store.Inbox); len(l.Messages) != 1 {
		t.Fatalf("after resume: %+v", l)
	}
}

func TestLoginsAreAudited(t *testing.T) {
	srv, cfg := startServer(t, nil)
	addr := srv.Addrs()["submission"]
	err := submit(addr, "alice@example.test", "wrong", "alice@example.test", []string{"bob@example.test"}, "x")
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 535 {
		t.Fatalf("wrong password: %v", err)
	}
	if err := submit(addr, "alice@example.test", "alice password", "alice@example.test", []string{"bob@example.test"}, "Subject: a\r\n\r\na\r\n"); err != nil {
		t.Fatal(err)
	}
	rep, err := audit.Verify(AuditPath(cfg.DataDir))
	if err != nil || rep.Lines != 3 { // domain.add on first start, failure, success
		t.Fatalf("audit: %+v %v", rep, err)
	}
}
