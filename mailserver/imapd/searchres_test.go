package imapd

import (
	"fmt"
	"testing"
)

// SEARCHRES (RFC 5182): SEARCH RETURN (SAVE) answers nothing and keeps
// its result for "$" in FETCH, STORE, SEARCH, COPY and UID EXPUNGE; with
// MIN alone only the lowest is kept; a new SELECT starts with none.
func TestSearchRes(t *testing.T) {
	e := newTestEnv(t, nil)
	for _, s := range []string{"one", "two", "three", "four"} {
		e.Deliver(t, alice, "", msg(s, "body "+s))
	}
	c := e.login(t, "alice")
	mustHave(t, c.ok("a0 CAPABILITY"), " SEARCHRES")
	c.ok("a1 SELECT INBOX")
	c.Script(`
		C: b1 UID SEARCH RETURN (SAVE) SUBJECT t
		S: b1 OK
		C: b2 FETCH $ (UID)
		S: * 2 FETCH (UID 2)
		S: * 3 FETCH (UID 3)
		S: b2 OK
		C: b3 STORE $ +FLAGS.SILENT (\Deleted)
		S: b3 OK
		C: b4 SEARCH DELETED
		S: * SEARCH 2 3
		S: b4 OK
		C: b5 SEARCH RETURN (SAVE MIN) NOT $
		S: * ESEARCH (TAG "b5") MIN 1
		S: b5 OK
		C: b6 UID FETCH $ (UID)
		S: * 1 FETCH (UID 1)
		S: b6 OK
		C: b7 SEARCH RETURN (SAVE) DELETED
		S: b7 OK
		C: b8 UID EXPUNGE $
		S: * 3 EXPUNGE
		S: * 2 EXPUNGE
		S: * 2 RECENT
		S: b8 OK
		C: b9 FETCH $ (UID)
		S: b9 OK
		C: c1 SEARCH RETURN (SAVE) ALL
		S: c1 OK
		C: c2 SELECT INBOX`)
	c.ReadUntil(func(l string) bool { return len(l) > 3 && l[:3] == "c2 " })
	c.Script(`
		C: c3 FETCH $ (UID)
		S: c3 OK`)
}

// STATUS DELETED and DELETED-STORAGE (RFC 9208): the \Deleted
// messages and their size; DELETED-STORAGE used to kill the connection
// (go-imap wrote a nil size).
func TestStatusDeletedStorage(t *testing.T) {
	e := newTestEnv(t, nil)
	m := msg("gone", "body")
	e.Deliver(t, alice, "", m)
	e.Deliver(t, alice, "", msg("kept", "body"))
	c := e.login(t, "alice")
	c.ok("a1 SELECT INBOX")
	c.ok("a2 STORE 1 +FLAGS.SILENT (\\Deleted)")
	mustHave(t, c.ok("a3 STATUS INBOX (DELETED DELETED-STORAGE MESSAGES)"), fmt.Sprintf("(MESSAGES 2 DELETED 1 DELETED-STORAGE %d)", len(m)))
}
