package smtpd

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/mailvault/mailvault/mailserver/audit"
	"github.com/mailvault/mailvault/mailserver/auth"
	"github.com/mailvault/mailvault/mailserver/internal/servertest"
	"github.com/mailvault/mailvault/mailserver/store"
)

var aliceAcct = store.Account{Domain: "example.test", User: "alice"}

// messages returns the stored messages of an account's folder.
func (e *testEnv) messages(t testing.TB, a store.Account, folder string) []string {
	t.Helper()
	l, err := e.Store.List(t.Context(), a, folder)
	if err != nil {
		if errors.Is(err, store.ErrNoSuchFolder) {
			return nil
		}
		t.Fatal(err)
	}
	var out []string
	for _, m := range l.Messages {
		b, err := os.ReadFile(m.Path)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(b))
	}
	return out
}

func TestMXDeliversToLocalUser(t *testing.T) {
	e := newTestEnv(t, nil)
	e.res.SetTXT("remote.test", "v=spf1 ip4:127.0.0.1 -all")
	c := e.dial(t, ModeMX)
	c.Script(`
		S: 220 mx.test ESMTP
		C: EHLO client.remote.test
		S: 250-Hello client.remote.test
		C: MAIL FROM:<carol@remote.test>
		S: 250 2.0.0
		C: RCPT TO:<Alice@Example.TEST>
		S: 250 2.0.0
		C: RCPT TO:<sales@example.test>
		S: 250 2.0.0
		C: DATA
		S: 354
		C: From: Carol <carol@remote.test>
		C: To: alice@example.test
		C: Subject: hello
		C:
		C: ..leading dot
		C: .
		S: 250 2.0.0`)
	// Acknowledged means on disk, in new/ (delivered, not in tmp/).
	if e, _ := os.ReadDir(filepath.Join(e.Store.MaildirPath(aliceAcct), "new")); len(e) != 1 {
		t.Fatalf("new/ after 250: %v (alias and direct recipient deduplicated to one copy)", e)
	}
	c.Script(`
		C: QUIT
		S: 221`)
	msgs := e.messages(t, aliceAcct, store.Inbox)
	if len(msgs) != 1 {
		t.Fatalf("%d messages", len(msgs))
	}
	m := msgs[0]
	for _, want := range []string{
		"Return-Path: <carol@remote.test>\r\n",
		"Authentication-Results: mx.test;",
		"spf=pass",
		"dkim=none",
		"dmarc=none",
		"Received: from client.remote.test ([127.0.0.1])\r\n\tby mx.test (mailvault) with ESMTP;",
		"Subject: hello\r\n\r\n.leading dot\r\n",
	} {
		if !strings.Contains(m, want) {
			t.Errorf("stored message lacks %q:\n%s", want, m)
		}
	}
}

func TestMXRefusesRelayAndUnknownUsers(t *testing.T) {
	e := newTestEnv(t, nil)
	c := e.dial(t, ModeMX)
	c.Script(`
		S: 220
		C: EHLO probe.example.net
		S: 250
		C: MAIL FROM:<spammer@example.net>
		S: 250
		C: RCPT TO:<victim@gmail.com>
		S: 550 5.7.1 Relaying denied
		C: RCPT TO:<victim%gmail.com@example.test>
		S: 550 5.1.1
		C: RCPT TO:<"victim@gmail.com"@example.test>
		S: 553 5.1.3
		C: RCPT TO:<nobody@example.test>
		S: 550 5.1.1
		C: DATA
		S: 502 5.5.1
		C: MAIL FROM:<alice@example.test>
		S: 250
		C: RCPT TO:<bob@elsewhere.test>
		S: 550 5.7.1
		C: AUTH PLAIN ` + plain("alice@example.test", "alice password") + `
		S: 523 5.7.10`)
}

