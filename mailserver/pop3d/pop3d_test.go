package pop3d

import (
	"os"
	"runtime"
	"strings"
	"testing"

	"github.com/mailvault/mailvault/mailserver/auth"
	"github.com/mailvault/mailvault/mailserver/internal/servertest"
	"github.com/mailvault/mailvault/mailserver/store"
)

func TestUserPassRefusedBeforeSTLS(t *testing.T) {
	e := newTestEnv(t, nil)
	c := e.dial(t, false)
	c.Send("CAPA")
	c.Script(`S: +OK`)
	caps := c.multi()
	if !contains(caps, "STLS") || contains(caps, "USER") {
		t.Fatalf("CAPA before TLS: %q", caps)
	}
	c.Script(`
		C: USER alice@example.test
		S: -ERR [SYS/PERM] USER/PASS need TLS first
		C: PASS alice password
		S: -ERR [SYS/PERM]
		C: STAT
		S: -ERR
		C: STLS
		S: +OK Begin TLS`)
	c.StartTLS()
	c.Send("CAPA")
	c.Script(`S: +OK`)
	caps = c.multi()
	if contains(caps, "STLS") || !contains(caps, "USER") || !contains(caps, "UIDL") || !contains(caps, "TOP") {
		t.Fatalf("CAPA after TLS: %q", caps)
	}
	c.Script(`
		C: STLS
		S: -ERR
		C: USER alice@example.test
		S: +OK
		C: PASS alice password
		S: +OK Maildrop has 0 messages
		C: QUIT
		S: +OK`)
	if slept := e.Slept(); len(slept) != 0 {
		t.Fatalf("refused cleartext logins counted: %v", slept)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestSTLSDropsInjectedCommands(t *testing.T) {
	e := newTestEnv(t, nil)
	c := e.dial(t, false)
	c.Send("STLS\r\nUSER alice@example.test")
	c.Script(`S: +OK Begin TLS`)
	if err := c.TryStartTLS(); err != nil {
		return // the injected bytes broke the handshake: nothing ran
	}
	c.Script(`
		C: PASS alice password
		S: -ERR USER first`)
}

func TestLoginFailuresLockoutInUseAndAudit(t *testing.T) {
	e := newTestEnv(t, func(_ *Config, l *auth.LimiterConfig) { l.AccountFailures = 3 })
	c := e.dial(t, true)
	c.Script(`
		C: USER nobody@example.test
		S: +OK
		C: PASS x
		S: -ERR [AUTH] Invalid user name or password
		C: USER alice@example.test
		S: +OK
		C: PASS wrong
		S: -ERR [AUTH] Invalid user name or password
		C: USER alice@example.test
		S: +OK
		C: PASS wrong again
		S: -ERR [AUTH]
		C: USER alice@example.test
		S: +OK
		C: PASS wrong thrice
		S: -ERR [AUTH]
		C: USER alice@example.test
		S: +OK
		C: PASS alice password
		S: -ERR [SYS/TEMP] Too many failed logins`)
	// bob with an app password; a second session gets [IN-USE].
	secret, err := e.DB.AddAppPassword(t.Context(), "bob@example.test", "phone")
	if err != nil {
		t.Fatal(err)
	}
	b1 := e.dial(t, true)
	b1.Script(`
		C: USER bob@example.test
		S: +OK
		C: PASS ` + secret + `
		S: +OK`)
	b2 := e.dial(t, true)
	b2.Script(`
		C: USER bob@example.test
		S: +OK
		C: PASS bob password
		S: -ERR [IN-USE]`)
	b1.Script(`
		C: QUIT
		S: +OK`)
	b1.ExpectClosed(nil) // wait for the close, which frees the maildrop
	b3 := e.dial(t, true)
	b3.Script(`
		C: USER bob@example.test
		S: +OK
		C: PASS bob password
		S: +OK`)
	data, _ := os.ReadFile(e.Audit.Path())
	for _, want := range []string{`"protocol":"pop3"`, `"detail":"locked out"`, `"user":"nobody@example.test"`} {
		if !strings.Contains(string(data), want) {
			t.Errorf("audit log lacks %s", want)
		}
	}
}

func TestTransactionRetrTopDeleRsetQuit(t *testing.T) {
	e := newTestEnv(t, nil)
	e.Deliver(t, alice, "", "Subject: one\r\n\r\nline 1\r\n.starts with a dot\r\nline 3\r\n")
	e.Deliver(t, alice, "", "Subject: two\n\nbare LF body\n") // bare LFs go out as CRLF
	e.Deliver(t, alice, "", "Subject: three\r\n\r\nx\r\n")
	c := e.login(t)
	c.Script(`
		C: STAT
		S: +OK 3 `)
	c.Send("LIST")
	c.Script(`S: +OK`)
	list := c.multi()
	if len(list) != 3 || list[1] != "2 30" {
		t.Fatalf("LIST %q", list)
	}
	c.Send("UIDL")
	c.Script(`S: +OK`)
	uidl := c.multi()
	if len(uidl) != 3 || !strings.HasSuffix(uidl[0], ".1") || !strings.HasPrefix(uidl[0], "1 ") {
		t.Fatalf("UIDL %q", uidl)
	}
	c.Send("RETR 1")
	c.Script(`S: +OK 52 octets`)
	got := c.multi()
	if strings.Join(got, "\n") != "Subject: one\n\nline 1\n.starts with a dot\nline 3" {
		t.Fatalf("RETR %q", got)
	}
	c.Send("RETR 2")
	c.Script(`S: +OK 30 octets`)
	if got := c.multi(); strings.Join(got, "|") != "Subject: two||bare LF body" {
		t.Fatalf("RETR 2 %q", got)
	}
	c.Send("TOP 1 1")
	c.Script(`S: +OK`)
	if got := c.multi(); strings.Join(got, "|") != "Subject: one||line 1" {
		t.Fatalf("TOP %q", got)
	}
	c.Script(`
		C: DELE 1
		S: +OK
		C: DELE 1
		S: -ERR No such message
		C: RETR 1
		S: -ERR
		C: STAT
		S: +OK 2 
		C: RSET
		S: +OK
		C: STAT
		S: +OK 3 
		C: DELE 2
		S: +OK
		C: LIST 2
		S: -ERR
		C: UIDL 3
		S: +OK 3 
		C: NOOP
		S: +OK`)
	// Deletions happen only at QUIT: nothing is gone yet.
	if l, _ := e.Store.List(t.Context(), alice, store.Inbox); len(l.Messages) != 3 {
		t.Fatalf("before QUIT: %d messages", len(l.Messages))
	}
	c.Script(`
		C: QUIT
		S: +OK Bye (1 messages deleted)`)
	l, _ := e.Store.List(t.Context(), alice, store.Inbox)
	if len(l.Messages) != 2 || l.Messages[0].UID != 1 || l.Messages[1].UID != 3 {
		t.Fatalf("after QUIT: %+v", l.Messages)
	}
	// UIDL is stable across sessions.
	c2 := e.login(t)
	c2.Send("UIDL")
	c2.Script(`S: +OK`)
	uidl2 := c2.multi()
	if len(uidl2) != 2 || uidl2[0] != uidl[0] || strings.TrimPrefix(uidl2[1], "2 ") != strings.TrimPrefix(uidl[2], "3 ") {
		t.Fatalf("UIDL then %q, now %q", uidl, uidl2)
	}
	// A dropped connection applies no deletion.
	c2.Script(`
		C: DELE 1
		S: +OK`)
	c2.Close()
	// The server notices the hangup on its own time; until then the
	// maildrop is rightly [IN-USE].
	e.waitIdle()
	c3 := e.login(t)
	c3.Script(`
		C: STAT
		S: +OK 2 `)
}

func TestBadInputGetsErrNotACrash(t *testing.T) {
	e := newTestEnv(t, func(c *Config, _ *auth.LimiterConfig) { c.MaxErrors = 5 })
	c := e.dial(t, false)
	c.Script(`
		C: HELO
		S: -ERR Unknown command
		C:
		S: -ERR`)
	c.Send(strings.Repeat("A", 10000))
	c.Script(`
		S: -ERR Line too long
		C: NOOP
		S: -ERR
		C: CAPA
		S: +OK`)
	c.multi()
	c.Script(`
		C: XYZZY
		S: -ERR Too many bad commands`)
	c.ExpectClosed(nil)
	// The server goes on.
	e.login(t).Script(`
		C: STAT
		S: +OK 0 0`)
}

// waitIdle waits until the server has no session left.
func (e *testEnv) waitIdle() {
	for {
		e.srv.mu.Lock()
		n := len(e.srv.open)
		e.srv.mu.Unlock()
		if n == 0 {
			return
		}
		runtime.Gosched()
	}
}

func TestConnectionLimitPerIP(t *testing.T) {
	e := newTestEnv(t, func(c *Config, _ *auth.LimiterConfig) { c.MaxConnsPerIP = 1 })
	e.dial(t, false)
	servertest.Dial(t, e.Plain, false, servertest.Line).Script(`S: -ERR [SYS/TEMP] Too many concurrent connections`)
}

// FuzzCommandLine feeds arbitrary lines to a live connection, before and
// after login: every line gets one +OK or -ERR (or multi-line) answer or
// closes the session, and the server keeps serving.
func FuzzCommandLine(f *testing.F) {
	for _, s := range []string{"USER a", "PASS b", "CAPA", "STLS", "TOP 1 -1", "RETR 99999999999999999999", "LIST 0", "UIDL x", "DELE", "\x00\xff", strings.Repeat("x", 300), "QUIT", "TOP 1 1000000"} {
		f.Add(s, false)
		f.Add(s, true)
	}
	e := newTestEnv(f, nil)
	e.Deliver(f, alice, "", "Subject: x\r\n\r\n.\r\n..\r\nbody\r\n")
	f.Fuzz(func(t *testing.T, line string, loggedIn bool) {
		e.waitIdle() // the previous iteration's sessions hold the maildrop
		var c *client
		if loggedIn {
			c = e.login(t)
		} else {
			c = e.dial(t, true)
		}
		line = strings.NewReplacer("\r", "", "\n", "").Replace(line)
		c.TrySend(line)
		c.TrySend("NOOP")
		for {
			l, err := c.TryNext()
			if err != nil {
				break // the session ended (QUIT, STLS garbage, too many errors)
			}
			if strings.HasPrefix(l, "+OK") && loggedIn || strings.HasPrefix(l, "-ERR") && !loggedIn {
				if strings.TrimSpace(l) == "+OK" || strings.HasPrefix(l, "-ERR Unknown command or not allowed") {
					break // the NOOP's answer
				}
			}
		}
		c.Close()
		// The server still serves.
		c2 := e.dial(t, true)
		c2.Script(`
			C: CAPA
			S: +OK`)
		c2.multi()
	})
}
