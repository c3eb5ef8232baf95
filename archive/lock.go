package archive

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"
	"time"
)

// Locks keep maintenance (prune, which deletes) away from backups (which
// add). Backups themselves never conflict: every backup writes new files
// under content-derived names and never modifies one, so any number may
// run at once against one repository (see docs/FORMAT.md "Concurrency").
//
// A lock is a small plaintext JSON file in locks/. It is refreshed every
// lockRefresh; one not refreshed for lockStale, or held by a dead process
// on this host, is stale and ignored (and removed by the next locker).
const (
	lockRefresh = 5 * time.Minute
	lockStale   = 30 * time.Minute
)

// A locker that meets a conflicting lock and may wait looks again after
// lockRetryStart, doubling the pause up to lockRetryMax (as restic's
// --retry-lock): a short prune or backup is waited out within seconds,
// and a long wait costs one listing a minute.
const (
	lockRetryStart = time.Second
	lockRetryMax   = time.Minute
)

// LockWait says how Lock waits while another process holds a conflicting
// lock (Options.LockWait). The zero value fails at once.
type LockWait struct {
	// For is how long to keep trying before failing with ErrLocked.
	For time.Duration
	// Waiting, if not nil, is called once, when the first try meets a
	// conflicting lock and Lock starts to wait; err names the holder.
	Waiting func(err error)
	// Now and Sleep are the clock; nil means the real one. Sleep waits
	// for d or until ctx is done. Tests pass a fake clock.
	Now   func() time.Time
	Sleep func(ctx context.Context, d time.Duration) error
}

func (w LockWait) now() time.Time {
	if w.Now != nil {
		return w.Now()
	}
	return time.Now()
}

func (w LockWait) sleep(ctx context.Context, d time.Duration) error {
	if w.Sleep != nil {
		return w.Sleep(ctx, d)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// ErrLocked means a conflicting lock is held.
var ErrLocked = errors.New("repository is locked")

// LockInfo is the content of a lock file.
type LockInfo struct {
	Time      time.Time `json:"time"`
	Exclusive bool      `json:"exclusive"`
	Host      string    `json:"host"`
	PID       int       `json:"pid"`
	Username  string    `json:"username,omitempty"`
}

func (l LockInfo) stale(now time.Time, host string) bool {
	if now.Sub(l.Time) > lockStale {
		return true
	}
	if l.Host == host && l.PID > 0 {
		// Signal 0 tests whether the process exists.
		if err := syscall.Kill(l.PID, 0); errors.Is(err, syscall.ESRCH) {
			return true
		}
	}
	return false
}

// Lock takes a shared or exclusive lock and keeps it fresh until unlock is
// called. While a conflicting lock is held it tries again, with growing
// pauses, for as long as the repository's LockWait allows; then it fails
// with ErrLocked naming the holder.
func (r *Repository) Lock(ctx context.Context, exclusive bool) (unlock func(), err error) {
	w := r.lockWait
	host, _ := os.Hostname()
	start := w.now()
	pause := lockRetryStart
	for tries := 1; ; tries++ {
		if tries == 1 {
			unlock, err = r.lock(ctx, exclusive, host)
		} else if err = r.checkLocks(ctx, "", exclusive, host); err == nil {
			// Only look while waiting, and write a lock file only once
			// the way seems clear: a write-only host's every lock file
			// stays in a versioned bucket, hidden by a delete marker.
			unlock, err = r.lock(ctx, exclusive, host)
		}
		if !errors.Is(err, ErrLocked) {
			return unlock, err
		}
		left := w.For - w.now().Sub(start)
		if left <= 0 {
			if tries > 1 {
				return nil, fmt.Errorf("%w (after waiting %s, %d tries)", err, w.For, tries)
			}
			return nil, err
		}
		if tries == 1 && w.Waiting != nil {
			w.Waiting(err)
		}
		if serr := w.sleep(ctx, min(pause, left)); serr != nil {
			return nil, fmt.Errorf("%w (gave up waiting: %w)", err, serr)
		}
		pause = min(2*pause, lockRetryMax)
	}
}

// lock makes one try: write a lock file, then look for conflicting ones.
func (r *Repository) lock(ctx context.Context, exclusive bool, host string) (unlock func(), err error) {
	info := LockInfo{Time: time.Now().UTC(), Exclusive: exclusive, Host: host, PID: os.Getpid(), Username: os.Getenv("USER")}
	name, err := r.writeLock(ctx, info)
	if err != nil {
		return nil, err
	}
	// Write first, then look: two lockers that race both see each other
	// and at least one backs off.
	if err := r.checkLocks(ctx, name, exclusive, host); err != nil {
		_ = r.be.Remove(context.WithoutCancel(ctx), LockFile, name)
		return nil, err
	}
	var mu sync.Mutex
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(lockRefresh)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				info.Time = time.Now().UTC()
				if n, err := r.writeLock(context.Background(), info); err == nil {
					mu.Lock()
					old := name
					name = n
					mu.Unlock()
					_ = r.be.Remove(context.Background(), LockFile, old)
				}
			}
		}
	}()
	return func() {
		close(stop)
		<-done
		mu.Lock()
		defer mu.Unlock()
		_ = r.be.Remove(context.Background(), LockFile, name)
	}, nil
}

func (r *Repository) writeLock(ctx context.Context, info LockInfo) (string, error) {
	raw, err := json.Marshal(info)
	if err != nil {
		return "", err
	}
	var id ID
	if _, err := rand.Read(id[:]); err != nil {
		return "", err
	}
	if err := r.be.Put(ctx, LockFile, id.String(), raw); err != nil {
		return "", fmt.Errorf("write lock: %w", err)
	}
	return id.String(), nil
}

func (r *Repository) checkLocks(ctx context.Context, own string, exclusive bool, host string) error {
	now := time.Now()
	var conflict error
	err := r.be.List(ctx, LockFile, func(name string, _ int64) error {
		if name == own {
			return nil
		}
		rc, err := r.be.Get(ctx, LockFile, name)
		if err != nil {
			return nil // removed meanwhile
		}
		raw, err := io.ReadAll(io.LimitReader(rc, 1<<16))
		rc.Close()
		var l LockInfo
		if err != nil || json.Unmarshal(raw, &l) != nil {
			return nil // a torn lock file from a crash is no lock
		}
		if l.stale(now, host) {
			_ = r.be.Remove(ctx, LockFile, name)
			return nil
		}
		if exclusive || l.Exclusive {
			kind := "shared"
			if l.Exclusive {
				kind = "exclusive"
			}
			conflict = fmt.Errorf("%w: %s lock held by PID %d on %s since %s", ErrLocked, kind, l.PID, l.Host, l.Time.Format(time.RFC3339))
		}
		return nil
	})
	if err != nil {
		return err
	}
	return conflict
}