func TestMXLimitsAndSanity(t *testing.T) {
	e := newTestEnv(t, func(c *Config, _ *auth.LimiterConfig) {
		c.MaxMessageBytes = 100
		c.MaxRecipients = 2
		c.MaxLineLength = 200
	})
	t.Run("bad HELO", func(t *testing.T) {
		c := e.dial(t, ModeMX)
		c.Script(`
			S: 220
			C: EHLO bad_host!name
			S: 501 5.5.4
			C: HELO [300.1.1.1]
			S: 501
			C: HELO [192.0.2.1]
			S: 250`)
	})
	t.Run("recipients and size", func(t *testing.T) {
		c := e.dial(t, ModeMX)
		c.Script(`
			S: 220
			C: EHLO client.test
			S: 250
			C: MAIL FROM:<x@client.test> SIZE=1000
			S: 552 5.3.4
			C: MAIL FROM:<x@client.test>
			S: 250
			C: RCPT TO:<alice@example.test>
			S: 250
			C: RCPT TO:<bob@example.test>
			S: 250
			C: RCPT TO:<sales@example.test>
			S: 452 4.5.3
			C: DATA
			S: 354
			C: Subject: big
			C:
			C: ` + strings.Repeat("x", 150) + `
			C: .
			S: 552 5.3.4
			C: NOOP
			S: 250`)
		if n := len(e.messages(t, aliceAcct, store.Inbox)); n != 0 {
			t.Fatalf("oversized message stored: %d", n)
		}
	})
	t.Run("long line", func(t *testing.T) {
		c := e.dial(t, ModeMX)
		c.Script(`
			S: 220
			C: EHLO ` + strings.Repeat("a", 500) + `
			S: 500 5.4.0`)
		c.ExpectClosed(nil)
	})
}

func TestMXRateLimits(t *testing.T) {
	e := newTestEnv(t, func(c *Config, _ *auth.LimiterConfig) {
		c.MessagesPerMinute = 2
		c.MaxConnsPerIP = 2
	})
	c := e.dial(t, ModeMX)
	c.Script(`
		S: 220
		C: EHLO client.test
		S: 250
		C: MAIL FROM:<a@client.test>
		S: 250
		C: RSET
		S: 250
		C: MAIL FROM:<a@client.test>
		S: 250
		C: RSET
		S: 250
		C: MAIL FROM:<a@client.test>
		S: 450 4.7.1`)
	e.dial(t, ModeMX).Script(`S: 220`)
	e.dial(t, ModeMX).Script(`S: 421 4.7.0 Too many concurrent connections`)
}

func TestSubmissionRequiresTLSBeforeAuth(t *testing.T) {
	e := newTestEnv(t, nil)
	c := e.dial(t, ModeSubmission)
	c.Script(`S: 220`)
	c.Send("EHLO laptop.example.test")
	caps := c.Next()
	if strings.Contains(caps, "AUTH") || !strings.Contains(caps, "STARTTLS") {
		t.Fatalf("cleartext EHLO: %q", caps)
	}
	// go-smtp answers 523 5.7.10 ("Encryption Needed", RFC 5248 registry).
	c.Script(`
		C: AUTH PLAIN ` + plain("alice@example.test", "alice password") + `
		S: 523 5.7.10
		C: AUTH LOGIN
		S: 523 5.7.10
		C: MAIL FROM:<alice@example.test>
		S: 530 5.7.0 Must issue a STARTTLS command first`)
	c.startTLS()
	c.Send("EHLO laptop.example.test")
	if caps := c.Next(); !strings.Contains(caps, "AUTH PLAIN LOGIN") || strings.Contains(caps, "STARTTLS") {
		t.Fatalf("EHLO after STARTTLS: %q", caps)
	}
	c.Script(`
		C: MAIL FROM:<alice@example.test>
		S: 530 5.7.0 Authentication required`)
}

func TestSubmissionDelivers(t *testing.T) {
	for _, tc := range []struct {
		name string
		mode Mode
		auth string // transcript of the AUTH exchange
	}{
		{"587 PLAIN", ModeSubmission, `
			C: AUTH PLAIN ` + plain("alice@example.test", "alice password") + `
			S: 235 2.0.0`},
		{"587 LOGIN", ModeSubmission, `
			C: AUTH LOGIN
			S: 334 ` + b64("Username:") + `
			C: ` + b64("alice@example.test") + `
			S: 334 ` + b64("Password:") + `
			C: ` + b64("alice password") + `
			S: 235 2.0.0`},
		{"465 PLAIN without initial response", ModeSubmissions, `
			C: AUTH PLAIN
			S: 334
			C: ` + plain("ALICE@example.test", "alice password") + `
			S: 235 2.0.0`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEnv(t, nil)
			c := e.dial(t, tc.mode)
			c.Script(`
				S: 220
				C: EHLO laptop.example.test
				S: 250`)
			if tc.mode == ModeSubmission {
				c.startTLS()
				c.Script(`
					C: EHLO laptop.example.test
					S: 250`)
			}
			c.Script(tc.auth)
			c.Script(`
				C: MAIL FROM:<alice@example.test>
				S: 250
				C: RCPT TO:<bob@example.test>
				S: 250
				C: RCPT TO:<someone@gmail.com>
				S: 550 5.7.1
				C: DATA
				S: 354
				C: Subject: from alice
				C:
				C: hi bob
				C: .
				S: 250 2.0.0
				C: QUIT
				S: 221`)
			msgs := e.messages(t, store.Account{Domain: "example.test", User: "bob"}, store.Inbox)
			if len(msgs) != 1 || !strings.Contains(msgs[0], "with ESMTPSA") || !strings.Contains(msgs[0], "hi bob") || strings.Contains(msgs[0], "Authentication-Results") {
				t.Fatalf("bob's mail: %q", msgs)
			}
		})
	}
}

