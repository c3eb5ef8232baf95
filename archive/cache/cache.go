// Package cache keeps local copies of a remote repository's small,
// immutable metadata files, so that a command does not download every index
// file, snapshot and key file each time it opens an S3 repository (restic and
// kopia keep the same kind of cache).
//
// Layout, under a base directory (DefaultDir: $XDG_CACHE_HOME/mailvault,
// else ~/.cache/mailvault):
//
//	<base>/CACHEDIR.TAG                  https://bford.info/cachedir/
//	<base>/<repository id>/index/<id>
//	<base>/<repository id>/snapshots/<id>
//	<base>/<repository id>/keys/<id>
//	<base>/<repository id>/parents, trees   a write-only host's parent cache (ParentDir)
//
// Each file is the repository file's stored (encrypted) bytes under its own
// name, the SHA-256 of those bytes (docs/FORMAT.md). The cache therefore
// holds only ciphertext a key-less reader of the bucket can read anyway.
// Every read from the cache checks the bytes against the name; a file that
// does not match is deleted and fetched again.
//
// What is cached: key files, index files and snapshots — small, read in
// full by every command that opens the repository, and immutable under
// their names. Not cached: config (it is not content-named and may be
// replaced, so it is read from the repository every time; the repository
// ID comes from it), locks (mutable, another host's), and packs (large;
// the S3 backend keeps a small in-memory block cache for ranged reads,
// archive/s3/packcache.go). Tree blobs live inside packs; caching them
// would be a later, separate step.
//
// Staleness: List always asks the real backend, so a file another host
// removed (prune, key remove) is noticed, and the cached copies of files
// no longer listed are evicted. Stat also asks the backend, so existence
// checks are never answered from the cache. A Get of a cached file that
// was removed upstream since the last List is served from the cache; the
// commands list a type before reading it, as they would without a cache.
package cache

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/mailvault/mailvault/archive"
)

// tagFile marks the base directory as a cache for backup tools (tar
// --exclude-caches, restic, Borg); see https://bford.info/cachedir/.
const (
	tagFile    = "CACHEDIR.TAG"
	tagContent = "Signature: 8a477f597d28d172789f06886806bc55\n" +
		"# This file is a cache directory tag created by mailvault.\n" +
		"# For information about cache directory tags, see https://bford.info/cachedir/\n"
)

// tmpPrefix names files being written; they are renamed into place.
const tmpPrefix = ".tmp-"

// tmpGrace is how old a temporary file must be before a List removes it:
// a younger one may belong to another process writing right now.
const tmpGrace = time.Hour

// maxConfigSize bounds how much of config is read to learn the repository
// ID, as archive.Open bounds it.
const maxConfigSize = 1 << 20

// DefaultDir is the default base directory: mailvault under the user cache
// directory ($XDG_CACHE_HOME, else ~/.cache).
func DefaultDir() (string, error) {
	base, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("cache directory: %w", err)
	}
	return filepath.Join(base, "mailvault"), nil
}

// cached reports whether files of type t are kept in the cache.
func (c *Backend) cached(t archive.FileType) bool {
	return !c.tableOnly && (t == archive.KeyFile || t == archive.IndexFile || t == archive.SnapshotFile)
}

// Backend is an archive.Backend that keeps copies of another backend's key,
// index and snapshot files on local disk.
type Backend struct {
	be   archive.Backend
	base string
	log  *slog.Logger

	// tableOnly keeps no copies, only the index table (NewIndexTable).
	tableOnly bool

	mu       sync.Mutex
	repoID   archive.ID // zero until config has been read
	ready    string     // the repository directory, once made
	disabled bool       // the cache directory cannot be used: pass everything through
}

// New wraps be with a cache under base (see DefaultDir). Cache failures
// (a full disk, a read-only directory) are logged to log and never fail an
// operation: the file then comes from be. The result also implements
// archive.ObjectLocker exactly when be does.
func New(be archive.Backend, base string, log *slog.Logger) archive.Backend {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Backend{be: be, base: base, log: log}
	if ol, ok := be.(archive.ObjectLocker); ok {
		return &lockingBackend{c, ol}
	}
	return c
}

// indexTableDir holds the index as a table file (archive.IndexTableCache):
// one file per repository, replaced as the index changes.
const (
	indexTableDir  = "indextable"
	indexTableFile = "table-v2"
)

// oldIndexTables are the names of tables of earlier formats, which no
// version reads any more: removed, so that a table of 490 MB does not
// stay behind.
var oldIndexTables = []string{"table-v1"}

