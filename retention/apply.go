package retention

import (
	"cmp"
	"fmt"
	"slices"
	"time"
)

// Snapshot is what a policy looks at: a snapshot's identity, time and
// the fields it can be grouped and filtered by.
type Snapshot struct {
	ID    string    `json:"id"`
	Time  time.Time `json:"time"`
	Host  string    `json:"host"`
	Paths []string  `json:"paths"`
	Tags  []string  `json:"tags"`
}

// Decision is what a policy does with one snapshot.
type Decision struct {
	Snapshot Snapshot `json:"snapshot"`
	Keep     bool     `json:"keep"`
	// Reasons are the rules that keep it, in restic's words ("daily
	// snapshot", "within 1y", "has tags [a]"); none when it goes.
	Reasons []string `json:"reasons"`
	// Counters are the counts still left after this snapshot, as in
	// restic's JSON (0 when used up; -1 for unlimited).
	Counters Counters `json:"counters"`
}

// Counters are what is left of each count.
type Counters struct {
	Last    int `json:"last,omitempty"`
	Hourly  int `json:"hourly,omitempty"`
	Daily   int `json:"daily,omitempty"`
	Weekly  int `json:"weekly,omitempty"`
	Monthly int `json:"monthly,omitempty"`
	Yearly  int `json:"yearly,omitempty"`
}

// Options are the circumstances a policy is applied in.
type Options struct {
	// Now is the present: a snapshot after it (a clock set wrong, an
	// import with a future --time) is not taken as the newest that within
	// rules count back from, as in restic. Zero means time.Now().
	Now time.Time
	// Location is the calendar periods are taken in; nil is time.Local.
	Location *time.Location
	// Held maps a snapshot ID to the cases of the active legal holds
	// that select a message in it. Such a snapshot is kept whatever the
	// rules say, with the reason HeldReason(case); it uses up no count,
	// so that holds never shift which other snapshots the rules keep.
	Held map[string][]string
}

// Apply decides over the snapshots of one group and returns a decision
// for each, newest first (snapshots of the same time in ID order). An
// empty policy keeps every snapshot ("policy is empty"), as restic does;
// callers that should refuse or warn check Empty first.
func (p Policy) Apply(snaps []Snapshot, opt Options) []Decision {
	loc := opt.Location
	if loc == nil {
		loc = time.Local
	}
	now := opt.Now
	if now.IsZero() {
		now = time.Now()
	}
	ds := make([]Decision, len(snaps))
	for i, s := range snaps {
		ds[i].Snapshot = s
	}
	slices.SortStableFunc(ds, func(a, b Decision) int {
		if c := b.Snapshot.Time.Compare(a.Snapshot.Time); c != 0 {
			return c
		}
		return cmp.Compare(a.Snapshot.ID, b.Snapshot.ID)
	})
	if p.Empty() {
		for i := range ds {
			ds[i].keep("policy is empty")
		}
		return ds
	}

	// counted are the keep-N rules: each keeps the first snapshot it sees
	// of a new period (for Last, every snapshot is a period of its own)
	// while it has count left; -1 never runs out.
	type counted struct {
		left   *int
		period Period
		last   bool
		reason string
		prev   int
		seen   bool
	}
	c := Counters{p.Last, p.Hourly, p.Daily, p.Weekly, p.Monthly, p.Yearly}
	rules := []*counted{
		{left: &c.Last, last: true, reason: "last snapshot"},
		{left: &c.Hourly, period: Hour, reason: "hourly snapshot"},
		{left: &c.Daily, period: Day, reason: "daily snapshot"},
		{left: &c.Weekly, period: Week, reason: "weekly snapshot"},
		{left: &c.Monthly, period: Month, reason: "monthly snapshot"},
		{left: &c.Yearly, period: Year, reason: "yearly snapshot"},
	}
	type within struct {
		d      Duration
		period Period
		prev   int
		seen   bool
	}
	withins := []*within{
		{d: p.WithinHourly, period: Hour},
		{d: p.WithinDaily, period: Day},
		{d: p.WithinWeekly, period: Week},
		{d: p.WithinMonthly, period: Month},
		{d: p.WithinYearly, period: Year},
	}
	newest := newestBefore(ds, now).In(loc)

	for i := range ds {
		d := &ds[i]
		t := d.Snapshot.Time.In(loc)
		// Tags are not counted: every snapshot with the tags stays.
		for _, l := range p.Tags {
			if l.matches(d.Snapshot.Tags) {
				d.keep(fmt.Sprintf("has tags %s", l))
			}
		}
		if !p.Within.Zero() && t.After(p.Within.Before(newest)) {
			d.keep(fmt.Sprintf("within %s", p.Within))
		}
		for _, r := range rules {
			if *r.left == 0 {
				continue
			}
			key := i
			if !r.last {
				key = r.period.Key(t)
			}
			if r.seen && key == r.prev {
				continue // an older snapshot of a period already kept
			}
			r.prev, r.seen = key, true
			if *r.left > 0 {
				*r.left--
			}
			d.keep(r.reason)
		}
		for _, w := range withins {
			if w.d.Zero() || !t.After(w.d.Before(newest)) {
				continue
			}
			key := w.period.Key(t)
			if w.seen && key == w.prev {
				continue
			}
			w.prev, w.seen = key, true
			d.keep(fmt.Sprintf("%s within %s", w.period, w.d))
		}
		for _, c := range opt.Held[d.Snapshot.ID] {
			d.keep(HeldReason(c))
		}
		if d.Keep {
			d.Counters = c
		}
	}
	return ds
}

// newestBefore returns the time of the newest snapshot not after now
// (restic: "the latest snapshot must not be in the future"), or the zero
// time when every snapshot is in the future; within rules then keep all.
func newestBefore(ds []Decision, now time.Time) time.Time {
	var newest time.Time
	for _, d := range ds {
		if t := d.Snapshot.Time; t.After(newest) && t.Before(now) {
			newest = t
		}
	}
	return newest
}

func (d *Decision) keep(why string) {
	d.Keep = true
	d.Reasons = append(d.Reasons, why)
}
