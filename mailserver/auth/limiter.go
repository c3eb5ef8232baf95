package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/mailvault/mailvault/mailserver/audit"
)

// ErrLocked is returned while an IP or an account name is locked out. It
// is given for unknown and existing account names alike, since failures are
// counted by the name tried.
var ErrLocked = errors.New("auth: too many failed logins, try again later")

// LimiterConfig tunes brute-force protection.
type LimiterConfig struct {
	// Each failure is answered after a delay that doubles from BaseDelay
	// up to MaxDelay.
	BaseDelay, MaxDelay time.Duration
	// After AccountFailures failures for one account name, or IPFailures
	// from one IP (IPv6: its /64), logins are refused for LockDuration.
	AccountFailures, IPFailures int
	LockDuration                time.Duration
	// Failures are forgotten after Window without a new one.
	Window time.Duration
	// MaxEntries bounds the memory used for counters.
	MaxEntries int
}

// DefaultLimiterConfig returns production settings.
func DefaultLimiterConfig() LimiterConfig {
	return LimiterConfig{
		BaseDelay: 250 * time.Millisecond, MaxDelay: 8 * time.Second,
		AccountFailures: 5, IPFailures: 20, LockDuration: 15 * time.Minute,
		Window: time.Hour, MaxEntries: 100000,
	}
}

type counter struct {
	failures    int
	last        time.Time
	lockedUntil time.Time
}

// Limiter counts failed logins per IP and per account name.
type Limiter struct {
	cfg  LimiterConfig
	now  func() time.Time
	mu   sync.Mutex
	ips  map[string]*counter
	accs map[string]*counter
}

// NewLimiter returns a limiter; now is time.Now if nil.
func NewLimiter(cfg LimiterConfig, now func() time.Time) *Limiter {
	if now == nil {
		now = time.Now
	}
	if cfg.MaxEntries <= 0 {
		cfg.MaxEntries = 100000
	}
	return &Limiter{cfg: cfg, now: now, ips: map[string]*counter{}, accs: map[string]*counter{}}
}

// SetConfig changes the limiter's settings while it is in use. Failure
// counts and lockouts already in force are kept: a lock ends at the time
// set when it began, whatever the new LockDuration.
func (l *Limiter) SetConfig(cfg LimiterConfig) {
	if cfg.MaxEntries <= 0 {
		cfg.MaxEntries = 100000
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cfg = cfg
}

// Config returns the limiter's current settings.
func (l *Limiter) Config() LimiterConfig {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.cfg
}

// ipKey groups IPv6 addresses by /64, the usual allocation to one host.
func ipKey(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}

func (l *Limiter) get(m map[string]*counter, key string, create bool) *counter {
	now := l.now()
	c := m[key]
	if c != nil && now.Sub(c.last) > l.cfg.Window && now.After(c.lockedUntil) {
		delete(m, key)
		c = nil
	}
	if c == nil && create {
		if len(m) >= l.cfg.MaxEntries {
			l.sweep(m, now)
		}
		c = &counter{}
		m[key] = c
	}
	return c
}

// sweep drops expired counters, and if that is not enough, unlocked ones.
func (l *Limiter) sweep(m map[string]*counter, now time.Time) {
	for k, c := range m {
		if now.Sub(c.last) > l.cfg.Window && now.After(c.lockedUntil) {
			delete(m, k)
		}
	}
	for k, c := range m {
		if len(m) < l.cfg.MaxEntries {
			break
		}
		if now.After(c.lockedUntil) {
			delete(m, k)
		}
	}
}

// Check returns ErrLocked if ip or account is locked out.
func (l *Limiter) Check(ip, account string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	for _, c := range []*counter{l.get(l.ips, ipKey(ip), false), l.get(l.accs, strings.ToLower(account), false)} {
		if c != nil && now.Before(c.lockedUntil) {
			return ErrLocked
		}
	}
	return nil
}

// Failure records a failed login and returns how long to wait before
// answering it.
func (l *Limiter) Failure(ip, account string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	n := 0
	for _, x := range []struct {
		m     map[string]*counter
		key   string
		limit int
	}{{l.ips, ipKey(ip), l.cfg.IPFailures}, {l.accs, strings.ToLower(account), l.cfg.AccountFailures}} {
		c := l.get(x.m, x.key, true)
		c.failures++
		c.last = now
		if x.limit > 0 && c.failures >= x.limit {
			c.lockedUntil = now.Add(l.cfg.LockDuration)
		}
		n = max(n, c.failures)
	}
	d := l.cfg.BaseDelay
	for i := 1; i < n && d < l.cfg.MaxDelay; i++ {
		d *= 2
	}
	return min(d, l.cfg.MaxDelay)
}

// Lockout is what a Limiter counted for one account name or IP.
type Lockout struct {
	// Key is the account name (lower case) or IP (IPv6: its /64).
	Key      string `json:"key"`
	Failures int    `json:"failures"`
	// LockedUntil is when the lockout ends; zero when not locked out.
	LockedUntil time.Time `json:"locked_until,omitzero"`
}

// UnlockAccount forgets an account name's failed logins and lifts its
// lockout (an admin's `mailvault user unlock`), returning what was
// counted. The IPs the failures came from keep their counts.
func (l *Limiter) UnlockAccount(account string) Lockout {
	return l.unlock(l.accs, strings.ToLower(strings.TrimSpace(account)))
}

// UnlockIP forgets an IP's (IPv6: its /64's) failed logins and lifts its
// lockout, returning what was counted.
func (l *Limiter) UnlockIP(ip string) Lockout {
	return l.unlock(l.ips, ipKey(strings.TrimSpace(ip)))
}

func (l *Limiter) unlock(m map[string]*counter, key string) Lockout {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := Lockout{Key: key}
	if c := l.get(m, key, false); c != nil {
		out.Failures = c.failures
		if l.now().Before(c.lockedUntil) {
			out.LockedUntil = c.lockedUntil
		}
		delete(m, key)
	}
	return out
}

// Success forgets the account's failures (not the IP's: one valid login
// must not reset an attacker's count for other accounts).
func (l *Limiter) Success(ip, account string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.accs, strings.ToLower(account))
}

