package retention

import (
	"slices"
	"testing"
	"time"
)

// keptBy returns the kept decisions of a plan by the Berlin wall-clock
// time of their snapshot, for host h's group, and the number kept in all
// groups.
func keptBy(t *testing.T, groups []Group, loc *time.Location) (map[string][]string, map[string]bool, int) {
	t.Helper()
	kept := map[string][]string{}
	all := map[string]bool{}
	n := 0
	for _, g := range groups {
		for _, d := range g.Decisions {
			name := d.Snapshot.Time.In(loc).Format(time.DateTime)
			if d.Snapshot.Host == "h" {
				all[name] = true
			}
			if !d.Keep {
				if len(d.Reasons) > 0 {
					t.Errorf("%s removed with reasons %q", name, d.Reasons)
				}
				continue
			}
			n++
			if d.Snapshot.Host == "h" {
				kept[name] = d.Reasons
			}
		}
	}
	return kept, all, n
}

// TestPolicyTable applies policies to the 200 snapshots of testSnapshots
// (Europe/Berlin, three years, DST changes, 2020-W53) and checks how many
// each keeps (the numbers TestSameAsRestic sees restic 0.14.0 keep), that
// named snapshots are kept or removed for the stated reasons, and, for
// single counts, that the kept set is the newest snapshot of each of the
// N most recent periods, computed independently of Apply.
func TestPolicyTable(t *testing.T) {
	loc := berlin(t)
	snaps := testSnapshots(t)
	all := Policy{}.Apply(snaps, Options{})
	if len(all) != 200 {
		t.Fatalf("%d snapshots", len(all))
	}
	cases := []struct {
		name   string
		p      Policy
		kept   int                 // over both hosts' groups
		keep   map[string][]string // host h's snapshots kept, with their reasons
		remove []string            // host h's snapshots removed
		period *Period             // compare with the independent count
		count  int
	}{
		{name: "last 5", p: Policy{Last: 5}, kept: 10, period: nil, count: 5},
		{name: "hourly 40", p: Policy{Hourly: 40}, kept: 57, period: ptr(Hour), count: 40},
		{name: "daily 30", p: Policy{Daily: 30}, kept: 47, period: ptr(Day), count: 30},
		{name: "weekly 30", p: Policy{Weekly: 30}, kept: 47, period: ptr(Week), count: 30},
		{name: "monthly 18", p: Policy{Monthly: 18}, kept: 31, period: ptr(Month), count: 18},
		{name: "yearly 10", p: Policy{Yearly: 10}, kept: 8, period: ptr(Year), count: 10,
			keep: map[string][]string{
				"2020-12-31 23:59:59": {"yearly snapshot"}, // the last second of 2020
			}},
		{name: "daily 14 weekly 8 monthly 24 yearly 7", p: Policy{Daily: 14, Weekly: 8, Monthly: 24, Yearly: 7}, kept: 52},
		{name: "hourly unlimited", p: Policy{Hourly: Unlimited}, period: ptr(Hour), count: 1 << 30,
			keep: map[string][]string{
				// Spring forward: 01:xx and 03:xx are different hours.
				"2020-03-29 01:59:59": {"hourly snapshot"},
				"2020-03-29 03:30:00": {"hourly snapshot"},
			},
			remove: []string{"2020-03-29 01:30:00", "2020-03-29 03:00:00"}},
		{name: "daily unlimited", p: Policy{Daily: Unlimited}, period: ptr(Day), count: 1 << 30,
			keep: map[string][]string{
				// 29 March 2020 had 23 hours; one day all the same.
				"2020-03-29 03:30:00": {"daily snapshot"},
				"2020-03-28 23:30:00": {"daily snapshot"},
				"2020-10-25 23:59:59": {"daily snapshot"}, // a 25-hour day
			},
			remove: []string{"2020-03-29 01:30:00", "2020-03-29 01:59:59", "2020-03-29 03:00:00", "2020-10-25 01:59:00", "2020-10-25 03:00:00"}},
		{name: "weekly unlimited", p: Policy{Weekly: Unlimited}, kept: 98, period: ptr(Week), count: 1 << 30,
			keep: map[string][]string{
				"2020-12-27 23:59:59": {"weekly snapshot"}, // the end of 2020-W52
				"2021-01-03 23:59:59": {"weekly snapshot"}, // the end of 2020-W53
			},
			// 2020-W53 runs from Monday 28 December 2020 to Sunday 3
			// January 2021: one week across the new year.
			remove: []string{"2020-12-28 00:00:00", "2020-12-28 12:00:00", "2020-12-31 23:59:59", "2021-01-01 00:00:00", "2021-01-01 09:00:00"}},
		{name: "monthly unlimited", p: Policy{Monthly: Unlimited}, period: ptr(Month), count: 1 << 30},
		{name: "yearly unlimited", p: Policy{Yearly: Unlimited}, period: ptr(Year), count: 1 << 30,
			keep: map[string][]string{
				"2019-12-31 23:00:00": {"yearly snapshot"},
				"2020-12-31 23:59:59": {"yearly snapshot"},
			},
			remove: []string{"2021-01-01 00:00:00"}},
		{name: "within 1y2m3d4h", p: Policy{Within: Duration{1, 2, 3, 4}}, kept: 79},
		{name: "within 5m", p: Policy{Within: Duration{Months: 5}}, kept: 31},
		{name: "within-hourly 3d ... within-yearly 3y", p: Policy{WithinHourly: Duration{Days: 3}, WithinDaily: Duration{Months: 1},
			WithinWeekly: Duration{Months: 6}, WithinMonthly: Duration{Years: 2}, WithinYearly: Duration{Years: 3}}, kept: 49},
		{name: "within-weekly 1y weekly 4 within 36h", p: Policy{WithinWeekly: Duration{Years: 1}, Weekly: 4, Within: Duration{Hours: 36}}, kept: 37},
		{name: "tags a,b or c, last 2", p: Policy{Tags: []TagList{{"a", "b"}, {"c"}}, Last: 2}, kept: 22,
			keep: map[string][]string{
				// testSnapshots tags the first (i=0) "a","b".
				"2020-03-28 23:30:00": {"has tags [a, b]"},
			}},
		// i%17 == 0 (12 of them) or i%23 == 0 but not 0 (8) carry "a".
		{name: "tag a only", p: Policy{Tags: []TagList{{"a"}}}, kept: 20},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			groups := Plan(snaps, c.p, Options{Location: loc})
			kept, names, n := keptBy(t, groups, loc)
			if c.kept != 0 && n != c.kept {
				t.Errorf("kept %d, want %d", n, c.kept)
			}
			for name, why := range c.keep {
				if !names[name] {
					t.Fatalf("no snapshot at %s", name)
				}
				if got, ok := kept[name]; !ok || !slices.Equal(got, why) {
					t.Errorf("%s: kept %v for %q, want kept for %q", name, ok, got, why)
				}
			}
			for _, name := range c.remove {
				if !names[name] {
					t.Fatalf("no snapshot at %s", name)
				}
				if why, ok := kept[name]; ok {
					t.Errorf("%s: kept for %q, want removed", name, why)
				}
			}
			if c.count != 0 {
				for _, g := range groups {
					checkNewestPerPeriod(t, g, c.period, c.count, loc)
				}
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

// checkNewestPerPeriod checks a group's decisions under a single count
// against a direct reading of the rule: bucket every snapshot, take the
// n most recent buckets, keep the newest of each (period nil: the n
// newest snapshots).
func checkNewestPerPeriod(t *testing.T, g Group, period *Period, n int, loc *time.Location) {
	t.Helper()
	newest := map[int]Snapshot{}
	var keys []int
	for i, d := range g.Decisions {
		k := i
		if period != nil {
			k = period.Key(d.Snapshot.Time.In(loc))
		}
		if s, ok := newest[k]; !ok || d.Snapshot.Time.After(s.Time) {
			if !ok {
				keys = append(keys, k)
			}
			newest[k] = d.Snapshot
		}
	}
	slices.SortFunc(keys, func(a, b int) int { return newest[b].Time.Compare(newest[a].Time) })
	want := map[string]bool{}
	for _, k := range keys[:min(n, len(keys))] {
		want[newest[k].ID] = true
	}
	for _, d := range g.Decisions {
		if d.Keep != want[d.Snapshot.ID] {
			t.Errorf("%s %s: keep %v, the rule says %v", g.Key, d.Snapshot.Time.In(loc), d.Keep, want[d.Snapshot.ID])
		}
	}
}

// TestWithinCutoff checks the within rules' cutoff over the 200
// snapshots: kept exactly when newer than the calendar span before the
// group's newest snapshot.
func TestWithinCutoff(t *testing.T) {
	loc := berlin(t)
	snaps := testSnapshots(t)
	for _, d := range []Duration{{Hours: 36}, {Days: 10}, {Months: 5}, {Years: 1, Months: 2, Days: 3, Hours: 4}, {Years: 3}} {
		for _, g := range Plan(snaps, Policy{Within: d}, Options{Location: loc}) {
			newest := g.Decisions[0].Snapshot.Time.In(loc)
			cut := newest.AddDate(-d.Years, -d.Months, -d.Days).Add(-time.Duration(d.Hours) * time.Hour)
			for _, dd := range g.Decisions {
				if want := dd.Snapshot.Time.After(cut); dd.Keep != want {
					t.Errorf("within %s of %s: %s kept %v", d, newest, dd.Snapshot.Time.In(loc), dd.Keep)
				}
			}
		}
	}
}

// TestDSTRepeatedHour: when clocks go back, 02:15 CEST and 02:45 CET are
// 90 minutes apart but in the same local hour, so an hourly count keeps
// one of them; on a UTC calendar they are two hours.
func TestDSTRepeatedHour(t *testing.T) {
	loc := berlin(t)
	snaps := []Snapshot{
		{ID: "cest", Time: time.Date(2020, 10, 25, 0, 15, 0, 0, time.UTC)}, // 02:15 CEST
		{ID: "cet", Time: time.Date(2020, 10, 25, 1, 45, 0, 0, time.UTC)},  // 02:45 CET
		{ID: "one", Time: time.Date(2020, 10, 24, 23, 30, 0, 0, time.UTC)}, // 01:30 CEST
	}
	if got := snaps[0].Time.In(loc).Hour(); got != 2 || snaps[1].Time.In(loc).Hour() != 2 {
		t.Fatalf("hours %d, %d", got, snaps[1].Time.In(loc).Hour())
	}
	ds := Policy{Hourly: Unlimited}.Apply(snaps, Options{Location: loc})
	if keeps(ds) != "cet one" {
		t.Errorf("Berlin: kept %q, want the CET one and 01:30", keeps(ds))
	}
	ds = Policy{Hourly: Unlimited}.Apply(snaps, Options{Location: time.UTC})
	if keeps(ds) != "cet cest one" {
		t.Errorf("UTC: kept %q, want all three", keeps(ds))
	}
	// A day is a calendar day of 25 hours: within 1d of 02:45 CET on 25
	// October reaches back to 02:45 CEST on the 24th, 25 hours.
	ds = Policy{Within: Duration{Days: 1}}.Apply([]Snapshot{
		{ID: "new", Time: snaps[1].Time},
		{ID: "24h", Time: snaps[1].Time.Add(-24 * time.Hour)},
		{ID: "24h59m", Time: snaps[1].Time.Add(-25*time.Hour + time.Minute)},
		{ID: "25h", Time: snaps[1].Time.Add(-25 * time.Hour)},
	}, Options{Location: loc})
	if keeps(ds) != "new 24h 24h59m" {
		t.Errorf("within 1d over the 25-hour day: kept %q", keeps(ds))
	}
}

// TestLocalCalendar: periods are the local calendar's. 1 March 2020
// 00:30 in Berlin is 29 February in UTC; 1 January 2021 00:30 is still
// 2020 in UTC.
func TestLocalCalendar(t *testing.T) {
	loc := berlin(t)
	snaps := []Snapshot{
		{ID: "mar", Time: time.Date(2020, 3, 1, 0, 30, 0, 0, loc)},
		{ID: "feb", Time: time.Date(2020, 2, 29, 22, 0, 0, 0, loc)},
	}
	if got := keeps(Policy{Monthly: Unlimited}.Apply(snaps, Options{Location: loc})); got != "mar feb" {
		t.Errorf("Berlin months: kept %q", got)
	}
	if got := keeps(Policy{Monthly: Unlimited}.Apply(snaps, Options{Location: time.UTC})); got != "mar" {
		t.Errorf("UTC months: kept %q", got)
	}
	snaps = []Snapshot{
		{ID: "2021", Time: time.Date(2021, 1, 1, 0, 30, 0, 0, loc)},
		{ID: "2020", Time: time.Date(2020, 12, 31, 12, 0, 0, 0, loc)},
	}
	if got := keeps(Policy{Yearly: 5}.Apply(snaps, Options{Location: loc})); got != "2021 2020" {
		t.Errorf("Berlin years: kept %q", got)
	}
	if got := keeps(Policy{Yearly: 5}.Apply(snaps, Options{Location: time.UTC})); got != "2021" {
		t.Errorf("UTC years: kept %q", got)
	}
}

func keeps(ds []Decision) string {
	s := ""
	for _, d := range ds {
		if d.Keep {
			if s != "" {
				s += " "
			}
			s += d.Snapshot.ID
		}
	}
	return s
}

// TestFutureSnapshot: a snapshot after Now is kept by within rules but
// is not the newest they count back from (restic's rule).
func TestFutureSnapshot(t *testing.T) {
	now := time.Date(2026, 1, 10, 12, 0, 0, 0, time.UTC)
	snaps := []Snapshot{
		{ID: "future", Time: now.AddDate(5, 0, 0)},
		{ID: "new", Time: now.Add(-time.Hour)},
		{ID: "day", Time: now.Add(-23 * time.Hour)},
		{ID: "old", Time: now.Add(-48 * time.Hour)},
	}
	ds := Policy{Within: Duration{Days: 1}}.Apply(snaps, Options{Now: now, Location: time.UTC})
	if keeps(ds) != "future new day" {
		t.Errorf("kept %q", keeps(ds))
	}
	// All in the future: nothing to count back from, all kept.
	ds = Policy{Within: Duration{Days: 1}}.Apply(snaps[:1], Options{Now: now, Location: time.UTC})
	if keeps(ds) != "future" {
		t.Errorf("kept %q", keeps(ds))
	}
}

func TestEmptyPolicyKeepsAll(t *testing.T) {
	snaps := testSnapshots(t)
	for _, g := range Plan(snaps, Policy{}, Options{}) {
		for _, d := range g.Decisions {
			if !d.Keep || !slices.Equal(d.Reasons, []string{"policy is empty"}) {
				t.Fatalf("%v", d)
			}
		}
	}
	if !(Policy{GroupBy: &GroupBy{}}).Empty() || (Policy{Tags: []TagList{{""}}}).Empty() {
		t.Error("Empty")
	}
}

func TestCountersAndLast(t *testing.T) {
	base := time.Date(2021, 6, 1, 12, 0, 0, 0, time.UTC)
	var snaps []Snapshot
	for i := range 5 {
		snaps = append(snaps, Snapshot{ID: string(rune('a' + i)), Time: base.Add(-time.Duration(i) * time.Minute)})
	}
	ds := Policy{Last: 3, Daily: Unlimited}.Apply(snaps, Options{Location: time.UTC})
	if keeps(ds) != "a b c" {
		t.Fatalf("kept %q", keeps(ds))
	}
	if !slices.Equal(ds[0].Reasons, []string{"last snapshot", "daily snapshot"}) || ds[0].Counters != (Counters{Last: 2, Daily: -1}) {
		t.Errorf("first: %q %+v", ds[0].Reasons, ds[0].Counters)
	}
	if ds[2].Counters != (Counters{Daily: -1}) || ds[3].Keep {
		t.Errorf("third: %+v; fourth kept %v", ds[2].Counters, ds[3].Keep)
	}
}

func TestGroupsAndFilter(t *testing.T) {
	t0 := time.Date(2021, 6, 1, 12, 0, 0, 0, time.UTC)
	snaps := []Snapshot{
		{ID: "1", Time: t0, Host: "a", Paths: []string{"/y", "/x"}, Tags: []string{"t2", "t1"}},
		{ID: "2", Time: t0.Add(-time.Hour), Host: "a", Paths: []string{"/x", "/y"}, Tags: []string{"t1", "t2"}},
		{ID: "3", Time: t0.Add(-2 * time.Hour), Host: "a", Paths: []string{"/x", "/y"}},
		{ID: "4", Time: t0.Add(-3 * time.Hour), Host: "b", Paths: []string{"/x"}},
	}
	groups := Plan(snaps, Policy{Last: 1}, Options{})
	if len(groups) != 2 || groups[0].Key.Host != "a" || len(groups[0].Decisions) != 3 || groups[0].Key.String() != `host "a", paths [/x, /y]` {
		t.Fatalf("groups %+v", groups)
	}
	gb := GroupBy{Host: true, Paths: true, Tags: true}
	if groups = Plan(snaps, Policy{Last: 1, GroupBy: &gb}, Options{}); len(groups) != 3 {
		t.Errorf("by tags too: %d groups", len(groups))
	}
	if groups = Plan(snaps, Policy{Last: 1, GroupBy: &GroupBy{}}, Options{}); len(groups) != 1 || groups[0].Key.String() != "all snapshots" {
		t.Errorf("no grouping: %d groups", len(groups))
	}
	f := Filter{Hosts: []string{"a"}, Tags: []TagList{{"t1", "t2"}, {""}}}
	var ids []string
	for _, s := range snaps {
		if f.Match(s) {
			ids = append(ids, s.ID)
		}
	}
	if !slices.Equal(ids, []string{"1", "2", "3"}) {
		t.Errorf("filter picked %v", ids)
	}
	if g := (Group{Decisions: []Decision{{}}}); !g.RemovesAll() {
		t.Error("RemovesAll")
	}
}
