package archive

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/restic/chunker"

	"github.com/mailvault/mailvault/maildir"
	"github.com/mailvault/mailvault/mailmeta"
)

// BackupOptions say what to back up.
type BackupOptions struct {
	Paths []string
	Host  string
	Tags  []string
	// Parent forces the parent snapshot; nil picks the newest snapshot of
	// the same host and paths.
	Parent *ID
	// Workers read and process messages in parallel (default: 2 × cores,
	// half of them waiting on I/O at any time).
	Workers int
	// Progress, if set, is called from time to time (not concurrently).
	Progress func(Progress)
	Logger   *slog.Logger
	// ReadFrom maps a path of Paths (absolute and clean, as filepath.Abs
	// gives it) to the directory its content is read from, e.g. a ZFS
	// snapshot or hardlink view of it taken at one instant. The snapshot
	// records, and finds its parent by, the path of Paths, so backups
	// through changing views still form one history.
	ReadFrom map[string]string
	// ParentCache is the directory where a backup with a write-only key,
	// which cannot read snapshots or trees back, keeps its parent
	// snapshot's folder lists (see parentcache.go); "" backs up without a
	// parent. A full key reads its parent from the repository and ignores
	// it.
	ParentCache string
	// IgnoreInode compares files and folders with the parent's by
	// modification time and size alone, and records no inode number or
	// ctime, for sources whose inodes and ctimes change on every run
	// though their content does not: a hardlink view (snapshot.Hardlink)
	// copies the other files and recreates the directories each time,
	// keeping only their mtimes. Compared, those made every backup store
	// every other file and a new files tree again. A file or folder whose
	// mtime is within the racy window of the parent is read again (as
	// restic's --ignore-inode, plus that guard).
	IgnoreInode bool
	// Time, when set, is the time the snapshot records instead of the
	// backup's start (`backup --time`: imports of old mail, tests of
	// retention policies). Only the record changes: what counts as
	// changed since the parent is still judged by the real clock.
	Time time.Time
}

// Progress is a backup's progress so far.
type Progress struct {
	Phase         string // "scan" or "backup"
	MessagesTotal int64
	MessagesDone  int64
	BytesTotal    int64 // content bytes that have to be read
	BytesDone     int64
	Errors        int64
}

// BackupResult is the outcome of a backup.
type BackupResult struct {
	Snapshot *Snapshot
	// Warnings name every entry that could not be read; the snapshot is
	// marked partial when there are any.
	Warnings []string
}

// headerScanLimit is how far into a message we look for the end of the
// header block; a longer "header" is treated as all body.
const headerScanLimit = 256 << 10

// smallFileLimit: files up to this size are read by any worker at once;
// larger ones (up to ChunkMax in memory) by at most two, which bounds
// memory while keeping both cores busy.
const smallFileLimit = 1 << 20

type backup struct {
	r      *Repository
	opt    BackupOptions
	start  time.Time
	parent *Snapshot
	cache  *parentCache // write-only keys only
	// treeVersion is the folder tree version written (Repository.backup).
	treeVersion int
	log         *slog.Logger

	jobs chan []job     // batches: see jobQueue
	wg   sync.WaitGroup // running workers

	bufs     *bufferPool // read buffers
	chunkers sync.Pool   // *chunkState
	// bigFiles bounds how many files stream through the chunker at once:
	// each holds a ChunkMax buffer, and two keep both cores busy.
	bigFiles chan struct{}
	// direct holds the buffers of files read ahead whole (readDirect);
	// nil: none are (tests of the worker alone).
	direct *directBuffers

	mu       sync.Mutex
	warnings []string

	msgsTotal, msgsDone, bytesTotal, bytesDone, errCount atomic.Int64
	msgsNew, msgsChanged, foldersUnchanged, filesNew     atomic.Int64
	bytesRead                                            atomic.Int64
}

// job is one message or file to read and store. done is called with the
// blob IDs (or an error) when the job finishes.
type job struct {
	abs    string
	size   int64 // as listed; a file read whole is judged by it
	isMail bool
	meta   *Message // filled in for mail
	blobs  *[]ID
	done   func(error)
	// fd is the file, opened when the job was queued so that its reading
	// starts ahead of the worker (readAhead); if that open failed (open
	// is false), the worker opens it (and reports the error) itself. A
	// descriptor rather than an *os.File: os.Open costs, besides the
	// openat, a failed epoll_ctl, the fcntl calls that Fd makes and an
	// allocation with a cleanup, per message — as many system calls as
	// the reading itself for a small message (see process).
	fd   int
	open bool
	// ahead, if not nil, is the file being read whole into a buffer of
	// its own ahead of the worker (wantsDirect).
	ahead *readingAhead
}

// openAhead opens j's file and starts reading it into the page cache,
// up to what process reads at once.
func (b *backup) openAhead(j *job) {
	fd, err := openFile(j.abs)
	if err != nil {
		return
	}
	n := int64(b.r.cfg.ChunkMax)
	if j.size > 0 && j.size < n {
		n = j.size
	}
	// Never 0: to posix_fadvise that means the whole file.
	readAhead(fd, n)
	j.fd, j.open = fd, true
}

// closeFile closes a job's file that no worker will process.
func (b *backup) closeFile(j *job) {
	if j.open {
		b.finishAhead(j)
		syscall.Close(j.fd)
		j.open = false
	}
}

// openFile opens a file to read, as os.Open does but without the
// *os.File.
func openFile(name string) (int, error) {
	for {
		fd, err := syscall.Open(name, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
		if err != syscall.EINTR {
			if err != nil {
				return -1, &fs.PathError{Op: "open", Path: name, Err: err}
			}
			return fd, nil
		}
	}
}

// readWhole reads a file of want bytes (as listed) into buf, which must be
// longer, and returns how many bytes it holds: up to want, the whole file;
// len(buf), a file that grew. A read that returns exactly the listed size
// is taken as the whole file without the read of end-of-file after it: a
// read of a regular file returns less than asked only at its end, and
// that the file ends at the listed size is all that the fstat process
// made before said. So a small message costs one read.
func readWhole(fd int, buf []byte, want int) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := syscall.Read(fd, buf[n:])
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return n, err
		}
		if m <= 0 {
			break
		}
		n += m
		if n == want {
			break
		}
	}
	return n, nil
}

// jobBatch is how many jobs a worker takes at once, and jobBatchBytes
// about how many bytes of files: handing each message to a worker on
// its own cost a channel operation, and often a goroutine wake-up (futex)
// and a scheduler's spin (nanosleep), per message. A batch is sent when
// either is reached, and at the end of every folder.
const (
	jobBatch      = 16
	jobBatchBytes = smallFileLimit
)

// jobQueue collects jobs into batches for the workers.
type jobQueue struct {
	b     *backup
	jobs  []job
	bytes int64
}

