package pop3d

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailvault/mailvault/mailserver/audit"
	"github.com/mailvault/mailvault/mailserver/auth"
	"github.com/mailvault/mailvault/mailserver/store"
	"github.com/mailvault/mailvault/mailserver/tlsutil"
)

// testEnv is a server on 127.0.0.1:0, cleartext (STLS) and implicit TLS,
// over real sockets, with users alice and bob of example.test.
type testEnv struct {
	srv      *Server
	store    *store.Store
	db       *auth.DB
	auditLog string
	plain    string
	tls      string

	mu    sync.Mutex
	slept []time.Duration
}

var cheapHash = auth.Options{Params: auth.Params{Time: 1, Memory: 64, Threads: 1, KeyLen: 32}}

var alice = store.Account{Domain: "example.test", User: "alice"}

func newTestEnv(t testing.TB, mutate func(*Config, *auth.LimiterConfig)) *testEnv {
	t.Helper()
	dir := t.TempDir()
	ctx := context.Background()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	st, err := store.Open(ctx, filepath.Join(dir, "mail"), store.Options{Hostname: "mx.test"})
	must(err)
	db, err := auth.Open(filepath.Join(dir, "accounts.json"), cheapHash)
	must(err)
	must(db.AddDomain(ctx, "example.test"))
	must(db.AddUser(ctx, "alice@example.test", "alice password", auth.RoleUser))
	must(db.AddUser(ctx, "bob@example.test", "bob password", auth.RoleUser))
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	_, err = tlsutil.EnsureSelfSigned(certFile, keyFile, []string{"mx.test", "127.0.0.1"}, time.Now())
	must(err)
	certs, err := tlsutil.Load(certFile, keyFile)
	must(err)
	al, err := audit.Open(filepath.Join(dir, "audit.jsonl"))
	must(err)
	t.Cleanup(func() { al.Close() })
	env := &testEnv{store: st, db: db, auditLog: al.Path()}
	cfg := Config{Hostname: "mx.test", TLSConfig: certs.ServerConfig(), ConnsPerMinute: 1e6, MaxConnsPerIP: 1000}
	lcfg := auth.DefaultLimiterConfig()
	if mutate != nil {
		mutate(&cfg, &lcfg)
	}
	guard := &auth.Guard{DB: db, Limiter: auth.NewLimiter(lcfg, nil), Audit: al,
		Sleep: func(_ context.Context, d time.Duration) error {
			env.mu.Lock()
			env.slept = append(env.slept, d)
			env.mu.Unlock()
			return nil
		}}
	env.srv = New(cfg, st, guard, nil)
	for _, implicit := range []bool{false, true} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		must(err)
		if implicit {
			env.tls = ln.Addr().String()
		} else {
			env.plain = ln.Addr().String()
		}
		go env.srv.Serve(ln, implicit)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		env.srv.Shutdown(ctx)
	})
	return env
}

func (e *testEnv) deliver(t testing.TB, msg string) {
	t.Helper()
	if _, err := e.store.Deliver(t.Context(), alice, "", strings.NewReader(msg)); err != nil {
		t.Fatal(err)
	}
}

// client is a line-protocol test driver: tests read like POP3 transcripts.
type client struct {
	t    testing.TB
	conn net.Conn
	r    *bufio.Reader
}

func (e *testEnv) dial(t testing.TB, implicitTLS bool) *client {
	t.Helper()
	var conn net.Conn
	var err error
	if implicitTLS {
		conn, err = tls.Dial("tcp", e.tls, &tls.Config{InsecureSkipVerify: true})
	} else {
		conn, err = net.Dial("tcp", e.plain)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := &client{t: t, conn: conn, r: bufio.NewReader(conn)}
	c.script(`S: +OK mx.test POP3 server ready`)
	return c
}

func (c *client) line() string {
	c.t.Helper()
	l, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read: %v (got %q)", err, l)
	}
	if !strings.HasSuffix(l, "\r\n") {
		c.t.Fatalf("line without CRLF: %q", l)
	}
	return strings.TrimSuffix(l, "\r\n")
}

func (c *client) send(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.conn, s+"\r\n"); err != nil {
		c.t.Fatal(err)
	}
}

// script runs a transcript: "C: " lines are sent, "S: " lines are the
// expected start of the next line ("S: ." is exactly the terminator).
func (c *client) script(transcript string) {
	c.t.Helper()
	for _, l := range strings.Split(strings.TrimSpace(transcript), "\n") {
		l = strings.TrimSpace(l)
		switch {
		case strings.HasPrefix(l, "C: "):
			c.send(l[3:])
		case l == "C:":
			c.send("")
		case strings.HasPrefix(l, "S: "):
			want := l[3:]
			got := c.line()
			if want == "." && got != "." || !strings.HasPrefix(got, want) {
				c.t.Fatalf("expected %q, got %q", want, got)
			}
		case l == "":
		default:
			c.t.Fatalf("bad transcript line %q", l)
		}
	}
}

