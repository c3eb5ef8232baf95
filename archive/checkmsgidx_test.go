package archive_test

import (
	"cmp"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailvault/mailvault/archive"
)

// TestCheckMessageIndexAgainstTrees: check compares each root's Message-ID
// index with its folder trees. After full and incremental backups that
// delete, move, copy and remove a folder, the two agree; an index whose
// blobs are all sound but that leaves a message out, puts one in another
// folder, or holds a run out of order is reported, naming the snapshot —
// a restore by Message-ID would miss the message without a word.
func TestCheckMessageIndexAgainstTrees(t *testing.T) {
	for _, alter := range []string{"", "drop", "refolder", "unsorted"} {
		t.Run(cmp.Or(alter, "sound"), func(t *testing.T) {
			src := filepath.Join(t.TempDir(), "mail")
			md := filepath.Join(src, "example.com", "alice", "Maildir")
			mailbox(t, md, 0, 1, 2)
			for f := range 4 {
				mailbox(t, filepath.Join(md, fmt.Sprintf(".F%d", f)), 10*f+10, 10*f+11, 10*f+12)
			}
			tr := newTestRepo(t, 1<<20)
			runBackup(t, tr.open(t), src)
			// A copy in another folder (same Message-ID twice), a move, a
			// delete and a removed folder.
			data, err := os.ReadFile(filepath.Join(md, ".F0", "cur", mailName(10)))
			if err != nil {
				t.Fatal(err)
			}
			os.WriteFile(filepath.Join(md, ".F1", "cur", "copy:2,S"), data, 0o600)
			os.Rename(filepath.Join(md, ".F2", "cur", mailName(30)), filepath.Join(md, "cur", mailName(30)))
			os.Remove(filepath.Join(md, "cur", mailName(1)))
			os.RemoveAll(filepath.Join(md, ".F3"))
			r := tr.open(t)
			snap := runBackup(t, r, src).Snapshot
			if alter == "" {
				checkClean(t, tr, 2)
				return
			}
			bad := *snap
			bad.Roots = []archive.SourceRoot{snap.Roots[0]}
			id, err := r.WriteMsgIndexAltered(t.Context(), &bad.Roots[0], alter)
			if err != nil {
				t.Fatal(err)
			}
			bad.Roots[0].MessageIndex = &id
			sid, err := r.SaveJSONFile(t.Context(), archive.SnapshotFile, &bad)
			if err != nil {
				t.Fatal(err)
			}
			res, err := tr.open(t).Check(t.Context(), archive.CheckOptions{ReadData: true})
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Errors) != 1 {
				t.Fatalf("check found %d errors, want 1: %+v", len(res.Errors), res.Errors)
			}
			p := res.Errors[0]
			want := map[string]string{"drop": "it lists 11 messages by Message-ID where the folder trees have 12",
				"refolder": "it lists other messages than the folder trees hold (12 each)",
				"unsorted": "out of order"}[alter]
			if p.Object != "message index "+id.String() || !strings.Contains(p.Err, want) ||
				len(p.Affected) != 1 || !strings.HasPrefix(p.Affected[0], "snapshot "+sid.Short()+" Message-ID index of ") {
				t.Errorf("check: %+v, want the index %s of snapshot %s: %q", p, id.Short(), sid.Short(), want)
			}
			t.Logf("%s: %s: %s", p.Object, p.Err, p.Affected)

			// repair snapshots writes the snapshot again without the
			// index; the next backup builds a new one from the trees.
			rs, err := tr.open(t).RepairSnapshots(t.Context(), archive.RepairSnapshotsOptions{Forget: true})
			if err != nil {
				t.Fatal(err)
			}
			if len(rs.IndexesDropped) != 1 || len(rs.Dropped) != 0 || len(rs.Repaired) != 1 || rs.Repaired[0].From != sid || len(rs.Forgotten) != 1 {
				t.Fatalf("repair snapshots: %+v", rs)
			}
			checkClean(t, tr, 3)
			r = tr.open(t)
			fixed, err := r.LoadSnapshot(t.Context(), rs.Repaired[0].To)
			if err != nil {
				t.Fatal(err)
			}
			if fixed.Roots[0].MessageIndex != nil {
				t.Error("the repaired snapshot keeps its index")
			}
			next := runBackup(t, r, src).Snapshot
			if next.Parent == nil || *next.Parent != fixed.ID || next.Roots[0].MessageIndex == nil {
				t.Fatalf("the backup after the repair: parent %v, index %v", next.Parent, next.Roots[0].MessageIndex)
			}
			checkClean(t, tr, 4)
			mid := "m10@example.org" // in .F0 and, copied, in .F1
			if found, ok, err := r.FindMessage(t.Context(), &next.Roots[0], mid); err != nil || !ok || len(found) != 2 {
				t.Errorf("FindMessage(%s) after the repair = %v, %v, %v; want two", mid, found, ok, err)
			}
		})
	}
}
