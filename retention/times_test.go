package retention

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// berlin is a zone with DST: its clocks skip 02:00-03:00 on the last
// Sunday of March and repeat it on the last Sunday of October.
func berlin(t testing.TB) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Skipf("no time zone database: %v", err)
	}
	return loc
}

// testSnapshots are the 200 snapshots of the table-driven and restic
// tests: three years from September 2019, in Berlin time, with hand-picked
// ones at the DST changes, around ISO week 2020-W53 (28 December 2020 to
// 3 January 2021) and at year ends, and the rest pseudo-random (a fixed
// seed), bunched so that several share an hour, a day or a week. Every
// tenth of the random ones is from host "g" rather than "h"; some are tagged. No time is in
// the hour repeated in October: restic's --time, a local wall-clock
// time, cannot name it (TestDSTRepeatedHour covers it).
func testSnapshots(t testing.TB) []Snapshot {
	loc := berlin(t)
	at := func(s string) time.Time {
		tm, err := time.ParseInLocation(time.DateTime, s, loc)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	var times []time.Time
	picked := []string{
		// Spring forward: 02:00 becomes 03:00.
		"2020-03-28 23:30:00", "2020-03-29 01:30:00", "2020-03-29 01:59:59", "2020-03-29 03:00:00", "2020-03-29 03:30:00",
		"2021-03-28 01:45:00", "2021-03-28 03:15:00", "2022-03-27 01:00:00", "2022-03-27 04:00:00",
		// Fall back: 03:00 becomes 02:00 (the repeated hour left out).
		"2019-10-27 01:30:00", "2019-10-27 03:30:00", "2020-10-25 01:59:00", "2020-10-25 03:00:00", "2020-10-25 23:59:59",
		"2021-10-31 00:30:00", "2021-10-31 03:45:00",
		// ISO week 53 of 2020 and its neighbours.
		"2020-12-27 23:59:59", "2020-12-28 00:00:00", "2020-12-28 12:00:00", "2020-12-31 23:59:59", "2021-01-01 00:00:00",
		"2021-01-01 09:00:00", "2021-01-03 23:59:59", "2021-01-04 00:00:00", "2021-01-04 00:00:01",
		// Year and month ends.
		"2019-12-31 23:00:00", "2020-01-01 01:00:00", "2021-12-31 23:59:00", "2022-01-01 00:01:00",
		"2020-02-29 12:00:00", "2020-03-01 00:00:00", "2022-08-31 22:00:00",
	}
	for _, s := range picked {
		times = append(times, at(s))
	}
	rng := rand.New(rand.NewPCG(12, 2026))
	start := at("2019-09-01 00:00:00")
	end := at("2022-09-01 00:00:00")
	for len(times) < 200 {
		var tm time.Time
		if len(times) > 0 && rng.IntN(3) == 0 {
			// Near an earlier one: same hour, day or week, often.
			base := times[rng.IntN(len(times))]
			tm = base.Add(time.Duration(rng.Int64N(int64(10*24*time.Hour))) - 5*24*time.Hour)
		} else {
			tm = start.Add(time.Duration(rng.Int64N(int64(end.Sub(start)))))
		}
		tm = tm.Truncate(time.Second)
		if repeatedHour(tm, loc) || tm.Before(start) || !tm.Before(end) || slices.ContainsFunc(times, tm.Equal) {
			continue
		}
		times = append(times, tm)
	}
	snaps := make([]Snapshot, len(times))
	for i, tm := range times {
		s := Snapshot{ID: snapID(i), Time: tm, Host: "h", Paths: []string{"/data"}}
		if i >= len(picked) && i%10 == 9 {
			s.Host = "g"
		}
		switch {
		case i%17 == 0:
			s.Tags = []string{"a", "b"}
		case i%23 == 0:
			s.Tags = []string{"a"}
		case i%29 == 0:
			s.Tags = []string{"c"}
		}
		snaps[i] = s
	}
	return snaps
}

// repeatedHour reports whether t's wall-clock time in loc happens twice.
func repeatedHour(t time.Time, loc *time.Location) bool {
	back, err := time.ParseInLocation(time.DateTime, t.In(loc).Format(time.DateTime), loc)
	return err != nil || !back.Equal(t)
}

func snapID(i int) string {
	const hex = "0123456789abcdef"
	return string([]byte{'s', hex[i/256%16], hex[i/16%16], hex[i%16]})
}

func mustTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}
