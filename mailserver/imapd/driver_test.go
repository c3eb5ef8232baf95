package imapd

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailvault/mailvault/mailserver/audit"
	"github.com/mailvault/mailvault/mailserver/auth"
	"github.com/mailvault/mailvault/mailserver/store"
	"github.com/mailvault/mailvault/mailserver/tlsutil"
)

// testEnv is a server on 127.0.0.1:0, cleartext (STARTTLS) and implicit
// TLS, over real sockets, with users alice and bob of example.test.
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
	st, err := store.Open(ctx, filepath.Join(dir, "mail"), store.Options{Hostname: "mx.test", MaxMessageBytes: 1 << 20})
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
	cfg := Config{TLSConfig: certs.ServerConfig(), MaxMessageBytes: 1 << 20, ConnsPerMinute: 1e6, MaxConnsPerIP: 1000, SpoolDir: dir}
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
		cancel() // do not wait for lingering sessions
		env.srv.Shutdown(ctx)
	})
	return env
}

func (e *testEnv) deliver(t testing.TB, a store.Account, folder, msg string) {
	t.Helper()
	if _, err := e.store.Deliver(t.Context(), a, folder, strings.NewReader(msg)); err != nil {
		t.Fatal(err)
	}
}

// client is a line-protocol test driver: tests read like IMAP transcripts.
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
	if g := c.line(); !strings.HasPrefix(g, "* OK [CAPABILITY IMAP4rev1") {
		t.Fatalf("greeting %q", g)
	}
	return c
}

// login dials implicit TLS and logs alice in.
func (e *testEnv) login(t testing.TB, user string) *client {
	t.Helper()
	c := e.dial(t, true)
	c.ok("l1 LOGIN " + user + "@example.test \"" + user + " password\"")
	return c
}

// line reads one response line; a line ending in a literal {n} continues
// with the literal and the rest of the line, all returned as one string.
func (c *client) line() string {
	c.t.Helper()
	var out strings.Builder
	for {
		l, err := c.r.ReadString('\n')
		if err != nil {
			c.t.Fatalf("read after %q: %v", out.String(), err)
		}
		l = strings.TrimRight(l, "\r\n")
		out.WriteString(l)
		i := strings.LastIndexByte(l, '{')
		if i < 0 || !strings.HasSuffix(l, "}") {
			return out.String()
		}
		n, err := strconv.Atoi(l[i+1 : len(l)-1])
		if err != nil {
			return out.String()
		}
		b := make([]byte, n)
		if _, err := io.ReadFull(c.r, b); err != nil {
			c.t.Fatal(err)
		}
		out.WriteString("\r\n")
		out.Write(b)
	}
}

func (c *client) send(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.conn, s+"\r\n"); err != nil {
		c.t.Fatalf("send %q: %v", s, err)
	}
}

// cmd sends a tagged command and returns every response line up to and
// including the tagged one.
func (c *client) cmd(line string) []string {
	c.t.Helper()
	tag, _, _ := strings.Cut(line, " ")
	c.send(line)
	var out []string
	for {
		l := c.line()
		out = append(out, l)
		if strings.HasPrefix(l, tag+" ") {
			return out
		}
	}
}

// ok runs a command that must succeed and returns its untagged lines.
func (c *client) ok(line string) []string {
	c.t.Helper()
	out := c.cmd(line)
	tag, _, _ := strings.Cut(line, " ")
	if !strings.HasPrefix(out[len(out)-1], tag+" OK") {
		c.t.Fatalf("%s: %q", line, out)
	}
	return out
}

// script runs a transcript: "C: " lines are sent, "S: " lines are the
// expected start of the next response line.
func (c *client) script(transcript string) {
	c.t.Helper()
	for _, l := range strings.Split(strings.TrimSpace(transcript), "\n") {
		l = strings.TrimSpace(l)
		switch {
		case strings.HasPrefix(l, "C: "):
			c.send(l[3:])
		case strings.HasPrefix(l, "S: "):
			if got := c.line(); !strings.HasPrefix(got, l[3:]) {
				c.t.Fatalf("expected %q, got %q", l[3:], got)
			}
		case l == "":
		default:
			c.t.Fatalf("bad transcript line %q", l)
		}
	}
}

func (c *client) startTLS() {
	c.t.Helper()
	c.script(`
		C: s1 STARTTLS
		S: s1 OK`)
	tc := tls.Client(c.conn, &tls.Config{InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		c.t.Fatal(err)
	}
	c.conn, c.r = tc, bufio.NewReader(tc)
}

// has reports whether some line contains every one of subs.
func has(lines []string, subs ...string) bool {
	for _, l := range lines {
		all := true
		for _, s := range subs {
			all = all && strings.Contains(l, s)
		}
		if all {
			return true
		}
	}
	return false
}

func mustHave(t testing.TB, lines []string, subs ...string) {
	t.Helper()
	if !has(lines, subs...) {
		t.Fatalf("no line with %q in:\n%s", subs, strings.Join(lines, "\n"))
	}
}

func msg(subject, body string) string {
	return fmt.Sprintf("From: Carol <carol@remote.test>\r\nTo: alice@example.test\r\nSubject: %s\r\nDate: Mon, 02 Jan 2006 15:04:05 +0000\r\nMessage-ID: <%s@remote.test>\r\n\r\n%s\r\n", subject, strings.ReplaceAll(subject, " ", "."), body)
}