// multi reads a multi-line response body up to "." and undoes stuffing.
func (c *client) multi() []string {
	c.t.Helper()
	var out []string
	for {
		l := c.line()
		if l == "." {
			return out
		}
		out = append(out, strings.TrimPrefix(l, "."))
	}
}

func (e *testEnv) login(t testing.TB) *client {
	c := e.dial(t, true)
	c.script(`
		C: USER alice@example.test
		S: +OK
		C: PASS alice password
		S: +OK Maildrop has`)
	return c
}

func TestUserPassRefusedBeforeSTLS(t *testing.T) {
	e := newTestEnv(t, nil)
	c := e.dial(t, false)
	c.send("CAPA")
	c.script(`S: +OK`)
	caps := c.multi()
	if !contains(caps, "STLS") || contains(caps, "USER") {
		t.Fatalf("CAPA before TLS: %q", caps)
	}
	c.script(`
		C: USER alice@example.test
		S: -ERR [SYS/PERM] USER/PASS need TLS first
		C: PASS alice password
		S: -ERR [SYS/PERM]
		C: STAT
		S: -ERR
		C: STLS
		S: +OK Begin TLS`)
	tc := tls.Client(c.conn, &tls.Config{InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	c.conn, c.r = tc, bufio.NewReader(tc)
	c.send("CAPA")
	c.script(`S: +OK`)
	caps = c.multi()
	if contains(caps, "STLS") || !contains(caps, "USER") || !contains(caps, "UIDL") || !contains(caps, "TOP") {
		t.Fatalf("CAPA after TLS: %q", caps)
	}
	c.script(`
		C: STLS
		S: -ERR
		C: USER alice@example.test
		S: +OK
		C: PASS alice password
		S: +OK Maildrop has 0 messages
		C: QUIT
		S: +OK`)
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.slept) != 0 {
		t.Fatalf("refused cleartext logins counted: %v", e.slept)
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
	c.send("STLS\r\nUSER alice@example.test")
	c.script(`S: +OK Begin TLS`)
	tc := tls.Client(c.conn, &tls.Config{InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		return // the injected bytes broke the handshake: nothing ran
	}
	c.conn, c.r = tc, bufio.NewReader(tc)
	c.script(`
		C: PASS alice password
		S: -ERR USER first`)
}

func TestLoginFailuresLockoutInUseAndAudit(t *testing.T) {
	e := newTestEnv(t, func(_ *Config, l *auth.LimiterConfig) { l.AccountFailures = 3 })
	c := e.dial(t, true)
	c.script(`
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
	secret, err := e.db.AddAppPassword(t.Context(), "bob@example.test", "phone")
	if err != nil {
		t.Fatal(err)
	}
	b1 := e.dial(t, true)
	b1.script(`
		C: USER bob@example.test
		S: +OK
		C: PASS ` + secret + `
		S: +OK`)
	b2 := e.dial(t, true)
	b2.script(`
		C: USER bob@example.test
		S: +OK
		C: PASS bob password
		S: -ERR [IN-USE]`)
	b1.script(`
		C: QUIT
		S: +OK`)
	b1.r.ReadString('\n') // wait for the close, which frees the maildrop
	b3 := e.dial(t, true)
	b3.script(`
		C: USER bob@example.test
		S: +OK
		C: PASS bob password
		S: +OK`)
	data, _ := os.ReadFile(e.auditLog)
	for _, want := range []string{`"protocol":"pop3"`, `"detail":"locked out"`, `"user":"nobody@example.test"`} {
		if !strings.Contains(string(data), want) {
			t.Errorf("audit log lacks %s", want)
		}
	}
}

func TestTransactionRetrTopDeleRsetQuit(t *testing.T) {
	e := newTestEnv(t, nil)
	e.deliver(t, "Subject: one\r\n\r\nline 1\r\n.starts with a dot\r\nline 3\r\n")
	e.deliver(t, "Subject: two\n\nbare LF body\n") // bare LFs go out as CRLF
	e.deliver(t, "Subject: three\r\n\r\nx\r\n")
	c := e.login(t)
	c.script(`
		C: STAT
		S: +OK 3 `)
	c.send("LIST")
	c.script(`S: +OK`)
	list := c.multi()
	if len(list) != 3 || list[1] != "2 30" {
		t.Fatalf("LIST %q", list)
	}
	c.send("UIDL")
	c.script(`S: +OK`)
	uidl := c.multi()
	if len(uidl) != 3 || !strings.HasSuffix(uidl[0], ".1") || !strings.HasPrefix(uidl[0], "1 ") {
		t.Fatalf("UIDL %q", uidl)
	}
	c.send("RETR 1")
	c.script(`S: +OK 52 octets`)
	got := c.multi()
	if strings.Join(got, "\n") != "Subject: one\n\nline 1\n.starts with a dot\nline 3" {
		t.Fatalf("RETR %q", got)
	}
	c.send("RETR 2")
	c.script(`S: +OK 30 octets`)
	if got := c.multi(); strings.Join(got, "|") != "Subject: two||bare LF body" {
		t.Fatalf("RETR 2 %q", got)
	}
	c.send("TOP 1 1")
	c.script(`S: +OK`)
	if got := c.multi(); strings.Join(got, "|") != "Subject: one||line 1" {
		t.Fatalf("TOP %q", got)
	}
	c.script(`
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
	if l, _ := e.store.List(t.Context(), alice, store.Inbox); len(l.Messages) != 3 {
		t.Fatalf("before QUIT: %d messages", len(l.Messages))
	}
	c.script(`
		C: QUIT
		S: +OK Bye (1 messages deleted)`)
	l, _ := e.store.List(t.Context(), alice, store.Inbox)
	if len(l.Messages) != 2 || l.Messages[0].UID != 1 || l.Messages[1].UID != 3 {
		t.Fatalf("after QUIT: %+v", l.Messages)
	}
	// UIDL is stable across sessions.
	c2 := e.login(t)
	c2.send("UIDL")
	c2.script(`S: +OK`)
	uidl2 := c2.multi()
	if len(uidl2) != 2 || uidl2[0] != uidl[0] || strings.TrimPrefix(uidl2[1], "2 ") != strings.TrimPrefix(uidl[2], "3 ") {
		t.Fatalf("UIDL then %q, now %q", uidl, uidl2)
	}
	// A dropped connection applies no deletion.
	c2.script(`
		C: DELE 1
		S: +OK`)
	c2.conn.Close()
	c3 := e.login(t)
	c3.script(`
		C: STAT
		S: +OK 2 `)
}

func TestBadInputGetsErrNotACrash(t *testing.T) {
	e := newTestEnv(t, func(c *Config, _ *auth.LimiterConfig) { c.MaxErrors = 5 })
	c := e.dial(t, false)
	c.script(`
		C: HELO
		S: -ERR Unknown command
		C:
		S: -ERR`)
	c.send(strings.Repeat("A", 10000))
	c.script(`
		S: -ERR Line too long
		C: NOOP
		S: -ERR
		C: CAPA
		S: +OK`)
	c.multi()
	c.script(`
		C: XYZZY
		S: -ERR Too many bad commands`)
	if _, err := c.r.ReadString('\n'); err == nil {
		t.Fatal("still open after too many errors")
	}
	// The server goes on.
	e.login(t).script(`
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
	conn, err := net.Dial("tcp", e.plain)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	l, _ := bufio.NewReader(conn).ReadString('\n')
	if !strings.HasPrefix(l, "-ERR [SYS/TEMP] Too many concurrent connections") {
		t.Fatalf("got %q", l)
	}
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
	e.deliver(f, "Subject: x\r\n\r\n.\r\n..\r\nbody\r\n")
	f.Fuzz(func(t *testing.T, line string, loggedIn bool) {
		e.waitIdle() // the previous iteration's sessions hold the maildrop
		var c *client
		if loggedIn {
			c = e.login(t)
		} else {
			c = e.dial(t, true)
		}
		line = strings.NewReplacer("\r", "", "\n", "").Replace(line)
		c.send(line)
		c.send("NOOP")
		c.conn.SetReadDeadline(time.Time{})
		for {
			l, err := c.r.ReadString('\n')
			if err != nil {
				break // the session ended (QUIT, STLS garbage, too many errors)
			}
			if strings.HasPrefix(l, "+OK") && loggedIn || strings.HasPrefix(l, "-ERR") && !loggedIn {
				if strings.TrimSpace(l) == "+OK" || strings.HasPrefix(l, "-ERR Unknown command or not allowed") {
					break // the NOOP's answer
				}
			}
		}
		c.conn.Close()
		// The server still serves.
		c2 := e.dial(t, true)
		c2.script(`
			C: CAPA
			S: +OK`)
		c2.multi()
	})
}
