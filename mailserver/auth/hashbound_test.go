package auth

import (
	"context"
	"errors"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync"
	"testing"
)

// Open computes no hash: the dummy checked for unknown users is built,
// not derived, so opening the accounts allocates kilobytes, not the 64 MiB
// of an argon2id computation.
func TestOpenAllocatesNoHash(t *testing.T) {
	path := filepath.Join(t.TempDir(), "accounts.json")
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	if _, err := Open(path, Options{}); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	if n := after.TotalAlloc - before.TotalAlloc; n > 1<<20 {
		t.Fatalf("Open allocated %d bytes", n)
	}
}

// An unknown user's check costs what a known user's does: the dummy has
// the database's parameters, and no password matches it.
func TestDummyHashHasTheCost(t *testing.T) {
	db := newDB(t)
	var checked []string
	db.check = func(encoded, password string) (bool, error) {
		checked = append(checked, encoded)
		return CheckPassword(encoded, password)
	}
	for _, u := range []string{"alice@example.test", "nobody@example.test", "not an address"} {
		if _, err := db.Authenticate(t.Context(), u, "wrong password"); !errors.Is(err, ErrInvalidCredentials) {
			t.Fatalf("%s: %v", u, err)
		}
	}
	if len(checked) != 3 {
		t.Fatalf("%d checks for 3 logins", len(checked))
	}
	cost := func(h string) string { return strings.Join(strings.Split(h, "$")[:4], "$") }
	for _, h := range checked[1:] {
		if cost(h) != cost(checked[0]) {
			t.Fatalf("unknown user checked %s, a user %s", cost(h), cost(checked[0]))
		}
	}
	for _, p := range []Params{cheap.Params, DefaultParams()} {
		if ok, err := CheckPassword(dummyHash(Params{Time: 1, Memory: 64, Threads: p.Threads, KeyLen: p.KeyLen}), ""); ok || err != nil {
			t.Fatalf("dummy hash: %v %v", ok, err)
		}
		if !strings.HasPrefix(dummyHash(p), "$argon2id$v=19$m=") {
			t.Fatalf("dummy %s", dummyHash(p))
		}
	}
}

// Parallel logins run at most MaxConcurrentHashes argon2id checks at
// once (each holds its hash's memory); the rest wait, and a waiter whose
// context ends gives up.
func TestConcurrentHashesBounded(t *testing.T) {
	opts := cheap
	opts.MaxConcurrentHashes = 2
	db, err := Open(filepath.Join(t.TempDir(), "accounts.json"), opts)
	if err != nil {
		t.Fatal(err)
	}
	h := holdChecks(db)
	const logins = 8
	var wg sync.WaitGroup
	for range logins {
		wg.Go(func() { db.Authenticate(t.Context(), "nobody@example.test", "password") })
	}
	<-h.entered
	<-h.entered
	// Both places are taken: many scheduling rounds let no third in.
	settle()
	if inflight, _, calls := h.counts(); inflight != 2 || calls != 2 {
		t.Errorf("%d checks in flight, %d started, want 2 and 2", inflight, calls)
	}

	// A login whose context ends while it waits returns at once.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := db.Authenticate(ctx, "nobody@example.test", "password"); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled waiter: %v", err)
	}

	close(h.release)
	wg.Wait()
	if _, peak, calls := h.counts(); peak != 2 || calls != logins {
		t.Fatalf("peak %d checks at once, %d checks; want 2 and %d", peak, calls, logins)
	}
}

func TestDefaultConcurrentHashes(t *testing.T) {
	procs := runtime.GOMAXPROCS(0)
	for _, tc := range []struct {
		opts Options
		want int
	}{
		{Options{MaxConcurrentHashes: 3}, 3},
		{Options{}, max(1, procs/int(DefaultParams().Threads))},
		{Options{Params: Params{Time: 1, Memory: 64, Threads: 1, KeyLen: 32}}, procs},
		{Options{Params: Params{Time: 1, Memory: 64, Threads: 255, KeyLen: 32}}, 1},
	} {
		if got := tc.opts.maxConcurrentHashes(); got != tc.want {
			t.Errorf("%+v: %d, want %d", tc.opts, got, tc.want)
		}
	}
}

// The first check in collects before it allocates its block (acquire),
// and the last out collects and returns the block at once (release), so
// the block neither lands on top of uncollected garbage nor inflates the
// next heap goal: two forced collections for one login.
//
// With a block that is a small part of the heap (the cheap test cost,
// 64 KiB, against a test binary's megabytes) they would not pay, and
// there are none.
func TestCheckCollectsAround(t *testing.T) {
	forced := func() uint64 {
		s := []metrics.Sample{{Name: "/gc/cycles/forced:gc-cycles"}}
		metrics.Read(s)
		return s[0].Value.Uint64()
	}
	for _, tc := range []struct {
		name   string
		memory uint32 // KiB
		want   uint64
	}{
		{"block dominates the heap", 32 << 10, 2},
		{"block small beside the heap", 64, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := newDB(t)
			db.SetParams(Params{Time: 1, Memory: tc.memory, Threads: 1, KeyLen: 32})
			if err := db.SetPassword(t.Context(), "alice@example.test", "correct horse"); err != nil {
				t.Fatal(err)
			}
			runtime.GC() // the heap as it is, not as it was at the last collection
			before := forced()
			if _, err := db.Authenticate(t.Context(), "alice@example.test", "correct horse"); err != nil {
				t.Fatal(err)
			}
			if n := forced() - before; n != tc.want {
				t.Fatalf("%d forced collections for a login, want %d", n, tc.want)
			}
		})
	}
}

// heldChecks replaces a DB's password check with one that counts the
// checks running at once and holds each until release gets a value (or
// is closed); entered gets one for every check that starts.
type heldChecks struct {
	mu                    sync.Mutex
	inflight, peak, calls int
	entered, release      chan struct{}
}

func holdChecks(db *DB) *heldChecks {
	h := &heldChecks{entered: make(chan struct{}, 16), release: make(chan struct{})}
	db.check = func(encoded, password string) (bool, error) {
		h.mu.Lock()
		h.inflight++
		h.calls++
		h.peak = max(h.peak, h.inflight)
		h.mu.Unlock()
		h.entered <- struct{}{}
		<-h.release
		h.mu.Lock()
		h.inflight--
		h.mu.Unlock()
		return CheckPassword(encoded, password)
	}
	return h
}

func (h *heldChecks) counts() (inflight, peak, calls int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.inflight, h.peak, h.calls
}

// settle gives goroutines many scheduling rounds, so that one that could
// start a check has started it.
func settle() {
	for range 1000 {
		runtime.Gosched()
	}
}
