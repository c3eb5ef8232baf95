package archive_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mailvault/mailvault/restore"
)

// TestRoundTripRoots backs up several source roots in one snapshot, one of
// them a bare Maildir (its INBOX is the root itself), and restores each
// below its root name.
func TestRoundTripRoots(t *testing.T) {
	a := genCorpus(t, 21, 5e5)
	bare := filepath.Join(t.TempDir(), "bare")
	for _, d := range []string{"cur", "new", "tmp", ".Sent/cur", ".Sent/new", ".Sent/tmp"} {
		if err := os.MkdirAll(filepath.Join(bare, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	mt := time.Date(2025, 5, 1, 0, 0, 0, 0, time.UTC)
	for _, f := range []string{"cur/1.M1.h,S=6:2,S", "new/2.M2.h", ".Sent/cur/3.M3.h:2,RS"} {
		p := filepath.Join(bare, f)
		if err := os.WriteFile(p, []byte("Subject: x\n\nhi\n")[:6], 0o600); err != nil {
			t.Fatal(err)
		}
		os.Chtimes(p, mt, mt)
	}
	tr := newTestRepo(t, 0)
	r := tr.open(t)
	res := runBackup(t, r, a, bare)
	if len(res.Snapshot.Roots) != 2 {
		t.Fatalf("%d roots", len(res.Snapshot.Roots))
	}
	got, _ := restoreTo(t, r, res.Snapshot, restore.Options{})
	compareTrees(t, a, filepath.Join(got, "mail"))
	compareTrees(t, bare, filepath.Join(got, "bare"))
}
