package imapd

import (
	"strings"
	"testing"

	"github.com/mailvault/mailvault/mailserver/auth"
	"github.com/mailvault/mailvault/mailserver/internal/servertest"
	"github.com/mailvault/mailvault/mailserver/store"
)

// A LOGIN queued behind another for the one password-check slot, whose
// client hangs up, stops waiting and runs no hash: only the logins whose
// clients stay are checked.
func TestQueuedLoginOfGoneClientRunsNoHash(t *testing.T) {
	for _, implicitTLS := range []bool{true, false} {
		e := &testEnv{Env: servertest.NewEnv(t, store.Options{})}
		held := e.HoldChecks(t)
		cfg := Config{TLSConfig: e.ServerTLS, MaxMessageBytes: 1 << 20, ConnsPerMinute: 1e6, MaxConnsPerIP: 1000, SpoolDir: e.Dir}
		e.srv = New(cfg, e.Store, e.Guard(auth.DefaultLimiterConfig()), e.Log)
		e.Ports = servertest.ServePorts(t, e.srv.Serve, e.srv.Shutdown)
		dial := func() *client {
			c := e.dial(t, implicitTLS)
			if !implicitTLS {
				c.startTLS()
			}
			return c
		}

		a := dial()
		a.Send(`a1 LOGIN alice@example.test "alice password"`)
		<-held.Entered
		b := dial()
		b.Send(`b1 LOGIN bob@example.test "bob password"`)
		b.Close()
		e.WaitLogged("login abandoned")
		held.Release()
		if out := a.ReadUntil(servertest.HasPrefix("a1 ")); !strings.HasPrefix(out[len(out)-1], "a1 OK") {
			t.Fatalf("held login: %q", out)
		}
		e.login(t, "bob")
		if n := held.Checks(); n != 2 {
			t.Fatalf("implicit TLS %v: %d password checks, want 2 (alice, then bob's second login)", implicitTLS, n)
		}
	}
}
