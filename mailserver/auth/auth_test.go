package auth

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailvault/mailvault/mailserver/audit"
)

// cheap keeps tests fast; production uses DefaultParams.
var cheap = Options{Params: Params{Time: 1, Memory: 64, Threads: 1, KeyLen: 32}}

func newDB(t *testing.T) *DB {
	t.Helper()
	db, err := Open(filepath.Join(t.TempDir(), "accounts.json"), cheap)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if err := db.AddDomain(ctx, "Example.TEST"); err != nil {
		t.Fatal(err)
	}
	if err := db.AddUser(ctx, "alice@example.test", "correct horse", RoleUser); err != nil {
		t.Fatal(err)
	}
	return db
}

func TestPasswordHash(t *testing.T) {
	h, err := HashPassword(DefaultParams(), "s3cret-pass")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=65536,t=3,p=2$") {
		t.Fatalf("hash = %s", h)
	}
	for _, tc := range []struct {
		pw   string
		want bool
	}{{"s3cret-pass", true}, {"s3cret-pasS", false}, {"", false}} {
		if ok, err := CheckPassword(h, tc.pw); err != nil || ok != tc.want {
			t.Errorf("CheckPassword(%q) = %v, %v", tc.pw, ok, err)
		}
	}
	for _, bad := range []string{"", "$argon2i$v=19$m=1,t=1,p=1$AAAA$AAAA", "$argon2id$v=19$m=x$a$b", "$argon2id$v=19$m=99999999,t=1,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA"} {
		if _, err := CheckPassword(bad, "x"); err == nil {
			t.Errorf("CheckPassword accepted %q", bad)
		}
	}
}

func TestAccounts(t *testing.T) {
	db := newDB(t)
	ctx := t.Context()
	if err := db.AddUser(ctx, "ALICE@example.test", "another pass", RoleUser); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate user: %v", err)
	}
	if err := db.AddUser(ctx, "bob@elsewhere.test", "password1", RoleUser); !errors.Is(err, ErrNotFound) {
		t.Fatalf("user in unknown domain: %v", err)
	}
	if err := db.AddUser(ctx, "bob@example.test", "short", RoleUser); !errors.Is(err, ErrInvalid) {
		t.Fatalf("short password: %v", err)
	}
	if err := db.AddUser(ctx, "admin@example.test", "admin password", RoleAdmin); err != nil {
		t.Fatal(err)
	}
	if err := db.AddAlias(ctx, "sales@example.test", "alice@example.test", "admin@example.test"); err != nil {
		t.Fatal(err)
	}
	if !db.IsLocalDomain("EXAMPLE.test.") || db.IsLocalDomain("other.test") {
		t.Fatal("IsLocalDomain")
	}
	for _, tc := range []struct {
		addr string
		want string
	}{
		{"alice@example.test", "[alice@example.test]"},
		{"Alice+lists@EXAMPLE.test", "[alice@example.test]"},
		{"sales@example.test", "[alice@example.test admin@example.test]"},
		{"nobody@example.test", "error"},
		{"alice@other.test", "error"},
	} {
		got, err := db.Resolve(ctx, tc.addr)
		s := "error"
		if err == nil {
			s = strings.Join([]string{"[", strings.Join(got, " "), "]"}, "")
		}
		if s != tc.want {
			t.Errorf("Resolve(%s) = %s, want %s", tc.addr, s, tc.want)
		}
	}
	for _, tc := range []struct {
		user, from string
		want       bool
	}{
		{"alice@example.test", "alice@example.test", true},
		{"alice@example.test", "Alice+x@example.test", true},
		{"alice@example.test", "sales@example.test", true},
		{"alice@example.test", "admin@example.test", false},
		{"alice@example.test", "alice@other.test", false},
		{"alice@example.test", "", false},
	} {
		if got := db.MaySendAs(ctx, tc.user, tc.from); got != tc.want {
			t.Errorf("MaySendAs(%s, %s) = %v", tc.user, tc.from, got)
		}
	}

	// A second DB on the same file (the CLI while the server runs) sees
	// and makes changes.
	db2, err := Open(db.path, cheap)
	if err != nil {
		t.Fatal(err)
	}
	if err := db2.SetPassword(ctx, "alice@example.test", "new password"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Authenticate(ctx, "alice@example.test", "new password"); err != nil {
		t.Fatalf("first DB did not see the new password: %v", err)
	}
	if err := db2.DeleteUser(ctx, "admin@example.test"); err != nil {
		t.Fatal(err)
	}
	if got, _ := db.Resolve(ctx, "sales@example.test"); len(got) != 1 {
		t.Fatalf("alias after delete: %v", got)
	}
}

func TestAuthenticate(t *testing.T) {
	db := newDB(t)
	ctx := t.Context()
	secret, err := db.AddAppPassword(ctx, "alice@example.test", "phone")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, user, pw string
		ok             bool
	}{
		{"password", "alice@example.test", "correct horse", true},
		{"case-insensitive user", "Alice@Example.Test", "correct horse", true},
		{"app password", "alice@example.test", secret, true},
		{"app password upper case no dashes", "alice@example.test", strings.ToUpper(strings.ReplaceAll(secret, "-", "")), true},
		{"wrong password", "alice@example.test", "wrong horse", false},
		{"unknown user", "mallory@example.test", "correct horse", false},
		{"malformed user", "not an address", "correct horse", false},
		{"empty", "", "", false},
	} {
		_, err := db.Authenticate(ctx, tc.user, tc.pw)
		if tc.ok && err != nil {
			t.Errorf("%s: %v", tc.name, err)
		}
		// Unknown user and wrong password give the very same error.
		if !tc.ok && err != ErrInvalidCredentials {
			t.Errorf("%s: err = %v, want ErrInvalidCredentials", tc.name, err)
		}
	}
	if err := db.RevokeAppPassword(ctx, "alice@example.test", "phone"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Authenticate(ctx, "alice@example.test", secret); err != ErrInvalidCredentials {
		t.Fatalf("revoked app password: %v", err)
	}
}

