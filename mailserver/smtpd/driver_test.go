package smtpd

import (
	"encoding/base64"
	"net"
	"testing"

	"github.com/mailvault/mailvault/mailserver/auth"
	"github.com/mailvault/mailvault/mailserver/internal/servertest"
	"github.com/mailvault/mailvault/mailserver/store"
)

// testEnv is a server on 127.0.0.1:0 for each mode, over real sockets, on
// servertest's fixture (domain example.test, users alice and bob) plus the
// alias sales -> alice.
type testEnv struct {
	*servertest.Env
	srv  *Server
	res  *StaticResolver
	addr map[Mode]string
}

func newTestEnv(t testing.TB, mutate func(*Config, *auth.LimiterConfig)) *testEnv {
	t.Helper()
	env := &testEnv{Env: servertest.NewEnv(t, store.Options{}), res: &StaticResolver{}, addr: map[Mode]string{}}
	if err := env.DB.AddAlias(t.Context(), "sales@example.test", "alice@example.test"); err != nil {
		t.Fatal(err)
	}
	cfg, lcfg := servertest.Configure(Config{Hostname: "mx.test", TLSConfig: env.ServerTLS, Resolver: env.res, SpoolDir: env.Dir}, mutate)
	env.srv = New(cfg, env.Store, env.DB, env.Guard(lcfg), env.Log)
	for _, m := range []Mode{ModeMX, ModeSubmission, ModeSubmissions} {
		env.addr[m] = servertest.Serve(t, func(ln net.Listener) error { return env.srv.Serve(ln, m) })
	}
	servertest.ShutdownOnCleanup(t, env.srv.Shutdown)
	return env
}

// dial connects to a mode's listener (with TLS for ModeSubmissions); the
// greeting is left for the test's transcript.
func (e *testEnv) dial(t testing.TB, m Mode) *client {
	t.Helper()
	return &client{servertest.Dial(t, e.addr[m], m == ModeSubmissions, servertest.SMTPReply)}
}

// client adds SMTP's STARTTLS exchange to servertest.Conn.
type client struct{ *servertest.Conn }

func (c *client) startTLS() {
	c.T().Helper()
	c.Script(`
		C: STARTTLS
		S: 220 2.0.0`)
	c.StartTLS()
}

func plain(user, pass string) string {
	return base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pass))
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
