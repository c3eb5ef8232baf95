package smtpd

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// scriptedResolver answers TXT lookups from a function and counts them;
// gate, if set, holds every lookup until it is closed.
type scriptedResolver struct {
	StaticResolver
	mu      sync.Mutex
	calls   map[string]int
	answer  func(name string) ([]string, error)
	gate    chan struct{}
	started chan string
	ctxs    []context.Context
}

func (r *scriptedResolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	r.mu.Lock()
	if r.calls == nil {
		r.calls = map[string]int{}
	}
	r.calls[name]++
	r.ctxs = append(r.ctxs, ctx)
	r.mu.Unlock()
	if r.started != nil {
		r.started <- name
	}
	if r.gate != nil {
		select {
		case <-r.gate:
		case <-ctx.Done():
			return nil, &net.DNSError{Err: "timeout", Name: name, IsTimeout: true, IsTemporary: true}
		}
	}
	return r.answer(name)
}

func (r *scriptedResolver) count(name string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls[name]
}

// fakeClock is a settable time source for the cache's TTLs.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	c.now = t
	c.mu.Unlock()
}

func answers(name string) ([]string, error) {
	switch {
	case strings.HasPrefix(name, "ok."):
		return []string{"v=spf1 -all"}, nil
	case strings.HasPrefix(name, "missing."):
		return nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
	default:
		return nil, &net.DNSError{Err: "server misbehaving", Name: name, IsTemporary: true}
	}
}

type step struct {
	offset  time.Duration
	lookups int
}

func TestCachingResolverTTLs(t *testing.T) {
	for _, tc := range []struct {
		name    string
		lookup  string
		wantErr bool
		// asked again at each offset from the first lookup, in order:
		// how many lookups reached the resolver behind the cache by then
		steps []step
	}{
		{"answer kept for DefaultAnswerTTL", "ok.example", false, []step{
			{0, 1}, {DefaultAnswerTTL - time.Second, 1}, {DefaultAnswerTTL, 2}, {DefaultAnswerTTL + time.Second, 2}}},
		{"no such name kept like an answer", "missing.example", true, []step{
			{0, 1}, {DefaultAnswerTTL - time.Second, 1}, {DefaultAnswerTTL, 2}}},
		{"failure kept for DefaultFailureTTL only", "broken.example", true, []step{
			{0, 1}, {DefaultFailureTTL - time.Second, 1}, {DefaultFailureTTL, 2}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := &scriptedResolver{answer: answers}
			clock := &fakeClock{now: time.Unix(1_700_000_000, 0)}
			c := NewCachingResolver(up)
			c.now = clock.Now
			start := clock.Now()
			if _, err := c.LookupTXT(t.Context(), tc.lookup); (err != nil) != tc.wantErr {
				t.Fatalf("first lookup: err = %v, want error %v", err, tc.wantErr)
			}
			for _, st := range tc.steps {
				off := st.offset
				clock.Set(start.Add(off))
				txt, err := c.LookupTXT(t.Context(), tc.lookup)
				if (err != nil) != tc.wantErr {
					t.Fatalf("at +%s: err = %v, want error %v", off, err, tc.wantErr)
				}
				if !tc.wantErr && (len(txt) != 1 || txt[0] != "v=spf1 -all") {
					t.Fatalf("at +%s: got %q", off, txt)
				}
				if got := up.count(tc.lookup); got != st.lookups {
					t.Fatalf("at +%s: %d upstream lookups, want %d", off, got, st.lookups)
				}
			}
			var dnsErr *net.DNSError
			if _, err := c.LookupTXT(t.Context(), tc.lookup); tc.wantErr && !errors.As(err, &dnsErr) {
				t.Fatalf("cached error %T %v is not a *net.DNSError", err, err)
			}
		})
	}
}

