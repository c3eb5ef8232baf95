package archive

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// A write-only key cannot decrypt snapshots or trees, so a write-only host
// cannot read its parent snapshot back from the repository. It keeps what
// the incremental shortcut needs on local disk instead:
//
//	<dir>/parents/<sha256(host, paths)>   zstd of {"version", "repository", "snapshot", "plain"}
//	<dir>/trees/<tree blob id>            zstd of the tree blob's plaintext
//	                                      (a folder tree's pages too)
//
// where <dir> is BackupOptions.ParentCache; the command gives the
// repository's directory in the cache root, beside the metadata cache
// (archive/cache.ParentDir).
// Everything is mode 0600 in 0700 directories: it holds the same message
// metadata (subjects, addresses) as the mail on this host.
//
// Nothing in the cache is trusted blindly. A parents entry is used only if
// it names this repository, host and paths, its snapshot file still exists
// in the repository (prune has not removed it), and every tree it refers
// to is in the repository's index and in the cache. A cached tree must
// hash (keyed BLAKE3) to its blob ID, so it is exactly the blob the
// repository holds. When anything does not hold, the backup goes on
// without that part of the parent: it reads the mail again and the index
// deduplicates it, so nothing new is uploaded — only more is read.

// parentCacheVersion is the version of a parents entry.
const parentCacheVersion = 1

// treeCacheGrace is how old an unreferenced cached tree must be before it
// is removed: a backup of other paths running at the same time may have
// just written it and not yet its parents entry.
const treeCacheGrace = 24 * time.Hour

type parentCache struct {
	dir string
	r   *Repository
}

// parentEntry is the JSON of a parents file. Plain is the snapshot's
// plaintext JSON as written to the repository.
type parentEntry struct {
	Version    int             `json:"version"`
	Repository ID              `json:"repository"`
	Snapshot   ID              `json:"snapshot"`
	Plain      json.RawMessage `json:"plain"`
}

func (c *parentCache) entryPath(host string, paths []string) string {
	h := sha256.Sum256([]byte(host + "\x00" + strings.Join(paths, "\x00")))
	return filepath.Join(c.dir, "parents", hex.EncodeToString(h[:]))
}

func (c *parentCache) treePath(id ID) string {
	return filepath.Join(c.dir, "trees", id.String())
}

// load returns the cached parent for host and paths, or nil (with the
// reason) when there is none that can be trusted.
func (c *parentCache) load(ctx context.Context, host string, paths []string) (*Snapshot, string) {
	raw, err := os.ReadFile(c.entryPath(host, paths))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, "no cached parent for this host and paths"
	}
	if err != nil {
		return nil, err.Error()
	}
	plain, err := c.r.zdec.DecodeAll(raw, nil)
	if err != nil {
		return nil, fmt.Sprintf("cached parent is damaged: %v", err)
	}
	var e parentEntry
	if err := json.Unmarshal(plain, &e); err != nil {
		return nil, fmt.Sprintf("cached parent is damaged: %v", err)
	}
	if e.Version != parentCacheVersion || e.Repository != c.r.cfg.ID {
		return nil, "cached parent is for another repository or version"
	}
	snap, err := decodeSnapshot(e.Plain)
	if err != nil {
		return nil, fmt.Sprintf("cached parent is damaged: %v", err)
	}
	snap.ID = e.Snapshot
	if snap.Host != host || !slices.Equal(snap.Paths, paths) {
		return nil, "cached parent is for another host or paths"
	}
	if _, err := c.r.be.Stat(ctx, SnapshotFile, e.Snapshot.String()); err != nil {
		return nil, fmt.Sprintf("cached parent %s is not in the repository: %v", e.Snapshot.Short(), err)
	}
	for _, root := range snap.Roots {
		trees := []ID{root.Files}
		for _, f := range root.Folders {
			trees = append(trees, f.Tree)
		}
		for _, id := range trees {
			if id.IsNull() {
				continue
			}
			if !c.r.idx.Has(id) {
				return nil, fmt.Sprintf("tree %s of cached parent %s is not in the repository's index", id.Short(), e.Snapshot.Short())
			}
			if _, err := os.Stat(c.treePath(id)); err != nil {
				return nil, fmt.Sprintf("tree %s of cached parent %s is not in the cache", id.Short(), e.Snapshot.Short())
			}
		}
	}
	return snap, ""
}

