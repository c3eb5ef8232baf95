package snapshot

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseName(t *testing.T) {
	at := time.Date(2026, 3, 4, 5, 6, 7, 891e6, time.UTC)
	tests := []struct {
		name string
		want time.Time
		ok   bool
	}{
		{SnapshotName(at), at, true},
		{SnapshotName(at) + "-3", at, true},
		{"mailvault-garbage", time.Time{}, false},
		{"autosnap_2026-03-04_05:06:07_hourly", time.Time{}, false},
		{"20260304T050607.891Z", time.Time{}, false},
	}
	for _, tt := range tests {
		got, ok := parseName(tt.name)
		if ok != tt.ok || !got.Equal(tt.want) {
			t.Errorf("parseName(%q) = %v, %v; want %v, %v", tt.name, got, ok, tt.want, tt.ok)
		}
	}
}

// snapsAt makes our snapshots at the given times (newest first, as
// ZFSTool.Snapshots returns them).
func snapsAt(times ...time.Time) []Snap {
	var out []Snap
	for _, t := range times {
		out = append(out, Snap{Name: SnapshotName(t), Dataset: "tank/mail", Time: t, Ours: true})
	}
	slices.SortFunc(out, func(a, b Snap) int { return b.Time.Compare(a.Time) })
	return out
}

func hoursBack(base time.Time, hours ...int) []time.Time {
	var out []time.Time
	for _, h := range hours {
		out = append(out, base.Add(-time.Duration(h)*time.Hour))
	}
	return out
}

func TestRetentionPlan(t *testing.T) {
	base := time.Date(2026, 6, 15, 12, 30, 0, 0, time.UTC) // a Monday
	held := snapsAt(hoursBack(base, 0, 1, 50)...)
	held[2].Holds, held[2].HoldTags = 1, []string{"legal"}
	foreign := append(snapsAt(hoursBack(base, 0, 1)...), Snap{Name: "mine", Dataset: "tank/mail", Time: base.Add(-time.Hour)})
	cloned := snapsAt(hoursBack(base, 0, 5)...)
	cloned[1].Clones = []string{"tank/work"}

	tests := []struct {
		name  string
		r     Retention
		snaps []Snap
		keep  []int    // indexes (newest first) kept
		why   []string // a reason that must appear for each kept one
	}{
		{
			name:  "nothing asked: only the newest stays",
			snaps: snapsAt(hoursBack(base, 0, 1, 2)...),
			keep:  []int{0},
			why:   []string{"newest"},
		},
		{
			name:  "hourly keeps the newest of each of the last n hours",
			r:     Retention{Hourly: 2},
			snaps: snapsAt(base, base.Add(-10*time.Minute), base.Add(-31*time.Minute), base.Add(-3*time.Hour)),
			// 12:30, 12:20 (same hour as 12:30), 11:59, 09:30
			keep: []int{0, 2},
			why:  []string{"hourly 1/2", "hourly 2/2"},
		},
		{
			name:  "daily counts days that have a snapshot, not calendar days",
			r:     Retention{Daily: 3},
			snaps: snapsAt(hoursBack(base, 0, 1, 24, 24*10, 24*10+1)...),
			keep:  []int{0, 2, 3},
			why:   []string{"daily 1/3", "daily 2/3", "daily 3/3"},
		},
		{
			name:  "frequent uses 15-minute periods",
			r:     Retention{Frequent: 2},
			snaps: snapsAt(base, base.Add(-5*time.Minute), base.Add(-20*time.Minute), base.Add(-40*time.Minute)),
			// 12:30 | 12:25 (12:15 period) 12:10 (12:00 period) 11:50
			keep: []int{0, 1},
			why:  []string{"frequent 1/2", "frequent 2/2"},
		},
		{
			name:  "weekly, monthly and yearly",
			r:     Retention{Weekly: 2, Monthly: 2, Yearly: 2},
			snaps: snapsAt(base, base.AddDate(0, 0, -1), base.AddDate(0, 0, -3), base.AddDate(0, -1, 0), base.AddDate(-1, 0, 0)),
			// Mon 15 Jun; Sun 14 Jun (previous ISO week); Fri 12 Jun; 15 May; 2025
			keep: []int{0, 1, 3, 4},
			why:  []string{"weekly 1/2", "weekly 2/2", "monthly 2/2", "yearly 2/2"},
		},
		{
			name:  "a held snapshot is kept and says by whom",
			r:     Retention{Hourly: 1},
			snaps: held,
			keep:  []int{0, 2},
			why:   []string{"hourly 1/1", "held (1 holds: legal)"},
		},
		{
			name:  "the origin of a clone is kept",
			snaps: cloned,
			keep:  []int{0, 1},
			why:   []string{"newest", "has clones: tank/work"},
		},
		{
			name:  "snapshots that are not ours are not in the plan",
			snaps: foreign,
			keep:  []int{0},
			why:   []string{"newest"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plan := tt.r.Plan(tt.snaps)
			var kept []int
			for i, d := range plan {
				if d.Snap.Name == "mine" {
					t.Fatalf("plan includes a snapshot that is not ours: %+v", d)
				}
				if d.Keep {
					kept = append(kept, i)
				} else if len(d.Reasons) == 0 {
					t.Errorf("%s destroyed without a reason", d.Snap.Name)
				}
			}
			if !slices.Equal(kept, tt.keep) {
				t.Fatalf("kept %v, want %v; plan:\n%s", kept, tt.keep, planText(plan))
			}
			for j, i := range tt.keep {
				if !slices.Contains(plan[i].Reasons, tt.why[j]) {
					t.Errorf("%s kept for %q, want a reason %q", plan[i].Snap.Name, plan[i].Reasons, tt.why[j])
				}
			}
		})
	}
}

func planText(plan []Decision) string {
	var b strings.Builder
	for _, d := range plan {
		b.WriteString(d.Snap.Time.Format(time.RFC3339) + " keep=" + map[bool]string{true: "yes", false: "no"}[d.Keep] + " " + strings.Join(d.Reasons, "; ") + "\n")
	}
	return b.String()
}
