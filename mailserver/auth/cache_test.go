package auth

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeClock is a settable Options.Now.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// cachedDB is newDB with a credential cache of ttl, a fake clock and a
// count of the argon2id checks Authenticate makes.
func cachedDB(t *testing.T, ttl time.Duration) (*DB, *fakeClock, *atomic.Int64) {
	t.Helper()
	clock := &fakeClock{t: time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)}
	var checks atomic.Int64
	opts := cheap
	opts.Now = clock.now
	opts.CacheTTL = ttl
	opts.Check = func(encoded, password string) (bool, error) {
		checks.Add(1)
		return CheckPassword(encoded, password)
	}
	db, err := Open(filepath.Join(t.TempDir(), "accounts.json"), opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if err := db.AddDomain(ctx, "example.test"); err != nil {
		t.Fatal(err)
	}
	if err := db.AddUser(ctx, "alice@example.test", "correct horse", RoleUser); err != nil {
		t.Fatal(err)
	}
	return db, clock, &checks
}

func mustLogin(t *testing.T, db *DB, user, pass string) {
	t.Helper()
	if _, err := db.Authenticate(t.Context(), user, pass); err != nil {
		t.Fatalf("login %s: %v", user, err)
	}
}

func mustFail(t *testing.T, db *DB, user, pass string) {
	t.Helper()
	if _, err := db.Authenticate(t.Context(), user, pass); !errors.Is(err, ErrInvalidCredentials) {
		t.Fatalf("login %s with %q: %v, want invalid credentials", user, pass, err)
	}
}

func TestCacheSkipsArgon2ForARepeatedLogin(t *testing.T) {
	db, clock, checks := cachedDB(t, time.Minute)
	mustLogin(t, db, "alice@example.test", "correct horse")
	if n := checks.Load(); n != 1 {
		t.Fatalf("first login: %d checks", n)
	}
	for range 5 {
		mustLogin(t, db, "ALICE@example.test", "correct horse")
		clock.advance(10 * time.Second)
	}
	if n := checks.Load(); n != 1 {
		t.Fatalf("5 logins within the TTL: %d checks, want the first one only", n)
	}
	// 60 s after the first login the entry has expired (a hit does not
	// extend it).
	clock.advance(10 * time.Second)
	mustLogin(t, db, "alice@example.test", "correct horse")
	if n := checks.Load(); n != 2 {
		t.Fatalf("after the TTL: %d checks, want 2", n)
	}
}

func TestCacheNeverAcceptsAWrongPassword(t *testing.T) {
	db, _, checks := cachedDB(t, time.Minute)
	mustLogin(t, db, "alice@example.test", "correct horse")
	for _, pw := range []string{"correct horsE", "correct horse ", "", "wrong"} {
		mustFail(t, db, "alice@example.test", pw)
	}
	mustFail(t, db, "nobody@example.test", "correct horse")
	// A failure is not remembered: the same wrong password is checked
	// every time.
	mustFail(t, db, "alice@example.test", "wrong")
	if n := checks.Load(); n != 1+4+1+1 {
		t.Fatalf("%d checks, want every failure checked", n)
	}
}

func TestCacheInvalidatedByCredentialChanges(t *testing.T) {
	ctx := context.Background()
	db, _, checks := cachedDB(t, time.Minute)
	mustLogin(t, db, "alice@example.test", "correct horse")

	// A new password: the old one fails at once, the new one is checked.
	if err := db.SetPassword(ctx, "alice@example.test", "battery staple"); err != nil {
		t.Fatal(err)
	}
	before := checks.Load()
	mustFail(t, db, "alice@example.test", "correct horse")
	mustLogin(t, db, "alice@example.test", "battery staple")
	if n := checks.Load() - before; n != 2 {
		t.Fatalf("after a password change: %d checks, want 2", n)
	}
	mustLogin(t, db, "alice@example.test", "battery staple")

	// An app password: cached like a password, gone when revoked.
	secret, err := db.AddAppPassword(ctx, "alice@example.test", "phone")
	if err != nil {
		t.Fatal(err)
	}
	mustLogin(t, db, "alice@example.test", secret)
	before = checks.Load()
	mustLogin(t, db, "alice@example.test", secret)
	if n := checks.Load() - before; n != 0 {
		t.Fatalf("repeated app password login: %d checks", n)
	}
	if err := db.RevokeAppPassword(ctx, "alice@example.test", "phone"); err != nil {
		t.Fatal(err)
	}
	mustFail(t, db, "alice@example.test", secret)

	// Disabled, then deleted: refused although the login is cached.
	mustLogin(t, db, "alice@example.test", "battery staple")
	before = checks.Load()
	mustLogin(t, db, "alice@example.test", "battery staple")
	if n := checks.Load() - before; n != 0 {
		t.Fatalf("cached login: %d checks", n)
	}
	setDisabled(t, db, "alice@example.test", true)
	mustFail(t, db, "alice@example.test", "battery staple")
	setDisabled(t, db, "alice@example.test", false)
	mustLogin(t, db, "alice@example.test", "battery staple")
	if err := db.DeleteUser(ctx, "alice@example.test"); err != nil {
		t.Fatal(err)
	}
	mustFail(t, db, "alice@example.test", "battery staple")
	// Re-created with the same password: a new salt, a new check.
	if err := db.AddUser(ctx, "alice@example.test", "battery staple", RoleUser); err != nil {
		t.Fatal(err)
	}
	before = checks.Load()
	mustLogin(t, db, "alice@example.test", "battery staple")
	if n := checks.Load() - before; n != 1 {
		t.Fatalf("re-created user: %d checks, want 1", n)
	}
}

