// Package local is the archive backend for a repository in a local
// directory (or any mounted filesystem).
//
// Durability: every file is written under a temporary name in the same
// directory, fsynced, renamed to its final name, and the directory is
// fsynced, so after a crash a file is either absent or complete.
package local

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mailvault/mailvault/archive"
)

// tmpPrefix marks files being written; List never reports them and
// CleanTemp removes old ones left by a crash.
const tmpPrefix = ".tmp-"

// Backend is a repository in a local directory.
type Backend struct {
	dir string
}

// New returns a backend for an existing or future repository in dir.
func New(dir string) *Backend { return &Backend{dir: filepath.Clean(dir)} }

// Location implements archive.Backend.
func (b *Backend) Location() string { return b.dir }

// Create makes the directory layout of a new repository. Packs are spread
// over 256 subdirectories by the first byte of their name, like restic, so
// that no directory grows huge.
func (b *Backend) Create() error {
	dirs := []string{b.dir}
	for _, t := range []archive.FileType{archive.KeyFile, archive.PackFile, archive.IndexFile, archive.SnapshotFile, archive.LockFile, archive.PolicyFile, archive.AuditFile} {
		dirs = append(dirs, filepath.Join(b.dir, string(t)))
	}
	for i := 0; i < 256; i++ {
		dirs = append(dirs, filepath.Join(b.dir, string(archive.PackFile), fmt.Sprintf("%02x", i)))
	}
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("create repository: %w", err)
		}
	}
	return syncDir(b.dir)
}

func (b *Backend) path(t archive.FileType, name string) (string, error) {
	if t == archive.ConfigFile {
		return filepath.Join(b.dir, "config"), nil
	}
	// Names come from the repository itself; refuse anything that could
	// step outside its directory.
	if name == "" || strings.ContainsAny(name, `/\`) || name == "." || name == ".." {
		return "", fmt.Errorf("invalid file name %q", name)
	}
	if t == archive.PackFile {
		if len(name) < 2 {
			return "", fmt.Errorf("invalid pack name %q", name)
		}
		return filepath.Join(b.dir, string(t), name[:2], name), nil
	}
	return filepath.Join(b.dir, string(t), name), nil
}

// Put implements archive.Backend.
func (b *Backend) Put(ctx context.Context, t archive.FileType, name string, data []byte) error {
	p, err := b.path(t, name)
	if err != nil {
		return err
	}
	dir := filepath.Dir(p)
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	tmp := filepath.Join(dir, tmpPrefix+hex.EncodeToString(rnd[:]))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrNotExist) && (t == archive.PolicyFile || t == archive.AuditFile) {
		// Repositories made before these kinds existed lack their
		// directories.
		if err = os.MkdirAll(dir, 0o700); err == nil {
			f, err = os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		}
	}
	if err != nil {
		return fmt.Errorf("put %s/%s: %w", t, name, err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, p)
	}
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("put %s/%s: %w", t, name, err)
	}
	return nil
}

// Get implements archive.Backend.
func (b *Backend) Get(ctx context.Context, t archive.FileType, name string) (io.ReadCloser, error) {
	return b.GetRange(ctx, t, name, 0, 0)
}

// GetRange implements archive.Backend.
func (b *Backend) GetRange(ctx context.Context, t archive.FileType, name string, offset, length int64) (io.ReadCloser, error) {
	p, err := b.path(t, name)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, wrapNotExist(t, name, err)
	}
	if offset == 0 && length <= 0 {
		return f, nil
	}
	if length <= 0 {
		length = 1<<63 - 1 - offset
	}
	return struct {
		io.Reader
		io.Closer
	}{io.NewSectionReader(f, offset, length), f}, nil
}

// Stat implements archive.Backend.
func (b *Backend) Stat(ctx context.Context, t archive.FileType, name string) (int64, error) {
	p, err := b.path(t, name)
	if err != nil {
		return 0, err
	}
	fi, err := os.Stat(p)
	if err != nil {
		return 0, wrapNotExist(t, name, err)
	}
	return fi.Size(), nil
}

// List implements archive.Backend.
func (b *Backend) List(ctx context.Context, t archive.FileType, fn func(string, int64) error) error {
	dirs := []string{filepath.Join(b.dir, string(t))}
	if t == archive.PackFile {
		sub, err := os.ReadDir(dirs[0])
		if err != nil {
			return fmt.Errorf("list %s: %w", t, err)
		}
		dirs = dirs[:0]
		for _, s := range sub {
			if s.IsDir() {
				dirs = append(dirs, filepath.Join(b.dir, string(t), s.Name()))
			}
		}
	}
	for _, d := range dirs {
		if err := ctx.Err(); err != nil {
			return err
		}
		entries, err := os.ReadDir(d)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return fmt.Errorf("list %s: %w", t, err)
		}
		for _, e := range entries {
			if !e.Type().IsRegular() || strings.HasPrefix(e.Name(), tmpPrefix) {
				continue
			}
			fi, err := e.Info()
			if err != nil {
				continue // removed meanwhile
			}
			if err := fn(e.Name(), fi.Size()); err != nil {
				return err
			}
		}
	}
	return nil
}

// Remove implements archive.Backend.
func (b *Backend) Remove(ctx context.Context, t archive.FileType, name string) error {
	p, err := b.path(t, name)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil {
		return wrapNotExist(t, name, err)
	}
	return syncDir(filepath.Dir(p))
}

func wrapNotExist(t archive.FileType, name string, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s/%s: %w", t, name, archive.ErrNotExist)
	}
	return fmt.Errorf("%s/%s: %w", t, name, err)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	return nil
}

// TempFile implements archive.TempFiler: a temporary file in the pack
// directory, so that PutFile can rename it into place.
func (b *Backend) TempFile() (*os.File, error) {
	return os.CreateTemp(filepath.Join(b.dir, string(archive.PackFile)), tmpPrefix+"*")
}

// PutFile implements archive.FilePutter: fsync the finished file, rename
// it to its final name and fsync the directory. f is closed either way,
// and removed on failure.
func (b *Backend) PutFile(ctx context.Context, t archive.FileType, name string, f *os.File) error {
	p, err := b.path(t, name)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), p)
	}
	if err == nil {
		err = syncDir(filepath.Dir(p))
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("put %s/%s: %w", t, name, err)
	}
	return nil
}

// CleanTemp removes temporary files older than age, left behind by a
// process that was killed while writing; younger ones may belong to a
// backup running right now. It returns how many it removed.
func (b *Backend) CleanTemp(age time.Duration) (int, error) {
	cutoff := time.Now().Add(-age)
	removed := 0
	err := filepath.WalkDir(b.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // unreadable corners are check's business
		}
		if d.IsDir() || !strings.HasPrefix(d.Name(), tmpPrefix) {
			return nil
		}
		if fi, err := d.Info(); err == nil && fi.ModTime().Before(cutoff) {
			if os.Remove(p) == nil {
				removed++
			}
		}
		return nil
	})
	return removed, err
}
