package imapd

import (
	"strings"
	"testing"
)

// field returns the value after "[NAME " in the line that has it.
func field(t testing.TB, lines []string, name string) string {
	t.Helper()
	for _, l := range lines {
		if _, rest, ok := strings.Cut(l, "["+name+" "); ok {
			v, _, _ := strings.Cut(rest, "]")
			return v
		}
	}
	t.Fatalf("no [%s in:\n%s", name, strings.Join(lines, "\n"))
	return ""
}

// A mailbox deleted and created again at once gets a new UIDVALIDITY
// (RFC 3501 section 2.3.1.1; imaptest's "uidvalidity" test).
func TestUIDValidityChangesWhenRecreated(t *testing.T) {
	e := newTestEnv(t, nil)
	c := e.login(t, "alice")
	seen := map[string]bool{}
	for i := range 3 {
		c.ok("a1 CREATE Again")
		v := field(t, c.ok("a2 SELECT Again"), "UIDVALIDITY")
		if seen[v] {
			t.Fatalf("round %d: UIDVALIDITY %s again", i, v)
		}
		seen[v] = true
		c.ok("a3 UNSELECT")
		c.ok("a4 DELETE Again")
	}
}

// MOVE into the selected mailbox (imaptest's "move" test): the messages
// get new UIDs, reported in COPYUID, and the old ones are expunged, in
// this session and in another one of the mailbox.
func TestMoveIntoSameMailbox(t *testing.T) {
	e := newTestEnv(t, nil)
	for _, s := range []string{"one", "two", "three"} {
		e.Deliver(t, alice, "", msg(s, "x"))
	}
	c := e.login(t, "alice")
	o := e.login(t, "alice")
	c.ok("a1 SELECT INBOX")
	o.ok("b1 SELECT INBOX")
	c.ok(`a2 STORE 1 +FLAGS (\Flagged)`)
	out := c.ok("a4 UID MOVE 1:2 INBOX")
	mustHave(t, out, "[COPYUID ", " 1:2 4:5]")
	mustHave(t, out, "* 1 EXPUNGE")
	mustHave(t, out, "* 3 EXISTS")
	out = c.ok("a5 UID FETCH 1:* (FLAGS)")
	for _, want := range []string{"UID 3 FLAGS ()", `UID 4 FLAGS (\Flagged)`, "UID 5 FLAGS ()"} {
		mustHave(t, out, want)
	}
	if has(out, "UID 1 ") || has(out, "UID 2 ") {
		t.Fatalf("old UIDs still there: %q", out)
	}
	out = o.ok("b2 NOOP")
	mustHave(t, out, "* 1 EXPUNGE")
	out = o.ok("b3 UID FETCH 1:* (FLAGS)")
	mustHave(t, out, "* 3 FETCH (UID 5 FLAGS ())")
	// The subjects went with their messages.
	out = o.ok("b4 UID FETCH 4 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
	mustHave(t, out, "Subject: one")
}
