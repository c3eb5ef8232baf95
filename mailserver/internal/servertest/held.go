package servertest

import (
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailvault/mailvault/mailserver/auth"
)

// HeldChecks counts the password checks of an account database that runs
// one at a time and holds the first until Release: the way a test queues
// a login behind another for the check's slot
// (auth.Options.MaxConcurrentHashes).
type HeldChecks struct {
	// Entered receives once when the first check has begun.
	Entered chan struct{}
	release chan struct{}
	once    sync.Once
	n       atomic.Int64
}

// HoldChecks replaces e.DB by a database over the same accounts file
// whose checks HeldChecks counts and holds; build the server (e.Guard)
// after calling it.
func (e *Env) HoldChecks(t testing.TB) *HeldChecks {
	t.Helper()
	h := &HeldChecks{Entered: make(chan struct{}, 1), release: make(chan struct{})}
	db, err := auth.Open(filepath.Join(e.Dir, "accounts.json"), auth.Options{
		Params:              auth.Params{Time: 1, Memory: 64, Threads: 1, KeyLen: 32},
		MaxConcurrentHashes: 1,
		Check: func(encoded, password string) (bool, error) {
			if h.n.Add(1) == 1 {
				h.Entered <- struct{}{}
				<-h.release
			}
			return auth.CheckPassword(encoded, password)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Release)
	e.DB = db
	return h
}

// Release lets the held check, and every later one, run.
func (h *HeldChecks) Release() { h.once.Do(func() { close(h.release) }) }

// Checks is the number of password checks begun so far.
func (h *HeldChecks) Checks() int64 { return h.n.Load() }

// WaitLogged waits until the server under test has logged a record that
// contains s; the test's own timeout bounds the wait.
func (e *Env) WaitLogged(s string) {
	for !strings.Contains(e.Logs(), s) {
		time.Sleep(time.Millisecond)
	}
}
