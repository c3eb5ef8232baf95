// Package ratelimit provides per-key token buckets and concurrent-use
// counters, bounded in memory, for per-IP connection and message limits,
// and the Listener through which smtpd, imapd and pop3d apply the
// connection limits.
package ratelimit

import (
	"sync"
	"time"
)

// Bucket allows Burst events at once and Rate events per second on
// average, per key. Rate and Burst may be set before first use; while in
// use, change them with SetRate.
type Bucket struct {
	Rate  float64
	Burst float64
	// MaxKeys bounds memory; when full, idle (full) buckets are dropped,
	// and if none are, new keys are refused.
	MaxKeys int
	Now     func() time.Time

	mu   sync.Mutex
	keys map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

func (b *Bucket) now() time.Time {
	if b.Now != nil {
		return b.Now()
	}
	return time.Now()
}

// Allow takes one token for key, reporting whether one was there. A zero
// Rate means no limit.
func (b *Bucket) Allow(key string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.Rate <= 0 {
		return true
	}
	now := b.now()
	if b.keys == nil {
		b.keys = map[string]*bucket{}
	}
	k := b.keys[key]
	if k == nil {
		max := b.MaxKeys
		if max <= 0 {
			max = 100000
		}
		if len(b.keys) >= max {
			for kk, v := range b.keys {
				if v.tokens+now.Sub(v.last).Seconds()*b.Rate >= b.Burst {
					delete(b.keys, kk)
				}
			}
			if len(b.keys) >= max {
				return false
			}
		}
		k = &bucket{tokens: b.Burst, last: now}
		b.keys[key] = k
	}
	k.tokens = min(b.Burst, k.tokens+now.Sub(k.last).Seconds()*b.Rate)
	k.last = now
	if k.tokens < 1 {
		return false
	}
	k.tokens--
	return true
}

// SetRate changes the rate and burst while the bucket is in use. Every
// key keeps the tokens it has (capped at the new burst), so a reload
// neither refills an exhausted client nor forgets it.
func (b *Bucket) SetRate(rate, burst float64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	for _, k := range b.keys {
		// Settle what accrued under the old rate first.
		if b.Rate > 0 {
			k.tokens = min(b.Burst, k.tokens+now.Sub(k.last).Seconds()*b.Rate)
		}
		k.tokens = min(k.tokens, burst)
		k.last = now
	}
	b.Rate, b.Burst = rate, burst
}

// Counter counts concurrent uses per key, up to Max each (0: no limit).
// Max may be set before first use; while in use, change it with SetMax.
type Counter struct {
	Max int
	mu  sync.Mutex
	n   map[string]int
}

// Acquire takes a slot for key; release gives it back. ok is false (and
// release nil) when key already has Max slots.
func (c *Counter) Acquire(key string) (release func(), ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	if c.Max > 0 && c.n[key] >= c.Max {
		return nil, false
	}
	c.n[key]++
	var once sync.Once
	return func() {
		once.Do(func() {
			c.mu.Lock()
			if c.n[key]--; c.n[key] <= 0 {
				delete(c.n, key)
			}
			c.mu.Unlock()
		})
	}, true
}

// SetMax changes the per-key limit while the counter is in use. Slots
// already held stay held; a key over a lowered limit gets no new slot
// until enough are released.
func (c *Counter) SetMax(max int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.Max = max
}
