package archive_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailvault/mailvault/archive"
	"github.com/mailvault/mailvault/archive/local"
)

// pruneFixture is a repository with two snapshots of one source: S1 of
// the full corpus, S2 after every other message was deleted. Forgetting
// S1 leaves packs that hold used and unused blobs side by side.
type pruneFixture struct {
	tr     *testRepo
	src    string // the source as S2 saw it
	s1, s2 *archive.Snapshot
}

// backupThenHalf backs src up, deletes every other message and backs it
// up again: the second snapshot leaves half of the first's data unused.
func backupThenHalf(t *testing.T, r *archive.Repository, src string) (s1, s2 *archive.Snapshot) {
	t.Helper()
	s1 = runBackup(t, r, src).Snapshot
	for i, rel := range mailFiles(t, src) {
		if i%2 == 0 {
			if err := os.Remove(filepath.Join(src, filepath.FromSlash(rel))); err != nil {
				t.Fatal(err)
			}
		}
	}
	return s1, runBackup(t, r, src).Snapshot
}

func newPruneFixture(t *testing.T, seed uint64) *pruneFixture {
	t.Helper()
	tr := newTestRepo(t, 1<<20)
	src := randomMaildir(t, seed, 48, 48<<10)
	r := tr.open(t)
	s1, s2 := backupThenHalf(t, r, src)
	return &pruneFixture{tr: tr, src: src, s1: s1, s2: s2}
}