type memAudit struct {
	mu  sync.Mutex
	evs []audit.Event
}

func (m *memAudit) Record(_ context.Context, ev audit.Event) error {
	m.mu.Lock()
	m.evs = append(m.evs, ev)
	m.mu.Unlock()
	return nil
}

func TestGuardLockout(t *testing.T) {
	db := newDB(t)
	now := time.Unix(1_800_000_000, 0)
	clock := func() time.Time { return now }
	cfg := LimiterConfig{BaseDelay: time.Second, MaxDelay: 4 * time.Second, AccountFailures: 3, IPFailures: 5, LockDuration: time.Minute, Window: time.Hour}
	var slept []time.Duration
	rec := &memAudit{}
	g := &Guard{DB: db, Limiter: NewLimiter(cfg, clock), Audit: rec,
		Sleep: func(_ context.Context, d time.Duration) error { slept = append(slept, d); return nil }}
	ctx := t.Context()
	try := func(user, pw, ip string) error {
		_, err := g.Login(ctx, Attempt{Username: user, Password: pw, IP: ip, Protocol: "test"})
		return err
	}

	// Growing delay, then lockout of the account even with the right password.
	for range 3 {
		if err := try("alice@example.test", "bad guess", "192.0.2.1"); err != ErrInvalidCredentials {
			t.Fatalf("err = %v", err)
		}
	}
	if got := slept; len(got) != 3 || got[0] != time.Second || got[1] != 2*time.Second || got[2] != 4*time.Second {
		t.Fatalf("delays = %v", got)
	}
	if err := try("alice@example.test", "correct horse", "198.51.100.7"); err != ErrLocked {
		t.Fatalf("locked account, other IP: %v", err)
	}
	// Unknown accounts lock the same way: no enumeration through lockout.
	for range 3 {
		try("ghost@example.test", "x", "203.0.113.9")
	}
	if err := try("ghost@example.test", "x", "203.0.113.10"); err != ErrLocked {
		t.Fatalf("unknown account not locked: %v", err)
	}
	// The lock expires.
	now = now.Add(2 * time.Minute)
	if err := try("alice@example.test", "correct horse", "198.51.100.7"); err != nil {
		t.Fatalf("after lock expiry: %v", err)
	}

	// Per-IP: many accounts from one IPv6 /64 lock that network.
	for i := range 5 {
		try("user"+string(rune('a'+i))+"@example.test", "x", "2001:db8::"+string(rune('1'+i)))
	}
	if err := try("alice@example.test", "correct horse", "2001:db8::ff"); err != ErrLocked {
		t.Fatalf("IP /64 not locked: %v", err)
	}
	if err := try("alice@example.test", "correct horse", "2001:db8:1::1"); err != nil {
		t.Fatalf("other /64 locked: %v", err)
	}

	var ok, fail int
	for _, ev := range rec.evs {
		if ev.Kind != audit.KindLogin || ev.Protocol != "test" || ev.IP == "" {
			t.Fatalf("audit event %+v", ev)
		}
		if ev.Success {
			ok++
		} else {
			fail++
		}
	}
	if ok != 2 || fail != len(rec.evs)-2 {
		t.Fatalf("audit: %d ok %d fail of %d", ok, fail, len(rec.evs))
	}
}

func TestLimiterBoundedMemory(t *testing.T) {
	now := time.Unix(0, 0)
	l := NewLimiter(LimiterConfig{AccountFailures: 100, IPFailures: 100, LockDuration: time.Minute, Window: time.Hour, MaxEntries: 50}, func() time.Time { return now })
	for i := range 1000 {
		l.Failure("192.0.2."+string(rune('0'+i%10)), strings.Repeat("a", i%300)+"@x")
	}
	if len(l.accs) > 50 || len(l.ips) > 50 {
		t.Fatalf("entries: %d accounts %d ips", len(l.accs), len(l.ips))
	}
}

// TestLimiterSetConfigKeepsLockouts: a lockout in force survives a new
// configuration, which applies to later failures.
func TestLimiterSetConfigKeepsLockouts(t *testing.T) {
	now := time.Unix(1000, 0)
	l := NewLimiter(LimiterConfig{AccountFailures: 2, IPFailures: 100, LockDuration: time.Minute, Window: time.Hour}, func() time.Time { return now })
	l.Failure("192.0.2.1", "alice")
	l.Failure("192.0.2.1", "alice")
	if err := l.Check("192.0.2.1", "alice"); !errors.Is(err, ErrLocked) {
		t.Fatalf("not locked: %v", err)
	}
	l.SetConfig(LimiterConfig{AccountFailures: 10, IPFailures: 100, LockDuration: time.Second, Window: time.Hour})
	if got := l.Config().AccountFailures; got != 10 {
		t.Fatalf("config: %d", got)
	}
	now = now.Add(30 * time.Second)
	if err := l.Check("192.0.2.1", "alice"); !errors.Is(err, ErrLocked) {
		t.Fatalf("lockout lost by SetConfig: %v", err)
	}
	l.Failure("192.0.2.1", "bob")
	l.Failure("192.0.2.1", "bob")
	if err := l.Check("192.0.2.1", "bob"); err != nil {
		t.Fatalf("new threshold not applied: %v", err)
	}
	now = now.Add(31 * time.Second)
	if err := l.Check("192.0.2.1", "alice"); err != nil {
		t.Fatalf("lockout outlived its time: %v", err)
	}
}
