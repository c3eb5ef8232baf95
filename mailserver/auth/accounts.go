package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"
)

// Role is what an account may do beyond reading its own mail.
type Role string

// Roles.
const (
	RoleUser       Role = "user"
	RoleAdmin      Role = "admin"      // manages domains and accounts
	RoleCompliance Role = "compliance" // reads audit and archive, not mail
)

// ParseRole validates a role name.
func ParseRole(s string) (Role, error) {
	switch r := Role(strings.ToLower(s)); r {
	case RoleUser, RoleAdmin, RoleCompliance:
		return r, nil
	}
	return "", fmt.Errorf("auth: unknown role %q (want user, admin or compliance)", s)
}

// Errors; test with errors.Is.
var (
	// ErrInvalidCredentials is the one answer for an unknown user, a
	// disabled user and a wrong password alike.
	ErrInvalidCredentials = errors.New("auth: invalid credentials")
	ErrExists             = errors.New("auth: already exists")
	ErrNotFound           = errors.New("auth: not found")
	ErrInvalid            = errors.New("auth: invalid")
)

// Domain is a domain the server accepts mail for.
type Domain struct {
	Name    string    `json:"name"`
	Created time.Time `json:"created"`
}

// AppPassword is an extra password for one client, revocable alone.
type AppPassword struct {
	Name    string    `json:"name"`
	Hash    string    `json:"hash"`
	Created time.Time `json:"created"`
}

// User is a mailbox owner.
type User struct {
	Address      string        `json:"address"`
	Role         Role          `json:"role"`
	PasswordHash string        `json:"password_hash"`
	AppPasswords []AppPassword `json:"app_passwords,omitempty"`
	Disabled     bool          `json:"disabled,omitempty"`
	Created      time.Time     `json:"created"`
}

// Alias delivers mail for Address to Targets (local users) and lets them
// send as Address.
type Alias struct {
	Address string   `json:"address"`
	Targets []string `json:"targets"`
}

type state struct {
	Version int      `json:"version"`
	Domains []Domain `json:"domains"`
	Users   []User   `json:"users"`
	Aliases []Alias  `json:"aliases"`
}

// Options tune a DB.
type Options struct {
	Params Params           // argon2id cost; DefaultParams() if zero
	Now    func() time.Time // time.Now if nil
	// MaxConcurrentHashes bounds simultaneous argon2id computations, of
	// logins and password changes together: each holds its hash's memory
	// (Params.Memory, 64 MiB by default) until it ends, so without a
	// bound N parallel logins would allocate N times that — a
	// denial of service by memory. Others wait their turn (or until their
	// context ends). If zero, GOMAXPROCS / Params.Threads, at least 1:
	// each hash already runs Threads lanes in parallel, so more would add
	// memory, not throughput.
	MaxConcurrentHashes int
	// Check, if not nil, replaces CheckPassword in Authenticate: the
	// servers' tests count and hold password checks with it.
	Check func(encoded, password string) (bool, error)
	// CacheTTL is how long a verified login is remembered (cache.go), so
	// that the same account and password within it are not checked with
	// argon2id again; 0 turns the cache off. The server sets it from
	// auth.cache_ttl (DefaultCacheTTL).
	CacheTTL time.Duration
}

// maxConcurrentHashes is the bound Open uses for opts (see
// Options.MaxConcurrentHashes).
func (opts Options) maxConcurrentHashes() int {
	if opts.MaxConcurrentHashes > 0 {
		return opts.MaxConcurrentHashes
	}
	p := opts.Params
	if p == (Params{}) {
		p = DefaultParams()
	}
	return max(1, runtime.GOMAXPROCS(0)/int(max(1, p.Threads)))
}

