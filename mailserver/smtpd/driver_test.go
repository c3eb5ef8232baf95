package smtpd

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailvault/mailvault/mailserver/audit"
	"github.com/mailvault/mailvault/mailserver/auth"
	"github.com/mailvault/mailvault/mailserver/store"
	"github.com/mailvault/mailvault/mailserver/tlsutil"
)

// testEnv is a server on 127.0.0.1:0 for each mode, over real sockets,
// with one domain (example.test), users alice and bob, and alias
// sales -> alice.
type testEnv struct {
	srv      *Server
	store    *store.Store
	db       *auth.DB
	res      *StaticResolver
	auditLog string
	slept    []time.Duration
	addr     map[Mode]string
}

var cheapHash = auth.Options{Params: auth.Params{Time: 1, Memory: 64, Threads: 1, KeyLen: 32}}

func newTestEnv(t testing.TB, mutate func(*Config, *auth.LimiterConfig)) *testEnv {
	t.Helper()
	dir := t.TempDir()
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(dir, "mail"), store.Options{Hostname: "mx.test"})
	if err != nil {
		t.Fatal(err)
	}
	db, err := auth.Open(filepath.Join(dir, "accounts.json"), cheapHash)
	if err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(db.AddDomain(ctx, "example.test"))
	must(db.AddUser(ctx, "alice@example.test", "alice password", auth.RoleUser))
	must(db.AddUser(ctx, "bob@example.test", "bob password", auth.RoleUser))
	must(db.AddAlias(ctx, "sales@example.test", "alice@example.test"))

	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if _, err := tlsutil.EnsureSelfSigned(certFile, keyFile, []string{"mx.test", "127.0.0.1"}, time.Now()); err != nil {
		t.Fatal(err)
	}
	certs, err := tlsutil.Load(certFile, keyFile)
	must(err)

	al, err := audit.Open(filepath.Join(dir, "audit.jsonl"))
	must(err)
	t.Cleanup(func() { al.Close() })

	env := &testEnv{store: st, db: db, res: &StaticResolver{}, auditLog: al.Path(), addr: map[Mode]string{}}
	cfg := Config{Hostname: "mx.test", TLSConfig: certs.ServerConfig(), Resolver: env.res, SpoolDir: dir}
	lcfg := auth.DefaultLimiterConfig()
	if mutate != nil {
		mutate(&cfg, &lcfg)
	}
	guard := &auth.Guard{DB: db, Limiter: auth.NewLimiter(lcfg, nil), Audit: al,
		Sleep: func(_ context.Context, d time.Duration) error { env.slept = append(env.slept, d); return nil }}
	env.srv = New(cfg, st, db, guard, nil)
	for _, m := range []Mode{ModeMX, ModeSubmission, ModeSubmissions} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		must(err)
		env.addr[m] = ln.Addr().String()
		go env.srv.Serve(ln, m)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // do not wait for lingering sessions
		env.srv.Shutdown(ctx)
	})
	return env
}

// client is a line-protocol test driver: tests read like SMTP transcripts.
type client struct {
	t    testing.TB
	conn net.Conn
	r    *bufio.Reader
}

func (e *testEnv) dial(t testing.TB, m Mode) *client {
	t.Helper()
	var conn net.Conn
	var err error
	if m == ModeSubmissions {
		conn, err = tls.Dial("tcp", e.addr[m], &tls.Config{InsecureSkipVerify: true})
	} else {
		conn, err = net.Dial("tcp", e.addr[m])
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &client{t: t, conn: conn, r: bufio.NewReader(conn)}
}

// reply reads one (possibly multi-line) reply and returns it with lines
// joined by "\n".
func (c *client) reply() string {
	c.t.Helper()
	var lines []string
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			c.t.Fatalf("reading reply after %q: %v", lines, err)
		}
		line = strings.TrimRight(line, "\r\n")
		lines = append(lines, line)
		if len(line) < 4 || line[3] != '-' {
			return strings.Join(lines, "\n")
		}
	}
}

func (c *client) send(line string) {
	c.t.Helper()
	if _, err := c.conn.Write([]byte(line + "\r\n")); err != nil {
		c.t.Fatalf("send %q: %v", line, err)
	}
}

// script runs a transcript: "C: " lines are sent, "S: " lines are the
// expected start of the next reply (e.g. "S: 550 5.7.1"). It returns the
// last reply read.
func (c *client) script(transcript string) string {
	c.t.Helper()
	var last string
	for _, line := range strings.Split(strings.TrimSpace(transcript), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "C:": // an empty line, e.g. ending a header
			c.send("")
		case strings.HasPrefix(line, "C: "):
			c.send(line[3:])
		case line == "S:" || strings.HasPrefix(line, "S: "):
			want := strings.TrimPrefix(strings.TrimPrefix(line, "S:"), " ")
			last = c.reply()
			if !strings.HasPrefix(last, want) {
				c.t.Fatalf("expected %q, got %q", want, last)
			}
		case line == "":
		default:
			c.t.Fatalf("bad transcript line %q", line)
		}
	}
	return last
}

func (c *client) startTLS() {
	c.t.Helper()
	c.script(`
		C: STARTTLS
		S: 220 2.0.0`)
	tc := tls.Client(c.conn, &tls.Config{InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		c.t.Fatal(err)
	}
	c.conn, c.r = tc, bufio.NewReader(tc)
}

func plain(user, pass string) string {
	return base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pass))
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