// randomMaildir writes n messages of about size bytes each, every one
// with a body of its own (random, base64), into one Maildir: unlike the
// corpus, whose copies of one mail share blobs, deleting a message here
// makes its blobs unused.
func randomMaildir(t *testing.T, seed uint64, n, size int) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "mail")
	md := filepath.Join(dir, "example.com", "alice", "Maildir")
	for _, sub := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(md, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	rng := mrand.New(mrand.NewPCG(seed, 1))
	raw := make([]byte, size*3/4)
	for i := range n {
		for j := range raw {
			raw[j] = byte(rng.Uint32())
		}
		msg := fmt.Sprintf("From: a@example.com\r\nTo: alice@example.com\r\nSubject: message %d\r\nMessage-ID: <%d.%d@example.com>\r\n\r\n%s\r\n",
			i, seed, i, base64.StdEncoding.EncodeToString(raw))
		name := fmt.Sprintf("%d.M%dP1.testhost:2,S", 1700000000+i, i)
		if err := os.WriteFile(filepath.Join(md, "cur", name), []byte(msg), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// files lists every repository file but locks, with its size.
func repoFiles(t *testing.T, dir string) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if filepath.Dir(rel) == "locks" {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		out[rel] = fi.Size()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// checkClean runs check --read-data on a fresh open and fails on any
// error or warning.
func checkClean(t *testing.T, tr *testRepo, wantSnapshots int) {
	t.Helper()
	r := tr.openOpt(t, archive.Options{})
	res, err := r.Check(t.Context(), archive.CheckOptions{ReadData: true})
	if err != nil {
		t.Fatal(err)
	}
	if !res.OK() || len(res.Warnings) > 0 || res.Snapshots != wantSnapshots || res.PacksRead != res.Packs {
		t.Fatalf("check --read-data: %+v", res)
	}
}

func prune(t *testing.T, tr *testRepo, opt archive.PruneOptions) *archive.PruneResult {
	t.Helper()
	r := tr.openOpt(t, archive.Options{Compression: 2})
	res, err := r.Prune(t.Context(), opt)
	if err != nil {
		t.Fatalf("prune: %v", err)
	}
	return res
}

func forget(t *testing.T, tr *testRepo, ids ...archive.ID) {
	t.Helper()
	r := tr.openOpt(t, archive.Options{})
	res, err := r.Forget(t.Context(), ids)
	if err != nil || len(res.Removed) != len(ids) || len(res.Waiting) != 0 {
		t.Fatalf("forget: %+v, %v", res, err)
	}
}

// restoreEqual restores snap and compares it with want.
func restoreEqual(t *testing.T, tr *testRepo, snap *archive.Snapshot, want string) {
	t.Helper()
	r := tr.open(t)
	s, err := r.LoadSnapshot(t.Context(), snap.ID)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := restoreTo(t, r, s, restoreOptions())
	compareTrees(t, want, got)
}

// TestPrune covers prune's decisions; each case ends with a repository
// that checks clean (every pack read) and restores what is left, and a
// second prune that finds nothing more to do.
func TestPrune(t *testing.T) {
	for _, tc := range []struct {
		name string
		opt  archive.PruneOptions
		// setup returns the snapshots that must still restore (with their
		// sources) after prune.
		setup func(t *testing.T, f *pruneFixture) map[*archive.Snapshot]string
		check func(t *testing.T, f *pruneFixture, res *archive.PruneResult)
	}{{
		name: "wholly unused packs are deleted",
		opt:  archive.PruneOptions{MaxUnused: archive.DefaultMaxUnused},
		setup: func(t *testing.T, f *pruneFixture) map[*archive.Snapshot]string {
			// A second, unrelated source, backed up and forgotten: its
			// packs hold nothing S2 uses.
			other := genCorpus(t, 99, 2e6)
			r := f.tr.open(t)
			s := runBackup(t, r, other).Snapshot
			forget(t, f.tr, s.ID)
			return map[*archive.Snapshot]string{f.s1: "", f.s2: f.src}
		},
		check: func(t *testing.T, f *pruneFixture, res *archive.PruneResult) {
			if len(res.Delete) == 0 || res.BytesFreed <= 0 {
				t.Errorf("nothing deleted: %+v", res)
			}
		},
	}, {
		name: "partly used packs are repacked",
		opt:  archive.PruneOptions{MaxUnused: 0},
		setup: func(t *testing.T, f *pruneFixture) map[*archive.Snapshot]string {
			forget(t, f.tr, f.s1.ID)
			return map[*archive.Snapshot]string{f.s2: f.src}
		},
		check: func(t *testing.T, f *pruneFixture, res *archive.PruneResult) {
			if len(res.Repack) == 0 || res.BlobsRepacked == 0 || res.PacksWritten == 0 {
				t.Errorf("nothing repacked: %+v", res)
			}
			if res.UnusedAfter != 0 {
				t.Errorf("unused after repacking everything: %v", res.UnusedAfter)
			}
		},
	}, {
		name: "within max unused nothing is repacked but unused trees",
		opt:  archive.PruneOptions{MaxUnused: 0.99},
		setup: func(t *testing.T, f *pruneFixture) map[*archive.Snapshot]string {
			forget(t, f.tr, f.s1.ID)
			return map[*archive.Snapshot]string{f.s2: f.src}
		},
		check: onlyTreePacksRepacked,
	}, {
		name: "max repack bytes bounds what is repacked but unused trees",
		opt:  archive.PruneOptions{MaxUnused: 0, MaxRepackBytes: 1},
		setup: func(t *testing.T, f *pruneFixture) map[*archive.Snapshot]string {
			forget(t, f.tr, f.s1.ID)
			return map[*archive.Snapshot]string{f.s2: f.src}
		},
		check: onlyTreePacksRepacked,
	}, {
		name: "a blob stored twice is used only where the index reads it",
		opt:  archive.PruneOptions{MaxUnused: 0},
		setup: func(t *testing.T, f *pruneFixture) map[*archive.Snapshot]string {
			// Two backups that start together do not see each other's
			// blobs (lock-free concurrent backups): everything they add
			// is stored twice.
			other := genCorpus(t, 7, 2e6)
			a, b := f.tr.open(t), f.tr.open(t)
			var wg sync.WaitGroup
			snaps := make([]*archive.Snapshot, 2)
			for i, r := range []*archive.Repository{a, b} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					res, err := r.Backup(t.Context(), archive.BackupOptions{Paths: []string{other}, Host: []string{"h1", "h2"}[i]})
					if err != nil {
						t.Error(err)
						return
					}
					snaps[i] = res.Snapshot
				}()
			}
			wg.Wait()
			if t.Failed() {
				t.FailNow()
			}
			return map[*archive.Snapshot]string{f.s1: "", f.s2: f.src, snaps[0]: other, snaps[1]: other}
		},
		check: func(t *testing.T, f *pruneFixture, res *archive.PruneResult) {
			// Each duplicate's second copy is unused, and so is every
			// blob of the packs holding only second copies.
			if res.BlobsUnused == 0 || len(res.Delete) == 0 {
				t.Errorf("duplicates not found unused: %+v", res)
			}
		},
	}, {
		name: "unindexed packs are deleted",
		opt:  archive.PruneOptions{MaxUnused: archive.DefaultMaxUnused},
		setup: func(t *testing.T, f *pruneFixture) map[*archive.Snapshot]string {
			// Blobs saved and never flushed: a full pack is stored, its
			// index never written, as by a killed backup.
			r := f.tr.open(t)
			for range 3 {
				buf := make([]byte, 600<<10)
				rand.Read(buf)
				if _, _, err := r.SaveBlob(t.Context(), archive.DataBlob, buf); err != nil {
					t.Fatal(err)
				}
			}
			r.Close()
			return map[*archive.Snapshot]string{f.s1: "", f.s2: f.src}
		},
		check: func(t *testing.T, f *pruneFixture, res *archive.PruneResult) {
			if len(res.Unindexed) != 1 || len(res.Delete)+len(res.Repack) != 0 {
				t.Errorf("want exactly one unindexed pack deleted: %+v", res)
			}
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			f := newPruneFixture(t, 3)
			keep := tc.setup(t, f)
			before := repoFiles(t, f.tr.dir)

			dryOpt := tc.opt
			dryOpt.DryRun = true
			dry := prune(t, f.tr, dryOpt)
			if after := repoFiles(t, f.tr.dir); !mapsEqual(before, after) {
				t.Fatalf("dry run changed the repository: %d files before, %d after", len(before), len(after))
			}
			res := prune(t, f.tr, tc.opt)
			t.Logf("prune: %d packs, %d deleted, %d repacked into %d, %d unindexed; %d blobs (%d bytes) used, %d (%d) unused; freed %d bytes",
				res.Packs, len(res.Delete), len(res.Repack), res.PacksWritten, len(res.Unindexed), res.BlobsUsed, res.BytesUsed, res.BlobsUnused, res.BytesUnused, res.BytesFreed)
			// The dry run planned exactly what was done.
			if !slices.Equal(dry.Delete, res.Delete) || !slices.Equal(dry.Repack, res.Repack) || !slices.Equal(dry.Unindexed, res.Unindexed) ||
				dry.BytesDeleted != res.BytesDeleted || dry.BlobsRepacked != res.BlobsRepacked {
				t.Errorf("dry run planned %+v, prune did %+v", dry, res)
			}
			// Counts: every planned pack is gone, the new ones are there.
			after := repoFiles(t, f.tr.dir)
			packsBefore, packsAfter := countPrefix(before, "data"), countPrefix(after, "data")
			gone := len(res.Delete) + len(res.Repack) + len(res.Unindexed)
			if res.PacksDeleted != gone || packsAfter != packsBefore-gone+res.PacksWritten {
				t.Errorf("%d packs before, %d after; prune deleted %d of %d planned and wrote %d", packsBefore, packsAfter, res.PacksDeleted, gone, res.PacksWritten)
			}
			if res.BytesFreed != sumPrefix(before, "data")-sumPrefix(after, "data") {
				t.Errorf("prune says it freed %d bytes; the pack files shrank by %d", res.BytesFreed, sumPrefix(before, "data")-sumPrefix(after, "data"))
			}
			if tc.check != nil {
				tc.check(t, f, res)
			}
			checkClean(t, f.tr, len(keep))
			for s, src := range keep {
				if src != "" {
					restoreEqual(t, f.tr, s, src)
				}
			}
			again := prune(t, f.tr, tc.opt)
			if len(again.Delete)+len(again.Repack)+len(again.Unindexed) != 0 || again.PacksDeleted != 0 {
				t.Errorf("a second prune still finds work: %+v", again)
			}
		})
	}
}

// onlyTreePacksRepacked checks that prune repacked no data pack (their
// blobs went to new packs, which the old blob IDs now point to) but left
// unused data in place.
func onlyTreePacksRepacked(t *testing.T, f *pruneFixture, res *archive.PruneResult) {
	t.Helper()
	if len(res.Repack) == 0 {
		t.Errorf("the tree pack with unused trees was not repacked: %+v", res)
	}
	if res.BlobsRepacked > 10 {
		// The fixture's S2 has 2 trees; the data blobs number in dozens.
		t.Errorf("%d blobs repacked: more than trees", res.BlobsRepacked)
	}
	if res.UnusedAfter == 0 {
		t.Errorf("everything repacked: %+v", res)
	}
}

// TestPruneRefuses: when a snapshot, a tree or an index file cannot be
// read, prune deletes nothing (what the damaged part needs is unknown).
func TestPruneRefuses(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, f *pruneFixture)
	}{{
		name: "damaged snapshot",
		damage: func(t *testing.T, f *pruneFixture) {
			flipMiddle(t, filepath.Join(f.tr.dir, "snapshots", f.s2.ID.String()))
		},
	}, {
		name: "damaged tree",
		damage: func(t *testing.T, f *pruneFixture) {
			r := f.tr.open(t)
			pack, _, ok := r.Index().Lookup(f.s2.Roots[0].Folders[0].Tree)
			if !ok {
				t.Fatal("tree not indexed")
			}
			flipMiddle(t, f.tr.packPath(pack.String()))
		},
	}, {
		name: "damaged index file",
		damage: func(t *testing.T, f *pruneFixture) {
			names, _ := filepath.Glob(filepath.Join(f.tr.dir, "index", "*"))
			flipMiddle(t, names[0])
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			f := newPruneFixture(t, 5)
			forget(t, f.tr, f.s1.ID)
			tc.damage(t, f)
			before := repoFiles(t, f.tr.dir)
			r := f.tr.openOpt(t, archive.Options{})
			res, err := r.Prune(t.Context(), archive.PruneOptions{})
			if err == nil {
				t.Fatalf("prune of a damaged repository succeeded: %+v", res)
			}
			t.Logf("refused: %v", err)
			if after := repoFiles(t, f.tr.dir); !mapsEqual(before, after) {
				t.Fatal("the refused prune changed the repository")
			}
		})
	}
}