// DB is the account database, one JSON file written atomically. Several
// processes may use it: writes take an flock on "<path>.lock" and re-read
// the file; reads notice a changed file and reload it.
type DB struct {
	path  string
	now   func() time.Time
	slots *hashSlots
	// costMu guards params, the cost of new hashes, and dummy, the hash
	// checked for unknown users with that cost so that timing matches;
	// SetParams changes both.
	costMu sync.Mutex
	params Params
	dummy  string
	// check is CheckPassword; tests count and hold its calls.
	check func(encoded, password string) (bool, error)
	// cache remembers verified logins briefly (Options.CacheTTL).
	cache *credCache

	mu    sync.RWMutex
	st    state
	stamp fileStamp
}

type fileStamp struct {
	mod  time.Time
	size int64
	ino  uint64
}

// Open opens (creating if missing) the account database at path.
func Open(path string, opts Options) (*DB, error) {
	if opts.Params == (Params{}) {
		opts.Params = DefaultParams()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	db := &DB{
		path: path, params: opts.Params, now: opts.Now,
		slots: newHashSlots(opts.maxConcurrentHashes()), dummy: dummyHash(opts.Params), check: CheckPassword,
		cache: newCredCache(opts.CacheTTL),
	}
	if opts.Check != nil {
		db.check = opts.Check
	}
	if err := db.reload(); err != nil {
		return nil, err
	}
	return db, nil
}

func stampOf(fi fs.FileInfo) fileStamp {
	s := fileStamp{mod: fi.ModTime(), size: fi.Size()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		s.ino = st.Ino
	}
	return s
}

// reload reads the file if it changed since last read.
func (db *DB) reload() error {
	fi, err := os.Stat(db.path)
	if errors.Is(err, fs.ErrNotExist) {
		db.mu.Lock()
		db.st, db.stamp = state{Version: 1}, fileStamp{}
		db.mu.Unlock()
		return nil
	}
	if err != nil {
		return fmt.Errorf("auth: stat accounts: %w", err)
	}
	stamp := stampOf(fi)
	db.mu.RLock()
	same := stamp == db.stamp
	db.mu.RUnlock()
	if same {
		return nil
	}
	st, err := readState(db.path)
	if err != nil {
		return err
	}
	db.mu.Lock()
	db.st, db.stamp = st, stamp
	db.mu.Unlock()
	return nil
}

func readState(path string) (state, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return state{Version: 1}, nil
	}
	if err != nil {
		return state{}, fmt.Errorf("auth: read accounts: %w", err)
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		return state{}, fmt.Errorf("auth: parse %s: %w", path, err)
	}
	return st, nil
}

// update applies fn to the current on-disk state under an exclusive lock
// and writes the result atomically (temporary file, fsync, rename, fsync
// directory).
func (db *DB) update(fn func(st *state) error) error {
	if err := os.MkdirAll(filepath.Dir(db.path), 0o700); err != nil {
		return fmt.Errorf("auth: %w", err)
	}
	lf, err := os.OpenFile(db.path+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("auth: lock: %w", err)
	}
	defer lf.Close()
	if err := syscall.Flock(int(lf.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("auth: lock: %w", err)
	}
	defer syscall.Flock(int(lf.Fd()), syscall.LOCK_UN)

	st, err := readState(db.path)
	if err != nil {
		return err
	}
	if err := fn(&st); err != nil {
		return err
	}
	st.Version = 1
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("auth: encode: %w", err)
	}
	if err := writeAtomic(db.path, append(b, '\n')); err != nil {
		return err
	}
	fi, err := os.Stat(db.path)
	if err != nil {
		return fmt.Errorf("auth: %w", err)
	}
	db.mu.Lock()
	db.st, db.stamp = st, stampOf(fi)
	db.mu.Unlock()
	return nil
}

func writeAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("auth: write: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("auth: write: %w", err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("auth: write: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("auth: fsync: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("auth: write: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("auth: write: %w", err)
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return fmt.Errorf("auth: fsync dir: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("auth: fsync dir: %w", err)
	}
	return nil
}

// snapshot returns the current state, reloading it if the file changed.
func (db *DB) snapshot() (state, error) {
	if err := db.reload(); err != nil {
		return state{}, err
	}
	db.mu.RLock()
	defer db.mu.RUnlock()
	return db.st, nil
}

// NormalizeAddress lower-cases and validates an address.
func NormalizeAddress(addr string) (string, error) {
	addr = strings.ToLower(strings.TrimSpace(addr))
	i := strings.LastIndexByte(addr, '@')
	if i <= 0 || i == len(addr)-1 || len(addr) > 254 || !utf8.ValidString(addr) ||
		strings.ContainsAny(addr, " \t\r\n/\\\"<>,;:()[]") || strings.Count(addr, "@") != 1 {
		return "", fmt.Errorf("%w address %q", ErrInvalid, addr)
	}
	if _, err := NormalizeDomain(addr[i+1:]); err != nil {
		return "", err
	}
	return addr, nil
}

// NormalizeDomain lower-cases and validates a domain name.
func NormalizeDomain(d string) (string, error) {
	d = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(d)), ".")
	if d == "" || len(d) > 253 {
		return "", fmt.Errorf("%w domain %q", ErrInvalid, d)
	}
	for _, label := range strings.Split(d, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return "", fmt.Errorf("%w domain %q", ErrInvalid, d)
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r > 0x7f) {
				return "", fmt.Errorf("%w domain %q", ErrInvalid, d)
			}
		}
	}
	return d, nil
}

func domainOf(addr string) string { return addr[strings.LastIndexByte(addr, '@')+1:] }

// AddDomain adds a local domain.
func (db *DB) AddDomain(ctx context.Context, name string) error {
	name, err := NormalizeDomain(name)
	if err != nil {
		return err
	}
	return db.update(func(st *state) error {
		for _, d := range st.Domains {
			if d.Name == name {
				return fmt.Errorf("%w: domain %s", ErrExists, name)
			}
		}
		st.Domains = append(st.Domains, Domain{Name: name, Created: db.now().UTC()})
		return nil
	})
}

// ErrInUse means a domain still has users or aliases.
var ErrInUse = errors.New("auth: in use")

// DomainRemoval is what DeleteDomain removed, or, when it refused, what
// is still in the domain.
type DomainRemoval struct {
	Domain  string   `json:"domain"`
	Users   []string `json:"users"`
	Aliases []string `json:"aliases"`
}

// DeleteDomain removes a local domain. While users or aliases of the
// domain exist it refuses with ErrInUse (listing them in the returned
// DomainRemoval), unless force: then they are removed with it, as
// DeleteUser and RemoveAlias would (their mail stays on disk; the removed
// users are dropped from other aliases' targets). The server stops
// accepting mail for the domain as soon as it sees the file change.
func (db *DB) DeleteDomain(ctx context.Context, name string, force bool) (DomainRemoval, error) {
	name, err := NormalizeDomain(name)
	if err != nil {
		return DomainRemoval{}, err
	}
	out := DomainRemoval{Domain: name, Users: []string{}, Aliases: []string{}}
	err = db.update(func(st *state) error {
		out.Users, out.Aliases = out.Users[:0], out.Aliases[:0]
		i := slices.IndexFunc(st.Domains, func(d Domain) bool { return d.Name == name })
		if i < 0 {
			return fmt.Errorf("%w: domain %s", ErrNotFound, name)
		}
		for _, u := range st.Users {
			if domainOf(u.Address) == name {
				out.Users = append(out.Users, u.Address)
			}
		}
		for _, a := range st.Aliases {
			if domainOf(a.Address) == name {
				out.Aliases = append(out.Aliases, a.Address)
			}
		}
		if !force && len(out.Users)+len(out.Aliases) > 0 {
			return fmt.Errorf("%w: domain %s still has %d users and %d aliases", ErrInUse, name, len(out.Users), len(out.Aliases))
		}
		st.Domains = slices.Delete(st.Domains, i, i+1)
		st.Users = slices.DeleteFunc(st.Users, func(u User) bool { return domainOf(u.Address) == name })
		st.Aliases = slices.DeleteFunc(st.Aliases, func(a Alias) bool { return domainOf(a.Address) == name })
		for j := range st.Aliases {
			st.Aliases[j].Targets = slices.DeleteFunc(st.Aliases[j].Targets, func(t string) bool { return slices.Contains(out.Users, t) })
		}
		return nil
	})
	return out, err
}

