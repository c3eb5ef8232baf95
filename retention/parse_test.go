package retention

import (
	"strings"
	"testing"
)

func TestParseDuration(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Duration
		err  string
	}{
		{in: "1y2m3d4h", want: Duration{1, 2, 3, 4}},
		{in: "4h3d", want: Duration{Days: 3, Hours: 4}},
		{in: " 36h ", want: Duration{Hours: 36}},
		{in: "0d", want: Duration{}},
		{in: "", want: Duration{}},
		{in: "5", err: "no unit"},
		{in: "1x", err: "unknown unit"},
		{in: "-1d", err: "want a number"},
		{in: "d", err: "want a number"},
		{in: "1d2d", err: "twice"},
		{in: "1 d", err: "unknown unit"},
		{in: "٣d", err: "want a number"}, // restic 0.14.0 panics on this
		{in: "99999999999999999999y", err: "too large"},
		{in: "1000001h", err: "too large"},
	} {
		got, err := ParseDuration(c.in)
		switch {
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%q: error %v, want one saying %q", c.in, err, c.err)
		case c.err == "" && (err != nil || got != c.want):
			t.Errorf("%q: %+v, %v; want %+v", c.in, got, err, c.want)
		}
	}
	if s := (Duration{1, 0, 3, 0}).String(); s != "1y3d" {
		t.Errorf("String %q", s)
	}
}

func TestParseCountAndGroupBy(t *testing.T) {
	for in, want := range map[string]int{"0": 0, "7": 7, "-1": Unlimited, "unlimited": Unlimited, " 3 ": 3} {
		if got, err := ParseCount(in); err != nil || got != want {
			t.Errorf("ParseCount(%q) = %d, %v", in, got, err)
		}
	}
	for _, in := range []string{"-2", "x", "", "1.5", "1e3"} {
		if _, err := ParseCount(in); err == nil {
			t.Errorf("ParseCount(%q) accepted", in)
		}
	}
	if g, err := ParseGroupBy("host, tags"); err != nil || g != (GroupBy{Host: true, Tags: true}) || g.String() != "host,tags" {
		t.Errorf("ParseGroupBy: %+v %v", g, err)
	}
	if g, err := ParseGroupBy(""); err != nil || g != (GroupBy{}) {
		t.Errorf("ParseGroupBy(\"\"): %+v %v", g, err)
	}
	if _, err := ParseGroupBy("host,user"); err == nil || !strings.Contains(err.Error(), `"user"`) {
		t.Errorf("ParseGroupBy(host,user): %v", err)
	}
	if err := (Policy{Daily: -2}).Validate(); err == nil {
		t.Error("Validate accepted -2")
	}
	p := Policy{Daily: 14, Monthly: Unlimited, Within: Duration{Days: 2}, Tags: []TagList{{"a", "b"}}}
	if s := p.String(); s != "keep 14 daily, all monthly snapshots, all snapshots within 2d of the newest, all snapshots with tags [a, b]" {
		t.Errorf("String: %s", s)
	}
}

// FuzzParseDuration: any input either fails or parses to non-negative
// fields that String writes back into the same duration.
func FuzzParseDuration(f *testing.F) {
	for _, s := range []string{"1y2m3d4h", "36h", "", "5", "-1d", "1d2d", "٣d", "0y0m", "99999999999999999999y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDuration(s)
		if err != nil {
			return
		}
		if d.Years < 0 || d.Months < 0 || d.Days < 0 || d.Hours < 0 || d.Hours > maxDurationField {
			t.Fatalf("%q: %+v", s, d)
		}
		back, err := ParseDuration(d.String())
		if err != nil || back != d {
			t.Fatalf("%q: %+v formats as %q, which parses as %+v, %v", s, d, d.String(), back, err)
		}
		d.Before(testNow) // must not panic
	})
}

// FuzzParsePolicy: the textual parts of a policy (counts, tag lists,
// group-by) never panic, and what parses validates and applies.
func FuzzParsePolicy(f *testing.F) {
	f.Add("14", "a,b", "host,paths", "1y")
	f.Add("unlimited", "", "", "2m3d")
	f.Add("-1", ",", "tags", "")
	f.Fuzz(func(t *testing.T, count, tags, groupBy, within string) {
		n, err := ParseCount(count)
		if err != nil {
			return
		}
		gb, err := ParseGroupBy(groupBy)
		if err != nil {
			return
		}
		w, err := ParseDuration(within)
		if err != nil {
			return
		}
		p := Policy{Daily: n, Last: n, Within: w, WithinWeekly: w, Tags: []TagList{ParseTagList(tags)}, GroupBy: &gb}
		if err := p.Validate(); err != nil {
			t.Fatalf("%+v: %v", p, err)
		}
		snaps := []Snapshot{{ID: "a", Time: testNow, Tags: []string{"a"}}, {ID: "b", Time: testNow.Add(-49 * 3600e9)}}
		if groups := Plan(snaps, p, Options{Now: testNow}); len(groups) == 0 {
			t.Fatal("no groups")
		}
	})
}

var testNow = mustTime("2026-12-07T21:00:00Z")
