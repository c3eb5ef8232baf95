package imapd

import (
	"strconv"
	"strings"
	"testing"
)

// ESEARCH (RFC 4731): SEARCH RETURN (MIN MAX COUNT ALL) answers with one
// ESEARCH response tagged with the command's tag; an empty RETURN () is
// ALL, and no match leaves out ALL, MIN and MAX but not COUNT.
func TestESearch(t *testing.T) {
	e := newTestEnv(t, nil)
	for _, s := range []string{"one", "two", "three", "four"} {
		e.Deliver(t, alice, "", msg(s, "body "+s))
	}
	c := e.login(t, "alice")
	mustHave(t, c.ok("a0 CAPABILITY"), " ESEARCH")
	c.ok("a1 SELECT INBOX")
	c.ok("a2 STORE 2,4 +FLAGS (\\Seen)")
	c.Script(`
		C: b1 SEARCH RETURN () ALL
		S: * ESEARCH (TAG "b1") ALL 1:4
		S: b1 OK
		C: b2 SEARCH RETURN (MIN MAX COUNT) SEEN
		S: * ESEARCH (TAG "b2") MIN 2 MAX 4 COUNT 2
		S: b2 OK
		C: b3 UID SEARCH RETURN (ALL) UNSEEN
		S: * ESEARCH (TAG "b3") UID ALL 1,3
		S: b3 OK
		C: b4 SEARCH RETURN (MIN COUNT) 1000
		S: * ESEARCH (TAG "b4") COUNT 0
		S: b4 OK
		C: b5 SEARCH SEEN
		S: * SEARCH 2 4
		S: b5 OK`)
}

// LITERAL+ (RFC 7888): a non-synchronizing literal of any size the
// command accepts goes without a continuation request; one refused (an
// APPEND over the size limit) ends the connection after the NO, since
// its octets are on the way and must not be read as commands.
func TestLiteralPlus(t *testing.T) {
	e := newTestEnv(t, nil)
	c := e.login(t, "alice")
	caps := c.ok("a0 CAPABILITY")
	mustHave(t, caps, " LITERAL+")
	if has(caps, "LITERAL-") {
		t.Fatalf("LITERAL- advertised beside LITERAL+: %q", caps)
	}
	m := msg("big", strings.Repeat("0123456789abcdef\r\n", 500)) // > 4096
	c.Send("a1 APPEND INBOX {" + strconv.Itoa(len(m)) + "+}\r\n" + m)
	mustHave(t, []string{c.Next()}, "a1 OK [APPENDUID")
	c.Send("a2 APPEND INBOX {2000000+}\r\na3 LOGOUT\r\n")
	mustHave(t, []string{c.Next()}, "a2 NO [TOOBIG]")
	if l, err := c.TryNext(); err == nil {
		t.Fatalf("after a refused non-synchronizing literal the server went on: %q", l)
	}
	e.login(t, "alice").ok("b1 NOOP")
}