// Domains lists local domains.
func (db *DB) Domains(ctx context.Context) ([]Domain, error) {
	st, err := db.snapshot()
	return slices.Clone(st.Domains), err
}

// IsLocalDomain reports whether the server accepts mail for domain.
func (db *DB) IsLocalDomain(domain string) bool {
	domain, err := NormalizeDomain(domain)
	if err != nil {
		return false
	}
	st, err := db.snapshot()
	if err != nil {
		return false
	}
	for _, d := range st.Domains {
		if d.Name == domain {
			return true
		}
	}
	return false
}

func hasDomain(st *state, name string) bool {
	for _, d := range st.Domains {
		if d.Name == name {
			return true
		}
	}
	return false
}

func findUser(st *state, addr string) int {
	for i := range st.Users {
		if st.Users[i].Address == addr {
			return i
		}
	}
	return -1
}

// updateUser applies fn, inside one update, to the user with the
// (normalized) address, or fails with ErrNotFound when there is none.
func (db *DB) updateUser(address string, fn func(st *state, i int) error) error {
	return db.update(func(st *state) error {
		i := findUser(st, address)
		if i < 0 {
			return fmt.Errorf("%w: user %s", ErrNotFound, address)
		}
		return fn(st, i)
	})
}

func findAlias(st *state, addr string) int {
	for i := range st.Aliases {
		if st.Aliases[i].Address == addr {
			return i
		}
	}
	return -1
}

func (db *DB) hash(password string) (string, error) {
	if len(password) < 8 {
		return "", fmt.Errorf("%w password: at least 8 characters", ErrInvalid)
	}
	if len(password) > 1024 {
		return "", fmt.Errorf("%w password: at most 1024 bytes", ErrInvalid)
	}
	if err := db.acquire(context.Background()); err != nil {
		return "", err
	}
	defer db.release()
	return HashPassword(db.Params(), password)
}

// Params returns the argon2id cost of new password hashes.
func (db *DB) Params() Params {
	db.costMu.Lock()
	defer db.costMu.Unlock()
	return db.params
}

// SetParams changes the cost of new password hashes, and of the dummy
// hash an unknown user's login is checked against, so that such a login
// keeps taking as long as a known user's with a new hash. Stored hashes
// keep verifying with their own cost (it is in each PHC string). A zero p
// means DefaultParams.
func (db *DB) SetParams(p Params) {
	if p == (Params{}) {
		p = DefaultParams()
	}
	db.costMu.Lock()
	defer db.costMu.Unlock()
	db.params, db.dummy = p, dummyHash(p)
}

// SetMaxConcurrentHashes changes the bound on simultaneous argon2id
// computations (Options.MaxConcurrentHashes; 0: the default for the
// current Params). A lower bound takes effect as running checks end.
func (db *DB) SetMaxConcurrentHashes(n int) {
	db.slots.setLimit(Options{Params: db.Params(), MaxConcurrentHashes: n}.maxConcurrentHashes())
}

// SetCacheTTL changes how long verified logins are remembered
// (Options.CacheTTL); 0 turns the cache off and empties it.
func (db *DB) SetCacheTTL(ttl time.Duration) { db.cache.setTTL(ttl) }

// CacheTTL returns how long verified logins are remembered (0: not at all).
func (db *DB) CacheTTL() time.Duration {
	db.cache.mu.Lock()
	defer db.cache.mu.Unlock()
	return db.cache.ttl
}