// add opens j's file, starts reading it ahead and queues it, sending the
// batch when it is full. On an error (ctx cancelled) j and the unsent
// batch are done with that error.
func (q *jobQueue) add(ctx context.Context, j job) error {
	if !q.b.wantsDirect(j.size) {
		q.b.openAhead(&j)
	} else if fd, err := openFile(j.abs); err == nil {
		j.fd, j.open = fd, true
		n := directLen(j.size)
		buf := q.b.direct.tryGet(n)
		if buf == nil {
			// The budget is in files read ahead: those queued here
			// are freed only once the workers have them.
			if err := q.flush(ctx); err != nil {
				q.b.closeFile(&j)
				j.done(err)
				return err
			}
			buf = q.b.direct.get(ctx, n)
		}
		if buf != nil {
			q.b.startDirect(&j, buf)
		}
	}
	q.jobs = append(q.jobs, j)
	q.bytes += max(j.size, 0)
	if len(q.jobs) >= jobBatch || q.bytes >= jobBatchBytes {
		return q.flush(ctx)
	}
	return nil
}

// flush sends what is queued to the workers.
func (q *jobQueue) flush(ctx context.Context) error {
	if len(q.jobs) == 0 {
		return nil
	}
	batch := q.jobs
	q.jobs, q.bytes = make([]job, 0, jobBatch), 0
	select {
	case q.b.jobs <- batch:
		return nil
	case <-ctx.Done():
		for i := range batch {
			q.b.closeFile(&batch[i])
			batch[i].done(ctx.Err())
		}
		return ctx.Err()
	}
}

// Backup makes a snapshot of Maildir trees.
//
// A backup that wrote packs leaves the local cache's index table
// (IndexTableCache) up to date with its index files
// (RefreshIndexTable), so that the next command maps the table rather
// than builds it.
func (r *Repository) Backup(ctx context.Context, opt BackupOptions) (*BackupResult, error) {
	res, err := r.backup(ctx, opt, folderTreeVersion)
	if err == nil && res.Snapshot.Summary.PacksWritten > 0 {
		// After backup has returned, and its buffers collected, so that
		// the table's build reuses their memory rather than adding to
		// the backup's peak (at a million messages, 18 MB more without).
		runtime.GC()
		r.RefreshIndexTable(ctx)
	}
	return res, err
}

// backup is Backup writing folder trees of the given version: the tests
// write version 1 (the form older releases wrote) to show that such
// repositories stay readable and serve as parents.
func (r *Repository) backup(ctx context.Context, opt BackupOptions, treeVersion int) (*BackupResult, error) {
	if len(opt.Paths) == 0 {
		return nil, errors.New("nothing to back up: give at least one path")
	}
	b := &backup{r: r, opt: opt, start: time.Now(), log: opt.Logger, bigFiles: make(chan struct{}, 2), treeVersion: treeVersion}
	// The repository's counters run over its whole life; the summary is
	// about this backup only.
	st0 := r.Stats()
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	abs := make([]string, len(opt.Paths))
	for i, p := range opt.Paths {
		a, err := filepath.Abs(p)
		if err != nil {
			return nil, err
		}
		fi, err := os.Stat(a)
		if err != nil {
			return nil, fmt.Errorf("source %s: %w", p, err)
		}
		if !fi.IsDir() {
			return nil, fmt.Errorf("source %s: not a directory", p)
		}
		abs[i] = a
	}
	sort.Strings(abs)
	b.initParentCache()
	if err := b.findParent(ctx, abs); err != nil {
		return nil, err
	}

	workers := opt.Workers
	if workers <= 0 {
		workers = 2 * runtime.GOMAXPROCS(0)
	}
	// A read buffer per worker, the larger ones for the files bigFiles admits.
	b.bufs = newBufferPool(smallFileLimit, workers, cap(b.bigFiles))
	b.direct = newDirectBuffers(cmp.Or(r.bounds.readAhead, directBudget))
	// As many files open and read ahead as before batching for large
	// ones (a batch of one), a few batches of small ones.
	b.jobs = make(chan []job, 4*workers)
	for i := 0; i < workers; i++ {
		b.wg.Add(1)
		go b.worker(ctx)
	}

	recorded := b.start
	if !opt.Time.IsZero() {
		recorded = opt.Time
	}
	// Version 2: the snapshot has a Message-ID index, which a release
	// that does not know it would not keep in a prune.
	snap := &Snapshot{Version: min(b.treeVersion, 2), Time: recorded.UTC(), Host: opt.Host, Tags: opt.Tags, Paths: abs, Program: "mailvault"}
	snap.Username = os.Getenv("USER")
	if b.parent != nil {
		p := b.parent.ID
		snap.Parent = &p
	}
	names := rootNames(abs)
	for i, n := range names {
		if n != "" {
			if err := CheckFileName(n); err != nil {
				return nil, fmt.Errorf("source %s: %w", abs[i], err)
			}
		}
	}
	stopProgress := b.startProgress()
	var runErr error
	for i, a := range abs {
		root, err := b.backupRoot(ctx, a, names[i])
		if err != nil {
			runErr = err
			break
		}
		snap.Roots = append(snap.Roots, *root)
	}
	close(b.jobs)
	b.wg.Wait()
	stopProgress()
	if runErr == nil {
		runErr = ctx.Err()
	}
	if runErr != nil {
		// Blobs already queued still get written so the next run reuses
		// them; no snapshot refers to anything incomplete.
		_ = r.Flush(context.WithoutCancel(ctx))
		return nil, runErr
	}
	if err := r.Flush(ctx); err != nil {
		return nil, err
	}

	st := r.Stats()
	snap.EndTime = time.Now().UTC()
	s := &snap.Summary
	for _, root := range snap.Roots {
		for _, f := range root.Folders {
			s.Messages += f.Messages
			s.BytesTotal += f.Bytes
		}
		s.Folders += int64(len(root.Folders))
	}
	s.MessagesNew = b.msgsNew.Load()
	s.MessagesChanged = b.msgsChanged.Load()
	s.FoldersUnchanged = b.foldersUnchanged.Load()
	s.FilesNew = b.filesNew.Load()
	s.BytesRead = b.bytesRead.Load()
	s.BytesNew = st.RawBytesNew - st0.RawBytesNew
	s.BytesStored = st.StoredBytesNew - st0.StoredBytesNew
	s.BlobsNew = st.BlobsNew - st0.BlobsNew
	s.BlobsDeduplicated = st.BlobsDup - st0.BlobsDup
	s.PacksWritten = st.Packs - st0.Packs
	s.Errors = b.errCount.Load()
	s.DedupRatio = ratio(s.BytesRead, s.BytesNew)
	s.CompressionRatio = ratio(s.BytesNew, s.BytesStored)
	s.DurationSeconds = snap.EndTime.Sub(b.start).Seconds() // not from snap.Time, which --time may set
	snap.Partial = s.Errors > 0
	id, err := r.SaveJSONFile(ctx, SnapshotFile, snap)
	if err != nil {
		return nil, err
	}
	snap.ID = id
	b.saveParent(snap)
	return &BackupResult{Snapshot: snap, Warnings: b.warnings}, nil
}

func ratio(a, b int64) float64 {
	if b == 0 {
		if a == 0 {
			return 1
		}
		return 0 // everything was deduplicated: infinite, reported as 0
	}
	return float64(a) / float64(b)
}

