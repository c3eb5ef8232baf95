// Package restore writes the content of a snapshot back out: a whole
// snapshot, one user, one folder or one message, as a valid Maildir tree
// (file names carry the flags, mtimes are the delivery times).
//
// Blobs are read pack by pack — each pack is fetched and decrypted once,
// and every file that needs a blob from it gets it then — so a full
// restore reads the repository sequentially, like restic's restorer.
package restore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mailvault/mailvault/archive"
)

// Repository is what restore needs from an archive repository.
type Repository interface {
	LoadFolderTree(ctx context.Context, id archive.ID) (*archive.FolderTree, error)
	LoadFilesTree(ctx context.Context, id archive.ID) (*archive.FilesTree, error)
	ReadBlobs(ctx context.Context, pack archive.ID, blobs []archive.PackedBlob, fn func(archive.PackedBlob, []byte) error) error
	Index() *archive.Index
}

// Options select what to restore and where.
type Options struct {
	Target string
	// User restricts to one user (as `ls` shows it, e.g. alice@example.com).
	User string
	// Folder restricts to one folder ("INBOX", "Sent", "Archive.2024").
	Folder string
	// Message restricts to one message by Maildir unique name or Message-ID.
	Message string
	// Overwrite allows writing into a non-empty target and replacing files.
	Overwrite bool
	// Workers process packs in parallel (default: the number of cores,
	// or the repository's Connections if it is more).
	Workers  int
	Progress func(Progress)
}

// Progress of a restore.
type Progress struct {
	FilesTotal, FilesDone int64
	BytesTotal, BytesDone int64
}

// Result says what was restored.
type Result struct {
	Messages int64 `json:"messages"`
	Files    int64 `json:"files"`
	Dirs     int64 `json:"dirs"`
	Bytes    int64 `json:"bytes"`
}

// ErrTargetExists means the target holds files and Overwrite was not given.
var ErrTargetExists = errors.New("restore target exists and is not empty (use --overwrite to write into it)")

// ErrNothingSelected means the filters matched nothing in the snapshot.
var ErrNothingSelected = errors.New("nothing in the snapshot matches the selection")

// file is one file to write.
type file struct {
	rel       string // slash path below the target
	mode      fs.FileMode
	mtime     int64
	size      int64
	blobs     []archive.ID
	remaining atomic.Int32

	// create makes the file (exclusively, or truncating with Overwrite)
	// exactly once, whichever worker gets to one of its blobs first.
	create    sync.Once
	createErr error
}

type dirEntry struct {
	rel   string
	mode  fs.FileMode
	mtime int64
}

type plan struct {
	dirs     []dirEntry
	maildirs []string // folder directories that need cur/new/tmp
	files    []*file
	symlinks []archive.FileEntry
	res      Result
}

// Restore writes the selected part of snap below opt.Target.
func Restore(ctx context.Context, repo Repository, snap *archive.Snapshot, opt Options) (*Result, error) {
	if opt.Target == "" {
		return nil, errors.New("no restore target given")
	}
	target, err := filepath.Abs(opt.Target)
	if err != nil {
		return nil, err
	}
	if !opt.Overwrite {
		if entries, err := os.ReadDir(target); err == nil && len(entries) > 0 {
			return nil, fmt.Errorf("%s: %w", target, ErrTargetExists)
		} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("restore target: %w", err)
		}
	}
	p, err := makePlan(ctx, repo, snap, opt)
	if err != nil {
		return nil, err
	}
	if len(p.files) == 0 && len(p.maildirs) == 0 && len(p.dirs) == 0 {
		return nil, ErrNothingSelected
	}
	w := &writer{target: target, overwrite: opt.Overwrite}
	if err := os.MkdirAll(target, 0o700); err != nil {
		return nil, fmt.Errorf("restore target: %w", err)
	}
	for _, d := range p.dirs {
		if err := w.mkdir(d.rel, d.mode|0o700); err != nil {
			return nil, err
		}
	}
	for _, d := range p.maildirs {
		for _, sub := range []string{"cur", "new", "tmp"} {
			if err := w.mkdir(pathJoin(d, sub), 0o700); err != nil {
				return nil, err
			}
		}
	}
	if err := w.writeFiles(ctx, repo, p, opt); err != nil {
		return nil, err
	}
	for _, s := range p.symlinks {
		// Last, so that no file is ever written through a link the
		// manifest made.
		if err := w.symlink(s); err != nil {
			return nil, err
		}
	}
	// Directory mtimes last: writing files into them changed them.
	for i := len(p.dirs) - 1; i >= 0; i-- {
		d := p.dirs[i]
		t := time.Unix(0, d.mtime)
		if fi, err := os.Lstat(w.abs(d.rel)); err == nil && fi.IsDir() {
			_ = os.Chtimes(w.abs(d.rel), t, t)
		}
	}
	return &p.res, nil
}

