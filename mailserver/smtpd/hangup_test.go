package smtpd

import (
	"net"
	"testing"

	"github.com/mailvault/mailvault/mailserver/auth"
	"github.com/mailvault/mailvault/mailserver/internal/servertest"
	"github.com/mailvault/mailvault/mailserver/store"
)

// An AUTH queued behind another for the one password-check slot, whose
// client hangs up, stops waiting and runs no hash.
func TestQueuedAuthOfGoneClientRunsNoHash(t *testing.T) {
	for _, m := range []Mode{ModeSubmissions, ModeSubmission} {
		queuedAuthOfGoneClient(t, m)
	}
}

func queuedAuthOfGoneClient(t *testing.T, m Mode) {
	e := &testEnv{Env: servertest.NewEnv(t, store.Options{}), res: &StaticResolver{}, addr: map[Mode]string{}}
	held := e.HoldChecks(t)
	e.srv = New(Config{Hostname: "mx.test", TLSConfig: e.ServerTLS, Resolver: e.res, SpoolDir: e.Dir},
		e.Store, e.DB, e.Guard(auth.DefaultLimiterConfig()), e.Log)
	e.addr[m] = servertest.Serve(t, func(ln net.Listener) error { return e.srv.Serve(ln, m) })
	servertest.ShutdownOnCleanup(t, e.srv.Shutdown)
	ehlo := func() *client {
		c := e.dial(t, m)
		c.Script(`
			S: 220
			C: EHLO client.test
			S: 250`)
		if m == ModeSubmission {
			c.startTLS()
			c.Script(`
				C: EHLO client.test
				S: 250`)
		}
		return c
	}

	a := ehlo()
	a.Send("AUTH PLAIN " + plain("alice@example.test", "alice password"))
	<-held.Entered
	b := ehlo()
	b.Send("AUTH PLAIN " + plain("bob@example.test", "bob password"))
	b.Close()
	e.WaitLogged("login abandoned")
	held.Release()
	a.Expect("235")
	ehlo().Script(`
		C: AUTH PLAIN ` + plain("bob@example.test", "bob password") + `
		S: 235`)
	if n := held.Checks(); n != 2 {
		t.Fatalf("%s: %d password checks, want 2 (alice, then bob's second AUTH)", m, n)
	}
}
