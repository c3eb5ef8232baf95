package cache

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/mailvault/mailvault/archive"
)

// One cache root (DefaultDir, or --cache-dir) holds everything a host
// keeps for a repository, in the repository's directory <root>/<id>:
// the metadata cache (keys, index, snapshots; Backend) and a write-only
// host's parent cache (parents, trees; archive/parentcache.go).
// Whichever uses the directory marks it used by setting its mtime, so that
// directories of repositories no longer used can be found (OldDirs).

// MaxAge is how long a repository's cache directory may go unused before
// OldDirs reports it, as restic's cache does: 30 days.
const MaxAge = 30 * 24 * time.Hour

// subdirs are the only entries a repository's cache directory has.
var subdirs = map[string]bool{
	string(archive.KeyFile): true, string(archive.IndexFile): true, string(archive.SnapshotFile): true,
	"parents": true, "trees": true, indexTableDir: true,
}

// ParentDir returns the directory of the write-only parent cache of the
// repository id under root (archive.BackupOptions.ParentCache): the
// repository's cache directory, <root>/<id>. It makes the directory and
// the root's CACHEDIR.TAG and marks the directory used.
//
// Until cache directories had one root, the parent cache was always under
// DefaultDir, whatever --cache-dir said. When root is another directory
// and has no parent cache for id but DefaultDir has one, it is moved here
// (a rename); if it cannot be (another file system), the old directory
// stays in use, so that a write-only host does not lose its parents on an
// upgrade — losing them would cost one backup that reads all mail again,
// not correctness.
func ParentDir(root string, id archive.ID, log *slog.Logger) (string, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	dir := filepath.Join(root, id.String())
	if err := prepareRoot(root, dir); err != nil {
		return "", fmt.Errorf("parent cache: %w", err)
	}
	if def, err := DefaultDir(); err == nil && filepath.Clean(def) != filepath.Clean(root) {
		old := filepath.Join(def, id.String())
		if moved, err := migrateParents(old, dir); err != nil {
			log.Warn("parent cache: cannot move the parent cache to the cache directory; using it where it is", "from", old, "to", dir, "err", err)
			markUsed(old)
			return old, nil
		} else if moved {
			log.Info("parent cache: moved into the cache directory", "from", old, "to", dir)
		}
	}
	markUsed(dir)
	return dir, nil
}

// migrateParents moves old's parents and trees into dir when dir has no
// parents yet and old has.
func migrateParents(old, dir string) (bool, error) {
	if _, err := os.Lstat(filepath.Join(dir, "parents")); !errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if fi, err := os.Lstat(filepath.Join(old, "parents")); err != nil || !fi.IsDir() {
		return false, nil
	}
	// Trees first: parents without their trees would be refused, trees
	// without parents are only pruned later.
	for _, sub := range []string{"trees", "parents"} {
		err := os.Rename(filepath.Join(old, sub), filepath.Join(dir, sub))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return false, err
		}
	}
	return true, nil
}

// prepareRoot makes dir (mode 0700) and the tag in root.
func prepareRoot(root, dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tag := filepath.Join(root, tagFile)
	if _, err := os.Stat(tag); errors.Is(err, fs.ErrNotExist) {
		return writeAtomic(tag, []byte(tagContent))
	}
	return nil
}

// markUsed records that a repository's cache directory is in use: its
// mtime, which adding or removing its few subdirectories rarely changes.
func markUsed(dir string) {
	now := time.Now()
	_ = os.Chtimes(dir, now, now) // at worst, the directory looks older
}

// OldDirs returns the repository cache directories under root that have
// not been used for maxAge, never keep's. It reports only what is
// certainly ours: root must hold mailvault's CACHEDIR.TAG, and a
// directory must be named by a repository ID and hold nothing but the
// cache's subdirectories. A root that does not exist has none.
func OldDirs(root string, maxAge time.Duration, keep archive.ID) ([]string, error) {
	tag, err := os.ReadFile(filepath.Join(root, tagFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(tag, []byte(tagContent)) {
		return nil, nil // another tool's cache, or edited by hand: not ours to clean
	}
	entries, err := os.ReadDir(root)
	if err != nil {
		return nil, err
	}
	cutoff := time.Now().Add(-maxAge)
	var old []string
	for _, de := range entries {
		id, err := archive.ParseID(de.Name())
		if err != nil || id == keep || !de.IsDir() { // IsDir is false for a symlink
			continue
		}
		fi, err := de.Info()
		if err != nil || !fi.ModTime().Before(cutoff) {
			continue
		}
		dir := filepath.Join(root, de.Name())
		if ours(dir) {
			old = append(old, dir)
		}
	}
	return old, nil
}

// ours reports whether dir holds only the cache's subdirectories.
func ours(dir string) bool {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, de := range entries {
		if !subdirs[de.Name()] || !de.IsDir() {
			return false
		}
	}
	return true
}

// RemoveDirs removes directories OldDirs returned; it stops at the first
// that cannot be removed.
func RemoveDirs(dirs []string) (int, error) {
	for i, dir := range dirs {
		if err := os.RemoveAll(dir); err != nil {
			return i, fmt.Errorf("remove old cache directory: %w", err)
		}
	}
	return len(dirs), nil
}
