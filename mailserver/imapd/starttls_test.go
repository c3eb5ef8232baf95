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
	bad := servertest.BadHandshakes()
	for _, b := range bad {
		for _, implicit := range []bool{false, true} {
			name := "STARTTLS/" + b.Name
			if implicit {
				name = "993/" + b.Name
			}
			t.Run(name, func(t *testing.T) {
				c := servertest.Dial(t, e.Addr(implicit), false, servertest.IMAPLine)
				if !implicit {
					c.Script(`
						S: * OK
						C: s1 STARTTLS
						S: s1 OK`)
				}
				servertest.TLSRecordsOnly(t, c.FailTLS(b, "a1 LOGOUT"))
			})
		}
	}
	if n := strings.Count(e.Logs(), `msg="TLS handshake failed"`); n != len(bad) {
		t.Fatalf("logged %d implicit-TLS handshake failures, want %d:\n%s", n, len(bad), e.Logs())
	}
	e.login(t, "alice").ok("a1 NOOP")
	c := e.dial(t, false)
	c.startTLS()
	c.ok(`a2 LOGIN alice@example.test "alice password"`)
}
