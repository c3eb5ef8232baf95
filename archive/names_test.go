package archive_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestMessageNamesRoundTrip: message file names restore exactly as they
// were, also those that do not follow the Maildir convention to the letter
// (an info part in new/, none in cur/, unsorted flags, '!' separators).
func TestMessageNamesRoundTrip(t *testing.T) {
	names := []string{
		"cur/1700000000.M1P1Q1.h,S=6:2,FS",
		"cur/1700000001.M1P1Q2.h,S=6:2,",
		"cur/1700000002.M1P1Q3.h,S=6",
		"cur/1700000003.M1P1Q4.h,S=6:2,SF",
		"cur/1700000004.M1P1Q5.h,S=6!2,S",
		"cur/1700000005.M1P1Q6.h:2,a",
		"new/1700000006.M1P1Q7.h,S=6",
		"new/1700000007.M1P1Q8.h,S=6:2,",
		"new/1700000008.M1P1Q9.h:2,S",
		"cur/odd name with spaces:2,S",
	}
	src := filepath.Join(t.TempDir(), "Maildir")
	for _, d := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(src, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	mt := time.Date(2023, 11, 14, 22, 13, 20, 0, time.UTC)
	for _, n := range names {
		p := filepath.Join(src, n)
		if err := os.WriteFile(p, []byte("a: b\n\nx"), 0o600); err != nil {
			t.Fatal(err)
		}
		os.Chtimes(p, mt, mt)
	}
	tr := newTestRepo(t, 0)
	r := tr.open(t)
	snap := runBackup(t, r, src).Snapshot
	got, _ := restoreTo(t, r, snap, restoreOptions())
	compareTrees(t, src, got)
	// And once more from an incremental snapshot, where the messages are
	// taken over from the parent.
	snap = runBackup(t, tr.open(t), src).Snapshot
	got, _ = restoreTo(t, tr.open(t), snap, restoreOptions())
	compareTrees(t, src, got)
}