func pathJoin(a, b string) string {
	if a == "" || a == "." {
		return b
	}
	if b == "" || b == "." {
		return a
	}
	return a + "/" + b
}

func makePlan(ctx context.Context, repo Repository, snap *archive.Snapshot, opt Options) (*plan, error) {
	p := &plan{}
	msgFilter := strings.Trim(opt.Message, "<>")
	for _, root := range snap.Roots {
		// The non-message files that go with the selection: all of them
		// for a whole snapshot, those inside a user's Maildir for --user
		// (uid lists, subscriptions, sieve scripts), and those directly in
		// the folder's directory for --folder. None for a single message.
		var sel fileSelection
		sel.all = opt.User == "" && opt.Folder == "" && msgFilter == ""
		for _, f := range root.Folders {
			if opt.User != "" && f.User != opt.User {
				continue
			}
			if opt.Folder != "" && !strings.EqualFold(f.Folder, opt.Folder) {
				continue
			}
			if msgFilter == "" {
				if opt.Folder == "" && f.Folder == "INBOX" {
					sel.trees = append(sel.trees, f.Dir)
				}
				if opt.Folder != "" {
					sel.dirs = append(sel.dirs, f.Dir)
				}
			}
			t, err := repo.LoadFolderTree(ctx, f.Tree)
			if err != nil {
				return nil, err
			}
			dir := pathJoin(root.Name, f.Dir)
			if dir == "" {
				dir = "."
			}
			added := false
			for i := range t.Messages {
				m := &t.Messages[i]
				if msgFilter != "" && m.Unique != msgFilter && m.MessageID != msgFilter {
					continue
				}
				fl := &file{rel: pathJoin(dir, m.Subdir()+"/"+m.FileName()), mode: 0o600, mtime: m.MTime, size: m.Size, blobs: m.Blobs}
				p.files = append(p.files, fl)
				p.res.Messages++
				p.res.Bytes += m.Size
				added = true
			}
			if added || msgFilter == "" {
				p.maildirs = append(p.maildirs, dir)
			}
		}
		if root.Files.IsNull() || (!sel.all && len(sel.trees) == 0 && len(sel.dirs) == 0) {
			continue
		}
		ft, err := repo.LoadFilesTree(ctx, root.Files)
		if err != nil {
			return nil, err
		}
		for _, e := range ft.Entries {
			if !sel.includes(e) {
				continue
			}
			rel := pathJoin(root.Name, e.Path)
			switch e.Type {
			case "dir":
				p.dirs = append(p.dirs, dirEntry{rel: rel, mode: fs.FileMode(e.Mode).Perm(), mtime: e.MTime})
				p.res.Dirs++
			case "symlink":
				e.Path = rel
				p.symlinks = append(p.symlinks, e)
			case "file":
				p.files = append(p.files, &file{rel: rel, mode: fs.FileMode(e.Mode).Perm(), mtime: e.MTime, size: e.Size, blobs: e.Blobs})
				p.res.Files++
				p.res.Bytes += e.Size
			}
		}
	}
	sort.Slice(p.dirs, func(i, j int) bool { return p.dirs[i].rel < p.dirs[j].rel })
	return p, nil
}

// fileSelection says which entries of a root's files tree a restore takes.
type fileSelection struct {
	all   bool
	trees []string // everything at or below these directories (users' Maildir roots)
	dirs  []string // files directly inside these directories (folders)
}

func (s *fileSelection) includes(e archive.FileEntry) bool {
	if s.all {
		return true
	}
	for _, t := range s.trees {
		if t == "." || e.Path == t || strings.HasPrefix(e.Path, t+"/") {
			return true
		}
	}
	if e.Type == "dir" {
		return false
	}
	parent := path.Dir(e.Path)
	for _, d := range s.dirs {
		if parent == d {
			return true
		}
	}
	return false
}

