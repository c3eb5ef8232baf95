package pop3d

import (
	"strings"
	"testing"

	"github.com/mailvault/mailvault/mailserver/internal/servertest"
)

// A refused TLS handshake, on the implicit-TLS port or after STLS, is
// answered with TLS alerts at most, never a cleartext response; each is
// logged and the server goes on serving.
func TestRefusedHandshakeGetsNoCleartext(t *testing.T) {
	e := newTestEnv(t, nil)
	t.Run("STLS", func(t *testing.T) {
		servertest.RefusedHandshakes(t, e.Plain, servertest.Line, func(c *servertest.Conn) {
			c.Script(`
				S: +OK
				C: STLS
				S: +OK Begin TLS`)
		}, "QUIT")
	})
	t.Run("995", func(t *testing.T) {
		servertest.RefusedHandshakes(t, e.TLS, servertest.Line, nil, "QUIT")
	})
	if n, want := strings.Count(e.Logs(), "handshake failed"), 2*len(servertest.BadHandshakes()); n != want {
		t.Fatalf("logged %d handshake failures, want %d:\n%s", n, want, e.Logs())
	}
	e.login(t).Script(`
		C: STAT
		S: +OK 0 0`)
}