// IndexTablePath implements archive.IndexTableCache: the table file in the
// repository's cache directory. Temporary files a killed writer left there
// are removed once they are old enough to belong to no running process.
func (c *Backend) IndexTablePath(ctx context.Context) (string, *slog.Logger, bool) {
	dir, ok := c.dir(ctx)
	if !ok {
		return "", nil, false
	}
	dir = filepath.Join(dir, indexTableDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		c.log.Warn("cache: no index table", "dir", dir, "err", err)
		return "", nil, false
	}
	if old, _ := filepath.Glob(filepath.Join(dir, tmpPrefix+"*")); len(old) > 0 {
		for _, p := range old {
			if fi, err := os.Stat(p); err == nil && time.Since(fi.ModTime()) > tmpGrace {
				_ = os.Remove(p)
			}
		}
	}
	for _, name := range oldIndexTables {
		_ = os.Remove(filepath.Join(dir, name))
	}
	return filepath.Join(dir, indexTableFile), c.log, true
}

// NewIndexTable wraps be, a backend on a local disk, with only the index
// table of the cache under base: copies of its files would sit on a disk
// as fast as the originals, but decoding every index file is the fixed
// cost of every command, which the table saves (archive.IndexTableCache).
// Everything else passes through.
func NewIndexTable(be archive.Backend, base string, log *slog.Logger) archive.Backend {
	b := New(be, base, log)
	switch c := b.(type) {
	case *Backend:
		c.tableOnly = true
	case *lockingBackend:
		c.tableOnly = true
	}
	return b
}

// lockingBackend is a Backend over a backend with object lock. Go type
// assertions decide whether a repository can be locked
// (archive.ObjectLocker), so the wrapper must implement it only when the
// wrapped backend does.
type lockingBackend struct {
	*Backend
	archive.ObjectLocker
}

// SetLegalHold implements archive.LegalHolder by passing it on; storage
// that cannot hold says so.
func (l *lockingBackend) SetLegalHold(ctx context.Context, t archive.FileType, name string, on bool) error {
	lh, ok := l.be.(archive.LegalHolder)
	if !ok {
		return archive.ErrObjectLockUnsupported
	}
	return lh.SetLegalHold(ctx, t, name, on)
}

// LegalHold implements archive.LegalHolder by passing it on.
func (l *lockingBackend) LegalHold(ctx context.Context, t archive.FileType, name string) (bool, error) {
	lh, ok := l.be.(archive.LegalHolder)
	if !ok {
		return false, archive.ErrObjectLockUnsupported
	}
	return lh.LegalHold(ctx, t, name)
}

// Location implements archive.Backend.
func (c *Backend) Location() string { return c.be.Location() }

// Connections passes on how many requests the wrapped backend wants in
// flight (0 when it does not say, which archive.Connections reads as 1).
func (c *Backend) Connections() int {
	if p, ok := c.be.(interface{ Connections() int }); ok {
		return p.Connections()
	}
	return 0
}

// TempFile gives a pack's temporary file from the wrapped backend, or one
// in the system temporary directory as archive does for a backend without.
func (c *Backend) TempFile() (*os.File, error) {
	if tf, ok := c.be.(archive.TempFiler); ok {
		return tf.TempFile()
	}
	return os.CreateTemp("", "mailvault-pack-*")
}

// PutFile stores a finished pack through the wrapped backend's PutFile, or
// reads it and stores it with Put (and removes it) when there is none.
func (c *Backend) PutFile(ctx context.Context, t archive.FileType, name string, f *os.File) error {
	if fp, ok := c.be.(archive.FilePutter); ok {
		return fp.PutFile(ctx, t, name, f)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return err
	}
	return c.Put(ctx, t, name, data)
}

// CleanTemp passes a backup's clean-up of temporary files on to the
// wrapped backend, if it keeps any.
func (c *Backend) CleanTemp(age time.Duration) (int, error) {
	if tc, ok := c.be.(interface {
		CleanTemp(time.Duration) (int, error)
	}); ok {
		return tc.CleanTemp(age)
	}
	return 0, nil
}

// Put implements archive.Backend; a key, index or snapshot file is also
// kept in the cache, so the next command need not download what this one
// wrote.
func (c *Backend) Put(ctx context.Context, t archive.FileType, name string, data []byte) error {
	if err := c.be.Put(ctx, t, name, data); err != nil {
		return err
	}
	switch {
	case t == archive.ConfigFile:
		c.learnID(data)
	case c.cached(t):
		if id, err := archive.ParseID(name); err == nil && sha256.Sum256(data) == id {
			c.store(ctx, t, name, data)
		}
	}
	return nil
}