// rootNames gives each source root a distinct directory name for restore;
// a single root restores directly into the target.
func rootNames(abs []string) []string {
	names := make([]string, len(abs))
	if len(abs) == 1 {
		return names
	}
	seen := map[string]int{}
	for i, a := range abs {
		n := filepath.Base(a)
		if n == "/" || n == "." {
			n = "root"
		}
		if c := seen[n]; c > 0 {
			seen[n]++
			n = fmt.Sprintf("%s-%d", n, c+1)
		} else {
			seen[n] = 1
		}
		names[i] = n
	}
	return names
}

func (b *backup) findParent(ctx context.Context, abs []string) error {
	if b.r.WriteOnly() {
		return b.findCachedParent(ctx, abs)
	}
	if b.opt.Parent != nil {
		s, err := b.r.LoadSnapshot(ctx, *b.opt.Parent)
		if err != nil {
			return fmt.Errorf("parent snapshot: %w", err)
		}
		b.parent = s
		return nil
	}
	all, damaged, err := b.r.Snapshots(ctx)
	if err != nil {
		return err
	}
	for _, err := range damaged {
		// A damaged snapshot must not stop new backups; check reports it.
		b.log.Warn("skipping damaged snapshot", "err", err)
	}
	for _, s := range all {
		if s.Host == b.opt.Host && slices.Equal(s.Paths, abs) {
			b.parent = s // the newest matching one wins: all is oldest first
		}
	}
	return nil
}

func (b *backup) warn(path string, err error) {
	b.errCount.Add(1)
	b.log.Warn("skipped unreadable entry", "path", path, "err", err)
	b.mu.Lock()
	b.warnings = append(b.warnings, fmt.Sprintf("%s: %v", path, err))
	b.mu.Unlock()
}

// parentRoot is what a backup takes from the parent snapshot's root of
// the same path: its folder entries (by Dir, and by user for loading a
// user's trees), its other files and its Message-ID index. It is only
// read once made, by the listings of several users at once.
type parentRoot struct {
	folders map[string]FolderEntry   // by Dir
	byUser  map[string][]FolderEntry // by User, in the parent's order
	files   map[string]FileEntry
	// index is the parent root's Message-ID index, if any.
	index *ID
}

func (b *backup) loadParentRoot(ctx context.Context, absPath string) (*parentRoot, error) {
	pr := &parentRoot{folders: map[string]FolderEntry{}, byUser: map[string][]FolderEntry{}, files: map[string]FileEntry{}}
	if b.parent == nil {
		return pr, nil
	}
	for _, root := range b.parent.Roots {
		if root.Path != absPath {
			continue
		}
		for _, f := range root.Folders {
			pr.folders[f.Dir] = f
			pr.byUser[f.User] = append(pr.byUser[f.User], f)
		}
		pr.index = root.MessageIndex
		if !root.Files.IsNull() {
			ft, err := b.loadFilesTree(ctx, root.Files)
			if err != nil {
				return nil, fmt.Errorf("parent snapshot: %w", err)
			}
			for _, e := range ft.Entries {
				pr.files[e.Path] = e
			}
		}
	}
	return pr, nil
}

// userMessages returns the parent's messages of a user's folders that are
// listed again (listed, by Dir) or gone (not in now, the Dirs of the
// user's folders now), by unique name, and the
// Message-ID index entries of those whose trees it read whole.
//
// The user's unchanged folders are not read: a folder whose cur/ and new/
// stamps match lost no file, so every message that left a folder since
// the parent — moved, or renamed for a flag change — left one that is
// listed again or gone. A file of a listed folder that is in an unchanged
// one as well is a copy, read again and deduplicated. Reading every
// folder of a user with one changed folder read four trees for one at
// 1 M messages (bench/scale.sh).
func (b *backup) userMessages(ctx context.Context, pr *parentRoot, user string, listed, now map[string]bool) (map[string]*Message, map[string][]msgEntry, map[string]*parentPages, error) {
	m := map[string]*Message{}
	old := map[string][]msgEntry{}
	pages := map[string]*parentPages{}
	for _, f := range pr.byUser[user] {
		if !listed[f.Dir] && now[f.Dir] {
			continue
		}
		t, whole, err := b.loadFolderTree(ctx, f.Tree)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("parent snapshot: %w", err)
		}
		if whole && listed[f.Dir] {
			old[f.Dir] = folderEntries(f.Dir, t.Messages)
		}
		// A parent's blobs are reused without reading the source again,
		// which is right only while they are stored. An indexed tree
		// names only stored blobs (prune keeps a tree only with every
		// blob it names, see planRepack), so only the messages of a tree
		// that is not indexed — a parent that prune did not see, such as
		// a snapshot file put back by hand after a prune — are looked up
		// one by one. Looking up every message's blobs took 5 % of a
		// 1 % incremental's CPU at 1 M messages.
		treeIndexed := b.r.idx.Has(f.Tree)
		if whole && treeIndexed && listed[f.Dir] && t.Version == b.treeVersion && t.Version == folderTreeVersion {
			pages[f.Dir] = newParentPages(f.Tree, t)
		}
		for i := range t.Messages {
			msg := &t.Messages[i]
			msg.folderDir = f.Dir
			if _, dup := m[msg.Unique]; dup {
				// Two files of the user share a unique name (a
				// hand-made copy, or "X" in new/ beside "X:2,S" in
				// cur/): which one a current file was is unknown, so
				// both are read again rather than guessed.
				m[msg.Unique] = ambiguousParent
				continue
			}
			if !treeIndexed && !b.indexed(msg.Blobs) {
				msg = unindexedParent // prune deleted what it used: read it again
			}
			m[msg.Unique] = msg
		}
	}
	return m, old, pages, nil
}

// parentPages is what storeFolder needs of a listed folder's tree in the
// parent to store only what changed: the tree, its message count, and its
// pages by the unique name of their first message.
type parentPages struct {
	tree     ID
	messages int
	pages    map[string]pageSpan
}

// pageSpan is a page of a parent's tree: its ID, how many messages it
// holds and the unique name of its last one.
type pageSpan struct {
	id   ID
	n    int
	last string
}

func newParentPages(id ID, t *FolderTree) *parentPages {
	pp := &parentPages{tree: id, messages: len(t.Messages), pages: make(map[string]pageSpan, len(t.Pages))}
	o := 0
	for _, p := range t.Pages {
		if o+p.Messages > len(t.Messages) {
			break // loadFolderTree checked the counts; never here
		}
		pp.pages[p.First] = pageSpan{id: p.ID, n: p.Messages, last: t.Messages[o+p.Messages-1].Unique}
		o += p.Messages
	}
	return pp
}

// reusePage gives the ID of the parent's page that holds exactly the
// messages of pg, unchanged. The page's messages are sorted and distinct,
// each unchanged one was in this folder of the parent, and the parent's
// page with the same first message, last message and count holds every
// message of the parent's folder between those two: the same set.
func (pp *parentPages) reusePage(pg []Message) (ID, bool) {
	sp, ok := pp.pages[pg[0].Unique]
	if !ok || sp.n != len(pg) || sp.last != pg[len(pg)-1].Unique {
		return ID{}, false
	}
	for i := range pg {
		if !pg[i].unchanged {
			return ID{}, false
		}
	}
	return sp.id, true
}

