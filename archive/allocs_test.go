package archive_test

import (
	"runtime"
	"testing"

	"github.com/mailvault/mailvault/archive"
)

// TestBackupAllocationsPerMessage bounds the heap allocations of a full
// backup of many small messages, per message. At a million messages the
// backup is CPU-bound on its cost per message, and at the batch commands'
// GOGC=25 the bytes it allocates set how often the collector runs; a
// count, unlike a time, is the same on a loaded machine. Measured when
// the bound was set: 50 allocations per message before the small read and
// compression buffers were pooled and IDs marshalled in one allocation,
// 37 after (BenchmarkBackupSmallMessages has the same figure for 20,000).
func TestBackupAllocationsPerMessage(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector's allocations are not the backup's")
	}
	const n = 4000
	const maxPerMessage = 42
	tree := smallTree(t, n)
	tr := newTestRepo(t, 0)
	r := tr.openOpt(t, archive.Options{Compression: 1})
	if _, err := r.LoadIndex(t.Context()); err != nil {
		t.Fatal(err)
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	before := ms.Mallocs
	res := runBackup(t, r, tree)
	runtime.ReadMemStats(&ms)
	if got := res.Snapshot.Summary.Messages; got != n {
		t.Fatalf("backed up %d messages, want %d", got, n)
	}
	per := float64(ms.Mallocs-before) / n
	t.Logf("%.1f allocations per message", per)
	if per > maxPerMessage {
		t.Errorf("%.1f allocations per message, want at most %d", per, maxPerMessage)
	}
}