// MaxConcurrentHashes returns the bound in force.
func (db *DB) MaxConcurrentHashes() int { return db.slots.getLimit() }

// acquire takes one of the MaxConcurrentHashes places, waiting until one
// is free or ctx ends. The first hash in collects the garbage first: the
// collector lets the heap grow to twice what was live at its last run
// before it runs again, and the hash's block (64 MiB) came on top of
// whatever garbage had piled up to that goal — an IMAP session with a
// 16 MB header cache peaked at 133 MB PSS with one login (bench/mailserver).
// Collected first, the peak is the live heap plus the block.
func (db *DB) acquire(ctx context.Context) error {
	first, err := db.slots.acquire(ctx)
	if err != nil {
		return err
	}
	if first && db.blockDominatesHeap() {
		runtime.GC()
	}
	return nil
}

// blockDominatesHeap says whether an argon2id block (the memory cost of
// new hashes) is at least half the live heap: only then do the forced
// collections around a check pay. On a server whose heap is many times
// the block (many sessions, a full header cache) the block changes the
// heap goal little, while two full collections per login would cost CPU
// on every login.
func (db *DB) blockDominatesHeap() bool {
	live := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(live)
	if live[0].Value.Kind() != metrics.KindUint64 {
		return true
	}
	return live[0].Value.Uint64() <= 2*uint64(db.Params().Memory)*1024
}

// release gives the place back. The last hash out also collects the
// garbage and returns it to the operating system: an argon2id check
// allocates its whole memory cost (64 MiB) in one block, and a
// collection that runs while the block is live sets the next heap goal
// to twice a heap that includes it, so the process grew by about as much
// again — other sessions' garbage — before collecting (an IMAP session of
// bench/mailserver peaked at 142 MB PSS with one login). One collection
// per login costs milliseconds against the hash's tenth of a second.
func (db *DB) release() {
	if db.slots.release() && db.blockDominatesHeap() {
		debug.FreeOSMemory()
	}
}

// AddUser creates a user in an existing local domain.
func (db *DB) AddUser(ctx context.Context, address, password string, role Role) error {
	address, err := NormalizeAddress(address)
	if err != nil {
		return err
	}
	if _, err := ParseRole(string(role)); err != nil {
		return err
	}
	h, err := db.hash(password)
	if err != nil {
		return err
	}
	return db.update(func(st *state) error {
		if !hasDomain(st, domainOf(address)) {
			return fmt.Errorf("%w: domain %s (add it first)", ErrNotFound, domainOf(address))
		}
		if findUser(st, address) >= 0 || findAlias(st, address) >= 0 {
			return fmt.Errorf("%w: %s", ErrExists, address)
		}
		st.Users = append(st.Users, User{Address: address, Role: role, PasswordHash: h, Created: db.now().UTC()})
		return nil
	})
}

// SetPassword replaces a user's password.
func (db *DB) SetPassword(ctx context.Context, address, password string) error {
	address, err := NormalizeAddress(address)
	if err != nil {
		return err
	}
	h, err := db.hash(password)
	if err != nil {
		return err
	}
	return db.updateUser(address, func(st *state, i int) error {
		st.Users[i].PasswordHash = h
		return nil
	})
}

// SetRole changes a user's role.
func (db *DB) SetRole(ctx context.Context, address string, role Role) error {
	address, err := NormalizeAddress(address)
	if err != nil {
		return err
	}
	if _, err := ParseRole(string(role)); err != nil {
		return err
	}
	return db.updateUser(address, func(st *state, i int) error {
		st.Users[i].Role = role
		return nil
	})
}

// DeleteUser removes a user (not their mail) and their alias targets.
func (db *DB) DeleteUser(ctx context.Context, address string) error {
	address, err := NormalizeAddress(address)
	if err != nil {
		return err
	}
	return db.updateUser(address, func(st *state, i int) error {
		st.Users = slices.Delete(st.Users, i, i+1)
		for j := range st.Aliases {
			st.Aliases[j].Targets = slices.DeleteFunc(st.Aliases[j].Targets, func(t string) bool { return t == address })
		}
		return nil
	})
}

