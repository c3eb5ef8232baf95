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
