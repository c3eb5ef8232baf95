package archive_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/mailvault/mailvault/archive"
	"github.com/mailvault/mailvault/archive/local"
)

// packsOf returns the packs holding blobs of type t (a pack holds one
// type), those with the most blobs first.
func packsOf(r *archive.Repository, t archive.BlobType) []archive.ID {
	byPack := r.Index().PackBlobs()
	var out []archive.ID
	for p, blobs := range byPack {
		if len(blobs) > 0 && blobs[0].Type == t {
			out = append(out, p)
		}
	}
	slices.SortFunc(out, func(a, b archive.ID) int {
		if n, m := len(byPack[a]), len(byPack[b]); n != m {
			return m - n
		}
		return slices.Compare(a[:], b[:])
	})
	return out
}

// repairFixture is a repository with one snapshot of a Maildir of 48
// messages of 48 KiB each, spread over several data packs, and optionally
// a copy of it made by Copy.
type repairFixture struct {
	tr, copy *testRepo
	src      string
	snap     *archive.Snapshot
}

func newRepairFixture(t *testing.T, withCopy bool) *repairFixture {
	t.Helper()
	f := &repairFixture{tr: newTestRepo(t, 1<<20), src: randomMaildir(t, 21, 48, 48<<10)}
	r := f.tr.open(t)
	f.snap = runBackup(t, r, f.src).Snapshot
	if withCopy {
		f.copy = newCopyTarget(t, r)
		if _, err := archive.Copy(t.Context(), r, f.copy.open(t), nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

func uniques(lost []archive.LostMessage) []string {
	var out []string
	for _, m := range lost {
		if m.Unique != "" {
			out = append(out, m.Unique)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// TestRepairPacks damages a pack in several ways, runs repair packs (with
// and without a copy of the repository to take lost blobs from) and repair
// snapshots --forget, and checks that check --read-data is clean
// afterwards, that the repaired snapshot restores as the source less
// exactly the messages listed as lost (with a copy: the whole source), and
// that the next backup stores those messages again.
func TestRepairPacks(t *testing.T) {
	tests := []struct {
		name     string
		withCopy bool
		// damage damages one pack of r's and returns it.
		damage func(t *testing.T, tr *testRepo, r *archive.Repository) archive.ID
		// damageCopy damages, in the copy, a blob the damaged pack held.
		damageCopy func(t *testing.T, f *repairFixture, bad archive.ID)
		// some blobs of the damaged pack are expected to survive
		partial bool
		// the folder's message list is in the damaged pack
		treeLost bool
		missing  bool
	}{
		{name: "data pack, one age chunk", damage: flipDataMiddle, partial: true},
		{name: "data pack, age header", damage: flipDataHeader},
		{name: "data pack missing", damage: removeDataPack, missing: true},
		{name: "tree pack", damage: flipTreePack, treeLost: true},
		{name: "data pack, one age chunk, from a copy", withCopy: true, damage: flipDataMiddle, partial: true},
		{name: "data pack, age header, from a copy", withCopy: true, damage: flipDataHeader},
		{name: "tree pack, from a copy", withCopy: true, damage: flipTreePack},
		{name: "data pack, age header, from a damaged copy", withCopy: true, damage: flipDataHeader, damageCopy: flipBlobInCopy},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			f := newRepairFixture(t, tc.withCopy)
			bad := tc.damage(t, f.tr, f.tr.open(t))
			if tc.damageCopy != nil {
				tc.damageCopy(t, f, bad)
			}
			lossy := !tc.withCopy || tc.damageCopy != nil

			r := f.tr.openOpt(t, archive.Options{Compression: 2})
			opt := archive.RepairPacksOptions{}
			if tc.withCopy {
				opt.From = f.copy.open(t)
			}
			res, err := r.RepairPacks(ctx, opt)
			if err != nil {
				t.Fatalf("repair packs: %v", err)
			}
			t.Logf("repair packs: %d salvaged, %d from the copy, %d lost; %d messages lost", res.BlobsSalvaged, res.BlobsFromCopy, res.BlobsLost, len(res.Lost))
			if len(res.Packs) != 1 || res.Packs[0].Pack != bad || res.Packs[0].Deleted == tc.missing {
				t.Fatalf("repaired packs %+v, want only %s (deleted: %v)", res.Packs, bad, !tc.missing)
			}
			if tc.partial && res.BlobsSalvaged == 0 {
				t.Errorf("nothing salvaged from a pack with one damaged age chunk")
			}
			if tc.withCopy && res.BlobsFromCopy == 0 {
				t.Fatalf("nothing taken from the copy: %+v", res)
			}
			if lossy != (res.BlobsLost > 0 && len(res.Lost) > 0) {
				t.Fatalf("%d blobs lost (%v), want a loss: %v", res.BlobsLost, res.Lost, lossy)
			}
			if again, err := f.tr.openOpt(t, archive.Options{}).RepairPacks(ctx, archive.RepairPacksOptions{}); err != nil || len(again.Packs) != 0 {
				t.Fatalf("a second repair packs: %+v, %v", again, err)
			}

			rs, err := f.tr.openOpt(t, archive.Options{Compression: 2}).RepairSnapshots(ctx, archive.RepairSnapshotsOptions{Forget: true})
			if err != nil {
				t.Fatalf("repair snapshots: %v", err)
			}
			if !lossy {
				if len(rs.Repaired) != 0 {
					t.Fatalf("with a copy, repair snapshots rewrote %+v", rs.Repaired)
				}
			} else {
				if len(rs.Repaired) != 1 || rs.Repaired[0].From != f.snap.ID || !slices.Equal(rs.Forgotten, []archive.ID{f.snap.ID}) {
					t.Fatalf("repair snapshots: %+v", rs)
				}
				if got, want := uniques(rs.Dropped), uniques(res.Lost); !slices.Equal(got, want) {
					t.Errorf("repair snapshots dropped %v, repair packs said %v were lost", got, want)
				}
			}
			checkClean(t, f.tr, 1)

			r = f.tr.open(t)
			snaps := snapshotsOf(t, r)
			repaired := snaps[0]
			if !lossy {
				if repaired.ID != f.snap.ID {
					t.Fatalf("with a copy the snapshot is %s, want the original %s", repaired.ID, f.snap.ID)
				}
				restoreEqual(t, f.tr, repaired, f.src)
				return
			}
			if !slices.Contains(repaired.Tags, "repaired") || repaired.ID != rs.Repaired[0].To {
				t.Fatalf("the snapshot left is %s with tags %v, want %s tagged repaired", repaired.ID, repaired.Tags, rs.Repaired[0].To)
			}
			var got string
			if !tc.treeLost {
				got, _ = restoreTo(t, r, repaired, restoreOptions())
			} else if repaired.Summary.Messages != 0 || len(repaired.Roots[0].Folders) != 0 || !repaired.Roots[0].Files.IsNull() {
				t.Fatalf("every tree is lost, yet the repaired snapshot has %d messages: %+v", repaired.Summary.Messages, repaired.Roots)
			}

			// The next backup stores the dropped messages again.
			next := runBackup(t, f.tr.open(t), f.src).Snapshot
			restoreEqual(t, f.tr, next, f.src)
			checkClean(t, f.tr, 2)

			dropped := uniques(rs.Dropped)
			var kept int
			for _, rel := range mailFiles(t, f.src) {
				if tc.treeLost || slices.Contains(dropped, uniqueOf(rel)) {
					if err := os.Remove(filepath.Join(f.src, filepath.FromSlash(rel))); err != nil {
						t.Fatal(err)
					}
					continue
				}
				kept++
			}
			if tc.treeLost {
				return
			}
			if kept == 0 || int64(kept) != repaired.Summary.Messages {
				t.Fatalf("%d messages kept, the repaired snapshot says %d", kept, repaired.Summary.Messages)
			}
			compareTrees(t, f.src, got)
		})
	}
}

func flipDataMiddle(t *testing.T, tr *testRepo, r *archive.Repository) archive.ID {
	p := packsOf(r, archive.DataBlob)[0]
	flipMiddle(t, tr.packPath(p.String()))
	return p
}

// flipDataHeader damages the age header (the wrapped file key): no chunk
// of the pack can be opened.
func flipDataHeader(t *testing.T, tr *testRepo, r *archive.Repository) archive.ID {
	p := packsOf(r, archive.DataBlob)[0]
	flipByte(t, tr.packPath(p.String()), 60)
	return p
}

func removeDataPack(t *testing.T, tr *testRepo, r *archive.Repository) archive.ID {
	p := packsOf(r, archive.DataBlob)[0]
	if err := os.Remove(tr.packPath(p.String())); err != nil {
		t.Fatal(err)
	}
	return p
}

func flipTreePack(t *testing.T, tr *testRepo, r *archive.Repository) archive.ID {
	p := packsOf(r, archive.TreeBlob)
	if len(p) != 1 {
		t.Fatalf("%d tree packs, want 1", len(p))
	}
	flipMiddle(t, tr.packPath(p[0].String()))
	return p[0]
}

// TestRepairPacksObjectLock: on locked storage a damaged pack, the old
// index file and the original snapshot cannot be deleted yet. The pack
// stays listed with no blobs (a backup does not adopt it and bring its
// damaged blobs back) and the repaired snapshot is the latest; once
// retention has run out, the same repairs delete what waited, without
// writing a second repaired snapshot, the next backup stores the lost
// messages again and check reads every pack clean.
func TestRepairPacksObjectLock(t *testing.T) {
	ctx := t.Context()
	tr := newTestRepo(t, 0) // its identity opens the locked repository
	fl, open := newLockedRepo(t, tr)
	setPackSize(t, fl.Backend, 1<<20)
	src := randomMaildir(t, 31, 48, 48<<10)
	snap := runBackup(t, open(), src).Snapshot
	bad := packsOf(open(), archive.DataBlob)[0]
	path := filepath.Join(fl.Location(), "data", bad.String()[:2], bad.String())
	flipMiddle(t, path)

	res, err := open().RepairPacks(ctx, archive.RepairPacksOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waiting := func(w []archive.Waiting, prefix string) bool {
		return slices.ContainsFunc(w, func(w archive.Waiting) bool { return strings.HasPrefix(w.File, prefix) })
	}
	if len(res.Packs) != 1 || res.Packs[0].Deleted || res.BlobsLost == 0 || !waiting(res.Waiting, "data/"+bad.String()) || !waiting(res.Waiting, "index/") {
		t.Fatalf("repair packs under retention: %+v", res)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("the damaged pack under retention is gone: %v", err)
	}
	ro := open()
	unindexed, err := ro.LoadIndex(ctx) // a second load: nothing new is unindexed
	if err != nil || len(unindexed) != 0 || !ro.Index().HasPack(bad) {
		t.Fatalf("after the repair the damaged pack is unindexed (%v, %v) or not listed", unindexed, err)
	}

	rs, err := open().RepairSnapshots(ctx, archive.RepairSnapshotsOptions{Forget: true})
	if err != nil || len(rs.Repaired) != 1 || len(rs.Forgotten) != 0 || !waiting(rs.Waiting, "snapshots/"+snap.ID.String()) {
		t.Fatalf("repair snapshots under retention: %+v, %v", rs, err)
	}
	if latest, err := open().FindSnapshot(ctx, "latest"); err != nil || latest.ID != rs.Repaired[0].To {
		t.Fatalf("latest is %v (%v), want the repaired %s", latest, err, rs.Repaired[0].To.Short())
	}
	// Retention runs out.
	fl.mu.Lock()
	for k := range fl.ret {
		fl.ret[k] = archive.Retention{}
	}
	fl.mu.Unlock()
	res, err = open().RepairPacks(ctx, archive.RepairPacksOptions{})
	if err != nil || len(res.Packs) != 1 || res.Packs[0].Pack != bad || !res.Packs[0].Deleted || len(res.Waiting) != 0 {
		t.Fatalf("repair packs after retention: %+v, %v", res, err)
	}
	rs, err = open().RepairSnapshots(ctx, archive.RepairSnapshotsOptions{Forget: true})
	if err != nil || len(rs.Repaired) != 1 || rs.Repaired[0].From != snap.ID || !slices.Equal(rs.Forgotten, []archive.ID{snap.ID}) {
		t.Fatalf("repair snapshots after retention: %+v, %v", rs, err)
	}
	if n := len(snapshotsOf(t, open())); n != 1 {
		t.Fatalf("%d snapshots, want the repaired one only", n)
	}
	// The next backup has the repaired snapshot as parent and stores the
	// lost messages again.
	next := runBackup(t, open(), src).Snapshot
	if next.Parent == nil || *next.Parent != rs.Repaired[0].To {
		t.Fatalf("the next backup's parent is %v, want the repaired %s", next.Parent, rs.Repaired[0].To.Short())
	}
	got, _ := restoreTo(t, open(), next, restoreOptions())
	compareTrees(t, src, got)
	c, err := open().Check(ctx, archive.CheckOptions{ReadData: true})
	if err != nil || !c.OK() || len(c.Warnings) != 0 || c.PacksRead != c.Packs {
		t.Fatalf("check --read-data: %+v, %v", c, err)
	}
}

// TestRepairCrashAnywhere stops `repair packs` followed by `repair
// snapshots --forget` after each of their changes in turn — every pack,
// index and snapshot file written, every file removed — as prune's crash
// test does. At each point the repository opens with every index file
// readable, and running both repairs again to the end leaves a repository
// that checks clean, whose one snapshot restores as the source without
// exactly the messages of the damaged age chunk.
func TestRepairCrashAnywhere(t *testing.T) {
	ctx := t.Context()
	f := newRepairFixture(t, false)
	flipDataMiddle(t, f.tr, f.tr.open(t))

	// What a repair that is not interrupted loses.
	ref := &testRepo{dir: filepath.Join(t.TempDir(), "ref"), id: f.tr.id}
	if err := os.CopyFS(ref.dir, os.DirFS(f.tr.dir)); err != nil {
		t.Fatal(err)
	}
	ref.be = local.New(ref.dir)
	want := repairBoth(t, ref, ref.be)
	if len(want) == 0 {
		t.Fatal("the reference repair lost nothing")
	}
	for _, rel := range mailFiles(t, f.src) {
		if slices.Contains(want, uniqueOf(rel)) {
			if err := os.Remove(filepath.Join(f.src, filepath.FromSlash(rel))); err != nil {
				t.Fatal(err)
			}
		}
	}

	for n := int64(0); ; n++ {
		tr, cb, r := crashingCopy(t, f.tr, n)
		_, err := r.RepairPacks(ctx, archive.RepairPacksOptions{})
		r.Close()
		if err == nil {
			r, err = archive.Open(ctx, cb, tr.creds(), archive.Options{Compression: 2})
			if err != nil {
				t.Fatal(err)
			}
			_, err = r.RepairSnapshots(ctx, archive.RepairSnapshotsOptions{Forget: true})
			r.Close()
		}
		if err != nil && !errors.Is(err, errCrash) {
			t.Fatalf("repair stopped after %d changes: %v", n, err)
		}
		ro := tr.openOpt(t, archive.Options{})
		if _, err := ro.LoadIndex(ctx); err != nil || len(ro.DamagedIndexes()) > 0 {
			t.Fatalf("after a crash at change %d: %v, %v", n, err, ro.DamagedIndexes())
		}
		got := repairBoth(t, tr, tr.be)
		if err == nil {
			t.Logf("the repairs make %d changes", n)
			if len(got) != 0 {
				t.Fatalf("a second run after a complete repair dropped %v", got)
			}
		}
		checkClean(t, tr, 1)
		r2 := tr.open(t)
		snaps := snapshotsOf(t, r2)
		restored, _ := restoreTo(t, r2, snaps[0], restoreOptions())
		compareTrees(t, f.src, restored)
		if err == nil {
			if n < 6 {
				t.Fatalf("the repairs finished after only %d changes", n)
			}
			break
		}
	}
}

// repairBoth runs repair packs and repair snapshots --forget on be and
// returns the unique names of the messages dropped.
func repairBoth(t *testing.T, tr *testRepo, be archive.Backend) []string {
	t.Helper()
	open := func() *archive.Repository {
		r, err := archive.Open(t.Context(), be, tr.creds(), archive.Options{Compression: 2})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		return r
	}
	if _, err := open().RepairPacks(t.Context(), archive.RepairPacksOptions{}); err != nil {
		t.Fatalf("repair packs: %v", err)
	}
	rs, err := open().RepairSnapshots(t.Context(), archive.RepairSnapshotsOptions{Forget: true})
	if err != nil {
		t.Fatalf("repair snapshots: %v", err)
	}
	return uniques(rs.Dropped)
}

// flipBlobInCopy flips a byte in the middle of one blob of pack bad (of
// the primary) in the copy's pack that holds it.
func flipBlobInCopy(t *testing.T, f *repairFixture, bad archive.ID) {
	t.Helper()
	blobs := f.tr.open(t).Index().PackBlobs()[bad]
	if len(blobs) < 2 {
		t.Fatalf("pack %s holds %d blobs", bad.Short(), len(blobs))
	}
	pack, b, ok := f.copy.open(t).Index().Lookup(blobs[len(blobs)/2].ID)
	if !ok {
		t.Fatal("the copy lacks a blob")
	}
	path := f.copy.packPath(pack.String())
	sealed, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	flipByte(t, path, ageCipherOffset(t, sealed, int64(b.Offset)+int64(b.Length)/2))
}

// TestRepairRefuses: the repairs refuse, changing nothing, while an index
// file cannot be read (the packs it lists would look unindexed and their
// blobs gone), with a "copy" that does not share the blob IDs or is the
// repository itself, and for a pack that is nowhere.
func TestRepairRefuses(t *testing.T) {
	ctx := t.Context()
	f := newRepairFixture(t, false)
	other := newTestRepo(t, 0)
	tests := []struct {
		name   string
		damage func(t *testing.T)
		run    func(r *archive.Repository) error
		want   error
	}{
		{"packs, damaged index", damageIndex(f), func(r *archive.Repository) error {
			_, err := r.RepairPacks(ctx, archive.RepairPacksOptions{})
			return err
		}, archive.ErrCorrupt},
		{"snapshots, damaged index", damageIndex(f), func(r *archive.Repository) error {
			_, err := r.RepairSnapshots(ctx, archive.RepairSnapshotsOptions{Forget: true})
			return err
		}, archive.ErrCorrupt},
		{"copy with other parameters", nil, func(r *archive.Repository) error {
			_, err := r.RepairPacks(ctx, archive.RepairPacksOptions{From: other.open(t)})
			return err
		}, archive.ErrParamsDiffer},
		{"copy is the repository", nil, func(r *archive.Repository) error {
			_, err := r.RepairPacks(ctx, archive.RepairPacksOptions{From: f.tr.open(t)})
			return err
		}, nil},
		{"unknown pack", nil, func(r *archive.Repository) error {
			_, err := r.RepairPacks(ctx, archive.RepairPacksOptions{Packs: []archive.ID{{1, 2, 3}}})
			return err
		}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			saved := filepath.Join(t.TempDir(), "saved")
			if err := os.CopyFS(saved, os.DirFS(f.tr.dir)); err != nil {
				t.Fatal(err)
			}
			defer func() { // the next case starts from the same repository
				if err := os.RemoveAll(f.tr.dir); err != nil {
					t.Fatal(err)
				}
				if err := os.Rename(saved, f.tr.dir); err != nil {
					t.Fatal(err)
				}
			}()
			if tc.damage != nil {
				tc.damage(t)
			}
			before := repoFiles(t, f.tr.dir)
			err := tc.run(f.tr.openOpt(t, archive.Options{}))
			if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) {
				t.Fatalf("got %v, want an error (%v)", err, tc.want)
			}
			t.Logf("refused: %v", err)
			if after := repoFiles(t, f.tr.dir); !mapsEqual(before, after) {
				t.Fatal("the refused repair changed the repository")
			}
		})
	}
}

// damageIndex returns a function that flips a byte of f's index file.
func damageIndex(f *repairFixture) func(t *testing.T) {
	return func(t *testing.T) {
		t.Helper()
		files, err := filepath.Glob(filepath.Join(f.tr.dir, "index", "*"))
		if err != nil || len(files) == 0 {
			t.Fatalf("index files: %v, %v", files, err)
		}
		flipMiddle(t, files[0])
	}
}

// TestRepairPacksMissingFromCopy: a pack is gone and `repair index` has
// rebuilt the index without it, so no damaged pack is left to find, only
// snapshots that use blobs in no pack. `repair packs --from` takes every
// such blob from the copy: check is clean and the snapshot restores equal.
func TestRepairPacksMissingFromCopy(t *testing.T) {
	ctx := t.Context()
	f := newRepairFixture(t, true)
	removeDataPack(t, f.tr, f.tr.open(t))
	if _, err := f.tr.openOpt(t, archive.Options{}).RebuildIndex(ctx); err != nil {
		t.Fatal(err)
	}
	res, err := f.tr.openOpt(t, archive.Options{Compression: 2}).RepairPacks(ctx, archive.RepairPacksOptions{From: f.copy.open(t)})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Packs) != 0 || res.Missing == 0 || res.MissingFromCopy != res.Missing || res.PacksWritten == 0 {
		t.Fatalf("repair packs --from: %+v", res)
	}
	checkClean(t, f.tr, 1)
	restoreEqual(t, f.tr, f.snap, f.src)
}
