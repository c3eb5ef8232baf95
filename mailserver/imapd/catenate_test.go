package imapd

import (
	"strconv"
	"strings"
	"testing"

	"github.com/mailvault/mailvault/mailserver/internal/servertest"
)

// CATENATE (RFC 4469): an APPEND made of literal text and IMAP URLs of
// messages (or their sections, partial) in the same account; a URL that
// does not resolve is NO [BADURL] after the command is read (the
// connection goes on), a missing destination NO [TRYCREATE] first, and
// another account's path is only a mailbox name of this one.
func TestCatenate(t *testing.T) {
	e := newTestEnv(t, nil)
	e.Deliver(t, alice, "", "From: a@x.test\r\nSubject: src\r\n\r\nsource body\r\n")
	c := e.login(t, "alice")
	mustHave(t, c.ok("a0 CAPABILITY"), " CATENATE")
	st := c.ok("a1 STATUS INBOX (UIDVALIDITY)")
	_, v, _ := strings.Cut(strings.Join(st, " "), "UIDVALIDITY ")
	uidv, _ := strconv.Atoi(strings.TrimRight(strings.Fields(v)[0], ")"))
	c.ok("a2 CREATE Dest")
	lit := func(s string) string { return "{" + strconv.Itoa(len(s)) + "+}\r\n" + s }

	c.Send(`b1 APPEND Dest (\Seen) CATENATE (URL "/INBOX;UIDVALIDITY=` + strconv.Itoa(uidv) + `/;UID=1/;SECTION=HEADER" TEXT ` + lit("new body\r\n") + ` URL "/INBOX/;UID=1/;SECTION=TEXT/;PARTIAL=0.6")`)
	mustHave(t, c.ReadUntil(servertest.HasPrefix("b1 ")), "b1 OK [APPENDUID ")
	c.Send(`b2 APPEND Dest CATENATE (TEXT ` + lit("Subject: x\r\n\r\n") + ` URL "/INBOX;UIDVALIDITY=1/;UID=1/;SECTION=TEXT" TEXT ` + lit("tail\r\n") + `)`)
	mustHave(t, c.ReadUntil(servertest.HasPrefix("b2 ")), "b2 NO [BADURL]")
	c.Send(`b3 APPEND Nowhere CATENATE (URL "/INBOX/;UID=99")`)
	mustHave(t, c.ReadUntil(servertest.HasPrefix("b3 ")), "b3 NO [TRYCREATE]")
	c.Send(`b4 APPEND Dest CATENATE (URL "imap://bob@example.test/INBOX/;UID=1")`)
	mustHave(t, c.ReadUntil(servertest.HasPrefix("b4 ")), "b4 NO [BADURL]")
	c.Send(`b5 APPEND Dest CATENATE (URL "/INBOX/;UID=7")`)
	mustHave(t, c.ReadUntil(servertest.HasPrefix("b5 ")), "b5 NO [BADURL]")

	c.ok("c1 SELECT Dest")
	out := strings.Join(c.ok("c2 FETCH 1:* BODY.PEEK[]"), "\n")
	if !strings.Contains(out, "From: a@x.test\r\nSubject: src\r\n\r\nnew body\r\nsource") {
		t.Fatalf("catenated message: %q", out)
	}
	if strings.Contains(out, "* 2 FETCH") {
		t.Fatalf("a refused CATENATE stored a message: %q", out)
	}
}
