package archive

import (
	"testing"
	"time"
)

// TestRacy checks the rule that keeps a folder from being skipped when its
// directory changed so close to the parent snapshot's start that a later
// change could leave the same timestamps.
func TestRacy(t *testing.T) {
	start := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) int64 { return start.Add(d).UnixNano() }
	tests := []struct {
		name   string
		parent bool
		stamp  DirStamp
		want   bool
	}{
		{"no parent", false, DirStamp{MTime: at(-time.Hour), CTime: at(-time.Hour)}, true},
		{"old", true, DirStamp{MTime: at(-time.Hour), CTime: at(-time.Hour)}, false},
		{"just outside the window", true, DirStamp{MTime: at(-2*time.Second - 1), CTime: at(-2*time.Second - 1)}, false},
		{"mtime at the window edge", true, DirStamp{MTime: at(-2 * time.Second), CTime: at(-time.Hour)}, true},
		{"ctime inside the window", true, DirStamp{MTime: at(-time.Hour), CTime: at(-time.Second)}, true},
		{"changed during the backup", true, DirStamp{MTime: at(time.Second), CTime: at(time.Second)}, true},
		{"mtime set back, ctime recent", true, DirStamp{MTime: at(-48 * time.Hour), CTime: at(time.Minute)}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := &backup{}
			if tc.parent {
				b.parent = &Snapshot{Time: start}
			}
			if got := b.racy(tc.stamp); got != tc.want {
				t.Errorf("racy(%+v) = %v, want %v", tc.stamp, got, tc.want)
			}
		})
	}
}

// TestRacyParentDatedAhead: a parent whose recorded Time (backup --time)
// is after its own end has no known start, so every stamp is racy: none
// is trusted from a window in the future. A parent dated back only
// widens the window.
func TestRacyParentDatedAhead(t *testing.T) {
	end := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	old := DirStamp{MTime: end.Add(-time.Hour).UnixNano(), CTime: end.Add(-time.Hour).UnixNano()}
	b := &backup{parent: &Snapshot{Time: end.AddDate(5, 0, 0), EndTime: end}}
	if !b.racy(old) || !b.racyFolder(&FolderEntry{Cur: old, New: old}) {
		t.Error("a parent dated ahead trusted an hour-old stamp")
	}
	b.parent.Time = end.AddDate(-5, 0, 0)
	if !b.racy(old) {
		t.Error("a parent dated back trusted a stamp after its recorded time")
	}
	b.parent.Time = end.Add(-time.Minute)
	if b.racy(old) {
		t.Error("an ordinary parent found an hour-old stamp racy")
	}
}
