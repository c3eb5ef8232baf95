package imapd

import (
	"fmt"
	"strings"
	"testing"
)

// RFC 2971: ID is advertised and answered in every state; a client's long
// ID list (imaptest's id test: 30 fields of 30 octets, values of 1024, the
// most section 3.3 lets a client send) neither fails nor drops the
// connection, which imapserver did to any unknown command before login.
func TestIDCommand(t *testing.T) {
	e := newTestEnv(t, nil)
	c := e.dial(t, true)
	mustHave(t, c.ok("a1 CAPABILITY"), " ID")
	var b strings.Builder
	for i := range 30 {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%q %q", fmt.Sprintf("f%029d", i), strings.Repeat("1234567890", 102)+"1234")
	}
	out := c.ok("a2 ID (" + b.String() + ")")
	mustHave(t, out, `* ID ("name" "mailvault")`)
	c.Script(`
		C: a3 ID NIL
		S: * ID ("name" "mailvault")
		S: a3 OK
		C: a4 ID ("name" "client" "version" NIL)
		S: * ID ("name" "mailvault")
		S: a4 OK
		C: a5 ID ("name")
		S: a5 BAD
		C: a6 NOOP
		S: a6 OK`)
	// Logged in and selected, too.
	c.ok(`l1 LOGIN alice@example.test "alice password"`)
	c.ok("s1 SELECT INBOX")
	mustHave(t, c.ok(`a7 ID ("name" "client")`), `* ID ("name" "mailvault")`)
}

// A LIST pattern that is not modified UTF-7 (RFC 3501 section 5.1.3) is
// taken literally and matches nothing; a mailbox name that is not is
// refused with NO: neither is a server bug (imaptest's atoms test, every
// atom character in one name).
func TestInvalidModifiedUTF7Names(t *testing.T) {
	e := newTestEnv(t, nil)
	c := e.login(t, "alice")
	c.Script(`
		C: a1 LIST "" !#$&'+,-.0123456789:;<=>?@^_` + "`" + `|[}%*
		S: a1 OK
		C: a2 LSUB "" &foo*
		S: a2 OK
		C: a3 SELECT !#$&'+,-.0123456789:;<=>?@^_` + "`" + `|[}
		S: a3 NO [CANNOT]
		C: a4 CREATE "&bad"
		S: a4 NO [CANNOT]
		C: a5 LIST "" ~foo
		S: a5 OK
		C: a6 CREATE "caf&AOk-"
		S: a6 OK
		C: a7 LIST "" "caf&AOk-"
		S: * LIST (\HasNoChildren) "/" "caf&AOk-"
		S: a7 OK`)
}
