package smtpd

import (
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"sync"
	"time"
)

// Resolver is the DNS the server uses for SPF, DKIM and DMARC. It is
// satisfied by *net.Resolver; tests inject StaticResolver so they never
// touch the network.
type Resolver interface {
	LookupTXT(ctx context.Context, name string) ([]string, error)
	LookupMX(ctx context.Context, name string) ([]*net.MX, error)
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
	LookupAddr(ctx context.Context, addr string) ([]string, error)
}

// StaticResolver answers from maps (names without trailing dot, any
// case); a missing name is NXDOMAIN. It is safe for concurrent use once
// filled.
type StaticResolver struct {
	mu  sync.RWMutex
	TXT map[string][]string
	MX  map[string][]*net.MX
	IP  map[string][]net.IPAddr
	PTR map[string][]string
}

func notFound(name string) error {
	return &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
}

func key(name string) string { return strings.TrimSuffix(strings.ToLower(name), ".") }

// SetTXT sets the TXT records of name.
func (r *StaticResolver) SetTXT(name string, txt ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.TXT == nil {
		r.TXT = map[string][]string{}
	}
	r.TXT[key(name)] = txt
}

func (r *StaticResolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if v, ok := r.TXT[key(name)]; ok {
		return v, nil
	}
	return nil, notFound(name)
}

func (r *StaticResolver) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if v, ok := r.MX[key(name)]; ok {
		return v, nil
	}
	return nil, notFound(name)
}

func (r *StaticResolver) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if v, ok := r.IP[key(host)]; ok {
		return v, nil
	}
	return nil, notFound(host)
}

func (r *StaticResolver) LookupAddr(ctx context.Context, addr string) ([]string, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if v, ok := r.PTR[addr]; ok {
		return v, nil
	}
	return nil, notFound(addr)
}

// Defaults of CachingResolver.
const (
	// DefaultAnswerTTL is how long answers and "no such name" are kept.
	// Go's resolver does not expose record TTLs; a minute is below the
	// TTL of nearly every SPF, DKIM and DMARC record and of most negative
	// caching periods (RFC 2308 section 5), and enough for a burst of
	// mail from one domain to cost one lookup.
	DefaultAnswerTTL = time.Minute
	// DefaultFailureTTL is how long a timeout or server failure is kept,
	// so that an unresponsive resolver costs one wait per name and half
	// minute, not one per message. It must be well above
	// DefaultLookupTimeout, or messages arriving one after the other
	// would each find the last failure expired and wait again. RFC 2308
	// section 7.1 allows caching server failures for up to five minutes.
	DefaultFailureTTL = 30 * time.Second
	// DefaultLookupTimeout bounds one lookup, retries included.
	DefaultLookupTimeout = 10 * time.Second
	// DefaultCacheEntries bounds the cache's size.
	DefaultCacheEntries = 10000
)

// CachingResolver answers from a small in-memory cache in front of another
// Resolver, and runs one lookup for concurrent callers asking the same
// question. The MX looks up the same SPF and DMARC records for every
// message from a domain; without a cache each message paid for them, and
// with an unresponsive resolver each message waited for the full timeout
// of every lookup. A lookup runs detached from the caller, bounded by
// LookupTimeout, so its result does not depend on one caller's deadline
// and can be shared; a caller whose context ends stops waiting at once.
//
// The zero value is not usable: create one with NewCachingResolver.
type CachingResolver struct {
	r                     Resolver
	answerTTL, failureTTL time.Duration
	lookupTimeout         time.Duration
	maxEntries            int
	now                   func() time.Time
	mu                    sync.Mutex
	entries               map[string]*cacheEntry
	lookups               int64
}

type cacheEntry struct {
	done    chan struct{} // closed when val, err and expires are set
	val     any
	err     error
	expires time.Time
}