// Guard authenticates logins for every protocol: it applies the limiter,
// checks credentials, waits the growing delay after a failure and records
// every attempt in the audit log.
type Guard struct {
	DB      *DB
	Limiter *Limiter
	Audit   audit.Recorder
	Log     *slog.Logger
	// Sleep waits d or until ctx ends; a real timer if nil. Tests replace
	// it to observe delays without waiting.
	Sleep func(ctx context.Context, d time.Duration) error
}

// Attempt is one login attempt.
type Attempt struct {
	Username, Password string
	IP                 string
	Protocol           string // "submission", "imap", "pop3", …
}

// Login checks an attempt. Failures are ErrInvalidCredentials or ErrLocked,
// never anything that tells whether the account exists.
func (g *Guard) Login(ctx context.Context, a Attempt) (User, error) {
	rec := g.Audit
	if rec == nil {
		rec = audit.Discard{}
	}
	log := g.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ev := audit.Event{Kind: audit.KindLogin, User: strings.ToLower(a.Username), IP: a.IP, Protocol: a.Protocol}
	if err := g.Limiter.Check(a.IP, a.Username); err != nil {
		ev.Detail = "locked out"
		if aerr := rec.Record(ctx, ev); aerr != nil {
			log.Error("audit", "err", aerr)
		}
		return User{}, err
	}
	u, err := g.DB.Authenticate(ctx, a.Username, a.Password)
	if err != nil && !errors.Is(err, ErrInvalidCredentials) {
		return User{}, fmt.Errorf("auth: login: %w", err)
	}
	if err != nil {
		d := g.Limiter.Failure(a.IP, a.Username)
		ev.Detail = "invalid credentials"
		if aerr := rec.Record(ctx, ev); aerr != nil {
			log.Error("audit", "err", aerr)
		}
		log.Info("login failed", "user", ev.User, "ip", a.IP, "protocol", a.Protocol, "delay", d)
		if serr := g.sleep(ctx, d); serr != nil {
			return User{}, serr
		}
		return User{}, ErrInvalidCredentials
	}
	g.Limiter.Success(a.IP, a.Username)
	ev.Success, ev.User = true, u.Address
	if aerr := rec.Record(ctx, ev); aerr != nil {
		// Refuse a login that cannot be audited.
		return User{}, fmt.Errorf("auth: audit: %w", aerr)
	}
	log.Info("login", "user", u.Address, "ip", a.IP, "protocol", a.Protocol)
	return u, nil
}

func (g *Guard) sleep(ctx context.Context, d time.Duration) error {
	if g.Sleep != nil {
		return g.Sleep(ctx, d)
	}
	if d <= 0 {
		return nil
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