// Users lists users (with their hashes: callers must not print those).
func (db *DB) Users(ctx context.Context) ([]User, error) {
	st, err := db.snapshot()
	return slices.Clone(st.Users), err
}

// LookupUser returns a user by address.
func (db *DB) LookupUser(ctx context.Context, address string) (User, error) {
	address, err := NormalizeAddress(address)
	if err != nil {
		return User{}, err
	}
	st, err := db.snapshot()
	if err != nil {
		return User{}, err
	}
	if i := findUser(&st, address); i >= 0 {
		return st.Users[i], nil
	}
	return User{}, fmt.Errorf("%w: user %s", ErrNotFound, address)
}

// AddAlias makes address deliver to (and be usable as sender by) targets,
// which must be local users.
func (db *DB) AddAlias(ctx context.Context, address string, targets ...string) error {
	address, err := NormalizeAddress(address)
	if err != nil {
		return err
	}
	if len(targets) == 0 {
		return fmt.Errorf("%w: alias without targets", ErrInvalid)
	}
	for i, t := range targets {
		if targets[i], err = NormalizeAddress(t); err != nil {
			return err
		}
	}
	return db.update(func(st *state) error {
		if !hasDomain(st, domainOf(address)) {
			return fmt.Errorf("%w: domain %s", ErrNotFound, domainOf(address))
		}
		if findUser(st, address) >= 0 || findAlias(st, address) >= 0 {
			return fmt.Errorf("%w: %s", ErrExists, address)
		}
		for _, t := range targets {
			if findUser(st, t) < 0 {
				return fmt.Errorf("%w: alias target %s is not a local user", ErrNotFound, t)
			}
		}
		st.Aliases = append(st.Aliases, Alias{Address: address, Targets: targets})
		return nil
	})
}

// RemoveAlias deletes an alias.
func (db *DB) RemoveAlias(ctx context.Context, address string) error {
	address, err := NormalizeAddress(address)
	if err != nil {
		return err
	}
	return db.update(func(st *state) error {
		i := findAlias(st, address)
		if i < 0 {
			return fmt.Errorf("%w: alias %s", ErrNotFound, address)
		}
		st.Aliases = slices.Delete(st.Aliases, i, i+1)
		return nil
	})
}

// Aliases lists aliases.
func (db *DB) Aliases(ctx context.Context) ([]Alias, error) {
	st, err := db.snapshot()
	return slices.Clone(st.Aliases), err
}

// AddAppPassword creates an app password named name for a user and
// returns the secret, which is shown once and stored only hashed.
func (db *DB) AddAppPassword(ctx context.Context, address, name string) (string, error) {
	address, err := NormalizeAddress(address)
	if err != nil {
		return "", err
	}
	if name == "" || len(name) > 64 {
		return "", fmt.Errorf("%w app password name %q", ErrInvalid, name)
	}
	secret, err := newAppSecret()
	if err != nil {
		return "", err
	}
	err = db.updateUser(address, func(st *state, i int) error {
		for _, ap := range st.Users[i].AppPasswords {
			if ap.Name == name {
				return fmt.Errorf("%w: app password %q", ErrExists, name)
			}
		}
		st.Users[i].AppPasswords = append(st.Users[i].AppPasswords, AppPassword{Name: name, Hash: hashAppSecret(secret), Created: db.now().UTC()})
		return nil
	})
	return secret, err
}

// RevokeAppPassword deletes a user's app password.
func (db *DB) RevokeAppPassword(ctx context.Context, address, name string) error {
	address, err := NormalizeAddress(address)
	if err != nil {
		return err
	}
	return db.updateUser(address, func(st *state, i int) error {
		n := len(st.Users[i].AppPasswords)
		st.Users[i].AppPasswords = slices.DeleteFunc(st.Users[i].AppPasswords, func(ap AppPassword) bool { return ap.Name == name })
		if len(st.Users[i].AppPasswords) == n {
			return fmt.Errorf("%w: app password %q", ErrNotFound, name)
		}
		return nil
	})
}