// NewCachingResolver returns a CachingResolver in front of r with the
// default TTLs, timeout and size.
func NewCachingResolver(r Resolver) *CachingResolver {
	return &CachingResolver{
		r: r, answerTTL: DefaultAnswerTTL, failureTTL: DefaultFailureTTL,
		lookupTimeout: DefaultLookupTimeout, maxEntries: DefaultCacheEntries,
		now: time.Now, entries: map[string]*cacheEntry{},
	}
}

// Lookups returns how many lookups reached the resolver behind the cache.
func (c *CachingResolver) Lookups() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lookups
}

func (c *CachingResolver) do(ctx context.Context, kind, name string, fn func(context.Context) (any, error)) (any, error) {
	k := kind + " " + key(name)
	c.mu.Lock()
	e := c.entries[k]
	if e == nil || c.expiredLocked(e) {
		e = &cacheEntry{done: make(chan struct{})}
		c.makeRoomLocked()
		c.entries[k] = e
		c.lookups++
		go c.lookup(ctx, e, fn)
	}
	c.mu.Unlock()
	select {
	case <-e.done:
		return e.val, e.err
	case <-ctx.Done():
		// Reported like the resolver's own timeout, so that SPF, DKIM
		// and DMARC treat it as a temporary error (temperror).
		return nil, &net.DNSError{Err: ctx.Err().Error(), Name: name, IsTimeout: true, IsTemporary: true}
	}
}

// lookup runs fn for e without the caller's cancellation (other callers
// may be waiting for the same answer) but within lookupTimeout.
func (c *CachingResolver) lookup(ctx context.Context, e *cacheEntry, fn func(context.Context) (any, error)) {
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.lookupTimeout)
	v, err := fn(lctx)
	cancel()
	ttl := c.answerTTL
	var dnsErr *net.DNSError
	if err != nil && !(errors.As(err, &dnsErr) && dnsErr.IsNotFound) {
		ttl = c.failureTTL
	}
	c.mu.Lock()
	e.val, e.err, e.expires = v, err, c.now().Add(ttl)
	c.mu.Unlock()
	close(e.done)
}

// expiredLocked reports whether e holds a result that is out of date (a
// lookup still running is not).
func (c *CachingResolver) expiredLocked(e *cacheEntry) bool {
	select {
	case <-e.done:
		return !c.now().Before(e.expires)
	default:
		return false
	}
}

// makeRoomLocked keeps the cache under maxEntries: expired entries go
// first, then every finished one (lookups in progress stay, their callers
// are waiting on them).
func (c *CachingResolver) makeRoomLocked() {
	if len(c.entries) < c.maxEntries {
		return
	}
	for k, e := range c.entries {
		if c.expiredLocked(e) {
			delete(c.entries, k)
		}
	}
	if len(c.entries) < c.maxEntries {
		return
	}
	for k, e := range c.entries {
		select {
		case <-e.done:
			delete(c.entries, k)
		default:
		}
	}
}

func (c *CachingResolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	v, err := c.do(ctx, "TXT", name, func(ctx context.Context) (any, error) { return c.r.LookupTXT(ctx, name) })
	txt, _ := v.([]string)
	return slices.Clone(txt), err
}

func (c *CachingResolver) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	v, err := c.do(ctx, "MX", name, func(ctx context.Context) (any, error) { return c.r.LookupMX(ctx, name) })
	mx, _ := v.([]*net.MX)
	out := make([]*net.MX, len(mx))
	for i, m := range mx {
		cp := *m
		out[i] = &cp
	}
	return out, err
}

func (c *CachingResolver) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	v, err := c.do(ctx, "IP", host, func(ctx context.Context) (any, error) { return c.r.LookupIPAddr(ctx, host) })
	ips, _ := v.([]net.IPAddr)
	return slices.Clone(ips), err
}

func (c *CachingResolver) LookupAddr(ctx context.Context, addr string) ([]string, error) {
	v, err := c.do(ctx, "PTR", addr, func(ctx context.Context) (any, error) { return c.r.LookupAddr(ctx, addr) })
	names, _ := v.([]string)
	return slices.Clone(names), err
}