// TestCachingResolverCoalesces: callers asking the same question while a
// lookup runs share it; the answer then comes from the cache.
func TestCachingResolverCoalesces(t *testing.T) {
	up := &scriptedResolver{answer: answers, gate: make(chan struct{}), started: make(chan string, 1)}
	c := NewCachingResolver(up)
	const callers = 8
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for range callers {
		wg.Go(func() {
			txt, err := c.LookupTXT(t.Context(), "ok.example")
			if err == nil && len(txt) != 1 {
				err = errors.New("wrong answer")
			}
			errs <- err
		})
	}
	<-up.started // the one lookup is running
	close(up.gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := up.count("ok.example"); got != 1 {
		t.Fatalf("%d upstream lookups for %d concurrent callers, want 1", got, callers)
	}
	if got := c.Lookups(); got != 1 {
		t.Fatalf("Lookups() = %d, want 1", got)
	}
}

// TestCachingResolverCallerGivesUp: a caller whose context ends stops
// waiting with a temporary DNS error; the lookup goes on (bounded by its
// own timeout) and its answer serves the next caller.
func TestCachingResolverCallerGivesUp(t *testing.T) {
	up := &scriptedResolver{answer: answers, gate: make(chan struct{}), started: make(chan string, 1)}
	c := NewCachingResolver(up)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		_, err := c.LookupTXT(ctx, "ok.example")
		done <- err
	}()
	<-up.started
	cancel()
	err := <-done
	var dnsErr *net.DNSError
	if !errors.As(err, &dnsErr) || !dnsErr.IsTemporary || !dnsErr.IsTimeout {
		t.Fatalf("abandoned lookup: err = %#v, want a temporary timeout *net.DNSError", err)
	}
	up.mu.Lock()
	lctx := up.ctxs[0]
	up.mu.Unlock()
	if lctx.Err() != nil {
		t.Fatal("the caller's cancellation reached the shared lookup")
	}
	if _, ok := lctx.Deadline(); !ok {
		t.Fatal("the shared lookup has no deadline")
	}
	close(up.gate)
	if txt, err := c.LookupTXT(t.Context(), "ok.example"); err != nil || len(txt) != 1 {
		t.Fatalf("next caller: %q, %v", txt, err)
	}
	if got := up.count("ok.example"); got != 1 {
		t.Fatalf("%d upstream lookups, want 1", got)
	}
}

func TestCachingResolverBoundedSize(t *testing.T) {
	up := &scriptedResolver{answer: answers}
	c := NewCachingResolver(up)
	c.maxEntries = 3
	for _, name := range []string{"ok.a", "ok.b", "ok.c", "ok.d", "ok.e", "ok.f", "ok.g"} {
		if _, err := c.LookupTXT(t.Context(), name); err != nil {
			t.Fatal(err)
		}
		c.mu.Lock()
		n := len(c.entries)
		c.mu.Unlock()
		if n > c.maxEntries {
			t.Fatalf("after %s: %d entries, want at most %d", name, n, c.maxEntries)
		}
	}
}

// TestCachingResolverCopies: a caller changing its answer does not change
// the cached one.
func TestCachingResolverCopies(t *testing.T) {
	up := &scriptedResolver{answer: answers}
	up.MX = map[string][]*net.MX{"mx.example": {{Host: "a.example.", Pref: 10}}}
	c := NewCachingResolver(up)
	txt, _ := c.LookupTXT(t.Context(), "ok.example")
	txt[0] = "changed"
	mx, _ := c.LookupMX(t.Context(), "mx.example")
	mx[0].Host = "changed."
	if txt, _ := c.LookupTXT(t.Context(), "ok.example"); txt[0] != "v=spf1 -all" {
		t.Fatalf("cached TXT changed: %q", txt)
	}
	if mx, _ := c.LookupMX(t.Context(), "mx.example"); mx[0].Host != "a.example." {
		t.Fatalf("cached MX changed: %q", mx[0].Host)
	}
}

// TestCheckAuthBoundsLookups: every lookup SPF, DKIM and DMARC make for a
// message runs under one deadline no later than authTimeout from the
// start, so an unresponsive resolver cannot hold a message longer.
func TestCheckAuthBoundsLookups(t *testing.T) {
	up := &scriptedResolver{answer: answers}
	msg := "From: a@sender.example\r\nDKIM-Signature: v=1; a=rsa-sha256; d=sender.example; s=sel; h=from; bh=AAAA; b=AAAA\r\n\r\nbody\r\n"
	before := time.Now()
	checkAuth(t.Context(), up, RandomSampler, net.ParseIP("192.0.2.1"), "client.sender.example", "a@sender.example", strings.NewReader(msg))
	up.mu.Lock()
	defer up.mu.Unlock()
	if len(up.ctxs) < 3 {
		t.Fatalf("%d TXT lookups, want at least SPF, the DKIM key and DMARC", len(up.ctxs))
	}
	for i, ctx := range up.ctxs {
		dl, ok := ctx.Deadline()
		if !ok {
			t.Fatalf("lookup %d has no deadline", i)
		}
		if dl.After(before.Add(authTimeout).Add(time.Minute)) {
			t.Fatalf("lookup %d: deadline %s is more than authTimeout after the start %s", i, dl, before)
		}
	}
}