// Authenticate checks a username (an address) and a password or app
// password. It returns ErrInvalidCredentials for an unknown user, a
// disabled user and a wrong password alike, and does the same argon2id
// work in each case so that timing does not tell them apart.
func (db *DB) Authenticate(ctx context.Context, username, password string) (User, error) {
	if err := ctx.Err(); err != nil {
		return User{}, err
	}
	st, err := db.snapshot()
	if err != nil {
		return User{}, err
	}
	var u User
	db.costMu.Lock()
	hash := db.dummy
	db.costMu.Unlock()
	found := false
	if addr, err := NormalizeAddress(username); err == nil {
		if i := findUser(&st, addr); i >= 0 {
			u, hash, found = st.Users[i], st.Users[i].PasswordHash, true
		}
	}
	if len(password) > 1024 {
		password = password[:1024]
	}
	// A login verified less than CacheTTL ago, against the credentials
	// stored now, needs no argon2id. Unknown and disabled users never
	// hit: they go on to the full check below and fail.
	if found && !u.Disabled && db.cache.hit(&u, password, db.now()) {
		return u, nil
	}
	if err := db.acquire(ctx); err != nil {
		return User{}, err
	}
	if err := ctx.Err(); err != nil {
		// The place came as ctx ended (the client hung up while it
		// waited): no hash for a login nobody will hear the answer to.
		db.release()
		return User{}, err
	}
	ok, err := db.check(hash, password)
	db.release()
	if err != nil {
		ok = false
	}
	appOK := false
	for _, ap := range u.AppPasswords {
		if checkAppSecret(ap.Hash, password) {
			appOK = true
		}
	}
	if !found || u.Disabled || !(ok || appOK) {
		return User{}, ErrInvalidCredentials
	}
	db.cache.add(&u, password, db.now())
	return u, nil
}

// Resolve maps a recipient address to the local users who receive its
// mail: the user itself, an alias's targets, or for "user+tag@domain" the
// user (subaddressing, RFC 5233). It returns ErrNotFound when the address
// is not local.
func (db *DB) Resolve(ctx context.Context, address string) ([]string, error) {
	address, err := NormalizeAddress(address)
	if err != nil {
		return nil, err
	}
	st, err := db.snapshot()
	if err != nil {
		return nil, err
	}
	try := []string{address}
	local, domain := address[:strings.LastIndexByte(address, '@')], domainOf(address)
	if i := strings.IndexByte(local, '+'); i > 0 {
		try = append(try, local[:i]+"@"+domain)
	}
	for _, a := range try {
		if i := findUser(&st, a); i >= 0 && !st.Users[i].Disabled {
			return []string{a}, nil
		}
		if i := findAlias(&st, a); i >= 0 {
			return slices.Clone(st.Aliases[i].Targets), nil
		}
	}
	return nil, fmt.Errorf("%w: %s", ErrNotFound, address)
}

// MaySendAs reports whether user may use from as envelope sender: their
// own address (with or without +tag) or an alias that delivers to them.
func (db *DB) MaySendAs(ctx context.Context, user, from string) bool {
	user, err := NormalizeAddress(user)
	if err != nil {
		return false
	}
	from, err = NormalizeAddress(from)
	if err != nil {
		return false
	}
	if from == user {
		return true
	}
	local, domain := from[:strings.LastIndexByte(from, '@')], domainOf(from)
	if i := strings.IndexByte(local, '+'); i > 0 && local[:i]+"@"+domain == user {
		return true
	}
	st, err := db.snapshot()
	if err != nil {
		return false
	}
	if i := findAlias(&st, from); i >= 0 {
		return slices.Contains(st.Aliases[i].Targets, user)
	}
	return false
}
