package imapd

import (
	"fmt"
	"testing"
)

// SORT (RFC 5256), SORT=DISPLAY (RFC 5957) and ESORT's RETURN options
// (RFC 5267): base subjects drop Re:/Fwd:/[blob] leaders and (fwd)
// trailers, addresses compare by their first mailbox, ties keep sequence
// order whatever REVERSE says, and a UID SORT answers UIDs.
func TestSort(t *testing.T) {
	e := newTestEnv(t, nil)
	for _, m := range []struct{ from, subject, date, body string }{
		{"Zed <zed@x.test>", "Re: [list] beta", "Mon, 02 Jan 2006 10:00:00 +0000", "short"},
		{"amy@x.test", "alpha", "Mon, 02 Jan 2006 09:00:00 +0000", "a somewhat longer body"},
		{"bob@x.test", "[fwd: Beta] (fwd)", "Mon, 02 Jan 2006 11:00:00 +0000", "mid body"},
		{"Bob Two <bob@y.test>", "gamma", "Mon, 02 Jan 2006 08:00:00 -0300", "x"},
	} {
		e.Deliver(t, alice, "", fmt.Sprintf("From: %s\r\nTo: alice@example.test\r\nSubject: %s\r\nDate: %s\r\n\r\n%s\r\n", m.from, m.subject, m.date, m.body))
	}
	c := e.login(t, "alice")
	mustHave(t, c.ok("a0 CAPABILITY"), " SORT ", " SORT=DISPLAY ", " ESORT ")
	c.ok("a1 SELECT INBOX")
	c.ok("a2 STORE 3 +FLAGS (\\Seen)")
	c.Script(`
		C: b1 SORT (SUBJECT) UTF-8 ALL
		S: * SORT 2 1 3 4
		S: b1 OK
		C: b2 SORT (REVERSE SUBJECT) US-ASCII ALL
		S: * SORT 4 1 3 2
		S: b2 OK
		C: b3 SORT (DATE) UTF-8 ALL
		S: * SORT 2 1 3 4
		S: b3 OK
		C: b4 SORT (FROM REVERSE DATE) UTF-8 ALL
		S: * SORT 2 3 4 1
		S: b4 OK
		C: b5 SORT (DISPLAYFROM) UTF-8 ALL
		S: * SORT 2 4 3 1
		S: b5 OK
		C: b6 UID SORT (SIZE) UTF-8 UNSEEN
		S: * SORT 4 1 2
		S: b6 OK
		C: b7 SORT RETURN (MIN MAX COUNT) (REVERSE SUBJECT) UTF-8 ALL
		S: * ESEARCH (TAG "b7") MIN 4 MAX 2 COUNT 4
		S: b7 OK
		C: b8 SORT RETURN () (SUBJECT) UTF-8 ALL
		S: * ESEARCH (TAG "b8") ALL 2,1,3:4
		S: b8 OK
		C: b8a UID SORT RETURN (ALL) (REVERSE DATE) UTF-8 1:2
		S: * ESEARCH (TAG "b8a") UID ALL 1:2
		S: b8a OK
		C: b9 SORT (SUBJECT) KOI8-R ALL
		S: b9 NO [BADCHARSET]
		C: b10 SORT (COLOUR) UTF-8 ALL
		S: b10 BAD
		C: b11 SORT (SUBJECT) UTF-8 SUBJECT nothing
		S: * SORT
		S: b11 OK`)
}

func TestBaseSubject(t *testing.T) {
	for in, want := range map[string]string{
		"[foo] Fwd: [bar] Re: fw: b (fWd)  (fwd)": "b",
		"Re: [FWD: c]":                         "c",
		"[xyz]":                                "[xyz]",
		"re: [fwd: [fwd: re: [fwd: babylon]]]": "babylon",
		"Ad: Re: x":                            "Ad: Re: x",
		"  a \t  b  ":                          "a b",
		"":                                     "",
	} {
		if got, _ := baseSubject(in); got != want {
			t.Errorf("baseSubject(%q) = %q, want %q", in, got, want)
		}
	}
}