// pending is a folder from its listing until its tree is stored.
type pending struct {
	entry    FolderEntry
	messages []Message
	todo     []int // indexes into messages that must be read
	reused   bool
	// old and cur are the folder's Message-ID index entries in the
	// parent (hasOld: known) and now; cur is kept only where the
	// index could not take the folder when its tree was stored.
	old, cur []msgEntry
	hasOld   bool
	// parent is the folder's tree in the parent, if it may be reused in
	// part or whole.
	parent *parentPages
}

// userListing is one user's folders, stamped and, where they changed,
// listed against the parent. done is closed when folders and err are set;
// release lets the next user's listing start.
type userListing struct {
	done    chan struct{}
	folders []*pending
	err     error
	release func()
}

// listAhead is how many users are listed at once, ahead of the backup
// that hands their new messages to the workers: reading a parent's folder
// trees (decrypting, decompressing, decoding) takes CPU and listing cold
// directories waits on the disk, and one user at a time left the other
// core idle and the disk waiting on the CPU in turn.
const listAhead = 4

// listUsers lists the mailboxes' users, up to listAhead at once and, once
// started, no more while the listed messages not yet taken exceed the
// list window, and sends them in order. stop cancels what is still
// running and waits for it; it must be called.
func (b *backup) listUsers(ctx context.Context, absPath string, viewed bool, pr *parentRoot, mbs []maildir.Mailbox) (users <-chan *userListing, stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	out := make(chan *userListing, listAhead)
	slots := make(chan struct{}, listAhead)
	window := int64(cmp.Or(b.r.bounds.listWindow, listWindow))
	var held atomic.Int64 // messages listed and not yet taken
	var taken sync.Cond
	var takenMu sync.Mutex
	taken.L = &takenMu
	var running sync.WaitGroup
	go func() {
		defer close(out)
		for len(mbs) > 0 {
			n := 1
			for n < len(mbs) && mbs[n].User == mbs[0].User {
				n++
			}
			user := mbs[:n:n]
			mbs = mbs[n:]
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				return
			}
			takenMu.Lock()
			for held.Load() >= window && ctx.Err() == nil {
				taken.Wait()
			}
			takenMu.Unlock()
			var size int64
			u := &userListing{done: make(chan struct{})}
			u.release = func() {
				held.Add(-size)
				<-slots
				takenMu.Lock()
				taken.Broadcast()
				takenMu.Unlock()
			}
			running.Add(1)
			go func() {
				defer running.Done()
				defer close(u.done)
				u.folders, u.err = b.listUser(ctx, absPath, viewed, pr, user)
				for _, p := range u.folders {
					size += int64(len(p.messages))
				}
				held.Add(size)
			}()
			select {
			case out <- u:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, func() {
		cancel()
		takenMu.Lock()
		taken.Broadcast()
		takenMu.Unlock()
		for range out {
		}
		running.Wait()
	}
}

// listUser stamps a user's folders and lists those that changed since the
// parent against the parent's messages of those folders.
func (b *backup) listUser(ctx context.Context, absPath string, viewed bool, pr *parentRoot, mbs []maildir.Mailbox) ([]*pending, error) {
	folders := make([]*pending, 0, len(mbs))
	var changed []*pending
	for _, mb := range mbs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		p := &pending{entry: FolderEntry{User: mb.User, Folder: mb.Folder, Dir: mb.Dir}}
		if err := checkFolder(&p.entry); err != nil {
			// The check every reader of the snapshot makes: a folder it
			// would refuse would make the whole snapshot unreadable.
			b.warn(filepath.Join(absPath, filepath.FromSlash(mb.Dir)), err)
			continue
		}
		dir := filepath.Join(absPath, filepath.FromSlash(mb.Dir))
		listed := time.Now().UnixNano()
		if viewed {
			// The view is as the source was when it was taken, before
			// the backup started; changes after that are in the source.
			listed = b.start.UnixNano()
		}
		cur, curErr := dirStamp(filepath.Join(dir, "cur"))
		nw, newErr := dirStamp(filepath.Join(dir, "new"))
		if b.opt.IgnoreInode { // see BackupOptions.IgnoreInode
			cur, nw = DirStamp{MTime: cur.MTime}, DirStamp{MTime: nw.MTime}
		}
		p.entry.Cur, p.entry.New, p.entry.Listed = cur, nw, listed
		folders = append(folders, p)
		// The tree must still be indexed: prune keeps a tree only with
		// every blob it names (see planRepack), so an indexed tree is whole.
		if prev, ok := pr.folders[mb.Dir]; ok && curErr == nil && newErr == nil &&
			prev.User == mb.User && prev.Folder == mb.Folder && prev.Cur == cur && prev.New == nw &&
			!b.racyFolder(&prev) && b.r.idx.Has(prev.Tree) {
			p.entry = prev
			p.reused = true
			b.foldersUnchanged.Add(1)
			continue
		}
		changed = append(changed, p)
	}
	if len(changed) == 0 {
		return folders, nil
	}
	listed := make(map[string]bool, len(changed))
	for _, p := range changed {
		listed[p.entry.Dir] = true
	}
	now := make(map[string]bool, len(mbs))
	for _, mb := range mbs {
		now[mb.Dir] = true
	}
	parentMsgs, old, pages, err := b.userMessages(ctx, pr, mbs[0].User, listed, now)
	if err != nil {
		return nil, err
	}
	for _, p := range changed {
		p.old, p.hasOld = old[p.entry.Dir]
		p.parent = pages[p.entry.Dir]
		dir := filepath.Join(absPath, filepath.FromSlash(p.entry.Dir))
		for _, sub := range []string{"cur", "new"} {
			if err := b.listMessages(dir, p.entry.Dir, sub, parentMsgs, &p.messages); err != nil {
				b.warn(filepath.Join(dir, sub), err)
			}
		}
		for i := range p.messages {
			if p.messages[i].Blobs == nil {
				p.todo = append(p.todo, i)
				b.msgsTotal.Add(1)
				b.bytesTotal.Add(p.messages[i].Size)
			}
		}
	}
	return folders, nil
}

func (b *backup) backupRoot(ctx context.Context, absPath, name string) (*SourceRoot, error) {
	recorded := absPath
	_, viewed := b.opt.ReadFrom[absPath]
	if v, ok := b.opt.ReadFrom[absPath]; ok {
		absPath = v
	}
	tree, err := maildir.Scan(absPath)
	if err != nil {
		return nil, fmt.Errorf("scan %s: %w", absPath, err)
	}
	for _, s := range tree.Skipped {
		b.warn(filepath.Join(absPath, filepath.FromSlash(s.Path)), s.Err)
	}
	pr, err := b.loadParentRoot(ctx, recorded)
	if err != nil {
		return nil, err
	}
	root := &SourceRoot{Path: recorded, Name: name}

	b.log.Debug("scanned", "root", absPath, "mailboxes", len(tree.Mailboxes), "files", len(tree.Files), "elapsed", time.Since(b.start))
	// Folders are listed (readdir, and lstat only where the name does not
	// tell the size) a window of about listWindow messages ahead of the
	// workers that read the new ones; each folder's tree is stored once
	// its messages are in, and the folder then keeps only its entry and
	// what the Message-ID index needs of it. Listing every folder first
	// (so that the progress bar knew the total from the start) held every
	// message of the tree at once: most of a full backup's memory, 170 MB
	// at 100,000 messages. Now the total grows as folders are listed,
	// and is final from the start only below the window.
	ix := b.startMessageIndex(ctx, pr)
	defer ix.all.close()
	var treeWG sync.WaitGroup
	var treeErr error
	var treeMu sync.Mutex
	// dispatch hands a listed folder's new messages to the workers and
	// stores its tree when they are read.
	dispatch := func(p *pending) error {
		dir := filepath.Join(absPath, filepath.FromSlash(p.entry.Dir))
		var folderWG sync.WaitGroup
		failed := make([]bool, len(p.messages))
		q := jobQueue{b: b}
		for _, i := range p.todo {
			i := i
			m := &p.messages[i]
			folderWG.Add(1)
			j := job{abs: filepath.Join(dir, m.Subdir(), fileNameOnDisk(m)), size: m.Size, isMail: true, meta: m, blobs: &m.Blobs,
				done: func(err error) {
					if err != nil {
						failed[i] = true
						b.warn(filepath.Join(dir, m.Subdir(), fileNameOnDisk(m)), err)
					}
					folderWG.Done()
				}}
			if err := q.add(ctx, j); err != nil {
				return err
			}
		}
		if err := q.flush(ctx); err != nil {
			return err
		}
		p.todo = nil
		treeWG.Add(1)
		go func() {
			defer treeWG.Done()
			folderWG.Wait()
			kept := p.messages[:0]
			for i := range p.messages {
				if !failed[i] {
					kept = append(kept, p.messages[i])
				}
			}
			p.messages = kept
			if err := b.storeFolder(ctx, &p.entry, p.messages, p.parent); err != nil {
				treeMu.Lock()
				treeErr = err
				treeMu.Unlock()
			}
			if !ix.addListed(p.entry.Dir, p.messages, p.old, p.hasOld) {
				p.cur = folderEntries(p.entry.Dir, p.messages)
			}
			p.messages, p.old, p.parent = nil, nil, nil // in the stored tree now; p.entry names it
		}()
		return nil
	}
	// Listed folders are handed to the workers by a goroutine of their
	// own, the listing at most a window of messages ahead of it: the
	// workers start on the first folder while the others are listed. (The
	// listing used to stop while a window's folders were handed over,
	// and they were handed over only once listed: the 30,000 messages of
	// the large-mail corpus, below one window, took 0.15 s to list, the
	// disk and the workers idle, at the start of a 5 s backup.)
	window := cmp.Or(b.r.bounds.listWindow, listWindow)
	var (
		heldMu    sync.Mutex
		heldCond  = sync.Cond{L: &heldMu}
		held      int // listed messages not yet handed over
		abandon   atomic.Bool
		handedErr error // set by the goroutine before it ends
	)
	toHand := make(chan *pending, len(tree.Mailboxes))
	handed := make(chan struct{})
	go func() {
		defer close(handed)
		for p := range toHand {
			n := len(p.messages)
			if handedErr == nil && !abandon.Load() {
				handedErr = dispatch(p)
			}
			heldMu.Lock()
			held -= n
			heldCond.Signal()
			heldMu.Unlock()
		}
	}()
	endHanding := sync.OnceFunc(func() {
		close(toHand)
		<-handed
	})
	defer func() {
		abandon.Store(true) // an error return: what is left is not read
		endHanding()
	}()
	folders := make([]*pending, 0, len(tree.Mailboxes))
	users, stopListing := b.listUsers(ctx, absPath, viewed, pr, tree.Mailboxes)
	defer stopListing()
	for u := range users {
		<-u.done
		if u.err != nil {
			return nil, u.err
		}
		for _, p := range u.folders {
			folders = append(folders, p)
			if p.reused {
				continue
			}
			// A folder larger than the window is held whole.
			heldMu.Lock()
			for held > 0 && held+len(p.messages) > window {
				heldCond.Wait()
			}
			held += len(p.messages)
			heldMu.Unlock()
			toHand <- p
		}
		u.release()
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b.log.Debug("listed", "root", absPath, "messages to read", b.msgsTotal.Load(), "elapsed", time.Since(b.start))
	endHanding()
	if handedErr != nil {
		return nil, handedErr
	}
	files, err := b.backupFiles(ctx, absPath, tree, pr)
	if err != nil {
		return nil, err
	}
	treeWG.Wait()
	b.log.Debug("stored", "root", absPath, "elapsed", time.Since(b.start))
	if treeErr != nil {
		return nil, treeErr
	}
	root.Files = files
	changes := make([]folderChange, 0, len(folders))
	for _, p := range folders {
		root.Folders = append(root.Folders, p.entry)
		changes = append(changes, folderChange{entry: p.entry, listed: !p.reused, hasOld: p.hasOld, cur: p.cur})
	}
	if b.treeVersion == 1 {
		return root, nil // as releases before the index wrote it
	}
	if root.MessageIndex, err = b.storeMessageIndex(ctx, pr, ix, changes); err != nil {
		return nil, err
	}
	return root, nil
}

// listWindow is about how many listed messages a backup holds before it
// reads them: a listed message costs some 300–400 bytes (its Message and
// names) until its folder's tree is stored, so the listing stays near
// 12 MB however large the tree; a folder larger than the window is held
// whole.
const listWindow = 1 << 15

// folderChange is what storeMessageIndex needs of a folder: listed again
// or reused from the parent, whether the parent's index entries of it were
// known when it was listed (hasOld: then the index builder took its
// changes as its tree was stored), and, when the builder could not take
// it then, its entries now (cur).
type folderChange struct {
	entry  FolderEntry
	listed bool
	cur    []msgEntry
	hasOld bool
}

// startMessageIndex decides, before the folders are listed, how the
// root's Message-ID index is built — the parent's with a run of what
// changed, or, when the parent has none (or it cannot be read), a run of
// every message — so that a folder hands the builder its part as its
// tree is stored and keeps nothing of its messages after.
func (b *backup) startMessageIndex(ctx context.Context, pr *parentRoot) *msgIndexBuild {
	if b.treeVersion == 1 {
		return &msgIndexBuild{off: true} // as releases before the index wrote it
	}
	// As for a reused folder's tree: an indexed index root is whole (prune
	// keeps a tree blob only with everything it names), one that is not
	// may have lost its runs to a prune that did not see the parent.
	ix := &msgIndexBuild{full: pr.index == nil || !b.r.idx.Has(*pr.index)}
	// A full index's sorted runs go beside the index's spilled entries.
	ix.all.dir = b.r.idx.spill.dir
	if !ix.full {
		idx, err := loadMsgIndexRoot(ctx, *pr.index, b.loadBlob)
		if err != nil {
			b.log.Warn("the parent's Message-ID index cannot be read; building it anew", "index", pr.index.Short(), "err", err)
			ix.full = true
		} else {
			ix.parentRuns = idx.Runs
		}
	}
	return ix
}

// storeMessageIndex stores the root's Message-ID index from what the
// builder took as the folders were stored and what is left: the reused
// folders (full), the folders whose parent entries were not known when
// listed, and the folders gone since the parent. A tree that cannot be
// read (a write-only host's cache that lost it) leaves the snapshot
// without an index, rather than with one that misses messages: a restore
// by Message-ID then reads every tree.
func (b *backup) storeMessageIndex(ctx context.Context, pr *parentRoot, ix *msgIndexBuild, folders []folderChange) (*ID, error) {
	strict := func(id ID) ([]Message, bool) {
		t, err := loadFolderTree(ctx, id, b.loadBlob)
		if err != nil {
			b.log.Warn("no Message-ID index in this snapshot: a parent's folder list cannot be read; restores by Message-ID read every folder list", "tree", id.Short(), "err", err)
			return nil, false
		}
		return t.Messages, true
	}
	full := ix.full
	delta := ix.delta
	present := map[string]bool{}
	for _, f := range folders {
		present[f.entry.Dir] = true
		switch {
		case full && f.listed:
			// Taken by the builder when its tree was stored.
		case full:
			msgs, ok := strict(f.entry.Tree)
			if !ok {
				return nil, nil
			}
			ix.all.add(f.entry.Dir, msgs)
		case !f.listed:
			// Unchanged: the parent's index has it.
		case f.hasOld:
			// Its changes are in delta already.
		default:
			var old []msgEntry
			if prev, ok := pr.folders[f.entry.Dir]; ok {
				msgs, ok := strict(prev.Tree)
				if !ok {
					return nil, nil
				}
				old = folderEntries(prev.Dir, msgs)
			}
			delta = append(delta, diffEntries(old, f.cur)...)
		}
	}
	if full {
		id, err := ix.all.save(ctx, b.saveTreeBlob)
		if err != nil {
			return nil, fmt.Errorf("store Message-ID index: %w", err)
		}
		return &id, nil
	}
	for dir, prev := range pr.folders {
		if present[dir] {
			continue
		}
		// Gone since the parent: its messages left the index.
		msgs, ok := strict(prev.Tree)
		if !ok {
			return nil, nil
		}
		delta = append(delta, diffEntries(folderEntries(dir, msgs), nil)...)
	}
	if len(delta) == 0 {
		return pr.index, nil
	}
	slices.SortFunc(delta, compareMsgEntries)
	id, err := extendMsgIndex(ctx, ix.parentRuns, delta, b.loadBlob, b.saveTreeBlob)
	if err != nil {
		if errors.Is(err, ErrCorrupt) || errors.Is(err, ErrNotExist) {
			b.log.Warn("no Message-ID index in this snapshot: the parent's cannot be read; restores by Message-ID read every folder list", "err", err)
			return nil, nil
		}
		return nil, fmt.Errorf("store Message-ID index: %w", err)
	}
	return &id, nil
}

// ambiguousParent stands in a user's parent messages for a unique name
// that more than one file had.
var ambiguousParent = &Message{}

// unindexedParent stands in a user's parent messages for one whose blobs
// are not all in the index.
var unindexedParent = &Message{}

// errNotMessage is the warning for an entry of cur/ or new/ that is not
// backed up because it is not a message file.
var errNotMessage = errors.New("not a message file (a name starting with '.', a link or another non-regular file in cur/ or new/); not backed up")

// fileNameOnDisk is the name the message has in the source right now.
func fileNameOnDisk(m *Message) string { return m.diskName }

// racy reports whether a directory changed so recently that a further
// change within the filesystem's timestamp granularity could go unseen;
// such a folder is listed again even when its stamp matches.
func (b *backup) racy(s DirStamp) bool {
	if b.parent == nil {
		return true
	}
	start := b.parentStart()
	return s.MTime >= start.Add(-2*time.Second).UnixNano() || s.CTime >= start.Add(-2*time.Second).UnixNano()
}

// parentStart is when the parent backup began, for the racy windows: its
// recorded Time, unless `backup --time` dated it after its own end. Then
// its start is unknown, and the Unix epoch makes every stamp racy for
// one backup rather than trusting one from the future. (A --time in the
// past only widens the window.)
func (b *backup) parentStart() time.Time {
	if !b.parent.EndTime.IsZero() && b.parent.Time.After(b.parent.EndTime) {
		return time.Unix(0, 0)
	}
	return b.parent.Time
}

// racyFolder is racy for a parent's folder entry, judged by when that
// folder was listed (FolderEntry.Listed) where the entry says: a change
// made more than 2 s before its listing began has a stamp no later
// change can share. A live server's folders touched during a long backup
// are then listed again only if touched within 2 s of their own listing.
//
// The parent's start bounds the listing time from below (an entry the
// parent reused from its own parent keeps that one's Listed; an entry
// without one is judged by the start alone, as before Listed was kept).
func (b *backup) racyFolder(prev *FolderEntry) bool {
	if b.parent == nil {
		return true
	}
	limit := max(prev.Listed, b.parentStart().UnixNano()) - (2 * time.Second).Nanoseconds()
	return max(prev.Cur.MTime, prev.Cur.CTime, prev.New.MTime, prev.New.CTime) >= limit
}

func dirStamp(p string) (DirStamp, error) {
	fi, err := os.Lstat(p)
	if err != nil {
		return DirStamp{}, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return DirStamp{MTime: fi.ModTime().UnixNano()}, nil
	}
	return DirStamp{Ino: st.Ino, MTime: fi.ModTime().UnixNano(), CTime: st.Ctim.Nano()}, nil
}

// listMessages reads one cur/ or new/ directory. A message whose unique
// name and size match the parent snapshot's is taken from there (only its
// flags and folder may have changed, which the name tells); others are
// left with nil Blobs for the workers to read.
func (b *backup) listMessages(dir, folderDir, sub string, parent map[string]*Message, out *[]Message) error {
	d := filepath.Join(dir, sub)
	entries, err := os.ReadDir(d)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) && sub == "new" {
			return nil
		}
		return err
	}
	for _, e := range entries {
		name := e.Name()
		switch {
		case name[0] == '.':
			// Maildir readers (Dovecot, Courier) ignore dot files in
			// cur/ and new/: not a message. Said, not silently left out.
			b.warn(filepath.Join(d, name), errNotMessage)
			continue
		case !e.Type().IsRegular():
			// A symbolic link here could point anywhere; a restore
			// must not recreate it as a message. Said, not skipped
			// silently.
			b.warn(filepath.Join(d, name), fmt.Errorf("%w (%v)", errNotMessage, e.Type()))
			continue
		}
		if err := CheckFileName(name); err != nil {
			// Cannot happen for a name a directory listing gave, but
			// this is the check every reader of the tree makes: what
			// it would refuse is never stored.
			b.warn(filepath.Join(d, name), err)
			continue
		}
		n := maildir.ParseName(name)
		m := messageFromName(n, name, sub == "new")
		m.folderDir = folderDir
		prev := parent[n.Unique]
		if prev == ambiguousParent || prev == unindexedParent {
			prev = nil
		}
		if prev != nil && n.Size >= 0 && n.Size == prev.Size {
			// The ",S=" size in the name matches: no stat needed.
			b.reuse(&m, prev)
			*out = append(*out, m)
			continue
		}
		fi, err := e.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue // expunged while we listed
			}
			b.warn(filepath.Join(d, name), err)
			continue
		}
		m.Size = fi.Size()
		m.MTime = fi.ModTime().UnixNano()
		// Flag changes and moves are renames, which keep the mtime; a
		// file rewritten in place at the same size does not.
		if prev != nil && prev.Size == m.Size && prev.MTime == m.MTime {
			b.reuse(&m, prev)
		}
		*out = append(*out, m)
	}
	return nil
}

