// Package restore writes the content of a snapshot back out: a whole
// snapshot, one user, one folder or one message, as a valid Maildir tree
// (file names carry the flags, mtimes are the delivery times).
//
// Blobs are read pack by pack — each pack is fetched and decrypted once,
// and every file that needs a blob from it gets it then — so a full
// restore reads the repository sequentially, like restic's restorer.
//
// A file appears under its name only complete and on disk: it is written
// under a temporary name and renamed when its last blob is in. Damage in
// the repository costs the files that need the damaged content, not the
// restore: they are listed in the Result, with ErrIncomplete.
package restore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
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
	"github.com/mailvault/mailvault/mailmeta"
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
	// Messages, Files and Bytes count what was written (failures not
	// included), Dirs the directories made.
	Messages int64 `json:"messages"`
	Files    int64 `json:"files"`
	Dirs     int64 `json:"dirs"`
	Bytes    int64 `json:"bytes"`
	// Failed lists the messages and files that could not be restored
	// because content they need is damaged or missing in the repository,
	// sorted by path. Nothing was written under their names.
	Failed []Failure `json:"failed,omitempty"`
	// DamagedPacks lists the packs that could not be read, sorted by ID.
	DamagedPacks []DamagedPack `json:"damaged_packs,omitempty"`
}

// Failure is a message or other file a restore could not write, or a
// folder or set of files it could not even list.
type Failure struct {
	// Kind is "message", "file" (not a message: a uid list, a sieve
	// script ...), "folder" (the folder's list of messages is damaged:
	// none of them was restored), "folder page" (a page of the folder's
	// list is damaged: the messages it lists, Err says how many, were
	// not restored) or "files" (the list of a source root's other files
	// is damaged: none was restored).
	Kind string `json:"kind"`
	// Path is where the message or file would have been, below the
	// target; for a folder its directory, for "files" the root's.
	Path string `json:"path"`
	// User and Folder name the message's or the folder's mailbox;
	// Unique (the Maildir unique name), MessageID and Subject describe
	// a message.
	User      string `json:"user,omitempty"`
	Folder    string `json:"folder,omitempty"`
	Unique    string `json:"unique,omitempty"`
	MessageID string `json:"message_id,omitempty"`
	Subject   string `json:"subject,omitempty"`
	// Err says what content was lost: a damaged pack or a missing blob.
	Err string `json:"error"`
}

// DamagedPack is a pack a restore could not read in full.
type DamagedPack struct {
	Pack archive.ID `json:"pack"`
	Err  string     `json:"error"`
}

// ErrIncomplete means the restore went through, but some messages or
// files could not be restored because of damage in the repository;
// Restore then returns a Result listing them along with the error.
var ErrIncomplete = errors.New("some messages or files could not be restored")

// ErrTargetExists means the target holds files and Overwrite was not given.
var ErrTargetExists = errors.New("restore target exists and is not empty (use --overwrite to write into it)")

// ErrNothingSelected means the filters matched nothing in the snapshot.
var ErrNothingSelected = errors.New("nothing in the snapshot matches the selection")

// file is one file to write.
type file struct {
	rel string // slash path below the target
	// tmpDir is the directory (slash path below the target) its
	// temporary file goes in; see writer.create.
	tmpDir    string
	mode      fs.FileMode
	mtime     int64
	size      int64
	blobs     []archive.ID
	msg       *message // nil for a file that is not a message
	remaining atomic.Int32

	// mu orders the temporary file's creation and reopening by the
	// workers writing its blobs against its removal by a worker that
	// met a damaged pack: a worker never reopens a removed file.
	mu     sync.Mutex
	tmp    string // absolute path of the temporary file, once made
	failed string // why the file cannot be restored, once it cannot
}

