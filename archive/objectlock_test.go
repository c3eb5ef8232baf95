package archive_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/mailvault/mailvault/archive"
	"github.com/mailvault/mailvault/archive/local"
)

func TestObjectLockValidate(t *testing.T) {
	for _, tc := range []struct {
		p  archive.ObjectLock
		ok bool
	}{
		{archive.ObjectLock{Mode: archive.Governance, Days: 30}, true},
		{archive.ObjectLock{Mode: archive.Compliance, Days: 1}, true},
		{archive.ObjectLock{Mode: archive.Governance, Days: 0}, false},
		{archive.ObjectLock{Mode: archive.Governance, Days: 36501}, false},
		{archive.ObjectLock{Mode: "GOVERNANCE", Days: 30}, false},
		{archive.ObjectLock{Days: 30}, false},
	} {
		if err := tc.p.Validate(); (err == nil) != tc.ok {
			t.Errorf("%+v: Validate() = %v, want ok %v", tc.p, err, tc.ok)
		}
	}
}

// TestObjectLockLocalRefused: a local directory cannot lock files, so it
// can neither create a locked repository nor write to one whose config
// asks for a lock (a copied bucket, say).
func TestObjectLockLocalRefused(t *testing.T) {
	ctx := t.Context()
	be := local.New(filepath.Join(t.TempDir(), "repo"))
	if err := be.Create(); err != nil {
		t.Fatal(err)
	}
	_, err := archive.InitObjectLock(ctx, be, archive.KeyRecipients{Passphrase: "pw"}, archive.ObjectLock{Mode: archive.Governance, Days: 7}, nil)
	if !errors.Is(err, archive.ErrObjectLockUnsupported) {
		t.Fatalf("InitObjectLock on a local directory: %v", err)
	}
	if _, err := os.Stat(filepath.Join(t.TempDir(), "repo", "config")); err == nil {
		t.Fatal("config written")
	}

	// Make a locked repository through a backend that can lock, then
	// open the same directory without that ability.
	lb := newFakeLocker(be)
	if _, err := archive.InitObjectLock(ctx, lb, archive.KeyRecipients{Passphrase: "pw"}, archive.ObjectLock{Mode: archive.Governance, Days: 7}, nil); err != nil {
		t.Fatal(err)
	}
	_, err = archive.Open(ctx, be, archive.Credentials{Passphrase: "pw"}, archive.Options{})
	if !errors.Is(err, archive.ErrObjectLockUnsupported) {
		t.Fatalf("Open of a locked repository on a local directory: %v", err)
	}
}

// fakeLocker is a local directory with object lock semantics kept in
// memory and a settable clock, so Maintain's decisions can be tested
// without waiting days. (The real thing is tested against MinIO in
// archive/s3.)
type fakeLocker struct {
	*local.Backend
	mu     sync.Mutex
	policy *archive.ObjectLock
	now    time.Time
	ret    map[string]archive.Retention
	puts   int // ExtendRetention calls
}

func newFakeLocker(be *local.Backend) *fakeLocker {
	return &fakeLocker{Backend: be, now: time.Now(), ret: map[string]archive.Retention{}}
}

func (f *fakeLocker) EnableObjectLock(context.Context) error { return nil }
func (f *fakeLocker) SetObjectLock(p archive.ObjectLock) {
	f.mu.Lock()
	f.policy = &p
	f.mu.Unlock()
}

func (f *fakeLocker) lockNew(t archive.FileType, name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.policy != nil && t != archive.LockFile {
		f.ret[string(t)+"/"+name] = archive.Retention{Mode: f.policy.Mode, Until: f.now.Add(f.policy.Period())}
	}
}

func (f *fakeLocker) Put(ctx context.Context, t archive.FileType, name string, data []byte) error {
	if err := f.Backend.Put(ctx, t, name, data); err != nil {
		return err
	}
	f.lockNew(t, name)
	return nil
}

func (f *fakeLocker) PutFile(ctx context.Context, t archive.FileType, name string, file *os.File) error {
	if err := f.Backend.PutFile(ctx, t, name, file); err != nil {
		return err
	}
	f.lockNew(t, name)
	return nil
}