// flipMiddle damages a file in its middle.
func flipMiddle(t *testing.T, path string) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	flipByte(t, path, fi.Size()/2)
}

func mapsEqual(a, b map[string]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func countPrefix(m map[string]int64, dir string) (n int) {
	for k := range m {
		if len(k) > len(dir) && k[:len(dir)+1] == dir+"/" {
			n++
		}
	}
	return n
}

func sumPrefix(m map[string]int64, dir string) (n int64) {
	for k, v := range m {
		if len(k) > len(dir) && k[:len(dir)+1] == dir+"/" {
			n += v
		}
	}
	return n
}

// errCrash is what crashBackend returns once it has "crashed".
var errCrash = errors.New("crashed (test)")

// crashBackend is a local directory that stops changing anything after a
// number of changes (puts and removes of repository files), as if the
// process had been killed right there; everything it would have done
// later fails.
type crashBackend struct {
	*local.Backend
	left atomic.Int64
}

// crashingCopy copies src's repository and opens the copy through a
// crashBackend that fails after n changes: tr is the copy, to check and
// reopen once the crash has happened.
func crashingCopy(t *testing.T, src *testRepo, n int64) (tr *testRepo, cb *crashBackend, r *archive.Repository) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "repo")
	if err := os.CopyFS(dir, os.DirFS(src.dir)); err != nil {
		t.Fatal(err)
	}
	tr = &testRepo{dir: dir, be: local.New(dir), id: src.id}
	cb = &crashBackend{Backend: tr.be}
	cb.left.Store(n)
	r, err := archive.Open(t.Context(), cb, tr.creds(), archive.Options{Compression: 2})
	if err != nil {
		t.Fatal(err)
	}
	return tr, cb, r
}

