package auth

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"sync"
	"time"
)

// DefaultCacheTTL is how long a verified credential is remembered when
// Options.CacheTTL is not set (auth.cache_ttl).
const DefaultCacheTTL = 60 * time.Second

// maxCacheEntries bounds the credential cache: one entry is about 100
// bytes, so a full cache holds under a megabyte. When it is full, expired
// entries are dropped, and then the entry closest to expiry.
const maxCacheEntries = 10000

// credCache remembers logins that argon2id verified, for a short time, so
// that a client that logs in again (a mail client opening several
// connections, imaptest's LOGIN/LOGOUT loop, a phone polling POP3) does
// not pay 64 MiB and a tenth of a second or more each time, nor queue
// behind other logins for a hash slot — as Dovecot's auth cache does.
//
// An entry is keyed by HMAC-SHA256, under a key drawn at random when the
// process starts and never stored, of the normalized address, the user's
// stored credentials (the argon2id hash and every app password hash) and
// the password: the cache holds no password, nor anything an attacker
// could test guesses against without the key. Because the stored
// credentials are in the key, a changed password or a new or revoked app
// password misses at once, whichever process changed the file; a deleted
// or disabled user is refused before the cache is looked at. Only
// successes are stored, so a wrong password always costs its full check.
type credCache struct {
	key []byte

	mu      sync.Mutex
	ttl     time.Duration
	entries map[[sha256.Size]byte]time.Time // HMAC → expiry
}

func newCredCache(ttl time.Duration) *credCache {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		// crypto/rand does not fail on supported systems (Go 1.24
		// panics there itself); never run a cache with a known key.
		panic("auth: random cache key: " + err.Error())
	}
	return &credCache{key: key, ttl: max(0, ttl), entries: map[[sha256.Size]byte]time.Time{}}
}

// mac is the cache key of a login of u (as stored now) with password.
func (c *credCache) mac(u *User, password string) [sha256.Size]byte {
	h := hmac.New(sha256.New, c.key)
	// Length-prefixed fields: no two different inputs share an encoding.
	field := func(s string) {
		n := len(s)
		h.Write([]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)})
		h.Write([]byte(s))
	}
	field(u.Address)
	field(u.PasswordHash)
	for _, ap := range u.AppPasswords {
		field(ap.Hash)
	}
	field("")
	field(password)
	var out [sha256.Size]byte
	h.Sum(out[:0])
	return out
}

// hit reports whether the login was verified less than the TTL ago.
func (c *credCache) hit(u *User, password string, now time.Time) bool {
	c.mu.Lock()
	off := c.ttl <= 0
	c.mu.Unlock()
	if off {
		return false
	}
	m := c.mac(u, password)
	c.mu.Lock()
	defer c.mu.Unlock()
	exp, ok := c.entries[m]
	if !ok {
		return false
	}
	if !now.Before(exp) {
		delete(c.entries, m)
		return false
	}
	return true
}

// add remembers a login argon2id (or an app password) just verified.
func (c *credCache) add(u *User, password string, now time.Time) {
	c.mu.Lock()
	off := c.ttl <= 0
	c.mu.Unlock()
	if off {
		return
	}
	m := c.mac(u, password)
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[m]; !ok && len(c.entries) >= maxCacheEntries {
		c.evict(now)
	}
	c.entries[m] = now.Add(c.ttl)
}

// evict makes room for one entry; c.mu is held.
func (c *credCache) evict(now time.Time) {
	var oldest [sha256.Size]byte
	var oldestExp time.Time
	first := true
	for m, exp := range c.entries {
		if !now.Before(exp) {
			delete(c.entries, m)
			continue
		}
		if first || exp.Before(oldestExp) {
			oldest, oldestExp, first = m, exp, false
		}
	}
	if len(c.entries) >= maxCacheEntries {
		delete(c.entries, oldest)
	}
}

// setTTL changes the TTL; 0 turns the cache off. A shorter TTL (a
// request for less caching) empties the cache rather than leave entries
// that would outlive it; a longer one applies to entries made from now.
func (c *credCache) setTTL(ttl time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ttl < c.ttl || ttl <= 0 {
		clear(c.entries)
	}
	c.ttl = max(0, ttl)
}

func (c *credCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

// forget empties the cache.
func (c *credCache) forget() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.entries)
}