// messageFromName is the manifest entry for the message file name in new/
// (isNew) or cur/, n being the name parsed: FileName gives name back,
// whatever bytes it holds (FuzzMessageNameRoundTrip).
func messageFromName(n maildir.Name, name string, isNew bool) Message {
	m := Message{Unique: n.Unique, Flags: n.Flags, New: isNew, diskName: name}
	if m.FileName() != name {
		m.Name = name
	}
	return m
}

// indexed reports whether every blob is in the index. A parent's blobs
// are reused without reading the source again, which is right only while
// they are stored. Prune keeps everything a snapshot in the repository
// reaches, so this matters when the parent is not one prune saw — a
// write-only host's cached parent, a snapshot file put back by hand after
// a prune — and then what is gone is read and stored again.
func (b *backup) indexed(ids []ID) bool {
	for _, id := range ids {
		if !b.r.idx.Has(id) {
			return false
		}
	}
	return true
}

func (b *backup) reuse(m, prev *Message) {
	flags, isNew, name, dir, fileName := m.Flags, m.New, m.diskName, m.folderDir, m.Name
	*m = *prev
	m.Flags, m.New, m.diskName, m.folderDir, m.Name = flags, isNew, name, dir, fileName
	m.unchanged = prev.Flags == flags && prev.New == isNew && prev.folderDir == dir && prev.FileName() == m.FileName()
	if !m.unchanged {
		b.msgsChanged.Add(1)
	}
}

