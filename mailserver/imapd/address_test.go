package imapd

import (
	"fmt"
	"testing"
)

// ENVELOPE keeps RFC 5322 groups (section 3.4) as RFC 3501 section 7.4.2
// writes them: (NIL NIL "name" NIL) before the members, (NIL NIL NIL NIL)
// after; a comment without a display name names the address (imaptest's
// fetch-envelope messages).
func TestEnvelopeAddressGroups(t *testing.T) {
	e := newTestEnv(t, nil)
	e.Deliver(t, alice, "", "Date: Thu, 15 Feb 2007 01:02:03 +0200\r\n"+
		"From: user@domain (Real Name)\r\n"+
		"To: group: g1@d1.org, g2@d2.org;, group2: g3@d3.org;\r\n"+
		"Cc: group:;, group2: (foo) ;\r\n\r\nbody\r\n")
	e.Deliver(t, alice, "", "Date: Thu, 15 Feb 2007 01:02:03 +0200\r\n"+
		"From: \"Doe, John\" <john (comment)@ (comment) example.org>, =?utf-8?q?J=C3=BCrgen?= <j@x.test>\r\n"+
		"To: undisclosed-recipients:;\r\n\r\nbody\r\n")
	e.Deliver(t, alice, "", "Date: Thu, 15 Feb 2007 01:02:03 +0200\r\nFrom: <@route:user@domain>\r\n\r\nbody\r\n")
	c := e.login(t, "alice")
	c.ok("a1 EXAMINE INBOX")
	out := c.ok("a2 FETCH 1:3 ENVELOPE")
	mustHave(t, out, `* 1 FETCH (ENVELOPE ("Thu, 15 Feb 2007 01:02:03 +0200" NIL (("Real Name" NIL "user" "domain")) (("Real Name" NIL "user" "domain")) (("Real Name" NIL "user" "domain")) `+
		`((NIL NIL "group" NIL) (NIL NIL "g1" "d1.org") (NIL NIL "g2" "d2.org") (NIL NIL NIL NIL) (NIL NIL "group2" NIL) (NIL NIL "g3" "d3.org") (NIL NIL NIL NIL)) `+
		`((NIL NIL "group" NIL) (NIL NIL NIL NIL) (NIL NIL "group2" NIL) (NIL NIL NIL NIL)) NIL NIL NIL))`)
	mustHave(t, out, `* 2 FETCH (ENVELOPE ("Thu, 15 Feb 2007 01:02:03 +0200" NIL (("Doe, John" NIL "john" "example.org") ("=?utf-8?q?J=C3=BCrgen?=" NIL "j" "x.test")) `)
	mustHave(t, out, `((NIL NIL "undisclosed-recipients" NIL) (NIL NIL NIL NIL)) NIL NIL NIL NIL))`)
	// An obsolete source route (RFC 5322 section 4.4) is the addr-adl.
	mustHave(t, out, `* 3 FETCH (ENVELOPE ("Thu, 15 Feb 2007 01:02:03 +0200" NIL ((NIL "@route" "user" "domain")) ((NIL "@route" "user" "domain")) ((NIL "@route" "user" "domain")) NIL NIL NIL NIL NIL))`)
	// The header cache serves the second FETCH; it must say the same.
	again := c.ok("a3 FETCH 1:3 ENVELOPE")
	if fmt.Sprint(again[:3]) != fmt.Sprint(out[:3]) {
		t.Fatalf("cached ENVELOPE differs:\n%q\n%q", out[:3], again[:3])
	}
}

// SEARCH FROM/TO/CC/BCC compare with the addresses too, written
// canonically, so that comments and spaces inside an addr-spec (RFC 5322
// section 3.4.1 CFWS) do not hide it, and a group's name is found
// (imaptest's search-addresses).
func TestSearchAddressesCanonical(t *testing.T) {
	e := newTestEnv(t, nil)
	for _, h := range []string{
		"From: user-from@domain.org\r\nTo: user-to@domain.org\r\n",
		"From: RealFrom <user-from@domain.org>\r\nTo: RealTo <user-to@domain.org>\r\n",
		"From: <user-from (comment)@ (comment) domain.org>\r\nTo: <user-to@domain.org>\r\n",
		"From: user-from@domain.org (RealFrom)\r\nTo: user-to@domain.org (RealTo)\r\n",
		"From: user-from1@domain.org, user-from2@domain.org\r\n",
		"From: RealFrom <user-from@domain.org>\r\nTo: groupname: groupuser1@domain.org, groupuser2@domain.org;,\r\n  groupname2: groupuser3@domain.org;\r\n",
		"From: RealFrom <user-from@domain.org>\r\nTo: groupname:;\r\n",
	} {
		e.Deliver(t, alice, "", h+"\r\nbody\r\n")
	}
	c := e.login(t, "alice")
	c.ok("a1 EXAMINE INBOX")
	for q, want := range map[string]string{
		"s1 SEARCH FROM user-from@domain.org": "* SEARCH 1 2 3 4 6 7",
		"s2 SEARCH FROM realfrom":             "* SEARCH 2 4 6 7",
		"s3 SEARCH FROM ser-fro":              "* SEARCH 1 2 3 4 5 6 7",
		"s4 SEARCH TO groupname":              "* SEARCH 6 7",
		"s5 SEARCH TO groupname2":             "* SEARCH 6",
		"s6 SEARCH TO groupuser3":             "* SEARCH 6",
		"s7 SEARCH TO groupuser4":             "* SEARCH",
		"s8 SEARCH FROM user-from2":           "* SEARCH 5",
		`s9 SEARCH HEADER FROM ""`:            "* SEARCH 1 2 3 4 5 6 7",
	} {
		if out := c.ok(q); out[0] != want {
			t.Errorf("%s: %q, want %q", q, out[0], want)
		}
	}
}

func TestParseAddressList(t *testing.T) {
	for in, want := range map[string]string{
		"a@b":                                "[{ a b }]",
		"A B <a@b>":                          "[{A B a b }]",
		"John Q. Public <jqp@x.test>":        "[{John Q. Public jqp x.test }]",
		"<@route,@r2:user@domain>":           "[{ user domain @route,@r2}]",
		"a@b (Name), \"Q, R\" <q@r>":         "[{Name a b } {Q, R q r }]",
		"g: a@b;":                            "[{ g  } { a b } {   }]",
		"bare, a@b":                          "[{ a b }]",
		"<a@[127.0.0.1]>":                    "[{ a [127.0.0.1] }]",
		"x (unterminated comment":            "[]",
		"first.last (c) @ (d) example . org": "[{c first.last example.org }]",
	} {
		if got := fmt.Sprint(parseAddressList(in)); got != want {
			t.Errorf("%q: %s, want %s", in, got, want)
		}
	}
}

// FuzzParseAddressList: any header value parses, in bounded time, into
// addresses whose group markers balance.
func FuzzParseAddressList(f *testing.F) {
	for _, s := range []string{
		"group: g1@d1.org, g2@d2.org;, group2: (foo) ;",
		"<user-from (comment)@ (comment) domain.org>",
		"<@route,@r2:user@domain>", "\"q\\\"x\" <a@[1.2.3.4]>", "a;b:c<>@,.", "((((", "\"", "[", ":;:;<<@",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		depth := 0
		for _, a := range parseAddressList(v) {
			switch {
			case a.IsGroupStart():
				depth++
			case a.IsGroupEnd():
				depth--
			}
			if depth < 0 || depth > 1 {
				t.Fatalf("%q: unbalanced groups", v)
			}
		}
		if depth != 0 {
			t.Fatalf("%q: unclosed group", v)
		}
	})
}
