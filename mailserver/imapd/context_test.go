package imapd

import (
	"fmt"
	"testing"
)

// CONTEXT=SEARCH (RFC 5267): PARTIAL picks positions of the result;
// SEARCH RETURN (UPDATE) reports every later change to its result as
// ESEARCH ADDTO/REMOVEFROM, an expunged message before its EXPUNGE with
// the number the client knew, a new one after its EXISTS, until
// CANCELUPDATE; too many contexts are refused.
func TestSearchContextUpdate(t *testing.T) {
	e := newTestEnv(t, nil)
	for _, s := range []string{"one", "two", "three", "four", "five"} {
		e.Deliver(t, alice, "", msg(s, "body "+s))
	}
	c := e.login(t, "alice")
	mustHave(t, c.ok("a0 CAPABILITY"), " CONTEXT=SEARCH")
	c.ok("a1 SELECT INBOX")
	c.Script(`
		C: p1 SEARCH RETURN (PARTIAL 2:3) ALL
		S: * ESEARCH (TAG "p1") PARTIAL (2:3 2:3)
		S: p1 OK
		C: p2 UID SEARCH RETURN (PARTIAL 4:9 COUNT) ALL
		S: * ESEARCH (TAG "p2") UID COUNT 5 PARTIAL (4:9 4:5)
		S: p2 OK
		C: p3 SEARCH RETURN (PARTIAL 6:6) ALL
		S: * ESEARCH (TAG "p3") PARTIAL (6:6 NIL)
		S: p3 OK
		C: p4 SEARCH RETURN (PARTIAL 1:*) ALL
		S: p4 BAD
		C: p5 SORT RETURN (PARTIAL 1:2) (REVERSE SUBJECT) UTF-8 ALL
		S: * ESEARCH (TAG "p5") PARTIAL (1:2 2:3)
		S: p5 OK
		C: u1 SEARCH RETURN (UPDATE ALL) SEEN
		S: * ESEARCH (TAG "u1")
		S: u1 OK
		C: u2 UID SEARCH RETURN (UPDATE) DELETED
		S: * ESEARCH (TAG "u2") UID
		S: u2 OK
		C: s1 STORE 1,2,4 +FLAGS.SILENT (\Seen)
		S: * ESEARCH (TAG "u1") ADDTO (0 1:2,4)
		S: s1 OK
		C: s2 STORE 4,5 +FLAGS.SILENT (\Deleted)
		S: * ESEARCH (TAG "u2") UID ADDTO (0 4:5)
		S: s2 OK
		C: s3 EXPUNGE
		S: * ESEARCH (TAG "u1") REMOVEFROM (0 4)
		S: * ESEARCH (TAG "u2") UID REMOVEFROM (0 4:5)
		S: * 5 EXPUNGE
		S: * 4 EXPUNGE
		S: * 3 RECENT
		S: s3 OK
		C: s4 STORE 1 -FLAGS.SILENT (\Seen)
		S: * ESEARCH (TAG "u1") REMOVEFROM (0 1)
		S: s4 OK
		C: c1 CANCELUPDATE "u1"
		S: c1 OK
		C: s5 STORE 3 +FLAGS.SILENT (\Seen)
		S: s5 OK`)
	// A delivery joins after its EXISTS.
	c.Script(`
		C: u3 SEARCH RETURN (UPDATE) SUBJECT six
		S: * ESEARCH (TAG "u3")
		S: u3 OK`)
	e.Deliver(t, alice, "", msg("six", "body six"))
	c.Script(`
		C: s6 NOOP
		S: * 4 EXISTS
		S: * 4 RECENT
		S: * ESEARCH (TAG "u3") ADDTO (0 4)
		S: s6 OK
		C: s7 STORE 4 +FLAGS.SILENT (\Deleted)
		S: * ESEARCH (TAG "u2") UID ADDTO (0 6)
		S: s7 OK`)
	for i := range maxSearchContexts - 2 {
		c.ok(fmt.Sprintf("m%d SEARCH RETURN (UPDATE) SEEN", i))
	}
	c.Script(`
		C: m9 SEARCH RETURN (UPDATE) SEEN
		S: m9 NO [LIMIT]
		C: m10 SEARCH RETURN (UPDATE SAVE) SEEN
		S: m10 BAD`)
}