// storeFolder sorts a folder's messages, stores its tree (and pages) and
// fills in the entry's totals. Of parent, the folder's tree in the parent
// (nil: none to reuse), what holds the same messages unchanged is named
// again rather than encoded and stored again: the whole tree, or pages.
func (b *backup) storeFolder(ctx context.Context, e *FolderEntry, msgs []Message, parent *parentPages) error {
	sort.Slice(msgs, func(i, j int) bool { return msgs[i].Unique < msgs[j].Unique })
	e.Messages, e.Bytes = int64(len(msgs)), 0
	same := parent != nil && len(msgs) == parent.messages
	for i := range msgs {
		e.Bytes += msgs[i].Size
		same = same && msgs[i].unchanged
	}
	var id ID
	var err error
	switch {
	case b.treeVersion == 1:
		id, err = b.saveTree(ctx, FolderTree{Version: 1, Messages: msgs})
	case same:
		// As many messages, each one of the parent's in this folder
		// and distinct: the parent's folder again (listed because its
		// stamps changed or were too recent to trust).
		id = parent.tree
	case parent != nil:
		id, err = saveFolderTreeReusing(ctx, msgs, b.treeVersion, b.saveTreeBlob, parent.reusePage)
	default:
		id, err = saveFolderTree(ctx, msgs, b.treeVersion, b.saveTreeBlob)
	}
	if err != nil {
		return fmt.Errorf("store tree of %s/%s: %w", e.User, e.Folder, err)
	}
	e.Tree = id
	return nil
}