func (f *fakeLocker) Retention(_ context.Context, t archive.FileType, name string) (archive.Retention, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ret[string(t)+"/"+name], nil
}

func (f *fakeLocker) ExtendRetention(_ context.Context, t archive.FileType, name string, r archive.Retention) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ret[string(t)+"/"+name] = r
	f.puts++
	return nil
}

func (f *fakeLocker) Remove(ctx context.Context, t archive.FileType, name string) error {
	f.mu.Lock()
	r := f.ret[string(t)+"/"+name]
	f.mu.Unlock()
	if r.Active(f.now) {
		return &archive.RetainedError{Retention: r, Err: errors.New("refused")}
	}
	return f.Backend.Remove(ctx, t, name)
}

// newLockedRepo makes a repository with a 10-day governance lock on a
// fakeLocker, keyed to tr's identity; open opens it with its index loaded.
func newLockedRepo(t *testing.T, tr *testRepo) (fl *fakeLocker, open func() *archive.Repository) {
	t.Helper()
	ctx := t.Context()
	be := local.New(filepath.Join(t.TempDir(), "locked"))
	if err := be.Create(); err != nil {
		t.Fatal(err)
	}
	fl = newFakeLocker(be)
	if _, err := archive.InitObjectLock(ctx, fl, archive.KeyRecipients{Recipients: []string{tr.id.Recipient().String()}}, archive.ObjectLock{Mode: archive.Governance, Days: 10}, nil); err != nil {
		t.Fatal(err)
	}
	return fl, func() *archive.Repository {
		r, err := archive.Open(ctx, fl, tr.creds(), archive.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		if _, err := r.LoadIndex(ctx); err != nil {
			t.Fatal(err)
		}
		return r
	}
}

// TestMaintainWindow checks which files Maintain extends as time passes.
func TestMaintainWindow(t *testing.T) {
	ctx := t.Context()
	tr := newTestRepo(t, 0) // for the corpus helpers only
	fl, open := newLockedRepo(t, tr)
	runBackup(t, open(), genCorpus(t, 7, 3e5))
	start := fl.now

	for _, tc := range []struct {
		name     string
		after    time.Duration // since the backup
		window   time.Duration
		dryRun   bool
		extended bool // all extended, else none
	}{
		{"fresh", time.Hour, 0, false, false},
		{"before half", 4 * 24 * time.Hour, 0, false, false},
		{"past half, dry run", 6 * 24 * time.Hour, 0, true, true},
		{"past half", 6 * 24 * time.Hour, 0, false, true},
		{"just extended", 6*24*time.Hour + time.Minute, 0, false, false},
		{"wide window", 6*24*time.Hour + 2*time.Minute, 11 * 24 * time.Hour, false, true},
		{"expired", 40 * 24 * time.Hour, 0, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := start.Add(tc.after)
			fl.now = now
			before := fl.puts
			res, err := open().Maintain(ctx, archive.MaintainOptions{Now: now, Window: tc.window, DryRun: tc.dryRun})
			if err != nil {
				t.Fatal(err)
			}
			if res.Total.Checked == 0 || len(res.Failed) != 0 || len(res.Problems) != 0 {
				t.Fatalf("maintain: %+v", res)
			}
			want := 0
			if tc.extended {
				want = res.Total.Checked
			}
			if res.Total.Extended != want || res.Total.Current != res.Total.Checked-want {
				t.Errorf("extended %d, current %d of %d; want %d extended", res.Total.Extended, res.Total.Current, res.Total.Checked, want)
			}
			wrote := fl.puts - before
			if tc.dryRun && wrote != 0 || !tc.dryRun && wrote != res.Total.Extended {
				t.Errorf("%d retention updates for %d extended (dry run %v)", wrote, res.Total.Extended, tc.dryRun)
			}
			if !tc.dryRun && tc.extended {
				if r, _ := fl.Retention(ctx, archive.ConfigFile, "config"); !r.Until.Equal(res.NewUntil) || !res.NewUntil.After(now.Add(10*24*time.Hour-time.Second)) {
					t.Errorf("config retained until %s, result says %s, want now + 10 days", r.Until, res.NewUntil)
				}
			}
		})
	}
}

