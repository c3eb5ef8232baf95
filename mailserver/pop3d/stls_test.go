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
	bad := servertest.BadHandshakes()
	for _, b := range bad {
		for _, implicit := range []bool{false, true} {
			name := "STLS/" + b.Name
			if implicit {
				name = "995/" + b.Name
			}
			t.Run(name, func(t *testing.T) {
				c := servertest.Dial(t, e.Addr(implicit), false, servertest.Line)
				if !implicit {
					c.Script(`
						S: +OK
						C: STLS
						S: +OK Begin TLS`)
				}
				servertest.TLSRecordsOnly(t, c.FailTLS(b, "QUIT"))
			})
		}
	}
	if n := strings.Count(e.Logs(), "handshake failed"); n != 2*len(bad) {
		t.Fatalf("logged %d handshake failures, want %d:\n%s", n, 2*len(bad), e.Logs())
	}
	e.login(t).Script(`
		C: STAT
		S: +OK 0 0`)
}