func (b *backup) worker(ctx context.Context) {
	defer b.wg.Done()
	for batch := range b.jobs {
		for _, j := range batch {
			if ctx.Err() != nil {
				b.closeFile(&j)
				j.done(ctx.Err())
				continue
			}
			j.done(b.process(ctx, j))
		}
	}
}

// process reads one file and stores its blobs. A message is split where
// its header block ends, so that copies of the same mail delivered to
// several mailboxes — which differ only in the Delivered-To/Received lines
// prepended at delivery — share their body blobs.
func (b *backup) process(ctx context.Context, j job) error {
	fd := j.fd
	if !j.open {
		var err error
		if fd, err = openFile(j.abs); err != nil {
			return err
		}
	}
	if ra := j.ahead; ra != nil {
		// Read ahead whole, unless it grew since it was listed (it
		// then fills the buffer); its mtime stays the listing's, as
		// for a small file below.
		<-ra.done
		if ra.err == nil && ra.n < len(ra.buf) {
			syscall.Close(fd)
			defer b.direct.put(ra.buf)
			b.bytesRead.Add(int64(ra.n))
			b.bytesDone.Add(int64(ra.n))
			return b.store(ctx, j, ra.buf[:ra.n], true, nil)
		}
		b.finishAhead(&j)
		if ra.err != nil {
			syscall.Close(fd)
			return &fs.PathError{Op: "read", Path: j.abs, Err: ra.err}
		}
		// It grew: read it as a file of unknown size, from the start.
		j.size = -1
	}
	// A small file is read into a buffer one byte longer than the size
	// the listing saw, so that one read says it is whole: no fstat, no
	// *os.File. Its mtime stays the listing's; where the file changed
	// since (it did if it did not end at that size), the older mtime makes
	// the next backup read it again rather than trust it.
	if j.size >= 0 && j.size < smallFileLimit && j.size < int64(b.r.cfg.ChunkMax) {
		buf := b.bufs.get(int(j.size) + 1)
		n, err := readWhole(fd, buf, int(j.size))
		if err == nil && n < len(buf) {
			syscall.Close(fd)
			defer b.bufs.put(buf)
			b.bytesRead.Add(int64(n))
			b.bytesDone.Add(int64(n))
			return b.store(ctx, j, buf[:n], true, nil)
		}
		b.bufs.put(buf)
		if err == nil {
			// It grew since it was listed: read it as a file of
			// unknown size.
			_, err = syscall.Seek(fd, 0, io.SeekStart)
		}
		if err != nil {
			syscall.Close(fd)
			return &fs.PathError{Op: "read", Path: j.abs, Err: err}
		}
	}
	f := os.NewFile(uintptr(fd), j.abs)
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	size := fi.Size()
	if size > smallFileLimit {
		// Large files are read whole (up to ChunkMax) or streamed
		// through the chunker; either holds up to ChunkMax bytes.
		select {
		case b.bigFiles <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
		defer func() { <-b.bigFiles }()
	}
	first := min(size, int64(b.r.cfg.ChunkMax))
	buf := b.bufs.get(int(first))
	defer b.bufs.put(buf)
	n, err := io.ReadFull(f, buf)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return err
	}
	buf = buf[:n]
	b.bytesRead.Add(int64(n))
	b.bytesDone.Add(int64(n))
	whole := int64(n) == size
	if whole && j.isMail {
		// Trust what we read over the earlier stat (a file can only
		// have grown or shrunk if someone rewrote it).
		j.meta.MTime = fi.ModTime().UnixNano()
	}
	return b.store(ctx, j, buf, whole, f)
}

