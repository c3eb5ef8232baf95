package pop3d

import (
	"strings"
	"testing"

	"github.com/mailvault/mailvault/mailserver/auth"
	"github.com/mailvault/mailvault/mailserver/internal/servertest"
	"github.com/mailvault/mailvault/mailserver/store"
)

// testEnv is a server on 127.0.0.1:0, cleartext (STLS) and implicit TLS,
// over real sockets, on servertest's fixture (users alice and bob of
// example.test).
type testEnv struct {
	*servertest.Env
	srv *Server
	servertest.Ports
}

var alice = store.Account{Domain: "example.test", User: "alice"}

func newTestEnv(t testing.TB, mutate func(*Config, *auth.LimiterConfig)) *testEnv {
	t.Helper()
	env := &testEnv{Env: servertest.NewEnv(t, store.Options{})}
	cfg, lcfg := servertest.Configure(Config{Hostname: "mx.test", TLSConfig: env.ServerTLS, ConnsPerMinute: 1e6, MaxConnsPerIP: 1000}, mutate)
	env.srv = New(cfg, env.Store, env.Guard(lcfg), env.Log)
	env.Ports = servertest.ServePorts(t, env.srv.Serve, env.srv.Shutdown)
	return env
}

// client adds POP3's multi-line responses to servertest.Conn.
type client struct{ *servertest.Conn }

// dial connects and reads the greeting.
func (e *testEnv) dial(t testing.TB, implicitTLS bool) *client {
	t.Helper()
	c := servertest.Dial(t, e.Addr(implicitTLS), implicitTLS, servertest.Line)
	c.Expect("+OK mx.test POP3 server ready")
	return &client{c}
}

// login dials implicit TLS and logs alice in.
func (e *testEnv) login(t testing.TB) *client {
	t.Helper()
	c := e.dial(t, true)
	c.Script(`
		C: USER alice@example.test
		S: +OK
		C: PASS alice password
		S: +OK Maildrop has`)
	return c
}

// multi reads a multi-line response body up to "." and undoes the dot
// stuffing (RFC 1939 section 3).
func (c *client) multi() []string {
	c.T().Helper()
	out := c.ReadUntil(func(l string) bool { return l == "." })
	out = out[:len(out)-1]
	for i, l := range out {
		out[i] = strings.TrimPrefix(l, ".")
	}
	return out
}