// CONTEXT=SORT: a SORT RETURN (UPDATE) tells each run of messages leaving
// or joining its result at its position in the sort order, counted after
// the responses before it.
func TestSortContextUpdate(t *testing.T) {
	e := newTestEnv(t, nil)
	for _, s := range []string{"b", "d", "a"} {
		e.Deliver(t, alice, "", msg(s, "body "+s))
	}
	c := e.login(t, "alice")
	mustHave(t, c.ok("a0 CAPABILITY"), " CONTEXT=SORT")
	c.ok("a1 SELECT INBOX")
	c.Script(`
		C: u1 SORT RETURN (UPDATE) (SUBJECT) UTF-8 UNSEEN
		S: * ESEARCH (TAG "u1")
		S: u1 OK
		C: u2 SORT RETURN (PARTIAL 1:2) (SUBJECT) UTF-8 UNSEEN
		S: * ESEARCH (TAG "u2") PARTIAL (1:2 3,1)
		S: u2 OK
		C: s1 STORE 1 +FLAGS.SILENT (\Seen)
		S: * ESEARCH (TAG "u1") REMOVEFROM (2 1)
		S: s1 OK`)
	e.Deliver(t, alice, "", msg("c", "body c"))
	c.Script(`
		C: s2 NOOP
		S: * 4 EXISTS
		S: * 4 RECENT
		S: * ESEARCH (TAG "u1") ADDTO (2 4)
		S: s2 OK
		C: s3 STORE 1 -FLAGS.SILENT (\Seen)
		S: * ESEARCH (TAG "u1") ADDTO (2 1)
		S: s3 OK
		C: s4 STORE 2,3 +FLAGS.SILENT (\Seen)
		S: * ESEARCH (TAG "u1") REMOVEFROM (1 3)
		S: * ESEARCH (TAG "u1") REMOVEFROM (3 2)
		S: s4 OK
		C: s5 UID SORT RETURN (UPDATE) (REVERSE SUBJECT) UTF-8 ALL
		S: * ESEARCH (TAG "s5") UID
		S: s5 OK
		C: s6 STORE 4 +FLAGS.SILENT (\Deleted)
		S: s6 OK
		C: s7 EXPUNGE
		S: * ESEARCH (TAG "u1") REMOVEFROM (2 4)
		S: * ESEARCH (TAG "s5") UID REMOVEFROM (2 4)
		S: * 4 EXPUNGE
		S: * 3 RECENT
		S: s7 OK`)
}

// A context's sequence numbers stand for the messages they named when it
// started: an EXPUNGE does not bring message 4 into "1:3". A BODY context
// is matched again when flags change (and only then).
func TestSearchContextSequenceNumbers(t *testing.T) {
	e := newTestEnv(t, nil)
	for _, s := range []string{"one", "two", "three", "four"} {
		e.Deliver(t, alice, "", msg(s, "body "+s))
	}
	c := e.login(t, "alice")
	c.ok("a1 SELECT INBOX")
	c.Script(`
		C: u1 UID SEARCH RETURN (UPDATE) 1:3
		S: * ESEARCH (TAG "u1") UID
		S: u1 OK
		C: u2 UID SEARCH RETURN (UPDATE) BODY three
		S: * ESEARCH (TAG "u2") UID
		S: u2 OK
		C: s1 STORE 1 +FLAGS.SILENT (\Deleted)
		S: s1 OK
		C: s2 EXPUNGE
		S: * ESEARCH (TAG "u1") UID REMOVEFROM (0 1)
		S: * 1 EXPUNGE
		S: * 3 RECENT
		S: s2 OK
		C: s3 NOOP
		S: s3 OK
		C: u3 SEARCH RETURN (UPDATE) NOT BODY three SEEN
		S: * ESEARCH (TAG "u3")
		S: u3 OK
		C: s4 STORE 1:3 +FLAGS.SILENT (\Seen)
		S: * ESEARCH (TAG "u3") ADDTO (0 1,3)
		S: s4 OK`)
}
