package archive_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailvault/mailvault/archive"
)

// fakeClock is a LockWait clock that moves only when Lock sleeps, so the
// tests count tries and pauses instead of measuring wall-clock time.
type fakeClock struct {
	now    time.Time
	sleeps []time.Duration
	// slept, if not nil, runs after each sleep with how many there were.
	slept func(n int)
}

func (c *fakeClock) wait(w archive.LockWait) archive.LockWait {
	w.Now = func() time.Time { return c.now }
	w.Sleep = func(ctx context.Context, d time.Duration) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		c.now = c.now.Add(d)
		c.sleeps = append(c.sleeps, d)
		if c.slept != nil {
			c.slept(len(c.sleeps))
		}
		return ctx.Err()
	}
	return w
}

// lockPuts counts the lock files written through it.
type lockPuts struct {
	archive.Backend
	n atomic.Int32
}

func (b *lockPuts) Put(ctx context.Context, t archive.FileType, name string, data []byte) error {
	if t == archive.LockFile {
		b.n.Add(1)
	}
	return b.Backend.Put(ctx, t, name, data)
}

func (tr *testRepo) openWaiting(t *testing.T, w archive.LockWait) (*archive.Repository, *lockPuts) {
	t.Helper()
	be := &lockPuts{Backend: tr.be}
	r, err := archive.Open(t.Context(), be, tr.creds(), archive.Options{Compression: 1, LockWait: w})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r, be
}

func lockFiles(t *testing.T, tr *testRepo) int {
	t.Helper()
	n := 0
	if err := tr.be.List(t.Context(), archive.LockFile, func(string, int64) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestLockWaitReleased: a backup (shared lock) that meets a prune's
// exclusive lock with a wait set looks again after 1 s, 2 s, … and takes
// its lock once the prune ends, having written a lock file only on its
// first try and on the one that succeeded.
func TestLockWaitReleased(t *testing.T) {
	tr := newTestRepo(t, 0)
	unlockPrune, err := tr.openOpt(t, archive.Options{Compression: 1}).Lock(t.Context(), true)
	if err != nil {
		t.Fatal(err)
	}
	clock := &fakeClock{now: time.Unix(1e9, 0), slept: func(n int) {
		if n == 3 {
			unlockPrune()
		}
	}}
	var waiting []error
	backup, be := tr.openWaiting(t, clock.wait(archive.LockWait{For: 10 * time.Minute, Waiting: func(err error) { waiting = append(waiting, err) }}))
	unlock, err := backup.Lock(t.Context(), false)
	if err != nil {
		t.Fatalf("lock with a wait, released meanwhile: %v", err)
	}
	defer unlock()
	if want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second}; !slices.Equal(clock.sleeps, want) {
		t.Errorf("paused %v, want %v", clock.sleeps, want)
	}
	if len(waiting) != 1 || !errors.Is(waiting[0], archive.ErrLocked) || !strings.Contains(waiting[0].Error(), "exclusive lock held by PID") {
		t.Errorf("Waiting called with %v, want once, naming the exclusive lock", waiting)
	}
	if n := be.n.Load(); n != 2 {
		t.Errorf("%d lock files written, want 2 (the first try, the last)", n)
	}
	if n := lockFiles(t, tr); n != 1 {
		t.Errorf("%d lock files, want only the backup's", n)
	}
}

// TestLockWaitTimeout: a prune (exclusive) that meets a backup's lock
// which is never released tries until the wait has passed — the last
// pause cut to what is left — then fails with ErrLocked naming the holder,
// and leaves no lock file of its own.
func TestLockWaitTimeout(t *testing.T) {
	tr := newTestRepo(t, 0)
	unlockBackup, err := tr.openOpt(t, archive.Options{Compression: 1}).Lock(t.Context(), false)
	if err != nil {
		t.Fatal(err)
	}
	defer unlockBackup()
	clock := &fakeClock{now: time.Unix(1e9, 0)}
	prune, be := tr.openWaiting(t, clock.wait(archive.LockWait{For: 10 * time.Second}))
	_, err = prune.Lock(t.Context(), true)
	if !errors.Is(err, archive.ErrLocked) {
		t.Fatalf("lock: %v, want ErrLocked", err)
	}
	host, _ := os.Hostname()
	for _, want := range []string{"shared lock held by PID " + fmt.Sprint(os.Getpid()), "on " + host, "after waiting 10s, 5 tries"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 3 * time.Second}; !slices.Equal(clock.sleeps, want) {
		t.Errorf("paused %v, want %v", clock.sleeps, want)
	}
	if n := be.n.Load(); n != 1 {
		t.Errorf("%d lock files written, want 1 (later tries only look)", n)
	}
	if n := lockFiles(t, tr); n != 1 {
		t.Errorf("%d lock files, want only the backup's", n)
	}
}

// TestLockWaitDefault: without a wait a conflict fails at once, as before
// --wait-lock existed; a wait cut short by the context fails too, still
// as ErrLocked (exit code 11) and with the context's error.
func TestLockWaitDefault(t *testing.T) {
	tr := newTestRepo(t, 0)
	unlockPrune, err := tr.openOpt(t, archive.Options{Compression: 1}).Lock(t.Context(), true)
	if err != nil {
		t.Fatal(err)
	}
	defer unlockPrune()

	clock := &fakeClock{now: time.Unix(1e9, 0)}
	called := false
	r, _ := tr.openWaiting(t, clock.wait(archive.LockWait{Waiting: func(error) { called = true }}))
	if _, err := r.Lock(t.Context(), false); !errors.Is(err, archive.ErrLocked) {
		t.Errorf("lock without a wait: %v, want ErrLocked", err)
	}
	if len(clock.sleeps) != 0 || called {
		t.Errorf("without a wait: paused %v, Waiting called %v; want neither", clock.sleeps, called)
	}

	ctx, cancel := context.WithCancel(t.Context())
	clock = &fakeClock{now: time.Unix(1e9, 0), slept: func(n int) {
		if n == 2 {
			cancel()
		}
	}}
	r, _ = tr.openWaiting(t, clock.wait(archive.LockWait{For: time.Hour}))
	_, err = r.Lock(ctx, false)
	if !errors.Is(err, archive.ErrLocked) || !errors.Is(err, context.Canceled) {
		t.Errorf("lock cancelled while waiting: %v, want ErrLocked and context.Canceled", err)
	}
	if len(clock.sleeps) != 2 {
		t.Errorf("paused %v, want 2 pauses before the cancel", clock.sleeps)
	}
}
