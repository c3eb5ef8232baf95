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
	// All \Recent in c: it selected INBOX first, and the moved messages
	// are new ones (RFC 3501 section 2.3.2).
	for _, want := range []string{`UID 3 FLAGS (\Recent)`, `UID 4 FLAGS (\Flagged \Recent)`, `UID 5 FLAGS (\Recent)`} {
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

// index returns the index of the first line containing sub, -1 if none.
func index(lines []string, sub string) int {
	for i, l := range lines {
		if strings.Contains(l, sub) {
			return i
		}
	}
	return -1
}

// \Recent as IMAP4rev1 has it (RFC 3501 section 2.3.2) and Dovecot does
// it: a message is \Recent in one session only, the first to SELECT the
// mailbox after it came (EXAMINE shows it without claiming it), or the
// one that has it selected when it comes; "* n RECENT" on SELECT, EXAMINE
// and new mail (section 7.3.2), STATUS RECENT (section 6.3.10), SEARCH
// RECENT, NEW and OLD (section 6.4.4) and FETCH FLAGS follow it, and a
// claim outlives the sessions.
func TestRecentAsDovecot(t *testing.T) {
	e := newTestEnv(t, nil)
	e.Deliver(t, alice, "", msg("one", "1"))
	e.Deliver(t, alice, "", msg("two", "2"))
	ex := e.login(t, "alice")
	b := e.login(t, "alice")
	c := e.login(t, "alice")
	st := e.login(t, "alice")

	mustHave(t, ex.ok("x1 EXAMINE INBOX"), "* 2 RECENT")
	mustHave(t, st.ok("s1 STATUS INBOX (RECENT MESSAGES)"), "RECENT 2")
	mustHave(t, b.ok("b1 SELECT INBOX"), "* 2 RECENT")
	mustHave(t, c.ok("c1 SELECT INBOX"), "* 0 RECENT")
	mustHave(t, st.ok("s2 STATUS INBOX (RECENT)"), "RECENT 0")
	// The EXAMINE session keeps what it was shown.
	mustHave(t, ex.ok("x2 FETCH 1 (FLAGS)"), `* 1 FETCH (FLAGS (\Recent))`)
	mustHave(t, b.ok("b2 FETCH 2 (FLAGS)"), `* 2 FETCH (FLAGS (\Recent))`)
	mustHave(t, c.ok("c2 FETCH 2 (FLAGS)"), `* 2 FETCH (FLAGS ())`)

	// New mail: \Recent in b, the first session told of it.
	e.Deliver(t, alice, "", msg("three", "3"))
	out := b.ok("b3 NOOP")
	mustHave(t, out, "* 3 EXISTS")
	mustHave(t, out, "* 3 RECENT")
	if i, j := index(out, "EXISTS"), index(out, "RECENT"); i > j {
		t.Fatalf("RECENT before EXISTS:\n%s", strings.Join(out, "\n"))
	}
	out = c.ok("c3 NOOP")
	mustHave(t, out, "* 3 EXISTS")
	if has(out, "RECENT") {
		t.Fatalf("c was told of recent messages:\n%s", strings.Join(out, "\n"))
	}
	mustHave(t, ex.ok("x3 NOOP"), "* 3 EXISTS")

	b.ok(`b4 STORE 1 +FLAGS.SILENT (\Seen)`)
	for q, want := range map[string]string{
		"b5 SEARCH RECENT":     "* SEARCH 1 2 3",
		"b6 SEARCH NEW":        "* SEARCH 2 3",
		"b7 SEARCH OLD":        "* SEARCH",
		"b8 SEARCH NOT RECENT": "* SEARCH",
	} {
		if out := b.ok(q); out[0] != want {
			t.Errorf("%s: %q, want %q", q, out[0], want)
		}
	}
	for q, want := range map[string]string{
		"c4 SEARCH RECENT": "* SEARCH",
		"c5 SEARCH OLD":    "* SEARCH 1 2 3",
		"c6 SEARCH NEW":    "* SEARCH",
	} {
		if out := c.ok(q); out[0] != want {
			t.Errorf("%s: %q, want %q", q, out[0], want)
		}
	}
	// A message c APPENDs to the mailbox it has selected is \Recent in c,
	// which finds it (RFC 3501 section 6.3.11).
	m := msg("four", "4")
	c.Send(`c7 APPEND INBOX {` + strconv.Itoa(len(m)) + `}`)
	c.Script(`S: +`)
	c.Send(m)
	out = c.ReadUntil(servertest.HasPrefix("c7 "))
	out = append(out, c.ok("c8 NOOP")...)
	mustHave(t, out, "* 4 EXISTS")
	mustHave(t, out, "* 1 RECENT")
	mustHave(t, c.ok("c9 UID FETCH 4 (FLAGS)"), `FLAGS (\Recent)`)
	out = b.ok("b9 NOOP")
	mustHave(t, out, "* 4 EXISTS")
	if has(out, "RECENT") {
		t.Fatalf("b was told of c's recent message:\n%s", strings.Join(out, "\n"))
	}
	// A COPY is \Recent in the mailbox it goes to (RFC 3501 section
	// 6.4.7), for the first session to select it.
	b.ok("b10 COPY 1:2 Archive")
	mustHave(t, st.ok("s3 STATUS Archive (RECENT)"), "RECENT 2")
	mustHave(t, st.ok("s4 SELECT Archive"), "* 2 RECENT")
	mustHave(t, st.ok("s5 FETCH 1:2 (FLAGS)"), `* 1 FETCH (FLAGS (\Seen \Recent))`)

	// The claims outlive the sessions: a new one finds nothing recent.
	for _, cl := range []*client{ex, b, c, st} {
		cl.ok("z1 LOGOUT")
	}
	n := e.login(t, "alice")
	mustHave(t, n.ok("n1 SELECT INBOX"), "* 0 RECENT")
	mustHave(t, n.ok("n2 SELECT Archive"), "* 0 RECENT")
}

// A new keyword is announced with FLAGS and PERMANENTFLAGS (RFC 3501
// sections 7.2.6 and 7.1) before any FETCH shows it: in the session that
// STOREd it, in another that FETCHes, and in one that IDLEs.
func TestNewKeywordFlagsBeforeFetch(t *testing.T) {
	e := newTestEnv(t, nil)
	e.Deliver(t, alice, "", msg("one", "1"))
	a := e.login(t, "alice")
	b := e.login(t, "alice")
	a.ok("a1 SELECT INBOX")
	b.ok("b1 SELECT INBOX")

	before := func(lines []string, first, then string) {
		t.Helper()
		i, j := index(lines, first), index(lines, then)
		if i < 0 || j < 0 || i > j {
			t.Fatalf("want %q before %q in:\n%s", first, then, strings.Join(lines, "\n"))
		}
	}
	out := a.ok("a2 STORE 1 +FLAGS (Alpha)")
	before(out, `* FLAGS (`+systemFlagList+` Alpha)`, "FETCH")
	before(out, `* OK [PERMANENTFLAGS (`+systemFlagList+` Alpha \*)]`, "FETCH")
	out = b.ok("b2 FETCH 1 (FLAGS)")
	before(out, `* FLAGS (`+systemFlagList+` Alpha)`, "* 1 FETCH (FLAGS (Alpha))")
	before(out, `* OK [PERMANENTFLAGS (`+systemFlagList+` Alpha \*)]`, "* 1 FETCH (FLAGS (Alpha))")
	if strings.Count(strings.Join(b.ok("b3 NOOP"), "\n"), "* FLAGS") != 0 {
		t.Fatal("FLAGS told twice")
	}

	b.Script(`
		C: b4 IDLE
		S: + idling`)
	a.ok("a3 STORE 1 +FLAGS (Beta)")
	b.Script(`
		S: * FLAGS (` + systemFlagList + ` Alpha Beta)
		S: * OK [PERMANENTFLAGS (` + systemFlagList + ` Alpha Beta \*)]
		S: * 1 FETCH (UID 1 FLAGS (Alpha Beta))`)
	b.Send("DONE")
	b.Script(`S: b4 OK`)
}