type writer struct {
	target    string
	overwrite bool

	// dirsMu guards dirs, the directories already made or checked to be
	// real directories (not symlinks), so each is looked at once.
	dirsMu sync.Mutex
	dirs   map[string]bool
}

// abs maps a manifest path to a path below the target. Manifest paths
// were validated when the snapshot and trees were decoded (no "..", no
// absolute paths); this re-checks, because a restore must never write
// outside its target whatever the manifest says.
func (w *writer) abs(rel string) string {
	p := filepath.Join(w.target, filepath.FromSlash(rel))
	if p != w.target && !strings.HasPrefix(p, w.target+string(filepath.Separator)) {
		panic(fmt.Sprintf("restore: path %q escapes the target", rel))
	}
	return p
}

func (w *writer) mkdir(rel string, mode fs.FileMode) error {
	if err := archive.CheckRelPath(rel); err != nil {
		return err
	}
	return w.mkdirAll(rel, mode)
}

// mkdirAll creates rel and its missing parents below the target, like
// os.MkdirAll, but refuses to pass through anything that is not a
// directory: a symbolic link left in the target by an earlier restore
// with --overwrite (or made by a hostile manifest) could point anywhere.
func (w *writer) mkdirAll(rel string, mode fs.FileMode) error {
	if rel == "" || rel == "." {
		return nil
	}
	if err := archive.CheckRelPath(rel); err != nil {
		return err
	}
	w.dirsMu.Lock()
	defer w.dirsMu.Unlock()
	if w.dirs[rel] {
		return nil
	}
	if w.dirs == nil {
		w.dirs = map[string]bool{}
	}
	p := w.target
	for _, c := range strings.Split(rel, "/") {
		p = filepath.Join(p, c)
		if r, _ := filepath.Rel(w.target, p); w.dirs[filepath.ToSlash(r)] {
			continue
		}
		fi, err := os.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) {
			if err := os.Mkdir(p, mode); err != nil && !errors.Is(err, fs.ErrExist) {
				return fmt.Errorf("restore: %w", err)
			}
			fi, err = os.Lstat(p)
		}
		if err != nil {
			return fmt.Errorf("restore: %w", err)
		}
		if !fi.IsDir() {
			return fmt.Errorf("restore: %s exists and is not a directory (%v); refusing to write through it", p, fi.Mode().Type())
		}
		r, _ := filepath.Rel(w.target, p)
		w.dirs[filepath.ToSlash(r)] = true
	}
	return nil
}

func (w *writer) symlink(e archive.FileEntry) error {
	if err := archive.CheckRelPath(e.Path); err != nil {
		return err
	}
	if err := w.mkdirAll(path.Dir(e.Path), 0o700); err != nil {
		return err
	}
	p := w.abs(e.Path)
	if w.overwrite {
		_ = os.Remove(p)
	}
	if err := os.Symlink(e.Link, p); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	return nil
}

// create makes (or truncates) a file for writing, never through a symlink.
// open returns a handle for writing blobs into f. The first caller creates
// the file (refusing an existing one unless Overwrite); later callers, for
// blobs that live in other packs, open it again. Never through a symlink.
func (w *writer) open(f *file) (*os.File, error) {
	var fd *os.File
	f.create.Do(func() {
		flags := os.O_WRONLY | os.O_CREATE | syscallNoFollow
		if w.overwrite {
			flags |= os.O_TRUNC
		} else {
			flags |= os.O_EXCL
		}
		if f.createErr = w.mkdirAll(path.Dir(f.rel), 0o700); f.createErr != nil {
			return
		}
		fd, f.createErr = os.OpenFile(w.abs(f.rel), flags, f.mode|0o200)
		if f.createErr != nil {
			f.createErr = fmt.Errorf("restore: %w", f.createErr)
		}
	})
	if f.createErr != nil || fd != nil {
		return fd, f.createErr
	}
	fd, err := os.OpenFile(w.abs(f.rel), os.O_WRONLY|syscallNoFollow, 0)
	if err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	return fd, nil
}

