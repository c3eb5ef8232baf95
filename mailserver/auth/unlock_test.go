package auth

import (
	"errors"
	"testing"
	"time"
)

// TestLimiterUnlock: an admin's unlock lifts the lockout of a name or an
// IP at once and says what was counted; other keys keep theirs.
func TestLimiterUnlock(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	cfg := DefaultLimiterConfig()
	l := NewLimiter(cfg, func() time.Time { return now })
	for range cfg.AccountFailures {
		l.Failure("192.0.2.1", "Alice@Example.Test")
		l.Failure("192.0.2.1", "bob@example.test")
	}
	if l.Check("192.0.2.9", "alice@example.test") == nil || l.Check("192.0.2.9", "bob@example.test") == nil {
		t.Fatal("not locked out after the configured failures")
	}
	got := l.UnlockAccount(" ALICE@example.test")
	want := Lockout{Key: "alice@example.test", Failures: cfg.AccountFailures, LockedUntil: now.Add(cfg.LockDuration)}
	if got != want {
		t.Fatalf("UnlockAccount = %+v, want %+v", got, want)
	}
	if err := l.Check("192.0.2.9", "alice@example.test"); err != nil {
		t.Fatalf("still locked after unlock: %v", err)
	}
	if !errors.Is(l.Check("192.0.2.9", "bob@example.test"), ErrLocked) {
		t.Fatal("unlocking alice unlocked bob")
	}
	if again := l.UnlockAccount("alice@example.test"); again != (Lockout{Key: "alice@example.test"}) {
		t.Fatalf("second unlock = %+v, want nothing counted", again)
	}

	// 20 failures from one IPv6 /64 lock it; unlocking any address of it
	// lifts that.
	for i := range cfg.IPFailures {
		l.Failure("2001:db8::1", "user"+string(rune('a'+i))+"@example.test")
	}
	if l.Check("2001:db8::2", "new@example.test") == nil {
		t.Fatal("IP not locked out")
	}
	ip := l.UnlockIP("2001:db8::ffff")
	if ip.Key != "2001:db8::/64" || ip.Failures != cfg.IPFailures || ip.LockedUntil.IsZero() {
		t.Fatalf("UnlockIP = %+v", ip)
	}
	if err := l.Check("2001:db8::2", "new@example.test"); err != nil {
		t.Fatalf("IP still locked: %v", err)
	}
	// A lockout that has ended reports its failures, not a time.
	now = now.Add(cfg.LockDuration + time.Minute)
	if b := l.UnlockAccount("bob@example.test"); b.Failures != cfg.AccountFailures || !b.LockedUntil.IsZero() {
		t.Fatalf("expired lockout: %+v", b)
	}
}