func TestSubmissionSenderMustBeOwn(t *testing.T) {
	e := newTestEnv(t, nil)
	c := e.dial(t, ModeSubmissions)
	c.Script(`
		S: 220
		C: EHLO laptop
		S: 250
		C: AUTH PLAIN ` + plain("alice@example.test", "alice password") + `
		S: 235
		C: MAIL FROM:<bob@example.test>
		S: 553 5.7.1 Sender address not owned
		C: MAIL FROM:<ceo@bank.test>
		S: 553 5.7.1
		C: MAIL FROM:<>
		S: 553 5.7.1
		C: MAIL FROM:<sales@example.test>
		S: 250
		C: RSET
		S: 250
		C: MAIL FROM:<alice+news@example.test>
		S: 250`)
}

func TestSubmissionLockout(t *testing.T) {
	e := newTestEnv(t, func(_ *Config, l *auth.LimiterConfig) {
		l.AccountFailures = 3
		l.IPFailures = 100
	})
	c := e.dial(t, ModeSubmissions)
	c.Script(`S: 220
		C: EHLO laptop
		S: 250`)
	// Unknown user and wrong password get the very same answer.
	unknown := c.Script(`
		C: AUTH PLAIN ` + plain("nobody@example.test", "alice password") + `
		S: 535 5.7.8`)
	for range 3 {
		wrong := c.Script(`
			C: AUTH PLAIN ` + plain("alice@example.test", "guess") + `
			S: 535 5.7.8`)
		if wrong != unknown {
			t.Fatalf("answers differ: %q vs %q", wrong, unknown)
		}
	}
	// Now even the right password is refused, from any connection.
	c2 := e.dial(t, ModeSubmissions)
	c2.Script(`S: 220
		C: EHLO laptop
		S: 250
		C: AUTH PLAIN ` + plain("alice@example.test", "alice password") + `
		S: 454 4.7.0 Too many failed
		C: AUTH PLAIN ` + plain("bob@example.test", "bob password") + `
		S: 235`)
	if slept := e.Slept(); len(slept) != 4 || slept[3] <= slept[1] {
		t.Fatalf("delays did not grow: %v", slept)
	}
	rep, err := audit.Verify(e.Audit.Path())
	if err != nil || rep.Lines != 6 {
		t.Fatalf("audit log: %+v %v", rep, err)
	}
	b, _ := os.ReadFile(e.Audit.Path())
	if !strings.Contains(string(b), `"user":"bob@example.test","ip":"127.0.0.1","protocol":"submissions","success":true`) {
		t.Fatalf("audit log:\n%s", b)
	}
}

// sendForged sends alice, over the MX port from forger.test, a message
// whose envelope and From: claim the domain from, and returns the reply to
// its end of data.
func (e *testEnv) sendForged(t *testing.T, from, subject string) string {
	t.Helper()
	c := e.dial(t, ModeMX)
	return c.Script(`
		S: 220
		C: EHLO forger.test
		S: 250
		C: MAIL FROM:<x@` + from + `>
		S: 250
		C: RCPT TO:<alice@example.test>
		S: 250
		C: DATA
		S: 354
		C: From: <ceo@` + from + `>
		C: Subject: ` + subject + `
		C:
		C: now
		C: .
		S: `)
}

