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
// called.
func (r *Repository) Lock(ctx context.Context, exclusive bool) (unlock func(), err error) {
	host, _ := os.Hostname()
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
