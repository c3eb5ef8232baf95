package archive_test

import (
	"errors"
	"testing"

	"github.com/mailvault/mailvault/archive"
)

// TestRepairWriteOnly (issue 9, defect 4): with a write-only key every
// repair refuses with ErrWriteOnly and the repository is left exactly as
// it was. RebuildIndex used to find every pack "unreadable" (the key
// cannot decrypt a pack header), write an empty index superseding every
// old file and delete the old files.
func TestRepairWriteOnly(t *testing.T) {
	tr := newTestRepo(t, 1<<20)
	src := randomMaildir(t, 5, 8, 8<<10)
	runBackup(t, tr.open(t), src)
	creds, _ := tr.writeOnly(t)
	before := repoFiles(t, tr.dir)
	for _, tc := range []struct {
		name string
		run  func(r *archive.Repository) error
	}{
		{"index", func(r *archive.Repository) error { _, err := r.RebuildIndex(t.Context()); return err }},
		{"packs", func(r *archive.Repository) error {
			_, err := r.RepairPacks(t.Context(), archive.RepairPacksOptions{})
			return err
		}},
		{"snapshots", func(r *archive.Repository) error {
			_, err := r.RepairSnapshots(t.Context(), archive.RepairSnapshotsOptions{Forget: true})
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.run(tr.openWith(t, creds))
			if !errors.Is(err, archive.ErrWriteOnly) {
				t.Fatalf("repair %s with a write-only key: %v, want ErrWriteOnly", tc.name, err)
			}
			if after := repoFiles(t, tr.dir); !mapsEqual(before, after) {
				t.Fatalf("repair %s with a write-only key changed the repository:\nbefore %v\nafter  %v", tc.name, before, after)
			}
		})
	}
	checkClean(t, tr, 1)
}