func TestDMARCEnforcement(t *testing.T) {
	e := newTestEnv(t, func(c *Config, _ *auth.LimiterConfig) { c.EnforceDMARC = true })
	e.res.SetTXT("bank.test", "v=spf1 ip4:192.0.2.0/24 -all")
	e.res.SetTXT("_dmarc.bank.test", "v=DMARC1; p=reject")
	e.res.SetTXT("shop.test", "v=spf1 -all")
	e.res.SetTXT("_dmarc.shop.test", "v=DMARC1; p=quarantine")
	send := func(from string) string { return e.sendForged(t, from, "wire money") }
	if r := send("bank.test"); !strings.HasPrefix(r, "550 5.7.1 Rejected by DMARC policy of bank.test") {
		t.Fatalf("p=reject: %q", r)
	}
	if r := send("shop.test"); !strings.HasPrefix(r, "250") {
		t.Fatalf("p=quarantine: %q", r)
	}
	if n := len(e.messages(t, aliceAcct, store.Inbox)); n != 0 {
		t.Fatalf("%d messages in INBOX", n)
	}
	junk := e.messages(t, aliceAcct, store.Junk)
	if len(junk) != 1 || !strings.Contains(junk[0], "dmarc=fail") || !strings.Contains(junk[0], "spf=fail") {
		t.Fatalf("Junk: %q", junk)
	}
}

// pct= over a real session (RFC 7489 section 6.6.4): with the draw
// injected, a p=reject failure that is sampled in is refused, one sampled
// out is quarantined into Junk instead, and a sampled-out p=quarantine
// failure reaches INBOX; each stored copy says why in
// Authentication-Results. Without enforcement nothing is drawn away: the
// disposition is none.
func TestDMARCPercentOverSMTP(t *testing.T) {
	var mu sync.Mutex
	var draws []bool // answers, in order
	sample := func(pct int) bool {
		mu.Lock()
		defer mu.Unlock()
		if pct != 50 || len(draws) == 0 {
			t.Errorf("unexpected draw for pct=%d", pct)
			return true
		}
		in := draws[0]
		draws = draws[1:]
		return in
	}
	e := newTestEnv(t, func(c *Config, _ *auth.LimiterConfig) {
		c.EnforceDMARC = true
		c.DMARCSample = sample
	})
	e.res.SetTXT("bank.test", "v=spf1 ip4:192.0.2.0/24 -all")
	e.res.SetTXT("_dmarc.bank.test", "v=DMARC1; p=reject; pct=50")
	e.res.SetTXT("shop.test", "v=spf1 -all")
	e.res.SetTXT("_dmarc.shop.test", "v=DMARC1; p=quarantine; pct=50")
	send := func(from, subject string) string { return e.sendForged(t, from, subject) }
	draws = []bool{true, false, false}
	if r := send("bank.test", "in"); !strings.HasPrefix(r, "550 5.7.1 Rejected by DMARC policy of bank.test") {
		t.Fatalf("p=reject sampled in: %q", r)
	}
	if r := send("bank.test", "out"); !strings.HasPrefix(r, "250") {
		t.Fatalf("p=reject sampled out: %q", r)
	}
	if r := send("shop.test", "shop"); !strings.HasPrefix(r, "250") {
		t.Fatalf("p=quarantine sampled out: %q", r)
	}
	if len(draws) != 0 {
		t.Fatalf("%d draws left", len(draws))
	}
	junk := e.messages(t, aliceAcct, store.Junk)
	if len(junk) != 1 || !strings.Contains(junk[0], `dmarc=fail reason="p=reject pct=50 sampled-out dis=quarantine" header.from=bank.test`) {
		t.Fatalf("Junk: %q", junk)
	}
	inbox := e.messages(t, aliceAcct, store.Inbox)
	if len(inbox) != 1 || !strings.Contains(inbox[0], `dmarc=fail reason="p=quarantine pct=50 sampled-out dis=none" header.from=shop.test`) {
		t.Fatalf("INBOX: %q", inbox)
	}

	// Not enforcing: the policy still says what it asks, dis=none.
	e.srv.SetLimits(Limits{EnforceDMARC: false})
	draws = []bool{true}
	if r := send("bank.test", "not enforced"); !strings.HasPrefix(r, "250") {
		t.Fatalf("not enforcing: %q", r)
	}
	inbox = e.messages(t, aliceAcct, store.Inbox)
	if len(inbox) != 2 || !strings.Contains(strings.Join(inbox, ""), `reason="p=reject pct=50 sampled-in dis=none"`) {
		t.Fatalf("INBOX: %q", inbox)
	}
}

