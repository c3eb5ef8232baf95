package retention

import (
	"strings"
	"testing"
	"time"
)

var queryMsg = Message{
	User:      "alice@example.com",
	From:      []string{"Bob Builder <bob@example.com>"},
	To:        []string{"alice@example.com", "carol@example.org"},
	Cc:        []string{"dave@example.net"},
	Subject:   "Q3 board minutes: merger",
	MessageID: "<1234@mail.example.com>",
	Date:      time.Date(2024, 3, 15, 10, 0, 0, 0, time.UTC),
}

func TestQueryMatch(t *testing.T) {
	for _, c := range []struct {
		q    string
		want bool
	}{
		{"merger", true},
		{"MERGER", true},
		{"bob", true},         // bare words look in from, to, cc, subject
		{"dave", true},        // cc
		{"from:bob", true},    //
		{"from:alice", false}, // alice is only in To
		{"to:carol", true},    //
		{"cc:dave to:alice", true},
		{"cc:carol", false},
		{`subject:"board minutes"`, true},
		{`subject:"minutes board"`, false},
		{`"board minutes"`, true},
		{"message-id:1234@mail.example.com", true},
		{"message-id:<1234@mail.example.com>", true},
		{"message-id:1234", false}, // the whole ID, not a part
		{"date:2024-03-15", true},
		{"date:2024-03-14", false},
		{"date:2024-03-01..2024-03-31", true},
		{"date:2024-03-16..", false},
		{"date:..2024-03-15", true},
		{"date:..2024-03-14", false},
		{"merger acquisition", false}, // AND by default
		{"merger AND bob", true},
		{"merger OR acquisition", true},
		{"acquisition OR from:nobody", false},
		{"-merger", false},
		{"NOT merger", false},
		{"NOT acquisition merger", true},
		{"merger -(from:bob OR to:zed)", false},
		{"(acquisition OR merger) date:2024-03-15", true},
		{"acquisition OR merger date:2025-01-01", false}, // AND binds tighter
		{`"AND"`, false},                                 // a quoted operator is a word
		{`"OR"`, true},                                   // ...found in carol@example.org
		{"Q3 10:00", false},
	} {
		q, err := ParseQuery(c.q)
		if err != nil {
			t.Errorf("%q: %v", c.q, err)
			continue
		}
		if got := q.Match(&queryMsg); got != c.want {
			t.Errorf("%q (%s) matches: %v, want %v", c.q, q, got, c.want)
		}
	}
}

func TestQueryErrors(t *testing.T) {
	for _, c := range []struct{ q, err string }{
		{"", "empty"},
		{"   ", "empty"},
		{"foo:bar", `unknown field "foo"`},
		{"Re:hello", `unknown field "Re"`},
		{`subject:"open`, "unterminated quote"},
		{"subject:", "with no value"},
		{`""`, "empty phrase"},
		{"date:2024-13-01", "YYYY-MM-DD"},
		{"date:yesterday", "YYYY-MM-DD"},
		{"date:..", "want DAY"},
		{"date:2024-02-01..2024-01-01", "ends before it starts"},
		{"(a b", "missing )"},
		{"a b)", `unexpected ")"`},
		{"a OR", "at the end"},
		{"OR a", `before "OR"`},
		{"NOT", "NOT with nothing"},
		{"a -", "NOT with nothing"},
		{"AND a", "nothing before"},
		{"a AND", "nothing after"},
		{"()", `before ")"`},
	} {
		_, err := ParseQuery(c.q)
		if err == nil || !strings.Contains(err.Error(), c.err) {
			t.Errorf("%q: error %v, want one with %q", c.q, err, c.err)
		}
	}
}

// FuzzParseQuery: no input panics, and whatever parses has a canonical
// form that parses to the same query and matches the same message.
func FuzzParseQuery(f *testing.F) {
	for _, s := range []string{"merger", `from:bob subject:"a b"`, "a OR (b -c)", "date:2024-01-01..2024-02-01",
		`message-id:<x@y>`, `"say \"hi\""`, "NOT NOT a", "a AND b OR c", "-(a)", "date:..2024-01-01"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		q, err := ParseQuery(s)
		if err != nil {
			return
		}
		canon := q.String()
		q2, err := ParseQuery(canon)
		if err != nil {
			t.Fatalf("%q: canonical form %q does not parse: %v", s, canon, err)
		}
		if q2.String() != canon {
			t.Fatalf("%q: canonical form %q reads back as %q", s, canon, q2.String())
		}
		if q.Match(&queryMsg) != q2.Match(&queryMsg) {
			t.Fatalf("%q and its canonical form %q match differently", s, canon)
		}
	})
}
