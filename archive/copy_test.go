package archive_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"filippo.io/age"

	"github.com/mailvault/mailvault/archive"
	"github.com/mailvault/mailvault/archive/local"
	"github.com/mailvault/mailvault/bench/corpus"
)

// newCopyTarget creates a repository that shares src's parameters.
func newCopyTarget(t *testing.T, src *archive.Repository) *testRepo {
	t.Helper()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "copy")
	be := local.New(dir)
	if err := be.Create(); err != nil {
		t.Fatal(err)
	}
	if _, err := archive.InitCopyParams(t.Context(), be, archive.KeyRecipients{Recipients: []string{id.Recipient().String()}}, src); err != nil {
		t.Fatal(err)
	}
	return &testRepo{dir: dir, be: be, id: id}
}

func snapshotsOf(t *testing.T, r *archive.Repository) []*archive.Snapshot {
	t.Helper()
	snaps, damaged, err := r.Snapshots(t.Context())
	if err != nil || len(damaged) > 0 {
		t.Fatalf("snapshots: %v %v", err, damaged)
	}
	return snaps
}

func TestCopyLocal(t *testing.T) {
	src := genCorpus(t, 11, 2e6)
	a := newTestRepo(t, 1<<20)
	ra := a.open(t)
	runBackup(t, ra, src)
	// A second snapshot with new mail in it.
	if _, err := corpus.Generate(t.Context(), filepath.Join(src, "more"), corpus.Options{Seed: 12, TargetBytes: 3e5, Domains: 1, UsersPerDomain: 1}); err != nil {
		t.Fatal(err)
	}
	runBackup(t, ra, src)
	snapsA := snapshotsOf(t, ra)
	if len(snapsA) != 2 {
		t.Fatalf("%d snapshots in A", len(snapsA))
	}

	b := newCopyTarget(t, ra)
	rb := b.open(t)
	st, err := archive.Copy(t.Context(), ra, rb, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if st.Snapshots != 2 || st.SnapshotsPresent != 0 || st.Blobs == 0 || int(st.Blobs) != ra.Index().Len() {
		t.Errorf("first copy: %+v (A holds %d blobs)", st, ra.Index().Len())
	}
	if rb.Index().Len() != ra.Index().Len() {
		t.Errorf("B holds %d blobs, A %d", rb.Index().Len(), ra.Index().Len())
	}

	// Restores from B equal restores from A, and B checks clean.
	rb2 := b.open(t)
	snapsB := snapshotsOf(t, rb2)
	if len(snapsB) != 2 {
		t.Fatalf("%d snapshots in B", len(snapsB))
	}
	for i := range snapsA {
		wantDir, _ := restoreTo(t, ra, snapsA[i], restoreOptions())
		gotDir, _ := restoreTo(t, rb2, snapsB[i], restoreOptions())
		compareTrees(t, wantDir, gotDir)
	}
	if snapsB[1].Parent == nil || *snapsB[1].Parent != snapsB[0].ID {
		t.Errorf("parent of the second copy is %v, want %s", snapsB[1].Parent, snapsB[0].ID)
	}
	res, err := b.openOpt(t, archive.Options{}).Check(t.Context(), archive.CheckOptions{ReadData: true})
	if err != nil || !res.OK() {
		t.Errorf("check B: %v %+v", err, res)
	}

	// A second copy moves nothing.
	st, err = archive.Copy(t.Context(), ra, rb2, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if st.Snapshots != 0 || st.SnapshotsPresent != 2 || st.Blobs != 0 || st.PacksRead != 0 {
		t.Errorf("second copy: %+v", st)
	}
	if n := len(snapshotsOf(t, b.open(t))); n != 2 {
		t.Errorf("%d snapshots in B after the second copy", n)
	}
}

func TestCopyOneSnapshotThenRest(t *testing.T) {
	src := genCorpus(t, 21, 1e6)
	a := newTestRepo(t, 1<<20)
	ra := a.open(t)
	first := runBackup(t, ra, src)
	if err := os.WriteFile(filepath.Join(src, "note.txt"), []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	runBackup(t, ra, src)

	b := newCopyTarget(t, ra)
	st, err := archive.Copy(t.Context(), ra, b.open(t), []archive.ID{first.Snapshot.ID}, nil)
	if err != nil || st.Snapshots != 1 {
		t.Fatalf("copy one: %v %+v", err, st)
	}
	blobs := st.Blobs
	st, err = archive.Copy(t.Context(), ra, b.open(t), nil, nil)
	if err != nil || st.Snapshots != 1 || st.SnapshotsPresent != 1 {
		t.Fatalf("copy rest: %v %+v", err, st)
	}
	// Only the new file's blob and the changed files tree move.
	if st.Blobs != 2 || blobs+st.Blobs != int64(ra.Index().Len()) {
		t.Errorf("copy rest moved %d blobs after %d (A holds %d)", st.Blobs, blobs, ra.Index().Len())
	}
}

func TestCopyRefused(t *testing.T) {
	src := genCorpus(t, 31, 3e5)
	a := newTestRepo(t, 0)
	ra := a.open(t)
	runBackup(t, ra, src)
	other := newTestRepo(t, 0).open(t)
	tests := []struct {
		name     string
		from, to *archive.Repository
		want     error
	}{
		{"different params", ra, other, archive.ErrParamsDiffer},
		{"same repository", ra, a.open(t), nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, err := archive.Copy(t.Context(), tc.from, tc.to, nil, nil)
			if err == nil {
				t.Fatalf("copy succeeded: %+v", st)
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("err = %v, want %v", err, tc.want)
			}
			if st.Blobs != 0 || st.Snapshots != 0 {
				t.Errorf("refused copy moved something: %+v", st)
			}
		})
	}
	if n := len(snapshotsOf(t, other)); n != 0 {
		t.Errorf("%d snapshots in the refused target", n)
	}
}
