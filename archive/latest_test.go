package archive_test

import (
	"testing"

	"github.com/mailvault/mailvault/archive"
)

// TestLatestDecodesOneSnapshot: choosing the latest snapshot decodes the
// time of each snapshot file but the folder list of the chosen one only —
// at 40,000 folders each list is some 16 MB of JSON, which made a restore
// of one message at 10 M messages decode every snapshot's.
func TestLatestDecodesOneSnapshot(t *testing.T) {
	tr := newTestRepo(t, 0)
	src := genCorpus(t, 7, 200<<10)
	r := tr.open(t)
	var last archive.ID
	for range 3 {
		last = runBackup(t, r, src).Snapshot.ID
	}
	r = tr.open(t)
	s, err := r.FindSnapshot(t.Context(), "latest")
	if err != nil {
		t.Fatal(err)
	}
	if s.ID != last {
		t.Errorf("latest is %s, want %s", s.ID.Short(), last.Short())
	}
	if len(s.Roots) != 1 || len(s.Roots[0].Folders) == 0 {
		t.Errorf("latest has %d roots, want one with its folders", len(s.Roots))
	}
	if n := r.SnapshotsDecoded(); n != 1 {
		t.Errorf("choosing the latest of 3 snapshots decoded %d whole, want 1", n)
	}
}
