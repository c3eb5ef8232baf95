package imapd

import (
	"fmt"
	"strings"
	"testing"

	"github.com/mailvault/mailvault/mailserver/auth"
	"github.com/mailvault/mailvault/mailserver/internal/servertest"
	"github.com/mailvault/mailvault/mailserver/store"
)

// testEnv is a server on 127.0.0.1:0, cleartext (STARTTLS) and implicit
// TLS, over real sockets, on servertest's fixture (users alice and bob of
// example.test).
type testEnv struct {
	*servertest.Env
	srv *Server
	servertest.Ports
}

var alice = store.Account{Domain: "example.test", User: "alice"}

func newTestEnv(t testing.TB, mutate func(*Config, *auth.LimiterConfig)) *testEnv {
	t.Helper()
	env := &testEnv{Env: servertest.NewEnv(t, store.Options{MaxMessageBytes: 1 << 20})}
	cfg, lcfg := servertest.Configure(Config{TLSConfig: env.ServerTLS, MaxMessageBytes: 1 << 20, ConnsPerMinute: 1e6, MaxConnsPerIP: 1000, SpoolDir: env.Dir}, mutate)
	env.srv = New(cfg, env.Store, env.Guard(lcfg), env.Log)
	env.Ports = servertest.ServePorts(t, env.srv.Serve, env.srv.Shutdown)
	return env
}

// client adds IMAP's tagged commands to servertest.Conn.
type client struct{ *servertest.Conn }

// dial connects and reads the greeting.
func (e *testEnv) dial(t testing.TB, implicitTLS bool) *client {
	t.Helper()
	c := servertest.Dial(t, e.Addr(implicitTLS), implicitTLS, servertest.IMAPLine)
	c.Expect("* OK [CAPABILITY IMAP4rev1")
	return &client{c}
}

// login dials implicit TLS and logs the user in.
func (e *testEnv) login(t testing.TB, user string) *client {
	t.Helper()
	c := e.dial(t, true)
	c.ok("l1 LOGIN " + user + "@example.test \"" + user + " password\"")
	return c
}

// cmd sends a tagged command and returns every response line up to and
// including the tagged one.
func (c *client) cmd(line string) []string {
	c.T().Helper()
	tag, _, _ := strings.Cut(line, " ")
	c.Send(line)
	return c.ReadUntil(servertest.HasPrefix(tag + " "))
}

// ok runs a command that must succeed and returns its untagged lines.
func (c *client) ok(line string) []string {
	c.T().Helper()
	out := c.cmd(line)
	tag, _, _ := strings.Cut(line, " ")
	if !strings.HasPrefix(out[len(out)-1], tag+" OK") {
		c.Fatalf("%s: not OK", line)
	}
	return out
}

func (c *client) startTLS() {
	c.T().Helper()
	c.Script(`
		C: s1 STARTTLS
		S: s1 OK`)
	c.StartTLS()
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