// store stores a file's blobs: buf is what was read of it, whole says it
// is all of it, and rest, if not, reads what follows.
func (b *backup) store(ctx context.Context, j job, buf []byte, whole bool, rest io.Reader) error {
	var blobs []ID
	save := func(data []byte) error {
		id, _, err := b.r.SaveBlob(ctx, DataBlob, data)
		if err != nil {
			return err
		}
		blobs = append(blobs, id)
		return nil
	}
	n := len(buf)
	body := buf
	boundary := ""
	if j.isMail {
		he := mailmeta.HeaderEnd(buf[:min(len(buf), headerScanLimit)])
		meta := mailmeta.Parse(buf[:min(len(buf), headerScanLimit)])
		fillMeta(j.meta, meta)
		boundary = meta.Boundary
		if he > 0 {
			if err := save(buf[:he]); err != nil {
				return err
			}
			body = buf[he:]
		}
		j.meta.Size = int64(n)
	}
	total := int64(n)
	switch {
	case whole && (j.isMail || len(body) <= b.r.cfg.ChunkMin):
		// A message in memory is cut where its attachments begin and
		// end: the same attachment in another message — a forward, a
		// reply, a copy to a list — is then the same blob, without
		// running the chunker over it.
		for _, piece := range splitBody(body, boundary) {
			if err := save(piece); err != nil {
				return err
			}
		}
	default:
		// Content-defined chunks over the rest of the buffer and
		// whatever follows in the file.
		rd := io.Reader(bytes.NewReader(body))
		counted := &countingReader{}
		if !whole {
			counted.r = rest
			rd = io.MultiReader(rd, counted)
		}
		cs := b.chunker(rd)
		defer b.chunkers.Put(cs)
		for {
			c, err := cs.ch.Next(cs.buf)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return err
			}
			if err := save(c.Data); err != nil {
				return err
			}
		}
		b.bytesRead.Add(counted.n)
		b.bytesDone.Add(counted.n)
		total += counted.n
		if j.isMail {
			j.meta.Size = total
		}
	}
	if blobs == nil {
		// An empty file has no blobs; nil would mean "not read yet" to
		// the next backup, which would read it again every time.
		blobs = []ID{}
	}
	*j.blobs = blobs
	if j.isMail {
		b.msgsNew.Add(1)
		b.msgsDone.Add(1)
	}
	return nil
}

// chunkState is a reusable chunker and its chunk buffer (ChunkMax bytes).
type chunkState struct {
	ch  *chunker.Chunker
	buf []byte
}

func (b *backup) chunker(rd io.Reader) *chunkState {
	min, max := uint(b.r.cfg.ChunkMin), uint(b.r.cfg.ChunkMax)
	if cs, ok := b.chunkers.Get().(*chunkState); ok {
		cs.ch.ResetWithBoundaries(rd, b.r.pol, min, max)
		return cs
	}
	return &chunkState{ch: chunker.NewWithBoundaries(rd, b.r.pol, min, max), buf: make([]byte, max)}
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func fillMeta(m *Message, meta mailmeta.Meta) {
	m.From, m.To, m.Cc = meta.From, meta.To, meta.Cc
	m.Subject, m.MessageID = meta.Subject, meta.MessageID
	if !meta.Date.IsZero() {
		m.Date = meta.Date.UTC().Format(time.RFC3339)
	}
}

// backupFiles stores the root's other files (not messages) and returns the
// ID of the tree that lists them.
func (b *backup) backupFiles(ctx context.Context, absPath string, tree *maildir.Tree, pr *parentRoot) (ID, error) {
	entries := make([]FileEntry, 0, len(tree.Files)+len(tree.Dirs))
	for _, d := range tree.Dirs {
		fi, err := os.Lstat(filepath.Join(absPath, filepath.FromSlash(d)))
		if err != nil {
			b.warn(d, err)
			continue
		}
		entries = append(entries, FileEntry{Path: d, Type: "dir", Mode: uint32(fi.Mode().Perm()), MTime: fi.ModTime().UnixNano()})
	}
	var wg sync.WaitGroup
	q := jobQueue{b: b}
	failed := make([]bool, len(tree.Files))
	base := len(entries)
	entries = append(entries, make([]FileEntry, len(tree.Files))...)
	for i, rel := range tree.Files {
		abs := filepath.Join(absPath, filepath.FromSlash(rel))
		e := &entries[base+i]
		fi, err := os.Lstat(abs)
		if err != nil {
			b.warn(abs, err)
			failed[i] = true
			continue
		}
		*e = FileEntry{Path: rel, Mode: uint32(fi.Mode().Perm()), MTime: fi.ModTime().UnixNano(), Size: fi.Size()}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && !b.opt.IgnoreInode {
			e.CTime, e.Ino = st.Ctim.Nano(), st.Ino
		}
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			e.Type, e.Size = "symlink", 0
			if e.Link, err = os.Readlink(abs); err != nil {
				b.warn(abs, err)
				failed[i] = true
			}
			continue
		case !fi.Mode().IsRegular():
			failed[i] = true // sockets, FIFOs, devices: not mail data
			continue
		}
		e.Type = "file"
		if prev, ok := pr.files[rel]; ok && prev.Type == "file" && prev.Size == e.Size && prev.MTime == e.MTime &&
			prev.CTime == e.CTime && prev.Ino == e.Ino && b.indexed(prev.Blobs) &&
			!(b.opt.IgnoreInode && b.racy(DirStamp{MTime: e.MTime})) {
			e.Blobs = prev.Blobs
			continue
		}
		b.filesNew.Add(1)
		wg.Add(1)
		i := i
		j := job{abs: abs, size: e.Size, blobs: &e.Blobs, done: func(err error) {
			if err != nil {
				failed[i] = true
				b.warn(abs, err)
			}
			wg.Done()
		}}
		if err := q.add(ctx, j); err != nil {
			return ID{}, err
		}
	}
	if err := q.flush(ctx); err != nil {
		return ID{}, err
	}
	wg.Wait()
	kept := entries[:0]
	for i := range entries {
		if i >= base && failed[i-base] {
			continue
		}
		if err := checkFileEntry(&entries[i]); err != nil {
			// What every reader of the tree would refuse is not stored.
			b.warn(entries[i].Path, err)
			continue
		}
		kept = append(kept, entries[i])
	}
	sort.Slice(kept, func(i, j int) bool { return kept[i].Path < kept[j].Path })
	return b.saveTree(ctx, FilesTree{Version: 1, Entries: kept})
}

func (b *backup) startProgress() (stop func()) {
	if b.opt.Progress == nil {
		return func() {}
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	report := func() {
		b.opt.Progress(Progress{Phase: "backup", MessagesTotal: b.msgsTotal.Load(), MessagesDone: b.msgsDone.Load(),
			BytesTotal: b.bytesTotal.Load(), BytesDone: b.bytesDone.Load(), Errors: b.errCount.Load()})
	}
	go func() {
		defer close(finished)
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				report()
				return
			case <-t.C:
				report()
			}
		}
	}()
	return func() { close(done); <-finished }
}