func TestDKIMAndForgedAuthResults(t *testing.T) {
	e := newTestEnv(t, nil)
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	e.res.SetTXT("sel._domainkey.signer.test", "v=DKIM1; k=ed25519; p="+base64.StdEncoding.EncodeToString(pub))
	e.res.SetTXT("_dmarc.signer.test", "v=DMARC1; p=reject")
	raw := "From: <news@signer.test>\r\nTo: <alice@example.test>\r\nSubject: signed\r\n" +
		"Authentication-Results: mx.test; dkim=pass header.d=bank.test\r\n\r\nsigned body\r\n"
	var signed bytes.Buffer
	if err := dkim.Sign(&signed, strings.NewReader(raw), &dkim.SignOptions{Domain: "signer.test", Selector: "sel", Signer: priv, HeaderKeys: []string{"From", "To", "Subject"}}); err != nil {
		t.Fatal(err)
	}
	c := e.dial(t, ModeMX)
	c.Script(`
		S: 220
		C: EHLO mail.signer.test
		S: 250
		C: MAIL FROM:<bounces@other.test>
		S: 250
		C: RCPT TO:<alice@example.test>
		S: 250
		C: DATA
		S: 354`)
	c.Send(strings.TrimSuffix(signed.String(), "\r\n") + "\r\n.")
	c.Script(`S: 250`)
	msgs := e.messages(t, aliceAcct, store.Inbox)
	if len(msgs) != 1 {
		t.Fatal(len(msgs))
	}
	m := msgs[0]
	for _, want := range []string{"dkim=pass", "header.d=signer.test", "dmarc=pass", "spf=none"} {
		if !strings.Contains(m, want) {
			t.Errorf("missing %q in\n%s", want, m)
		}
	}
	if strings.Contains(m, "header.d=bank.test") {
		t.Errorf("forged Authentication-Results kept:\n%s", m)
	}
}

func TestMXStartTLS(t *testing.T) {
	e := newTestEnv(t, nil)
	c := e.dial(t, ModeMX)
	c.Script(`
		S: 220
		C: EHLO relay.remote.test
		S: 250`)
	c.startTLS()
	c.Script(`
		C: MAIL FROM:<x@remote.test>
		S: 502 5.5.1 Please introduce yourself first
		C: EHLO relay.remote.test
		S: 250
		C: STARTTLS
		S: 502 5.5.1 Already running in TLS
		C: MAIL FROM:<x@remote.test>
		S: 250
		C: RCPT TO:<alice@example.test>
		S: 250
		C: DATA
		S: 354
		C: Subject: over TLS
		C:
		C: secret
		C: .
		S: 250`)
	msgs := e.messages(t, aliceAcct, store.Inbox)
	if len(msgs) != 1 || !strings.Contains(msgs[0], "with ESMTPS\r\n\t(using TLS 1.3") {
		t.Fatalf("stored: %q", msgs)
	}
}

func TestOverlongDataLine(t *testing.T) {
	e := newTestEnv(t, func(c *Config, _ *auth.LimiterConfig) { c.MaxLineLength = 1000 })
	c := e.dial(t, ModeMX)
	c.Script(`
		S: 220
		C: EHLO client.test
		S: 250
		C: MAIL FROM:<x@client.test>
		S: 250
		C: RCPT TO:<alice@example.test>
		S: 250
		C: DATA
		S: 354`)
	// go-smtp's line limit is sticky: after the 500 it closes the session
	// without reading on. The message goes in one write, shorter than the
	// server's read buffer, so that nothing is left unread in the kernel
	// when it closes (which would reset the connection and could discard
	// the reply before the client reads it).
	c.Send("Subject: long\r\n\r\n" + strings.Repeat("y", 1500) + "\r\n.")
	c.Script(`S: 500 5.5.2 Line too long`)
	c.ExpectClosed(servertest.HasPrefix("500 5.4.0"))
	// The server keeps serving.
	e.dial(t, ModeMX).Script(`
		S: 220
		C: NOOP
		S: 250`)
	if n := len(e.messages(t, aliceAcct, store.Inbox)); n != 0 {
		t.Fatalf("message with an over-long line stored: %d", n)
	}
}
