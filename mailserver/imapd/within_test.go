package imapd

import (
	"strconv"
	"testing"

	"github.com/mailvault/mailvault/mailserver/internal/servertest"
)

// WITHIN (RFC 5032): OLDER and YOUNGER compare INTERNALDATE with the
// time of the search, in seconds; SMALLER keeps its bound beside LARGER
// (go-imap's And cleared it).
func TestSearchWithin(t *testing.T) {
	e := newTestEnv(t, nil)
	e.Deliver(t, alice, "", msg("new", "fresh body"))
	c := e.login(t, "alice")
	mustHave(t, c.ok("a0 CAPABILITY"), " WITHIN")
	old := msg("old", "an old body that is a good deal longer than the others")
	c.Send(`a1 APPEND INBOX "05-Feb-2021 10:11:12 +0000" {` + strconv.Itoa(len(old)) + "+}\r\n" + old)
	mustHave(t, c.ReadUntil(servertest.HasPrefix("a1 ")), "a1 OK")
	c.ok("a2 SELECT INBOX")
	c.Script(`
		C: b1 SEARCH OLDER 3600
		S: * SEARCH 2
		S: b1 OK
		C: b2 SEARCH YOUNGER 3600
		S: * SEARCH 1
		S: b2 OK
		C: b3 SEARCH OLDER 3600 YOUNGER 7200
		S: * SEARCH
		S: b3 OK
		C: b4 SEARCH OR YOUNGER 60 OLDER 86400
		S: * SEARCH 1 2
		S: b4 OK
		C: b5 SEARCH OLDER 0
		S: b5 BAD
		C: b6 SEARCH SMALLER 180 LARGER 10
		S: * SEARCH 1
		S: b6 OK`)
}