// message is what a failure report says about a message.
type message struct {
	user, folder, unique, messageID, subject string
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
	// lost are the folders and roots whose trees are damaged: nothing
	// of them is restored.
	lost []Failure
	res  Result
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
		if len(p.lost) > 0 {
			// Nothing to write: the target is left as it was.
			return p.result(nil, nil)
		}
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
	failed, bad, err := w.writeFiles(ctx, repo, p, opt)
	if err != nil {
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
	return p.result(failed, bad)
}

// result is the plan's result less the files that failed, with the error
// to return: ErrIncomplete if anything failed.
func (p *plan) result(failed []*file, bad []DamagedPack) (*Result, error) {
	if len(failed) == 0 && len(p.lost) == 0 {
		return &p.res, nil
	}
	res := &p.res
	res.Failed = p.lost
	msgs := 0
	for _, f := range failed {
		fl := Failure{Kind: "file", Path: f.rel, Err: f.failed}
		if m := f.msg; m != nil {
			fl.Kind, fl.User, fl.Folder, fl.Unique, fl.MessageID, fl.Subject = "message", m.user, m.folder, m.unique, m.messageID, m.subject
			res.Messages--
			msgs++
		} else {
			res.Files--
		}
		res.Bytes -= f.size
		res.Failed = append(res.Failed, fl)
	}
	sort.Slice(res.Failed, func(i, j int) bool { return res.Failed[i].Path < res.Failed[j].Path })
	sort.Slice(bad, func(i, j int) bool { return bad[i].Pack.String() < bad[j].Pack.String() })
	res.DamagedPacks = bad
	var lists string
	if len(p.lost) > 0 {
		lists = fmt.Sprintf(", and %d folders or sets of files whose lists are damaged", len(p.lost))
	}
	// ErrCorrupt too: the repository is damaged.
	return res, fmt.Errorf("%w: %d messages and %d other files%s; %w%s",
		ErrIncomplete, msgs, len(failed)-msgs, lists, archive.ErrCorrupt, packList(bad))
}

// packList names the first damaged packs for an error message.
func packList(bad []DamagedPack) string {
	const shown = 5
	var b strings.Builder
	for i, d := range bad {
		if i == shown {
			fmt.Fprintf(&b, " and %d more", len(bad)-shown)
			break
		}
		sep := ", "
		if i == 0 {
			sep = ": packs "
		}
		b.WriteString(sep + d.Pack.String())
	}
	return b.String()
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
	// --message names a Maildir unique name or a Message-ID; the latter is
	// compared in the form the backup recorded (mailmeta.MessageID).
	msgFilter, msgID := strings.Trim(opt.Message, "<>"), mailmeta.MessageID(opt.Message)
	if opt.Message != "" && msgFilter == "" {
		return nil, fmt.Errorf("restore: --message %q names no message", opt.Message)
	}
	for _, root := range snap.Roots {
		// The non-message files that go with the selection: all of them
		// for a whole snapshot, those inside a user's Maildir for --user
		// (uid lists, subscriptions, sieve scripts), and those directly in
		// the folder's directory for --folder. None for a single message.
		var sel fileSelection
		sel.all = opt.User == "" && opt.Folder == "" && msgFilter == ""
		found, err := findByMessageID(ctx, repo, &root, msgID)
		if err != nil {
			return nil, err
		}
		for i, f := range root.Folders {
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
			dir := pathJoin(root.Name, f.Dir)
			if dir == "" {
				dir = "."
			}
			var msgs []archive.Message
			if found != nil {
				if msgs = found[i]; msgs == nil {
					continue
				}
			} else {
				t, err := repo.LoadFolderTree(ctx, f.Tree)
				if sv, ok := repo.(salvager); ok && damaged(err) {
					// A damaged page of a paged tree costs only the
					// messages it lists.
					var lost []archive.PageRef
					if t, lost, err = sv.LoadFolderTreeSalvage(ctx, f.Tree); err == nil {
						for _, pg := range lost {
							p.lost = append(p.lost, Failure{Kind: "folder page", Path: dir, User: f.User, Folder: f.Folder,
								Err: fmt.Sprintf("page %s of its list (%d messages from %q) is damaged", pg.ID.Short(), pg.Messages, pg.First)})
						}
					}
				}
				if damaged(err) {
					// Which messages the folder held is lost with its
					// tree; the other folders are restored.
					p.lost = append(p.lost, Failure{Kind: "folder", Path: dir, User: f.User, Folder: f.Folder, Err: err.Error()})
					continue
				}
				if err != nil {
					return nil, err
				}
				msgs = t.Messages
			}
			added := false
			for i := range msgs {
				m := &msgs[i]
				if msgFilter != "" && m.Unique != msgFilter && m.MessageID != msgID {
					continue
				}
				fl := &file{rel: pathJoin(dir, m.Subdir()+"/"+m.FileName()), tmpDir: pathJoin(dir, "tmp"), mode: 0o600, mtime: m.MTime, size: m.Size, blobs: m.Blobs,
					msg: &message{user: f.User, folder: f.Folder, unique: m.Unique, messageID: m.MessageID, subject: m.Subject}}
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
		if damaged(err) {
			dir := root.Name
			if dir == "" {
				dir = "."
			}
			p.lost = append(p.lost, Failure{Kind: "files", Path: dir, Err: err.Error()})
			continue
		}
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
				p.files = append(p.files, &file{rel: rel, tmpDir: path.Dir(rel), mode: fs.FileMode(e.Mode).Perm(), mtime: e.MTime, size: e.Size, blobs: e.Blobs})
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

// tempPrefix starts the names files are written under until complete.
// A dot name: Maildir readers and mailvault's backup skip it.
const tempPrefix = ".mailvault-restore-"

// handle returns a handle for writing blobs into f, from the worker's
// open handles or else by creating f's temporary file (the first worker
// to get one of its blobs) or opening it again (workers reading other
// packs), never through a symlink. It returns nil if f has failed.
func (w *writer) handle(f *file, open map[*file]*os.File) (*os.File, error) {
	if fd := open[f]; fd != nil {
		return fd, nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failed != "" {
		return nil, nil
	}
	var fd *os.File
	var err error
	if f.tmp == "" {
		fd, err = w.create(f)
	} else if fd, err = os.OpenFile(f.tmp, os.O_WRONLY|syscallNoFollow, 0); err != nil {
		err = fmt.Errorf("restore %s: %w", f.rel, err)
	}
	if err != nil {
		return nil, err
	}
	open[f] = fd
	return fd, nil
}

// create makes f's temporary file; f.mu is held. A message's goes in its
// folder's tmp/, where Maildir writers keep what they have not delivered
// yet (and Dovecot removes leftovers after 36 hours), so that a restore
// into a live Maildir never shows a half-written message; another file's
// goes beside it, under a dot name. The name is short whatever the
// final name's length.
func (w *writer) create(f *file) (*os.File, error) {
	if err := w.mkdirAll(f.tmpDir, 0o700); err != nil {
		return nil, err
	}
	if err := w.mkdirAll(path.Dir(f.rel), 0o700); err != nil {
		return nil, err
	}
	dir := w.abs(f.tmpDir)
	for try := 0; ; try++ {
		p := filepath.Join(dir, fmt.Sprintf("%s%016x", tempPrefix, rand.Uint64()))
		// O_EXCL also refuses a symlink planted under the name.
		fd, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscallNoFollow, f.mode|0o200)
		if errors.Is(err, fs.ErrExist) && try < 10 {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("restore %s: %w", f.rel, err)
		}
		f.tmp = p
		return fd, nil
	}
}

// discard gives f up for why: its temporary file is removed and no
// worker writes to it again. It reports whether f was not given up
// before.
func (w *writer) discard(f *file, why string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failed != "" {
		return false, nil
	}
	f.failed = why
	return true, f.removeTemp()
}

// removeTemp removes f's temporary file, if any; f.mu is held or the
// workers are done.
func (f *file) removeTemp() error {
	if f.tmp == "" {
		return nil
	}
	err := os.Remove(f.tmp)
	f.tmp = ""
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("restore %s: remove temporary file: %w", f.rel, err)
	}
	return nil
}

// finish completes f, whose every blob was written and verified through
// fd: it sets the mode and times and hands f to the committer, which
// renames it into place. Only the worker that wrote f's last blob calls
// it, and a file with all its blobs cannot have failed, so f.tmp is read
// without the lock.
func (w *writer) finish(f *file, fd *os.File, c *committer) error {
	if f.mode != f.mode|0o200 || f.mode&0o077 != 0 {
		// Created as mode|0o200 and subject to the umask.
		if err := fd.Chmod(f.mode); err != nil {
			return fmt.Errorf("restore %s: %w", f.rel, err)
		}
	}
	if c.syncEach {
		if err := fd.Sync(); err != nil {
			return fmt.Errorf("restore %s: %w", f.rel, err)
		}
	}
	t := time.Unix(0, f.mtime)
	if err := os.Chtimes(f.tmp, t, t); err != nil {
		return fmt.Errorf("restore %s: %w", f.rel, err)
	}
	c.add(f)
	return nil
}

// rename moves f's complete temporary file to f's name. It never writes
// through a symlink at the final name: it replaces the link. With
// Overwrite it replaces an old file in one step (a reader sees the old
// content or the new, never a mix); without, it refuses to replace
// anything.
func (w *writer) rename(f *file) error {
	final := w.abs(f.rel)
	var err error
	if w.overwrite {
		err = os.Rename(f.tmp, final)
	} else {
		err = renameNoReplace(f.tmp, final)
	}
	if err != nil {
		return fmt.Errorf("restore %s: %w", f.rel, err)
	}
	f.tmp = ""
	return nil
}

// committer renames complete files into place, a batch at a time: one
// sync of the target's file system (syncfs) makes a whole batch's content
// durable before any of its names appears, so that a crash of the machine
// cannot leave a file with its final name and without its content (ext4
// and XFS may write a rename before the data of a new file). A batch is
// whatever completed while the previous one was being synced, so the
// workers go on writing while the disk catches up. An fsync per file made
// a full restore 1.3 times as long; the batches cost nothing measurable
// (docs/PERFORMANCE.md, "Restore: temporary names").
type committer struct {
	w *writer
	// sync makes everything written to the target's file system durable;
	// where there is no syncfs, syncEach makes finish fsync each file
	// instead and sync does nothing.
	sync     func() error
	syncEach bool

	mu      sync.Mutex
	pending []*file
	wake    chan struct{} // a token when pending grew
}

func newCommitter(w *writer, target *os.File) *committer {
	c := &committer{w: w, wake: make(chan struct{}, 1)}
	if sync := syncFS(target); sync != nil {
		c.sync = sync
	} else {
		c.syncEach, c.sync = true, func() error { return nil }
	}
	return c
}

func (c *committer) add(f *file) {
	c.mu.Lock()
	c.pending = append(c.pending, f)
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// run commits batches until closed is closed and the last batch is in,
// then syncs once more so that the names, too, are durable when the
// restore reports success. It stops at the first error or when ctx ends;
// the caller removes the temporary files of the files not committed.
func (c *committer) run(ctx context.Context, closed <-chan struct{}) error {
	for {
		last := false
		select {
		case <-c.wake:
		case <-closed:
			last = true
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		c.mu.Lock()
		batch := c.pending
		c.pending = nil
		c.mu.Unlock()
		if len(batch) > 0 {
			if err := c.sync(); err != nil {
				return fmt.Errorf("restore: sync: %w", err)
			}
			for _, f := range batch {
				if err := c.w.rename(f); err != nil {
					return err
				}
			}
		}
		if last {
			if err := c.sync(); err != nil {
				return fmt.Errorf("restore: sync: %w", err)
			}
			return nil
		}
	}
}

type blobUse struct {
	f   *file
	off int64
}

// targetError marks an error of writing the target (disk full, no
// permission), which ends a restore, apart from an error of reading a
// pack, after which the restore goes on without the pack's files.
type targetError struct{ err error }

func (e *targetError) Error() string { return e.err.Error() }
func (e *targetError) Unwrap() error { return e.err }

// damaged reports whether err from reading a pack means the pack cannot
// give its blobs (rather than, say, the network being down): it does not
// authenticate or match its index entries, or it is gone.
// salvager reads what is left of a paged folder tree with damaged pages
// (archive.Repository).
type salvager interface {
	LoadFolderTreeSalvage(ctx context.Context, id archive.ID) (*archive.FolderTree, []archive.PageRef, error)
}

// messageFinder is the Message-ID index lookup of archive.Repository.
type messageFinder interface {
	FindMessage(ctx context.Context, root *archive.SourceRoot, messageID string) ([]archive.FoundMessage, bool, error)
}

// findByMessageID looks filter up in the root's Message-ID index (a
// filter with an '@' is taken for a Message-ID) and returns the messages
// it names by folder index. nil means: read every folder's tree — no
// filter, no index, a damaged index, or nothing found (the filter may be
// a unique name after all).
func findByMessageID(ctx context.Context, repo Repository, root *archive.SourceRoot, filter string) (map[int][]archive.Message, error) {
	fm, ok := repo.(messageFinder)
	if !ok || !strings.Contains(filter, "@") {
		return nil, nil
	}
	hits, indexed, err := fm.FindMessage(ctx, root, filter)
	if damaged(err) {
		return nil, nil
	}
	if err != nil || !indexed || len(hits) == 0 {
		return nil, err
	}
	found := map[int][]archive.Message{}
	for _, h := range hits {
		found[h.Folder] = append(found[h.Folder], h.Message)
	}
	return found, nil
}

func damaged(err error) bool {
	return errors.Is(err, archive.ErrCorrupt) || errors.Is(err, archive.ErrNotExist)
}

// writeFiles writes every file under a temporary name, filling the files
// pack by pack, and renames each to its name when all its blobs are
// written. A file that needs a blob of a damaged pack, or one no pack
// holds, is given up and the restore goes on; it returns those files and
// the damaged packs. Any other error ends the restore, and the temporary
// files of the files not complete then are removed.
func (w *writer) writeFiles(ctx context.Context, repo Repository, p *plan, opt Options) (failed []*file, bad []DamagedPack, err error) {
	idx := repo.Index()
	uses := map[archive.ID][]blobUse{}
	packBlobs := map[archive.ID][]archive.PackedBlob{}
	var packOrder []archive.ID
	var prog Progress
	defer func() {
		if err == nil {
			return
		}
		// The workers and the committer are done: nothing else touches
		// the files.
		for _, f := range p.files {
			_ = f.removeTemp()
		}
	}()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var errOnce sync.Once
	var firstErr error
	fail := func(err error) {
		errOnce.Do(func() { firstErr = err; cancel() })
	}
	targetDir, err := os.Open(w.target)
	if err != nil {
		return nil, nil, fmt.Errorf("restore target: %w", err)
	}
	defer targetDir.Close()
	c := newCommitter(w, targetDir)
	closed := make(chan struct{})
	committed := make(chan struct{})
	go func() {
		defer close(committed)
		if err := c.run(ctx, closed); err != nil {
			fail(err)
		}
	}()
	var closeOnce sync.Once
	stopCommitter := func() {
		closeOnce.Do(func() { close(closed) })
		<-committed
	}
	// Whatever happens below, the committer ends before the cleanup
	// above (deferred earlier, run later), and after an error it renames
	// nothing more.
	defer func() {
		if err != nil {
			cancel()
		}
		stopCommitter()
	}()
	for _, f := range p.files {
		if err := archive.CheckRelPath(f.rel); err != nil {
			return nil, nil, err
		}
		if err := archive.CheckRelPath(f.tmpDir); err != nil && f.tmpDir != "." {
			return nil, nil, err
		}
		prog.FilesTotal++
		prog.BytesTotal += f.size
		located := make([]archive.PackedBlob, len(f.blobs))
		packs := make([]archive.ID, len(f.blobs))
		for i, b := range f.blobs {
			pack, pb, ok := idx.Lookup(b)
			if !ok {
				f.failed = fmt.Sprintf("blob %s is not in any pack", b)
				break
			}
			packs[i], located[i] = pack, pb
		}
		if f.failed != "" {
			failed = append(failed, f)
			continue
		}
		var off int64
		for i, pb := range located {
			if _, seen := uses[pb.ID]; !seen {
				if _, ok := packBlobs[packs[i]]; !ok {
					packOrder = append(packOrder, packs[i])
				}
				packBlobs[packs[i]] = append(packBlobs[packs[i]], pb)
			}
			uses[pb.ID] = append(uses[pb.ID], blobUse{f, off})
			off += int64(pb.RawLength)
		}
		f.remaining.Store(int32(len(f.blobs)))
		if len(f.blobs) == 0 {
			open := map[*file]*os.File{}
			fd, err := w.handle(f, open)
			if err != nil {
				return nil, nil, err
			}
			err = w.finish(f, fd, c)
			if cerr := fd.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return nil, nil, err
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
	work := make(chan archive.ID)
	var wg sync.WaitGroup
	// mu guards failed, bad and the progress report.
	var mu sync.Mutex
	// giveUp discards the files that need blobs of pack that were not
	// delivered (got) when reading it failed with why.
	giveUp := func(pack archive.ID, got map[archive.ID]bool, why error) error {
		mu.Lock()
		bad = append(bad, DamagedPack{Pack: pack, Err: why.Error()})
		mu.Unlock()
		reason := fmt.Sprintf("pack %s is damaged", pack)
		if errors.Is(why, archive.ErrNotExist) {
			reason = fmt.Sprintf("pack %s is missing", pack)
		}
		for _, b := range packBlobs[pack] {
			if got[b.ID] {
				continue
			}
			for _, u := range uses[b.ID] {
				first, err := w.discard(u.f, reason)
				if err != nil {
					return err
				}
				if first {
					mu.Lock()
					failed = append(failed, u.f)
					mu.Unlock()
				}
			}
		}
		return nil
	}
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
						first = &targetError{fmt.Errorf("restore %s: %w", f.rel, err)}
					}
					delete(open, f)
				}
				return first
			}
			for pack := range work {
				// got records the blobs delivered: a damaged pack may
				// give some before failing, and files whose blobs all
				// came are complete.
				got := make(map[archive.ID]bool, len(packBlobs[pack]))
				err := repo.ReadBlobs(ctx, pack, packBlobs[pack], func(b archive.PackedBlob, data []byte) error {
					got[b.ID] = true
					for _, u := range uses[b.ID] {
						fd, err := w.handle(u.f, open)
						if err != nil {
							return &targetError{err}
						}
						if fd == nil {
							continue // failed for another pack
						}
						if _, err := fd.WriteAt(data, u.off); err != nil {
							return &targetError{fmt.Errorf("restore %s: %w", u.f.rel, err)}
						}
						bytesDone.Add(int64(len(data)))
						if u.f.remaining.Add(-1) == 0 {
							err := w.finish(u.f, fd, c)
							delete(open, u.f)
							if cerr := fd.Close(); err == nil && cerr != nil {
								err = fmt.Errorf("restore %s: %w", u.f.rel, cerr)
							}
							if err != nil {
								return &targetError{err}
							}
							filesDone.Add(1)
						}
					}
					return nil
				})
				if cerr := closeAll(); err == nil {
					err = cerr
				}
				var te *targetError
				switch {
				case err == nil:
				case errors.As(err, &te):
					fail(te.err)
				case ctx.Err() != nil:
					fail(ctx.Err())
				case damaged(err):
					if err := giveUp(pack, got, err); err != nil {
						fail(err)
					}
				default:
					fail(err)
				}
				mu.Lock()
				report()
				mu.Unlock()
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
	stopCommitter()
	if firstErr != nil {
		return nil, nil, firstErr
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	return failed, bad, nil
}