func (c *crashBackend) step(t archive.FileType) error {
	if t == archive.LockFile {
		return nil
	}
	if c.left.Add(-1) < 0 {
		return errCrash
	}
	return nil
}

func (c *crashBackend) Put(ctx context.Context, t archive.FileType, name string, data []byte) error {
	if err := c.step(t); err != nil {
		return err
	}
	return c.Backend.Put(ctx, t, name, data)
}

func (c *crashBackend) PutFile(ctx context.Context, t archive.FileType, name string, f *os.File) error {
	if err := c.step(t); err != nil {
		f.Close()
		os.Remove(f.Name())
		return err
	}
	return c.Backend.PutFile(ctx, t, name, f)
}

func (c *crashBackend) Remove(ctx context.Context, t archive.FileType, name string) error {
	if err := c.step(t); err != nil {
		return err
	}
	return c.Backend.Remove(ctx, t, name)
}

// TestPruneCrashAnywhere stops a prune after each of its changes in turn
// — every pack and index file written, every file removed — and checks
// that the repository is whole at each point (check reads every pack
// without an error, the kept snapshot restores) and that the next prune
// finishes the job, leaving no warning either.
func TestPruneCrashAnywhere(t *testing.T) {
	f := newPruneFixture(t, 11)
	forget(t, f.tr, f.s1.ID)
	opt := archive.PruneOptions{MaxUnused: 0}
	for n := int64(0); ; n++ {
		tr, _, r := crashingCopy(t, f.tr, n)
		res, err := r.Prune(t.Context(), opt)
		r.Close()
		if err == nil {
			t.Logf("prune makes %d changes: %d packs deleted, %d written, %d index files written, %d removed",
				n, res.PacksDeleted, res.PacksWritten, res.IndexesWritten, res.IndexesRemoved)
			if n < 4 {
				t.Fatalf("prune finished after only %d changes; the fixture leaves too little to prune", n)
			}
			checkClean(t, tr, 1)
			break
		}
		if !errors.Is(err, errCrash) {
			t.Fatalf("prune stopped after %d changes: %v", n, err)
		}
		r2 := tr.openOpt(t, archive.Options{})
		c, err := r2.Check(t.Context(), archive.CheckOptions{ReadData: true})
		if err != nil {
			t.Fatal(err)
		}
		if !c.OK() || c.Snapshots != 1 {
			t.Fatalf("check after a crash at change %d: %+v", n, c)
		}
		restoreEqual(t, tr, f.s2, f.src)
		prune(t, tr, opt)
		checkClean(t, tr, 1)
		if again := prune(t, tr, opt); again.PacksDeleted != 0 || again.IndexesWritten != 0 || again.BytesUnused != 0 {
			t.Fatalf("after a crash at change %d and a full prune, another prune still works: %+v", n, again)
		}
	}
}

