package pop3d

import (
	"testing"

	"github.com/mailvault/mailvault/mailserver/auth"
	"github.com/mailvault/mailvault/mailserver/internal/servertest"
	"github.com/mailvault/mailvault/mailserver/store"
)

// A PASS queued behind another for the one password-check slot, whose
// client hangs up, stops waiting and runs no hash.
func TestQueuedLoginOfGoneClientRunsNoHash(t *testing.T) {
	e := &testEnv{Env: servertest.NewEnv(t, store.Options{})}
	held := e.HoldChecks(t)
	e.srv = New(Config{Hostname: "mx.test", TLSConfig: e.ServerTLS, ConnsPerMinute: 1e6, MaxConnsPerIP: 1000},
		e.Store, e.Guard(auth.DefaultLimiterConfig()), e.Log)
	e.Ports = servertest.ServePorts(t, e.srv.Serve, e.srv.Shutdown)

	a := e.dial(t, true)
	a.Script(`
		C: USER alice@example.test
		S: +OK`)
	a.Send("PASS alice password")
	<-held.Entered
	b := e.dial(t, true)
	b.Script(`
		C: USER bob@example.test
		S: +OK`)
	b.Send("PASS bob password")
	b.Close()
	e.WaitLogged("login abandoned")
	held.Release()
	a.Expect("+OK Maildrop has")
	c := e.dial(t, true)
	c.Script(`
		C: USER bob@example.test
		S: +OK
		C: PASS bob password
		S: +OK Maildrop has`)
	if n := held.Checks(); n != 2 {
		t.Fatalf("%d password checks, want 2 (alice, then bob's second login)", n)
	}
}
