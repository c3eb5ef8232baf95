package snapshot

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/mailvault/mailvault/retention"
)

// Retention says how many of mailvault's own snapshots to keep per
// period, like sanoid's frequently/hourly/daily/weekly/monthly/yearly
// counts: for each period with a count n, the newest snapshot of each of
// the n most recent periods that have a snapshot is kept. Periods are
// calendar periods in UTC (weeks are ISO weeks). A snapshot kept for any
// reason is kept.
type Retention struct {
	Frequent, Hourly, Daily, Weekly, Monthly, Yearly int
	// FrequentPeriod is the length of a "frequent" period (15 minutes if
	// zero, as in sanoid).
	FrequentPeriod time.Duration
}

// Decision is what a prune does with one snapshot, and why.
type Decision struct {
	Snap    Snap
	Keep    bool
	Reasons []string
	// Err is set when the snapshot was to be destroyed and could not be.
	Err error
}

// Plan decides over mailvault's own snapshots (Ours); other snapshots are
// left out: they are never pruned. Snapshots come newest first, as
// ZFSTool.Snapshots returns them; so do the decisions. The newest
// snapshot is always kept, so that pruning never leaves no recovery
// point; a held snapshot and one with clones are kept whatever the
// counts say.
func (r Retention) Plan(snaps []Snap) []Decision {
	var ds []Decision
	for _, s := range snaps {
		if s.Ours {
			ds = append(ds, Decision{Snap: s})
		}
	}
	for i := range ds {
		s := &ds[i]
		if i == 0 {
			s.keep("newest")
		}
		if s.Snap.Holds > 0 {
			why := fmt.Sprintf("held (%d holds", s.Snap.Holds)
			if len(s.Snap.HoldTags) > 0 {
				why += ": " + strings.Join(s.Snap.HoldTags, ", ")
			}
			s.keep(why + ")")
		}
		if len(s.Snap.Clones) > 0 {
			s.keep("has clones: " + strings.Join(s.Snap.Clones, ", "))
		}
	}
	period := r.FrequentPeriod
	if period <= 0 {
		period = 15 * time.Minute
	}
	// The calendar periods are package retention's, which `forget`'s
	// keep-* counts use too (the same ISO weeks), here on the UTC
	// calendar; "frequent" is sanoid's own.
	buckets := []struct {
		name string
		n    int
		key  func(time.Time) int64
	}{
		{"frequent", r.Frequent, func(t time.Time) int64 { return t.Truncate(period).Unix() }},
		{"hourly", r.Hourly, periodKey(retention.Hour)},
		{"daily", r.Daily, periodKey(retention.Day)},
		{"weekly", r.Weekly, periodKey(retention.Week)},
		{"monthly", r.Monthly, periodKey(retention.Month)},
		{"yearly", r.Yearly, periodKey(retention.Year)},
	}
	for _, b := range buckets {
		kept := 0
		var last int64
		for i := range ds {
			if kept >= b.n {
				break
			}
			k := b.key(ds[i].Snap.Time.UTC())
			if kept > 0 && k == last {
				continue // an older snapshot of a period already kept
			}
			last = k
			kept++
			ds[i].keep(fmt.Sprintf("%s %d/%d", b.name, kept, b.n))
		}
	}
	for i := range ds {
		if !ds[i].Keep {
			ds[i].Reasons = []string{"not needed by any retention count"}
		}
	}
	return ds
}

func periodKey(p retention.Period) func(time.Time) int64 {
	return func(t time.Time) int64 { return int64(p.Key(t)) }
}

func (d *Decision) keep(why string) {
	d.Keep = true
	d.Reasons = append(d.Reasons, why)
}

// Prune applies a retention to mailvault's snapshots of a dataset (and
// its descendants). With dryRun it only returns the plan. A snapshot that
// gained a hold since the plan was made is kept, with the reason.
func (t *ZFSTool) Prune(ctx context.Context, dataset string, r Retention, dryRun bool) ([]Decision, error) {
	snaps, err := t.Snapshots(ctx, dataset)
	if err != nil {
		return nil, err
	}
	plan := r.Plan(snaps)
	if dryRun {
		return plan, nil
	}
	var errs []error
	for i := range plan {
		d := &plan[i]
		if d.Keep {
			continue
		}
		if err := t.Destroy(ctx, d.Snap); err != nil {
			if errors.Is(err, ErrHeld) {
				d.Keep, d.Reasons = true, []string{err.Error()}
				continue
			}
			d.Err = err
			errs = append(errs, err)
		}
	}
	return plan, errors.Join(errs...)
}