// TestForgetPruneBackup: the parent of the next backup is forgotten and
// pruned, taking with it the messages only it had; that backup must store
// them again rather than refer to what prune removed — with a full key
// (its parent is then the older snapshot) and with a write-only key's
// local parent cache (which still names the forgotten snapshot). The
// result checks clean, reading every pack, and restores equal.
func TestForgetPruneBackup(t *testing.T) {
	for _, writeOnly := range []bool{false, true} {
		name := "full key"
		if writeOnly {
			name = "write-only key with parent cache"
		}
		t.Run(name, func(t *testing.T) {
			tr := newTestRepo(t, 1<<20)
			src := genCorpus(t, 13, 3e6)
			var woCreds archive.Credentials
			if writeOnly {
				woCreds, _ = tr.writeOnly(t)
			}
			cache := filepath.Join(t.TempDir(), "cache")
			backup := func() *archive.BackupResult {
				t.Helper()
				r := tr.open(t)
				opt := archive.BackupOptions{Paths: []string{src}, Host: "testhost"}
				if writeOnly {
					r = tr.openWith(t, woCreds)
					opt.ParentCache = cache
				}
				res, err := r.Backup(t.Context(), opt)
				if err != nil {
					t.Fatal(err)
				}
				return res
			}
			// S1 without half the messages, S2 with them back: those are
			// stored in S2's packs only.
			aside := filepath.Join(t.TempDir(), "aside")
			var moved []string
			for i, rel := range mailFiles(t, src) {
				if i%2 == 0 {
					moved = append(moved, rel)
					move(t, filepath.Join(src, filepath.FromSlash(rel)), filepath.Join(aside, filepath.FromSlash(rel)))
				}
			}
			s1 := backup().Snapshot
			for _, rel := range moved {
				move(t, filepath.Join(aside, filepath.FromSlash(rel)), filepath.Join(src, filepath.FromSlash(rel)))
			}
			s2 := backup()
			if s2.Snapshot.Parent == nil || *s2.Snapshot.Parent != s1.ID || s2.Snapshot.Summary.BlobsNew == 0 {
				t.Fatalf("S2 (parent %v, %d new blobs) is not an incremental backup on S1 %s", s2.Snapshot.Parent, s2.Snapshot.Summary.BlobsNew, s1.ID.Short())
			}

			forget(t, tr, s2.Snapshot.ID)
			res := prune(t, tr, archive.PruneOptions{MaxUnused: 0})
			if res.BlobsUnused < int(s2.Snapshot.Summary.BlobsNew) {
				t.Fatalf("prune found %d blobs unused; S2 alone had %d: %+v", res.BlobsUnused, s2.Snapshot.Summary.BlobsNew, res)
			}

			next := backup()
			t.Logf("S2 stored %d blobs; after forget and prune the next backup stored %d (parent %v)",
				s2.Snapshot.Summary.BlobsNew, next.Snapshot.Summary.BlobsNew, next.Snapshot.Parent)
			if next.Snapshot.Summary.BlobsNew < s2.Snapshot.Summary.BlobsNew {
				t.Errorf("the backup after prune stored %d blobs, fewer than the %d prune removed", next.Snapshot.Summary.BlobsNew, s2.Snapshot.Summary.BlobsNew)
			}
			checkClean(t, tr, 2)
			restoreEqual(t, tr, next.Snapshot, src)
		})
	}
}

