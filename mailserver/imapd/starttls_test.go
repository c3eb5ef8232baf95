package imapd

import (
	"strings"
	"testing"

	"github.com/mailvault/mailvault/mailserver/internal/servertest"
)

// A refused TLS handshake, on the implicit-TLS port or after STARTTLS, is
// answered with TLS alerts at most, never a cleartext response; the
// server goes on serving.
func TestRefusedHandshakeGetsNoCleartext(t *testing.T) {
	e := newTestEnv(t, nil)
	t.Run("STARTTLS", func(t *testing.T) {
		servertest.RefusedHandshakes(t, e.Plain, servertest.IMAPLine, func(c *servertest.Conn) {
			c.Script(`
				S: * OK
				C: s1 STARTTLS
				S: s1 OK`)
		}, "a1 LOGOUT")
	})
	t.Run("993", func(t *testing.T) {
		servertest.RefusedHandshakes(t, e.TLS, servertest.IMAPLine, nil, "a1 LOGOUT")
	})
	if n, want := strings.Count(e.Logs(), `msg="TLS handshake failed"`), len(servertest.BadHandshakes()); n != want {
		t.Fatalf("logged %d implicit-TLS handshake failures, want %d:\n%s", n, want, e.Logs())
	}
	e.login(t, "alice").ok("a1 NOOP")
	c := e.dial(t, false)
	c.startTLS()
	c.ok(`a2 LOGIN alice@example.test "alice password"`)
}