// tree returns a cached tree's plaintext, verified against its ID.
func (c *parentCache) tree(id ID) ([]byte, error) {
	raw, err := os.ReadFile(c.treePath(id))
	if err != nil {
		return nil, err
	}
	plain, err := c.r.zdec.DecodeAll(raw, nil)
	if err != nil {
		return nil, fmt.Errorf("cached tree %s: %w", id.Short(), err)
	}
	if c.r.BlobID(plain) != id {
		return nil, fmt.Errorf("cached tree %s: content does not match its ID", id.Short())
	}
	return plain, nil
}

// pages lists the pages of a cached folder tree: none when it has none or
// cannot be read.
func (c *parentCache) pages(id ID) []ID {
	plain, err := c.tree(id)
	if err != nil {
		return nil
	}
	t, err := decodeFolderTree(plain)
	if err != nil {
		return nil
	}
	ids := make([]ID, len(t.Pages))
	for i, p := range t.Pages {
		ids[i] = p.ID
	}
	return ids
}

// storeTree caches a tree blob's plaintext. A sound copy that is there
// already is only touched, so that a concurrent prune of the cache keeps
// it; a damaged one is replaced.
func (c *parentCache) storeTree(id ID, plain []byte) error {
	p := c.treePath(id)
	if _, err := c.tree(id); err == nil {
		now := time.Now()
		return os.Chtimes(p, now, now)
	}
	return writeFileAtomic(p, c.r.zenc.EncodeAll(plain, nil))
}

// save records snap as the parent of the next backup of its host and
// paths, then removes cached trees that no parents entry refers to.
func (c *parentCache) save(snap *Snapshot) error {
	plain, err := json.Marshal(snap)
	if err != nil {
		return err
	}
	raw, err := json.Marshal(parentEntry{Version: parentCacheVersion, Repository: c.r.cfg.ID, Snapshot: snap.ID, Plain: plain})
	if err != nil {
		return err
	}
	if err := writeFileAtomic(c.entryPath(snap.Host, snap.Paths), c.r.zenc.EncodeAll(raw, nil)); err != nil {
		return err
	}
	return c.prune()
}

// prune removes cached trees that no parents entry refers to and that
// are older than treeCacheGrace.
func (c *parentCache) prune() error {
	used := map[string]bool{}
	entries, err := os.ReadDir(filepath.Join(c.dir, "parents"))
	if err != nil {
		return err
	}
	for _, de := range entries {
		raw, err := os.ReadFile(filepath.Join(c.dir, "parents", de.Name()))
		if err != nil {
			continue
		}
		plain, err := c.r.zdec.DecodeAll(raw, nil)
		if err != nil {
			continue
		}
		var e parentEntry
		if json.Unmarshal(plain, &e) != nil {
			continue
		}
		snap, err := decodeSnapshot(e.Plain)
		if err != nil {
			continue
		}
		for _, root := range snap.Roots {
			used[root.Files.String()] = true
			for _, f := range root.Folders {
				used[f.Tree.String()] = true
				for _, p := range c.pages(f.Tree) {
					used[p.String()] = true
				}
			}
			if root.MessageIndex != nil {
				// What is missing or damaged is not kept: the next
				// backup builds the index anew.
				ids, _ := msgIndexBlobs(context.Background(), *root.MessageIndex, func(_ context.Context, id ID) ([]byte, error) { return c.tree(id) }, map[ID]struct{}{})
				for _, id := range ids {
					used[id.String()] = true
				}
			}
		}
	}
	trees, err := os.ReadDir(filepath.Join(c.dir, "trees"))
	if err != nil {
		return err
	}
	cutoff := time.Now().Add(-treeCacheGrace)
	for _, de := range trees {
		if used[de.Name()] {
			continue
		}
		if fi, err := de.Info(); err == nil && fi.ModTime().Before(cutoff) {
			_ = os.Remove(filepath.Join(c.dir, "trees", de.Name()))
		}
	}
	return nil
}

// writeFileAtomic writes a 0600 file under a temporary name and renames
// it into place, so a reader sees the old file or the whole new one.
func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".tmp-*") // mode 0600
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // after a successful rename, a no-op
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// The backup's side: where the parent's trees come from and where new
// trees also go.

// initParentCache sets up the cache for a write-only key; a full key
// reads its parents from the repository and needs none.
func (b *backup) initParentCache() {
	if b.r.WriteOnly() && b.opt.ParentCache != "" {
		b.cache = &parentCache{dir: b.opt.ParentCache, r: b.r}
	}
}