func move(t *testing.T, from, to string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(to), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(from, to); err != nil {
		t.Fatal(err)
	}
}

// TestPruneObjectLock runs forget and prune against a real MinIO bucket
// with governance Object Lock of one day. Inside retention nothing is
// deleted and every file that would go is reported waiting with its date;
// the repository checks clean and restores. MinIO cannot move its clock,
// so "after the retention" is made the honest way an administrator with
// s3:BypassGovernanceRetention could: the test setup (never mailvault)
// shortens the retention of chosen objects to a few seconds ahead and
// waits for that moment. Data packs are let go first, index files later:
// in between, the old index files wait while the packs they list are
// gone, and the "supersedes" list of the new index keeps readers off them.
func TestPruneObjectLock(t *testing.T) {
	ctx := t.Context()
	l := newLockedS3(t)
	open, objects, letGo := l.open, l.objects, l.letGo
	checkS3 := func() {
		t.Helper()
		r := open()
		res, err := r.Check(ctx, archive.CheckOptions{ReadData: true})
		if err != nil {
			t.Fatal(err)
		}
		if !res.OK() || len(res.Warnings) > 0 || res.Snapshots != 1 || res.PacksRead != res.Packs {
			t.Fatalf("check --read-data: %+v", res)
		}
	}
	waitingIn := func(ws []archive.Waiting, dir string) int {
		t.Helper()
		n := 0
		for _, w := range ws {
			if w.Mode != archive.Governance || !w.Until.After(time.Now()) || w.Until.After(time.Now().Add(25*time.Hour)) {
				t.Errorf("waiting %s: want governance retention within a day", w)
			}
			if strings.HasPrefix(w.File, dir+"/") {
				n++
			}
		}
		return n
	}

	src := randomMaildir(t, 21, 24, 64<<10)
	r := open()
	if _, err := r.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	s1, s2 := backupThenHalf(t, r, src)

	// Forget inside retention: the snapshot stays, and so does its data.
	fr, err := open().Forget(ctx, []archive.ID{s1.ID})
	if err != nil || len(fr.Removed) != 0 || len(fr.Waiting) != 1 || waitingIn(fr.Waiting, "snapshots") != 1 {
		t.Fatalf("forget inside retention: %+v, %v", fr, err)
	}
	res, err := open().Prune(ctx, archive.PruneOptions{})
	if err != nil || res.Snapshots != 2 || res.BlobsUnused != 0 || res.PacksDeleted != 0 {
		t.Fatalf("prune with the forgotten snapshot still there: %+v, %v", res, err)
	}

	// The snapshot's retention ends; forget removes it, every version.
	letGo("snapshots/" + s1.ID.String())
	if fr, err := open().Forget(ctx, []archive.ID{s1.ID}); err != nil || len(fr.Removed) != 1 {
		t.Fatalf("forget after retention: %+v, %v", fr, err)
	}
	if n := len(objects("snapshots/" + s1.ID.String())); n != 0 {
		t.Fatalf("%d versions of the forgotten snapshot left", n)
	}

	// Prune inside the packs' retention: nothing deleted or repacked,
	// every pack that would go is listed with its date.
	before := len(objects(""))
	res, err = open().Prune(ctx, archive.PruneOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("prune inside retention: %d packs, %d blobs unused, %d waiting", res.Packs, res.BlobsUnused, len(res.Waiting))
	if res.BlobsUnused == 0 || res.PacksDeleted != 0 || len(res.Delete)+len(res.Repack)+len(res.Unindexed) != 0 || res.IndexesWritten != 0 ||
		waitingIn(res.Waiting, "data") != len(res.Waiting) || len(res.Waiting) == 0 || res.PacksKept != res.Packs {
		t.Fatalf("prune inside retention: %+v", res)
	}
	if after := len(objects("")); after != before {
		t.Fatalf("prune inside retention changed the bucket: %d objects before, %d after", before, after)
	}
	checkS3()

	// The packs' retention ends, the index files' does not yet.
	indexBefore := len(objects("index/"))
	letGo("data/")
	res, err = open().Prune(ctx, archive.PruneOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("prune after the packs' retention: %d deleted, %d repacked into %d, %d index files waiting", len(res.Delete), len(res.Repack), res.PacksWritten, len(res.Waiting))
	gone := len(res.Delete) + len(res.Repack)
	if gone == 0 || res.PacksDeleted != gone || res.IndexesRemoved != 0 || waitingIn(res.Waiting, "index") != indexBefore || len(res.Waiting) != indexBefore {
		t.Fatalf("prune after the packs' retention: %+v", res)
	}
	for _, id := range append(res.Delete, res.Repack...) {
		if n := len(objects("data/" + id.String()[:2] + "/" + id.String())); n != 0 {
			t.Errorf("pack %s: %d versions left after prune", id.Short(), n)
		}
	}
	// The waiting old index files list deleted packs; readers must not
	// see them.
	checkS3()
	// repair index supersedes every index file too (prune's new one and
	// the waiting old ones), which then wait.
	rb, err := open().RebuildIndex(ctx)
	if err != nil || rb.IndexesWritten != 1 || rb.IndexesRemoved != 0 || len(rb.Waiting) != indexBefore+1 || waitingIn(rb.Waiting, "index") != indexBefore+1 {
		t.Fatalf("repair index inside the index files' retention: %+v, %v", rb, err)
	}
	checkS3()

	// The old index files' retention ends: the next prune removes them.
	letGo("index/")
	res, err = open().Prune(ctx, archive.PruneOptions{})
	if err != nil || res.IndexesRemoved != indexBefore+1 || len(res.Waiting) != 0 || res.PacksDeleted != 0 || res.BlobsUnused != 0 {
		t.Fatalf("prune after the index files' retention: %+v, %v", res, err)
	}
	checkS3()
	rr := open()
	if _, err := rr.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	got, _ := restoreTo(t, rr, s2, restoreOptions())
	compareTrees(t, src, got)
}

// TestIndexSupersedes: an index file named in another one's "supersedes"
// is ignored by every reader — even when it lists a pack that is gone,
// and even when it is damaged.
func TestIndexSupersedes(t *testing.T) {
	ctx := t.Context()
	tr := newTestRepo(t, 0)
	src := randomMaildir(t, 5, 4, 8<<10)
	runBackup(t, tr.open(t), src)

	// An old index file listing a pack deleted since.
	var gone archive.ID
	rand.Read(gone[:])
	r := tr.openOpt(t, archive.Options{})
	old, err := r.SaveJSONFile(ctx, archive.IndexFile, archive.IndexFileContent{Version: 1, Packs: []archive.IndexPack{
		{ID: gone, Blobs: []archive.PackedBlob{{ID: gone, Type: archive.DataBlob, Length: 10, RawLength: 10}}}}})
	if err != nil {
		t.Fatal(err)
	}
	res, err := tr.openOpt(t, archive.Options{}).Check(ctx, archive.CheckOptions{})
	if err != nil || res.OK() {
		t.Fatalf("check with an index file listing a missing pack: %+v, %v", res, err)
	}

	if _, err := r.SaveJSONFile(ctx, archive.IndexFile, archive.IndexFileContent{Version: 1, Packs: []archive.IndexPack{}, Supersedes: []archive.ID{old}}); err != nil {
		t.Fatal(err)
	}
	checkClean(t, tr, 1)
	if tr.open(t).Index().HasPack(gone) {
		t.Error("the superseded index file was read")
	}
	flipMiddle(t, filepath.Join(tr.dir, "index", old.String()))
	checkClean(t, tr, 1)
	if d := tr.open(t).DamagedIndexes(); len(d) != 0 {
		t.Errorf("a damaged superseded index file is reported: %v", d)
	}
	// Prune removes it, having nothing else to do.
	if res := prune(t, tr, archive.PruneOptions{}); res.IndexesRemoved != 1 || res.IndexesWritten != 0 {
		t.Errorf("prune: %+v", res)
	}
	if _, err := os.Stat(filepath.Join(tr.dir, "index", old.String())); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("superseded index file still there: %v", err)
	}
}
