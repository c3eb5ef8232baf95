package imapd

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const systemFlagList = `\Answered \Deleted \Draft \Flagged \Seen $Forwarded`

// Keywords (RFC 9051 section 2.3.2) persist like Dovecot's: letters in
// the file names, named by the folder's dovecot-keywords. STORE adds and
// removes them, FETCH and SEARCH see them, every session of the folder
// hears of them, and they outlive the session.
func TestKeywordsStoreFetchSearch(t *testing.T) {
	e := newTestEnv(t, nil)
	for i := range 3 {
		e.Deliver(t, alice, "", msg(fmt.Sprintf("kw %d", i), "x"))
	}
	a := e.login(t, "alice")
	b := e.login(t, "alice")
	sel := a.ok("a1 SELECT INBOX")
	mustHave(t, sel, `* FLAGS (`+systemFlagList+`)`)
	b.ok("b1 SELECT INBOX")

	// a selected INBOX first: the messages are \Recent there (RFC 3501
	// section 2.3.2).
	out := a.ok("a2 STORE 1,2 +FLAGS ($Junk Project-X)")
	mustHave(t, out, `* FLAGS (`+systemFlagList+` $Junk Project-X)`)
	mustHave(t, out, `* 1 FETCH (FLAGS ($Junk Project-X \Recent))`)
	mustHave(t, out, `* 2 FETCH (FLAGS ($Junk Project-X \Recent))`)
	// The other session hears of the new FLAGS and the changed messages.
	out = b.ok("b2 NOOP")
	mustHave(t, out, `* FLAGS (`+systemFlagList+` $Junk Project-X)`)
	mustHave(t, out, `* 1 FETCH (UID 1 FLAGS ($Junk Project-X))`)
	// Keywords are case-insensitive; the first spelling is kept.
	out = b.ok(`b3 STORE 2 -FLAGS (project-x)`)
	mustHave(t, out, `* 2 FETCH (FLAGS ($Junk))`)
	out = b.ok(`b4 STORE 3 FLAGS (\Seen $JUNK)`)
	mustHave(t, out, `* 3 FETCH (FLAGS (\Seen $Junk))`)
	out = a.ok("a3 FETCH 1:3 (FLAGS)")
	mustHave(t, out, `* 2 FETCH (FLAGS ($Junk \Recent))`)
	mustHave(t, out, `* 3 FETCH (FLAGS (\Seen $Junk \Recent))`)
	// FLAGS replaces keywords too.
	a.ok(`a4 STORE 3 FLAGS (\Seen)`)
	for q, want := range map[string]string{
		"s1 SEARCH KEYWORD $junk":                       "* SEARCH 1 2",
		"s2 SEARCH UNKEYWORD $Junk":                     "* SEARCH 3",
		"s3 SEARCH KEYWORD Project-X":                   "* SEARCH 1",
		"s4 SEARCH KEYWORD nosuch":                      "* SEARCH",
		"s5 SEARCH UNKEYWORD nosuch":                    "* SEARCH 1 2 3",
		"s6 SEARCH KEYWORD $Junk NOT KEYWORD PROJECT-X": "* SEARCH 2",
	} {
		if out := a.ok(q); out[0] != want {
			t.Errorf("%s: %q, want %q", q, out[0], want)
		}
	}
	// Dovecot's file, and letters in the file names.
	kw, err := os.ReadFile(filepath.Join(e.Store.MaildirPath(alice), "dovecot-keywords"))
	if err != nil || string(kw) != "0 $Junk\n1 Project-X\n" {
		t.Fatalf("dovecot-keywords %q %v", kw, err)
	}
	l, err := e.Store.List(t.Context(), alice, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{":2,ab", ":2,a", ":2,S"} {
		if !strings.HasSuffix(l.Messages[i].Path, want) {
			t.Errorf("message %d is %s, want …%s", i+1, filepath.Base(l.Messages[i].Path), want)
		}
	}
	// A new session after logging in again sees them.
	c := e.login(t, "alice")
	sel = c.ok("c1 EXAMINE INBOX")
	mustHave(t, sel, `* FLAGS (`+systemFlagList+` $Junk Project-X)`)
	out = c.ok("c2 FETCH 1 (FLAGS)")
	mustHave(t, out, `* 1 FETCH (FLAGS ($Junk Project-X))`)
	// A keyword that is not an ASCII atom is refused, nothing changes.
	c.ok("c3 SELECT INBOX")
	c.Script("C: c4 STORE 1 +FLAGS (caf\xc3\xa9)\nS: c4 BAD")
	mustHave(t, c.ok("c5 FETCH 1 (FLAGS)"), `* 1 FETCH (FLAGS ($Junk Project-X))`)
}

// APPEND with keywords to a folder that has none, and COPY of keywords
// to another folder, which gets its own letters.
func TestKeywordsAppendAndCopy(t *testing.T) {
	e := newTestEnv(t, nil)
	c := e.login(t, "alice")
	m := msg("appended with keywords", "body")
	c.Send(`a1 APPEND Archive (\Seen $NotJunk Travel) {` + strconv.Itoa(len(m)) + `}`)
	c.Script(`S: +`)
	c.Send(m)
	c.Expect("a1 OK [APPENDUID ")
	sel := c.ok("a2 SELECT Archive")
	mustHave(t, sel, `* FLAGS (`+systemFlagList+` $NotJunk Travel)`)
	mustHave(t, c.ok("a3 FETCH 1 (FLAGS)"), `* 1 FETCH (FLAGS (\Seen $NotJunk Travel \Recent))`)
	c.ok("a4 SELECT INBOX")
	e.Deliver(t, alice, "", msg("to copy", "x"))
	c.ok("a5 NOOP")
	c.ok("a6 STORE 1 +FLAGS (Travel Urgent)")
	c.ok("a7 COPY 1 Archive")
	c.ok("a8 SELECT Archive")
	out := c.ok("a9 FETCH 2 (FLAGS)")
	mustHave(t, out, `* 2 FETCH (FLAGS (Travel Urgent \Recent))`) // a copy is new (RFC 3501 section 6.4.7)
	kw, _ := os.ReadFile(filepath.Join(e.Store.MaildirPath(alice), ".Archive", "dovecot-keywords"))
	if string(kw) != "0 $NotJunk\n1 Travel\n2 Urgent\n" {
		t.Fatalf("Archive's dovecot-keywords %q", kw)
	}
}

// A folder holds 26 keywords (a–z); the 27th is refused with NO [LIMIT]
// and nothing changes, and PERMANENTFLAGS stops offering \*.
func TestKeywordLimit(t *testing.T) {
	e := newTestEnv(t, nil)
	e.Deliver(t, alice, "", msg("full", "x"))
	c := e.login(t, "alice")
	c.ok("a1 SELECT INBOX")
	var names []string
	for i := range 26 {
		names = append(names, fmt.Sprintf("k%d", i))
	}
	c.ok("a2 STORE 1 FLAGS (" + strings.Join(names, " ") + ")")
	c.Script(`
		C: a3 STORE 1 +FLAGS (k3 one-too-many)
		S: a3 NO [LIMIT]
		C: a4 APPEND INBOX (another) {1}
		S: +
		C: x
		S: a4 NO [LIMIT]`)
	out := c.ok("a5 FETCH 1 (FLAGS)")
	mustHave(t, out, `k25 \Recent))`)
	if has(out, "one-too-many") {
		t.Fatalf("refused keyword stored: %q", out)
	}
	c.ok(`a6 STORE 1 -FLAGS (k0)`)
	c.ok(`a7 STORE 1 +FLAGS (K0 \Seen)`) // known keywords still work
	sel := c.ok("a8 SELECT INBOX")
	mustHave(t, sel, "[PERMANENTFLAGS (", "k25)]")
	if has(sel, `\*`) {
		t.Fatalf("a full folder offers \\*: %q", sel)
	}
	// COPY into a full folder of a message with a keyword it lacks.
	c.ok("a9 CREATE Other")
	c.ok("a10 SELECT Other")
	e.Deliver(t, alice, "Other", msg("other", "x"))
	c.ok("a11 NOOP")
	c.ok("a12 STORE 1 +FLAGS (elsewhere)")
	c.Script(`
		C: a13 COPY 1 INBOX
		S: a13 NO [LIMIT]`)
}
