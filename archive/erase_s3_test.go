package archive_test

import (
	"strings"
	"testing"
	"time"

	"github.com/mailvault/mailvault/archive"
)

// TestRemoveMessagesObjectLock erases a message (picked by a predicate)
// from a MinIO repository with governance Object Lock of one day. Inside
// retention the old snapshots stay and are listed as waiting with their
// dates, the new ones are written, and the repository checks clean. Once
// retention ends (cut short by the test setup, as an administrator
// allowed to bypass governance could), erase run again removes the old
// snapshots without writing their twins again, and nothing the message
// used is left for prune to find.
func TestRemoveMessagesObjectLock(t *testing.T) {
	ctx := t.Context()
	l := newLockedS3(t)
	open, letGo := l.open, func() { l.letGo("") }
	check := func(snapshots int) {
		t.Helper()
		res, err := open().Check(ctx, archive.CheckOptions{ReadData: true})
		if err != nil {
			t.Fatal(err)
		}
		if !res.OK() || res.Snapshots != snapshots || res.PacksRead != res.Packs {
			t.Fatalf("check --read-data: %+v", res)
		}
	}

	src := randomMaildir(t, 31, 24, 64<<10)
	r := open()
	if _, err := r.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	backupThenHalf(t, r, src)
	opt := archive.EraseOptions{Select: archive.MessageSelector{Match: func(user, folder string, m *archive.Message) bool {
		return user == "alice@example.com" && m.Subject == "message 1"
	}}}

	res, err := open().RemoveMessages(ctx, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("inside retention: %d removed, %d snapshots rewritten, %d forgotten, %d waiting", len(res.Removed), len(res.Snapshots), len(res.Forgotten), len(res.Waiting))
	if len(res.Removed) != 2 || len(res.Snapshots) != 2 || len(res.Forgotten) != 0 || len(res.PacksRewritten)+len(res.PacksDeleted) != 0 {
		t.Fatalf("erase inside retention: %+v", res)
	}
	snapsWaiting := 0
	for _, w := range res.Waiting {
		if w.Mode != archive.Governance || !w.Until.After(time.Now()) {
			t.Errorf("waiting %s: want governance retention ahead", w)
		}
		if strings.HasPrefix(w.File, "snapshots/") {
			snapsWaiting++
		}
	}
	if snapsWaiting != 2 {
		t.Fatalf("%d snapshots waiting, want the 2 old ones: %v", snapsWaiting, res.Waiting)
	}
	check(4)

	letGo()
	again, err := open().RemoveMessages(ctx, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("after retention: resumed %v, %d removed, %d forgotten, %d packs rewritten, %d deleted, %d waiting",
		again.Resumed, len(again.Removed), len(again.Forgotten), len(again.PacksRewritten), len(again.PacksDeleted), len(again.Waiting))
	if !again.Resumed || len(again.Forgotten) != 2 || len(again.PacksRewritten)+len(again.PacksDeleted) == 0 {
		t.Fatalf("erase after retention: %+v", again)
	}
	for i, s := range again.Snapshots {
		if s.To != res.Snapshots[i].To {
			t.Errorf("snapshot %s rewritten as %s, though %s was stored the first time", s.From.Short(), s.To.Short(), res.Snapshots[i].To.Short())
		}
	}
	check(2)
	pr, err := open().Prune(ctx, archive.PruneOptions{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if pr.BlobsUnused != 0 {
		t.Errorf("after the erasure prune finds %d unused blobs", pr.BlobsUnused)
	}
}