// setDisabled changes the file as another process (mailvault user
// disable) would, and the DB notices it on the next read.
func setDisabled(t *testing.T, db *DB, addr string, disabled bool) {
	t.Helper()
	if err := db.updateUser(addr, func(st *state, i int) error {
		st.Users[i].Disabled = disabled
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// A password changed by another process (the CLI writing accounts.json)
// is effective at once: the stored hash is part of the cache key.
func TestCacheSeesAnotherProcessChangeThePassword(t *testing.T) {
	db, _, _ := cachedDB(t, time.Minute)
	mustLogin(t, db, "alice@example.test", "correct horse")
	other, err := Open(db.path, cheap)
	if err != nil {
		t.Fatal(err)
	}
	if err := other.SetPassword(context.Background(), "alice@example.test", "battery staple"); err != nil {
		t.Fatal(err)
	}
	mustFail(t, db, "alice@example.test", "correct horse")
	mustLogin(t, db, "alice@example.test", "battery staple")
}

func TestCacheTTLZeroDisables(t *testing.T) {
	db, _, checks := cachedDB(t, 0)
	for range 3 {
		mustLogin(t, db, "alice@example.test", "correct horse")
	}
	if n := checks.Load(); n != 3 {
		t.Fatalf("cache off: %d checks for 3 logins", n)
	}
	if db.cache.len() != 0 {
		t.Fatal("cache off but holds entries")
	}
	db.SetCacheTTL(time.Minute)
	mustLogin(t, db, "alice@example.test", "correct horse")
	mustLogin(t, db, "alice@example.test", "correct horse")
	if n := checks.Load(); n != 4 {
		t.Fatalf("cache turned on: %d checks, want 4", n)
	}
	db.SetCacheTTL(0)
	mustLogin(t, db, "alice@example.test", "correct horse")
	if n := checks.Load(); n != 5 {
		t.Fatalf("cache turned off again: %d checks, want 5", n)
	}
}

// The cache holds HMACs, never the password or anything derived from it
// without the process's key.
func TestCacheHoldsNoPassword(t *testing.T) {
	db, _, _ := cachedDB(t, time.Minute)
	mustLogin(t, db, "alice@example.test", "correct horse")
	if db.cache.len() != 1 {
		t.Fatalf("%d entries", db.cache.len())
	}
	other := newCredCache(time.Minute)
	if bytes.Equal(other.key, db.cache.key) {
		t.Fatal("two caches share a key")
	}
	u, err := db.LookupUser(t.Context(), "alice@example.test")
	if err != nil {
		t.Fatal(err)
	}
	db.cache.mu.Lock()
	defer db.cache.mu.Unlock()
	for m := range db.cache.entries {
		if bytes.Contains(m[:], []byte("correct")) || m == other.mac(&u, "correct horse") {
			t.Fatal("cache key is not keyed by the process's secret")
		}
		if m != db.cache.mac(&u, "correct horse") {
			t.Fatal("unexpected cache key")
		}
	}
}

func TestCacheIsBounded(t *testing.T) {
	c := newCredCache(time.Minute)
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	u := User{Address: "alice@example.test", PasswordHash: "$argon2id$x"}
	for i := range maxCacheEntries + 50 {
		c.add(&u, string(rune('a'+i%26))+time.Duration(i).String(), now.Add(time.Duration(i)*time.Millisecond))
	}
	if n := c.len(); n != maxCacheEntries {
		t.Fatalf("%d entries, want at most %d", n, maxCacheEntries)
	}
	// The oldest went first; the newest is there.
	last := maxCacheEntries + 49
	if !c.hit(&u, string(rune('a'+last%26))+time.Duration(last).String(), now.Add(time.Duration(last)*time.Millisecond)) {
		t.Fatal("newest entry evicted")
	}
	if c.hit(&u, "a"+time.Duration(0).String(), now.Add(time.Second)) {
		t.Fatal("oldest entry kept")
	}
}

// Lockout still counts failures with the cache on: a cached login of the
// real user does not reset an attacker's failures for another IP, and a
// locked account is refused before the cache is looked at.
func TestCacheKeepsLockout(t *testing.T) {
	db, clock, checks := cachedDB(t, time.Minute)
	lim := NewLimiter(LimiterConfig{AccountFailures: 3, IPFailures: 100, LockDuration: time.Minute}, clock.now)
	g := &Guard{DB: db, Limiter: lim, Sleep: func(context.Context, time.Duration) error { return nil }}
	ctx := t.Context()
	if _, err := g.Login(ctx, Attempt{Username: "alice@example.test", Password: "correct horse", IP: "192.0.2.1"}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := g.Login(ctx, Attempt{Username: "alice@example.test", Password: "guess", IP: "198.51.100.9"}); !errors.Is(err, ErrInvalidCredentials) {
			t.Fatalf("bad password: %v", err)
		}
	}
	if _, err := g.Login(ctx, Attempt{Username: "alice@example.test", Password: "correct horse", IP: "192.0.2.1"}); !errors.Is(err, ErrLocked) {
		t.Fatalf("locked account with a cached password: %v", err)
	}
	if n := checks.Load(); n != 4 {
		t.Fatalf("%d checks, want 4 (1 login, 3 failures, none while locked)", n)
	}
}
