package smtpd

import (
	"strings"
	"testing"

	"github.com/mailvault/mailvault/mailserver/internal/servertest"
)

// A refused TLS handshake, on the implicit-TLS port or after STARTTLS, is
// answered with TLS alerts at most, never a cleartext reply (go-smtp's own
// STARTTLS answers "550 5.0.0 Handshake error" in cleartext and reads on);
// each is logged, and the server goes on serving.
func TestRefusedHandshakeGetsNoCleartext(t *testing.T) {
	e := newTestEnv(t, nil)
	bad := servertest.BadHandshakes()
	for _, m := range []Mode{ModeMX, ModeSubmission} {
		t.Run(m.String(), func(t *testing.T) {
			servertest.RefusedHandshakes(t, e.addr[m], servertest.SMTPReply, func(c *servertest.Conn) {
				c.Script(`
					S: 220
					C: EHLO client.test
					S: 250
					C: STARTTLS
					S: 220 2.0.0 Ready to start TLS`)
			}, "QUIT")
		})
	}
	t.Run("465", func(t *testing.T) {
		servertest.RefusedHandshakes(t, e.addr[ModeSubmissions], servertest.SMTPReply, nil, "QUIT")
	})
	logs := e.Logs()
	implicit := strings.Count(logs, `msg="TLS handshake failed"`)
	starttls := strings.Count(logs, `msg="STARTTLS handshake failed; closing without a cleartext reply"`)
	if implicit != len(bad) || starttls != 2*len(bad) {
		t.Fatalf("logged %d implicit-TLS and %d STARTTLS handshake failures, want %d and %d:\n%s", implicit, starttls, len(bad), 2*len(bad), logs)
	}
	e.dial(t, ModeSubmissions).Script(`
		S: 220
		C: EHLO laptop
		S: 250
		C: AUTH PLAIN ` + plain("alice@example.test", "alice password") + `
		S: 235`)
	c := e.dial(t, ModeMX)
	c.Script(`
		S: 220
		C: EHLO relay.test
		S: 250`)
	c.startTLS()
	c.Script(`
		C: EHLO relay.test
		S: 250
		C: NOOP
		S: 250`)
}
