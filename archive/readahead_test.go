package archive_test

import (
	"testing"

	"github.com/mailvault/mailvault/bench/corpus"
)

// TestBackupReadAheadBudget backs up a corpus with attachments, cold (read
// from the disk past the page cache, where the file system allows) and
// from the page cache, while the budget of files read ahead holds one or
// a few at a time, so that the queue waits for room and the buffer's
// room is given out again many times: the backup finishes (a queue that waited
// for room held by files it had not sent would not) and restores byte for
// byte.
func TestBackupReadAheadBudget(t *testing.T) {
	src := genCorpus(t, 41, 6e6)
	for _, c := range []struct {
		budget int
		cold   bool
	}{{1 << 20, true}, {4 << 20, false}} {
		tr := newTestRepo(t, 1<<20)
		r := tr.open(t)
		r.SetReadAheadBudget(c.budget)
		if c.cold {
			if _, _, err := corpus.Evict(src); err != nil {
				t.Fatal(err)
			}
		}
		res := runBackup(t, r, src)
		if res.Snapshot.Summary.Errors != 0 {
			t.Fatalf("%+v: %d errors: %v", c, res.Snapshot.Summary.Errors, res.Warnings)
		}
		got, _ := restoreTo(t, r, res.Snapshot, restoreOptions())
		compareTrees(t, src, got)
	}
}