// finish sets a complete file's mode and times; fd is its open handle.
func (w *writer) finish(f *file, fd *os.File) error {
	if f.mode != f.mode|0o200 || f.mode&0o077 != 0 {
		// Created as mode|0o200 and subject to the umask.
		if err := fd.Chmod(f.mode); err != nil {
			return fmt.Errorf("restore: %w", err)
		}
	}
	t := time.Unix(0, f.mtime)
	if err := os.Chtimes(w.abs(f.rel), t, t); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	return nil
}

type blobUse struct {
	f   *file
	off int64
}

// writeFiles creates every file at its final size, then fills them pack by
// pack.
func (w *writer) writeFiles(ctx context.Context, repo Repository, p *plan, opt Options) error {
	idx := repo.Index()
	uses := map[archive.ID][]blobUse{}
	packBlobs := map[archive.ID][]archive.PackedBlob{}
	var packOrder []archive.ID
	var prog Progress
	for _, f := range p.files {
		if err := archive.CheckRelPath(f.rel); err != nil {
			return err
		}
		prog.FilesTotal++
		prog.BytesTotal += f.size
		var off int64
		for _, b := range f.blobs {
			pack, pb, ok := idx.Lookup(b)
			if !ok {
				return fmt.Errorf("restore %s: blob %s: %w: not in any pack", f.rel, b.Short(), archive.ErrCorrupt)
			}
			if _, seen := uses[b]; !seen {
				if _, ok := packBlobs[pack]; !ok {
					packOrder = append(packOrder, pack)
				}
				packBlobs[pack] = append(packBlobs[pack], pb)
			}
			uses[b] = append(uses[b], blobUse{f, off})
			off += int64(pb.RawLength)
		}
		f.remaining.Store(int32(len(f.blobs)))
		if len(f.blobs) == 0 {
			fd, err := w.open(f)
			if err != nil {
				return err
			}
			err = w.finish(f, fd)
			if cerr := fd.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
			prog.FilesDone++
		}
	}
	var filesDone, bytesDone atomic.Int64
	filesDone.Store(prog.FilesDone)
	report := func() {
		if opt.Progress != nil {
			opt.Progress(Progress{FilesTotal: prog.FilesTotal, FilesDone: filesDone.Load(), BytesTotal: prog.BytesTotal, BytesDone: bytesDone.Load()})
		}
	}
	workers := opt.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
		// A remote repository (S3) wants more packs in flight than
		// there are cores, to hide its round trips.
		if c, ok := repo.(interface{ Connections() int }); ok {
			workers = max(workers, c.Connections())
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	work := make(chan archive.ID)
	var wg sync.WaitGroup
	var errOnce sync.Once
	var firstErr error
	fail := func(err error) {
		errOnce.Do(func() { firstErr = err; cancel() })
	}
	var progMu sync.Mutex
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Handles of files this worker has open for the current
			// pack: a file's blobs in one pack are written through
			// one open, and the file is closed when it is complete or
			// the pack is done (bounding open descriptors).
			open := map[*file]*os.File{}
			closeAll := func() error {
				var first error
				for f, fd := range open {
					if err := fd.Close(); err != nil && first == nil {
						first = fmt.Errorf("restore %s: %w", f.rel, err)
					}
					delete(open, f)
				}
				return first
			}
			for pack := range work {
				err := repo.ReadBlobs(ctx, pack, packBlobs[pack], func(b archive.PackedBlob, data []byte) error {
					for _, u := range uses[b.ID] {
						fd := open[u.f]
						if fd == nil {
							var err error
							if fd, err = w.open(u.f); err != nil {
								return err
							}
							open[u.f] = fd
						}
						if _, err := fd.WriteAt(data, u.off); err != nil {
							return fmt.Errorf("restore %s: %w", u.f.rel, err)
						}
						bytesDone.Add(int64(len(data)))
						if u.f.remaining.Add(-1) == 0 {
							err := w.finish(u.f, fd)
							delete(open, u.f)
							if cerr := fd.Close(); err == nil && cerr != nil {
								err = fmt.Errorf("restore %s: %w", u.f.rel, cerr)
							}
							if err != nil {
								return err
							}
							filesDone.Add(1)
						}
					}
					return nil
				})
				if cerr := closeAll(); err == nil {
					err = cerr
				}
				if err != nil {
					fail(err)
				}
				progMu.Lock()
				report()
				progMu.Unlock()
			}
		}()
	}
	for _, pack := range packOrder {
		select {
		case work <- pack:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
	}
	close(work)
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	return ctx.Err()
}
