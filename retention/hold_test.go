package retention

import (
	"strings"
	"testing"
	"time"
)

func TestHoldMatch(t *testing.T) {
	alice := queryMsg
	bob := queryMsg
	bob.User = "bob@example.com"
	undated := queryMsg
	undated.Date = time.Time{}
	for _, c := range []struct {
		name string
		h    Hold
		msg  *Message
		want bool
	}{
		{"custodian", Hold{Custodians: []string{"alice@example.com"}}, &alice, true},
		{"other custodian", Hold{Custodians: []string{"alice@example.com"}}, &bob, false},
		{"either custodian", Hold{Custodians: []string{"x@y", "bob@example.com"}}, &bob, true},
		{"query, any user", Hold{Query: "merger"}, &bob, true},
		{"custodian and query", Hold{Custodians: []string{"alice@example.com"}, Query: "acquisition"}, &alice, false},
		{"in range", Hold{From: "2024-03-15", To: "2024-03-15"}, &alice, true},
		{"before range", Hold{From: "2024-03-16"}, &alice, false},
		{"after range", Hold{To: "2024-03-14"}, &alice, false},
		{"undated is held by a range", Hold{From: "2030-01-01"}, &undated, true},
	} {
		c.h.Case = "c"
		if err := c.h.Validate(); err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		m, _ := c.h.Matcher()
		if got := m.Match(c.msg); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

func TestHoldValidate(t *testing.T) {
	for _, c := range []struct {
		h   Hold
		err string
	}{
		{Hold{Query: "x"}, "case name: empty"},
		{Hold{Case: "a\nb", Query: "x"}, "control characters"},
		{Hold{Case: "c"}, "select messages"},
		{Hold{Case: "c", Custodians: []string{" "}}, "empty custodian"},
		{Hold{Case: "c", From: "2024-02-30"}, "YYYY-MM-DD"},
		{Hold{Case: "c", To: "tomorrow"}, "YYYY-MM-DD"},
		{Hold{Case: "c", From: "2024-02-01", To: "2024-01-31"}, "is after"},
		{Hold{Case: "c", Query: "foo:bar"}, "unknown field"},
	} {
		if err := c.h.Validate(); err == nil || !strings.Contains(err.Error(), c.err) {
			t.Errorf("%+v: %v, want an error with %q", c.h, err, c.err)
		}
	}
}

func TestHeldSnapshotsAreKept(t *testing.T) {
	day := func(d int) time.Time { return time.Date(2026, 1, d, 12, 0, 0, 0, time.UTC) }
	snaps := []Snapshot{{ID: "a", Time: day(1)}, {ID: "b", Time: day(2)}, {ID: "c", Time: day(3)}}
	ds := Policy{Last: 1}.Apply(snaps, Options{Now: day(10), Location: time.UTC, Held: map[string][]string{"a": {"X", "Y"}}})
	got := map[string]string{}
	for _, d := range ds {
		got[d.Snapshot.ID] = strings.Join(d.Reasons, ", ")
	}
	want := map[string]string{"c": "last snapshot", "b": "", "a": "held by case X, held by case Y"}
	for id, w := range want {
		if got[id] != w {
			t.Errorf("%s: reasons %q, want %q", id, got[id], w)
		}
	}
}
