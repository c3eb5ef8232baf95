package imapd

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mailvault/mailvault/mailserver/internal/servertest"
)

// MULTIAPPEND (RFC 3502): several messages in one APPEND, answered with
// one APPENDUID of all their UIDs; when one fails the ones before it are
// removed and the rest of the command is read and dropped, so the
// connection goes on; a message refused before its literal ends it.
func TestMultiAppend(t *testing.T) {
	e := newTestEnv(t, nil)
	c := e.login(t, "alice")
	mustHave(t, c.ok("a0 CAPABILITY"), " MULTIAPPEND")
	m1, m2, m3 := msg("one", "1"), msg("two", "2"), msg("three", "3")
	lit := func(m string) string { return "{" + strconv.Itoa(len(m)) + "+}\r\n" + m }

	// All or none: the second message has a keyword too many (a Maildir
	// folder holds 26), so the first goes again and the third is dropped.
	var kws []string
	for i := range 27 {
		kws = append(kws, fmt.Sprintf("kw%d", i))
	}
	c.Send("a1 APPEND INBOX " + lit(m1) + " (" + strings.Join(kws, " ") + ") " + lit(m2) + " " + lit(m3))
	mustHave(t, c.ReadUntil(servertest.HasPrefix("a1 ")), "a1 NO")
	mustHave(t, c.ok("a2 STATUS INBOX (MESSAGES)"), "(MESSAGES 0)")

	// Synchronizing literals: a continuation for each.
	c.Send("a3 APPEND INBOX (\\Seen) {" + strconv.Itoa(len(m1)) + "}")
	mustHave(t, []string{c.Next()}, "+ ")
	c.Send(m1 + " \"05-Feb-2021 10:11:12 +0000\" {" + strconv.Itoa(len(m2)) + "}")
	mustHave(t, []string{c.Next()}, "+ ")
	c.Send(m2 + " " + lit(m3))
	mustHave(t, c.ReadUntil(servertest.HasPrefix("a3 ")), "a3 OK [APPENDUID ", " 2:4]") // UID 1 went with a1
	c.ok("a4 SELECT INBOX")
	out := c.ok("a5 FETCH 1:* (FLAGS INTERNALDATE BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
	mustHave(t, out, "* 1 FETCH (FLAGS (\\Seen \\Recent)")
	mustHave(t, out, `INTERNALDATE " 5-Feb-2021 10:11:12 +0000"`)
	mustHave(t, out, "Subject: three")

	// Too big for the limit before its literal: the connection ends, and
	// the first message of the command is removed.
	c.Send("a6 APPEND INBOX " + lit(m1) + " {2000000}")
	mustHave(t, c.ReadUntil(servertest.HasPrefix("a6 ")), "a6 NO [TOOBIG]")
	if l, err := c.TryNext(); err == nil && !strings.HasPrefix(l, "* BYE") {
		t.Fatalf("after a MULTIAPPEND cut short the connection went on: %q", l)
	}
	mustHave(t, e.login(t, "alice").ok("b1 STATUS INBOX (MESSAGES)"), "(MESSAGES 3)")

	// The connection breaks in the second message's literal: the first
	// goes again.
	c2 := e.login(t, "alice")
	c2.Send("a7 APPEND INBOX " + lit(m1) + " {100+}\r\nFrom: cut")
	c2.Close()
	time.Sleep(300 * time.Millisecond) // the server reads, stores, finds the break
	mustHave(t, e.login(t, "alice").ok("b2 STATUS INBOX (MESSAGES)"), "(MESSAGES 3)")
}