// TestRemoveKeyWaiting: removing a key file under retention fails with
// the date it may be removed, and leaves it in place.
func TestRemoveKeyWaiting(t *testing.T) {
	ctx := t.Context()
	be := local.New(filepath.Join(t.TempDir(), "repo"))
	if err := be.Create(); err != nil {
		t.Fatal(err)
	}
	fl := newFakeLocker(be)
	if _, err := archive.InitObjectLock(ctx, fl, archive.KeyRecipients{Passphrase: "one"}, archive.ObjectLock{Mode: archive.Compliance, Days: 3}, nil); err != nil {
		t.Fatal(err)
	}
	r, err := archive.Open(ctx, fl, archive.Credentials{Passphrase: "one"}, archive.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ids, err := r.AddKey(ctx, archive.KeyRecipients{Passphrase: "two"})
	if err != nil {
		t.Fatal(err)
	}
	err = r.RemoveKey(ctx, ids[0])
	if !errors.Is(err, archive.ErrRetained) {
		t.Fatalf("RemoveKey: %v, want ErrRetained", err)
	}
	t.Log(err)
	if _, err := be.Stat(ctx, archive.KeyFile, ids[0].String()); err != nil {
		t.Fatalf("key file gone: %v", err)
	}
	// Let the retention run out (as a governance bypass could).
	fl.mu.Lock()
	fl.now = time.Now()
	fl.ret["keys/"+ids[0].String()] = archive.Retention{Mode: archive.Compliance, Until: fl.now.Add(-time.Second)}
	fl.mu.Unlock()
	if err := r.RemoveKey(ctx, ids[0]); err != nil {
		t.Fatalf("RemoveKey after the retention: %v", err)
	}
}

// TestMaintainLetsSupersededIndexRunOut: after `repair index` under
// retention the old index file waits, superseded; Maintain must extend the
// new file and let the old one run out. Both list the same packs, so a
// cover by pack counts alone breaks the tie by name: the test makes
// repositories until the old file's name sorts first.
func TestMaintainLetsSupersededIndexRunOut(t *testing.T) {
	ctx := t.Context()
	tr := newTestRepo(t, 0)
	corpus := genCorpus(t, 3, 1e5)
	for attempt := 0; ; attempt++ {
		if attempt == 40 {
			t.Fatal("no repository whose old index file name sorts first in 40 attempts")
		}
		fl, open := newLockedRepo(t, tr)
		runBackup(t, open(), corpus)
		old, err := open().List(ctx, archive.IndexFile)
		if err != nil || len(old) != 1 {
			t.Fatalf("index files after one backup: %v, %v", old, err)
		}
		res, err := open().RebuildIndex(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Waiting) != 1 {
			t.Fatalf("repair index: %d old index files waiting, want 1", len(res.Waiting))
		}
		all, err := open().List(ctx, archive.IndexFile)
		if err != nil || len(all) != 2 {
			t.Fatalf("index files after repair: %v, %v", all, err)
		}
		fresh := all[0]
		if fresh == old[0] {
			fresh = all[1]
		}
		if old[0].String() > fresh.String() {
			continue
		}

		now := fl.now.Add(6 * 24 * time.Hour) // past half the period
		fl.now = now
		m, err := open().Maintain(ctx, archive.MaintainOptions{Now: now})
		if err != nil {
			t.Fatal(err)
		}
		if m.SupersededIndexes != 1 {
			t.Errorf("maintain counted %d superseded index files, want 1", m.SupersededIndexes)
		}
		if r, _ := fl.Retention(ctx, archive.IndexFile, old[0].String()); r.Until.After(now.Add(5 * 24 * time.Hour)) {
			t.Errorf("superseded index %s extended to %s", old[0].Short(), r.Until)
		}
		if r, _ := fl.Retention(ctx, archive.IndexFile, fresh.String()); !r.Until.After(now.Add(9 * 24 * time.Hour)) {
			t.Errorf("index %s in force not extended (until %s)", fresh.Short(), r.Until)
		}
		return
	}
}
