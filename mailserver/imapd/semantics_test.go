package imapd

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mailvault/mailvault/mailserver/internal/servertest"
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

// internalDate parses the INTERNALDATE of the FETCH line for UID uid.
func internalDate(t testing.TB, lines []string, uid string) time.Time {
	t.Helper()
	for _, l := range lines {
		if !strings.Contains(l, "UID "+uid+" ") && !strings.Contains(l, "(UID "+uid+")") {
			continue
		}
		if _, rest, ok := strings.Cut(l, `INTERNALDATE "`); ok {
			v, _, _ := strings.Cut(rest, `"`)
			d, err := time.Parse("_2-Jan-2006 15:04:05 -0700", v)
			if err != nil {
				t.Fatal(err)
			}
			return d
		}
	}
	t.Fatalf("no INTERNALDATE of UID %s in:\n%s", uid, strings.Join(lines, "\n"))
	return time.Time{}
}

// APPEND with a date-time (RFC 3501 section 6.3.11) sets the INTERNALDATE,
// and every path reports that one: FETCH in the session that APPENDed to
// its selected mailbox (answered from the header cache filled at
// delivery), another session, a COPY and a MOVE (RFC 3501 section 6.4.7:
// the copy keeps it), SEARCH BEFORE/SINCE, and the file on disk, which is
// what is left after a restart. The cache kept the time of the APPEND
// while the file had the date given (issue 10).
func TestInternalDateIsOneValue(t *testing.T) {
	e := newTestEnv(t, nil)
	c := e.login(t, "alice")
	c.ok("a1 SELECT INBOX")
	want := time.Date(1996, 7, 17, 2, 44, 25, 0, time.FixedZone("", -7*3600))
	m := msg("dated", "x")
	c.Send(`a2 APPEND INBOX (\Seen) "17-Jul-1996 02:44:25 -0700" {` + strconv.Itoa(len(m)) + `}`)
	c.Script(`S: +`)
	c.Send(m)
	mustHave(t, c.ReadUntil(servertest.HasPrefix("a2 ")), "a2 OK [APPENDUID ")
	check := func(where string, lines []string, uid string) {
		t.Helper()
		if got := internalDate(t, lines, uid); !got.Equal(want) {
			t.Errorf("%s: INTERNALDATE %v, want %v", where, got, want)
		}
	}
	check("FETCH after APPEND", c.ok("a4 UID FETCH 1 (INTERNALDATE ENVELOPE)"), "1")
	o := e.login(t, "alice")
	o.ok("b1 EXAMINE INBOX")
	check("other session", o.ok("b2 UID FETCH 1 (INTERNALDATE)"), "1")
	mustHave(t, o.ok("b3 SEARCH BEFORE 18-Jul-1996 SINCE 17-Jul-1996"), "* SEARCH 1")
	c.ok("a5 COPY 1 Archive")
	c.ok("a6 MOVE 1 Trash")
	c.ok("a7 SELECT Archive")
	check("COPY", c.ok("a8 UID FETCH 1 (INTERNALDATE)"), "1")
	c.ok("a9 SELECT Trash")
	check("MOVE", c.ok("a10 UID FETCH 1 (INTERNALDATE)"), "1")
	for _, f := range []string{"Archive", "Trash"} {
		l, err := e.Store.List(t.Context(), alice, f)
		if err != nil || len(l.Messages) != 1 {
			t.Fatalf("%s: %v %v", f, err, l)
		}
		fi, err := os.Stat(l.Messages[0].Path)
		if err != nil || !fi.ModTime().Equal(want) {
			t.Errorf("%s: file time %v %v, want %v", f, fi.ModTime(), err, want)
		}
	}
}