// findCachedParent is findParent for a write-only key.
func (b *backup) findCachedParent(ctx context.Context, abs []string) error {
	if b.cache == nil {
		if b.opt.Parent != nil {
			return fmt.Errorf("parent snapshot %s: %w", b.opt.Parent.Short(), ErrWriteOnly)
		}
		b.log.Info("write-only key without a parent cache: every message is read (and deduplicated through the index)")
		return nil
	}
	snap, why := b.cache.load(ctx, b.opt.Host, abs)
	if snap == nil {
		b.log.Info("backing up without a parent: every message is read (and deduplicated through the index)", "reason", why, "cache", b.cache.dir)
	}
	if b.opt.Parent != nil && (snap == nil || snap.ID != *b.opt.Parent) {
		// Only the cached parent can be read with this key.
		return fmt.Errorf("parent snapshot %s: %w", b.opt.Parent.Short(), ErrWriteOnly)
	}
	b.parent = snap
	return nil
}

// loadFolderTree reads a parent's folder tree from the cache (write-only)
// or the repository. A tree the cache cannot give is taken as empty (whole
// false): the folder's messages are then read and deduplicated through
// the index.
func (b *backup) loadFolderTree(ctx context.Context, id ID) (t *FolderTree, whole bool, err error) {
	if !b.r.WriteOnly() {
		t, err := b.r.LoadFolderTree(ctx, id)
		return t, err == nil, err
	}
	if b.cache != nil {
		t, err := loadFolderTree(ctx, id, b.loadBlob)
		if err == nil {
			return t, true, nil
		}
		b.log.Warn("parent cache: cannot use a folder list; its messages are read again", "tree", id.Short(), "err", err)
	}
	return &FolderTree{Version: folderTreeVersion}, false, nil
}

// loadBlob reads a parent's tree, page or index blob: from the cache on a
// write-only host (which has no other way), else from the repository.
func (b *backup) loadBlob(ctx context.Context, id ID) ([]byte, error) {
	if !b.r.WriteOnly() {
		return b.r.loadTreeBlob(ctx, id)
	}
	if b.cache == nil {
		return nil, fmt.Errorf("blob %s: %w", id.Short(), ErrWriteOnly)
	}
	plain, err := b.cache.tree(id)
	if errors.Is(err, fs.ErrNotExist) {
		err = fmt.Errorf("%w: %v", ErrNotExist, err)
	}
	return plain, err
}

// loadFilesTree is loadFolderTree for a root's list of other files.
func (b *backup) loadFilesTree(ctx context.Context, id ID) (*FilesTree, error) {
	if !b.r.WriteOnly() {
		return b.r.LoadFilesTree(ctx, id)
	}
	if b.cache != nil {
		plain, err := b.cache.tree(id)
		if err == nil {
			var t *FilesTree
			if t, err = decodeFilesTree(plain); err == nil {
				return t, nil
			}
		}
		b.log.Warn("parent cache: cannot use a file list; the files are read again", "tree", id.Short(), "err", err)
	}
	return &FilesTree{Version: 1}, nil
}

// saveTree stores a tree blob and, on a write-only host, caches it for
// the next backup.
func (b *backup) saveTree(ctx context.Context, v any) (ID, error) {
	raw, err := encodeTree(v)
	if err != nil {
		return ID{}, err
	}
	return b.saveTreeBlob(ctx, raw)
}

// saveTreeBlob is saveTree for an encoded tree or page.
func (b *backup) saveTreeBlob(ctx context.Context, raw []byte) (ID, error) {
	id, _, err := b.r.SaveBlob(ctx, TreeBlob, raw)
	if err != nil {
		return ID{}, err
	}
	if b.cache != nil {
		if err := b.cache.storeTree(id, raw); err != nil {
			// The backup is still good; the next one reads more.
			b.log.Warn("parent cache: cannot store a tree", "tree", id.Short(), "err", err)
		}
	}
	return id, nil
}

// saveParent records the finished snapshot in the cache.
func (b *backup) saveParent(snap *Snapshot) {
	if b.cache == nil {
		return
	}
	// A folder reused from the parent keeps its tree; make sure the cache
	// (which may have lost it) still has every tree the entry names.
	for _, root := range snap.Roots {
		trees := []ID{root.Files}
		for _, f := range root.Folders {
			trees = append(trees, f.Tree)
			trees = append(trees, b.cache.pages(f.Tree)...)
		}
		for _, id := range trees {
			if _, err := os.Stat(b.cache.treePath(id)); err != nil {
				b.log.Warn("parent cache: a tree is missing; not caching this snapshot", "tree", id.Short())
				return
			}
		}
	}
	if err := b.cache.save(snap); err != nil {
		b.log.Warn("parent cache: cannot record the snapshot; the next backup reads all mail again", "err", err)
	}
}