// Get implements archive.Backend.
func (c *Backend) Get(ctx context.Context, t archive.FileType, name string) (io.ReadCloser, error) {
	if t == archive.ConfigFile {
		return c.getConfig(ctx, name)
	}
	data, ok, err := c.get(ctx, t, name)
	if !ok {
		return c.be.Get(ctx, t, name)
	}
	if err != nil {
		return nil, err
	}
	return io.NopCloser(bytes.NewReader(data)), nil
}

// GetRange implements archive.Backend; a range of a cached type is cut from
// the whole file.
func (c *Backend) GetRange(ctx context.Context, t archive.FileType, name string, offset, length int64) (io.ReadCloser, error) {
	data, ok, err := c.get(ctx, t, name)
	if !ok {
		return c.be.GetRange(ctx, t, name, offset, length)
	}
	if err != nil {
		return nil, err
	}
	if offset < 0 {
		return nil, fmt.Errorf("%s/%s: negative offset %d", t, name, offset)
	}
	offset = min(offset, int64(len(data)))
	end := int64(len(data))
	if length > 0 {
		end = min(end, offset+length)
	}
	return io.NopCloser(bytes.NewReader(data[offset:end])), nil
}

// Stat implements archive.Backend. It always asks the wrapped backend:
// callers use it to learn whether a file still exists.
func (c *Backend) Stat(ctx context.Context, t archive.FileType, name string) (int64, error) {
	return c.be.Stat(ctx, t, name)
}

// List implements archive.Backend. The listing always comes from the
// wrapped backend; after a complete listing of a cached type, cached files
// it did not list (removed by another host's prune or key remove) or
// listed with another size are evicted.
func (c *Backend) List(ctx context.Context, t archive.FileType, fn func(name string, size int64) error) error {
	if !c.cached(t) {
		return c.be.List(ctx, t, fn)
	}
	listed := map[string]int64{}
	err := c.be.List(ctx, t, func(name string, size int64) error {
		listed[name] = size
		return fn(name, size)
	})
	if err != nil {
		return err
	}
	if dir, ok := c.dir(ctx); ok {
		c.evict(filepath.Join(dir, string(t)), listed)
	}
	return nil
}

// Remove implements archive.Backend: the cached copy goes first, then the
// file itself.
func (c *Backend) Remove(ctx context.Context, t archive.FileType, name string) error {
	if p, ok := c.path(ctx, t, name); ok {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			c.log.Warn("cache: cannot remove a cached file", "file", p, "err", err)
		}
	}
	return c.be.Remove(ctx, t, name)
}

// getConfig reads config from the wrapped backend — it is never cached —
// and learns the repository ID from it on the way.
func (c *Backend) getConfig(ctx context.Context, name string) (io.ReadCloser, error) {
	rc, err := c.be.Get(ctx, archive.ConfigFile, name)
	if err != nil {
		return nil, err
	}
	head, err := io.ReadAll(io.LimitReader(rc, maxConfigSize))
	if err != nil {
		rc.Close()
		return nil, err
	}
	c.learnID(head)
	// Whatever is beyond the limit still reaches the caller, which
	// decides what to make of an oversized config.
	return struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(head), rc), rc}, nil
}

// learnID takes the repository ID from config's bytes; the cache is used
// only once it is known.
func (c *Backend) learnID(config []byte) {
	var cfg struct {
		ID archive.ID `json:"id"`
	}
	if json.Unmarshal(config, &cfg) != nil || cfg.ID.IsNull() {
		return
	}
	c.mu.Lock()
	c.repoID = cfg.ID
	c.mu.Unlock()
}

// dir returns the repository's cache directory, creating it (and the tag
// in the base directory) on first use. ok is false when the cache cannot be
// used: no repository ID (config unreadable), or the directory cannot be
// made.
func (c *Backend) dir(ctx context.Context) (string, bool) {
	c.mu.Lock()
	id, ready, disabled := c.repoID, c.ready, c.disabled
	c.mu.Unlock()
	if disabled {
		return "", false
	}
	if id.IsNull() {
		// Nothing has read config yet (archive.Open always does first).
		rc, err := c.getConfig(ctx, "config")
		if err != nil {
			return "", false
		}
		rc.Close()
		c.mu.Lock()
		id = c.repoID
		c.mu.Unlock()
		if id.IsNull() {
			return "", false
		}
	}
	dir := filepath.Join(c.base, id.String())
	if dir == ready {
		return dir, true
	}
	if err := c.prepare(dir); err != nil {
		c.log.Warn("cache: not using the local metadata cache", "dir", dir, "err", err)
		c.mu.Lock()
		c.disabled = true
		c.mu.Unlock()
		return "", false
	}
	markUsed(dir) // once per process: OldDirs tells unused ones by it
	c.mu.Lock()
	c.ready = dir
	c.mu.Unlock()
	return dir, true
}

// prepare makes the repository's directories (mode 0700) and the cache
// directory tag.
func (c *Backend) prepare(dir string) error {
	for _, t := range []archive.FileType{archive.KeyFile, archive.IndexFile, archive.SnapshotFile} {
		if err := os.MkdirAll(filepath.Join(dir, string(t)), 0o700); err != nil {
			return err
		}
	}
	tag := filepath.Join(c.base, tagFile)
	if _, err := os.Stat(tag); errors.Is(err, fs.ErrNotExist) {
		return writeAtomic(tag, []byte(tagContent))
	}
	return nil
}

// path returns where a file of a cached type lives in the cache; ok is
// false for other types, names that are not IDs, and an unusable cache.
func (c *Backend) path(ctx context.Context, t archive.FileType, name string) (string, bool) {
	if !c.cached(t) {
		return "", false
	}
	if _, err := archive.ParseID(name); err != nil {
		return "", false
	}
	dir, ok := c.dir(ctx)
	if !ok {
		return "", false
	}
	return filepath.Join(dir, string(t), name), true
}

// get returns a cached type's whole file, from the cache if it holds a
// copy that matches its name, else from the wrapped backend (keeping a
// copy if it matches). ok is false when the cache does not apply: the
// caller passes the request on.
func (c *Backend) get(ctx context.Context, t archive.FileType, name string) (data []byte, ok bool, err error) {
	p, ok := c.path(ctx, t, name)
	if !ok {
		return nil, false, nil
	}
	want, _ := archive.ParseID(name) // path checked it
	switch data, err := os.ReadFile(p); {
	case err == nil && sha256.Sum256(data) == want:
		return data, true, nil
	case err == nil:
		// Bit rot, a truncated write by another tool, tampering: the name
		// says what the bytes must be. Drop the copy and fetch the file.
		c.log.Warn("cache: cached file does not match its name; fetching it again", "file", p)
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			c.log.Warn("cache: cannot remove a damaged cached file", "file", p, "err", err)
		}
	case !errors.Is(err, fs.ErrNotExist):
		c.log.Warn("cache: cannot read a cached file; fetching it", "file", p, "err", err)
	}
	rc, err := c.be.Get(ctx, t, name)
	if err != nil {
		return nil, true, err
	}
	defer rc.Close()
	data, err = io.ReadAll(rc)
	if err != nil {
		return nil, true, fmt.Errorf("read %s/%s: %w", t, name, err)
	}
	// A download that does not match its name is handed to the caller,
	// which reports the damage, but never cached.
	if sha256.Sum256(data) == want {
		c.storeAt(p, data)
	}
	return data, true, nil
}

// store keeps a copy of a file known to match its name.
func (c *Backend) store(ctx context.Context, t archive.FileType, name string, data []byte) {
	if p, ok := c.path(ctx, t, name); ok {
		c.storeAt(p, data)
	}
}

func (c *Backend) storeAt(p string, data []byte) {
	if err := writeAtomic(p, data); err != nil {
		c.log.Warn("cache: cannot store a file", "file", p, "err", err)
	}
}

// evict removes the cached files of one type's directory that are not in
// listed or whose size differs from the listed one, and temporary files
// old enough to be left by a killed process.
func (c *Backend) evict(dir string, listed map[string]int64) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		c.log.Warn("cache: cannot read the cache directory", "dir", dir, "err", err)
		return
	}
	cutoff := time.Now().Add(-tmpGrace)
	for _, de := range entries {
		name := de.Name()
		fi, err := de.Info()
		if err != nil {
			continue // removed meanwhile
		}
		var stale bool
		if strings.HasPrefix(name, tmpPrefix) {
			stale = fi.ModTime().Before(cutoff)
		} else {
			size, ok := listed[name]
			stale = !ok || size != fi.Size()
		}
		if !stale {
			continue
		}
		if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			c.log.Warn("cache: cannot evict a file", "file", filepath.Join(dir, name), "err", err)
		}
	}
}

// writeAtomic writes a 0600 file under a temporary name in its directory
// and renames it into place, so that a reader — this process or another
// one sharing the cache — sees no file or the whole file. No fsync: a copy
// lost or torn by a crash fails its SHA-256 check and is fetched again.
func writeAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), tmpPrefix+"*") // mode 0600
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // after a successful rename, a no-op
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
