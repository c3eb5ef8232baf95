package archive

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"unicode/utf8"
)

// The Message-ID index of a snapshot root (SourceRoot.MessageIndex) finds
// the folder and unique name of a message by its Message-ID without
// reading every folder tree (docs/FORMAT.md "Message-ID index").
//
// It is a short list of runs, each a sorted table of entries (key, folder,
// message) in pages, like the levels of a log-structured merge tree: a
// backup adds one run holding only what changed since its parent — an
// entry per message that appeared in a folder, a "gone" entry per message
// that left one — and merges the newest runs while the newest is at least
// half the size of the one before it, so that run sizes fall by half or
// more and a lookup reads O(log n) blobs. A flag change adds nothing; a
// day of new mail adds a run of that day's messages. Runs a backup did not
// merge are the parent's blobs again and cost nothing. Within the runs the
// newest entry for a (key, folder, message) wins; a merge into the oldest
// run drops the gone entries.
//
// An entry is three hashes, 20 bytes (msgEntry): pages of them cost about
// 17 bytes a message stored, where the JSON entries of form 1 with the
// folder's dir and the unique name spelled out cost twice that, and a full
// backup holds 24 bytes a message until it stores the index. The hashes
// only narrow the search: a lookup reads the folder pages they point at
// and keeps the messages whose Message-ID is the one asked for, so a
// collision costs a page read, never a wrong answer.

const (
	// msgIndexFormat is the root's form a backup writes: 2 lists runs
	// of form 1 (JSON pages, written before) or 2 (binary pages); a
	// root of form 1 lists runs of form 1 only.
	msgIndexFormat = 2
	msgRunJSON     = 1
	msgRunBinary   = 2
	// msgPageEntries is the number of entries per page of a binary run
	// (20 KiB); the last page holds the rest. msgPageEntriesJSON is
	// that of form 1.
	msgPageEntries     = 1024
	msgPageEntriesJSON = 256
	// msgRecordSize is the bytes of an entry in a binary page, plus a
	// bit for gone.
	msgRecordSize = 8 + 4 + 8
)

type msgIndexRoot struct {
	Index int         `json:"index"` // the form, 1 or 2
	Runs  []msgRunRef `json:"runs"`  // oldest (largest) first
}

type msgRunRef struct {
	ID      ID  `json:"id"`
	Entries int `json:"entries"`
}

type msgRun struct {
	Run   int          `json:"run"` // the form, 1 or 2
	Pages []msgPageRef `json:"pages"`
}

type msgPageRef struct {
	ID      ID     `json:"id"`
	First   string `json:"first"` // key of the page's first entry, 16 hex digits
	Entries int    `json:"entries"`
}

// msgEntry is one entry of a run: a message of the folder that hashes to
// folder, whose unique name hashes to msg, has a Message-ID that hashes to
// key — or, gone, no longer has. No pointers: the garbage collector does
// not scan a table of them.
type msgEntry struct {
	key    uint64 // msgKey of the Message-ID
	msg    uint64 // msgName of the unique name
	folder uint32 // msgFolder of the folder's dir
	gone   bool
}

// msgKey is the first 8 bytes (big-endian) of the SHA-256 of a Message-ID
// as the tree stores it (no angle brackets).
func msgKey(messageID string) uint64 {
	h := sha256.Sum256([]byte(messageID))
	return binary.BigEndian.Uint64(h[:8])
}

// msgFolder is the first 4 bytes of the SHA-256 of a folder's dir.
func msgFolder(dir string) uint32 {
	h := sha256.Sum256([]byte(dir))
	return binary.BigEndian.Uint32(h[:4])
}

// msgName is a unique name's first 6 bytes (zero-padded) followed by the
// first 2 bytes of its SHA-256. The prefix finds the folder pages that may
// hold the name: Maildir names begin with the delivery time in seconds,
// whose first 6 digits narrow a folder to the messages of some 3 hours,
// mostly one page. The hash tells apart what the prefix does not, so that
// two messages of one folder with the same Message-ID (a duplicate) are
// mostly two entries; where they are one, that entry finds both.
func msgName(unique string) uint64 {
	var b [8]byte
	copy(b[:msgNamePrefixLen], unique)
	h := sha256.Sum256([]byte(unique))
	copy(b[msgNamePrefixLen:], h[:8-msgNamePrefixLen])
	return binary.BigEndian.Uint64(b[:])
}

const msgNamePrefixLen = 6

// msgNamePrefix is the name prefix msgName keeps, without the padding (a
// file name holds no NUL byte).
func msgNamePrefix(msg uint64) string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], msg)
	return strings.TrimRight(string(b[:msgNamePrefixLen]), "\x00")
}

func keyHex(key uint64) string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], key)
	return hex.EncodeToString(b[:])
}

func compareMsgEntries(a, b msgEntry) int {
	return cmp.Or(cmp.Compare(a.key, b.key), cmp.Compare(a.folder, b.folder), cmp.Compare(a.msg, b.msg))
}

func sameMsgEntry(a, b msgEntry) bool { return compareMsgEntries(a, b) == 0 }

// folderEntries are the index entries of a folder's messages, sorted;
// messages without a Message-ID have none.
func folderEntries(dir string, msgs []Message) []msgEntry {
	out := make([]msgEntry, 0, len(msgs))
	f := msgFolder(dir)
	for i := range msgs {
		if msgs[i].MessageID != "" {
			out = append(out, msgEntry{key: msgKey(msgs[i].MessageID), folder: f, msg: msgName(msgs[i].Unique)})
		}
	}
	slices.SortFunc(out, compareMsgEntries)
	return slices.CompactFunc(out, sameMsgEntry)
}

// diffEntries is what a run records for a folder that held old and now
// holds cur (both sorted): cur's entries not in old, and old's not in cur
// as gone.
func diffEntries(old, cur []msgEntry) []msgEntry {
	var out []msgEntry
	i, j := 0, 0
	for i < len(old) || j < len(cur) {
		switch {
		case j == len(cur) || i < len(old) && compareMsgEntries(old[i], cur[j]) < 0:
			e := old[i]
			e.gone = true
			out = append(out, e)
			i++
		case i == len(old) || compareMsgEntries(old[i], cur[j]) > 0:
			out = append(out, cur[j])
			j++
		default:
			i++
			j++
		}
	}
	return out
}

// blobLoader reads a tree blob's plaintext: the repository's, or a
// write-only host's parent cache.
type blobLoader func(context.Context, ID) ([]byte, error)

// blobSaver stores a tree blob's plaintext and returns its ID.
type blobSaver func(context.Context, []byte) (ID, error)

// loadDecoded reads the tree blob id through load and decodes it; a blob
// that does not decode is ErrCorrupt, named as what it was to be.
func loadDecoded[T any](ctx context.Context, id ID, load blobLoader, what string, decode func([]byte) (T, error)) (T, error) {
	var zero T
	plain, err := load(ctx, id)
	if err != nil {
		return zero, err
	}
	v, err := decode(plain)
	if err != nil {
		return zero, fmt.Errorf("%s %s: %w: %v", what, id.Short(), ErrCorrupt, err)
	}
	return v, nil
}

func loadMsgIndexRoot(ctx context.Context, id ID, load blobLoader) (*msgIndexRoot, error) {
	return loadDecoded(ctx, id, load, "message index", decodeMsgIndexRoot)
}

func decodeMsgIndexRoot(plain []byte) (*msgIndexRoot, error) {
	var root msgIndexRoot
	if err := json.Unmarshal(plain, &root); err != nil {
		return nil, err
	}
	if root.Index != 1 && root.Index != msgIndexFormat {
		return nil, fmt.Errorf("unsupported message index format %d", root.Index)
	}
	return &root, nil
}

func loadMsgRun(ctx context.Context, id ID, load blobLoader) (*msgRun, error) {
	return loadDecoded(ctx, id, load, "message index run", decodeMsgRun)
}

func decodeMsgRun(plain []byte) (*msgRun, error) {
	var run msgRun
	if err := json.Unmarshal(plain, &run); err != nil {
		return nil, err
	}
	limit := msgPageEntries
	switch run.Run {
	case msgRunJSON:
		limit = msgPageEntriesJSON
	case msgRunBinary:
	default:
		return nil, fmt.Errorf("unsupported message index run format %d", run.Run)
	}
	for _, p := range run.Pages {
		if p.Entries < 1 || p.Entries > limit {
			return nil, fmt.Errorf("page %s: %d entries", p.ID.Short(), p.Entries)
		}
	}
	return &run, nil
}

// loadMsgPage reads a page of a run of form form.
func loadMsgPage(ctx context.Context, form int, p msgPageRef, load blobLoader) ([]msgEntry, error) {
	decode := decodeMsgPage
	if form == msgRunJSON {
		decode = decodeMsgPageJSON
	}
	return loadDecoded(ctx, p.ID, load, "message index page", func(plain []byte) ([]msgEntry, error) { return decode(plain, p) })
}

// encodeMsgPage is a binary page (docs/FORMAT.md): a byte 2, then the
// entries' keys, folders and names, each a column of fixed-width
// big-endian numbers, then a bitmap of the gone ones. Columns compress
// better than records: the names' prefixes are alike, and the bitmap of
// a run without gone entries is zeros.
func encodeMsgPage(entries []msgEntry) []byte {
	n := len(entries)
	out := make([]byte, 1+msgRecordSize*n+(n+7)/8)
	out[0] = msgRunBinary
	keys, folders, names, gone := out[1:], out[1+8*n:], out[1+12*n:], out[1+20*n:]
	be := binary.BigEndian
	for i, e := range entries {
		be.PutUint64(keys[8*i:], e.key)
		be.PutUint32(folders[4*i:], e.folder)
		be.PutUint64(names[8*i:], e.msg)
		if e.gone {
			gone[i/8] |= 1 << (i % 8)
		}
	}
	return out
}

// decodeMsgPage parses a binary page that p names: p's number of entries,
// the first with p's key, strictly ascending.
func decodeMsgPage(plain []byte, p msgPageRef) ([]msgEntry, error) {
	n := p.Entries
	if n < 1 || n > msgPageEntries || len(plain) != 1+msgRecordSize*n+(n+7)/8 || plain[0] != msgRunBinary {
		return nil, errors.New("page does not match its entry in the run")
	}
	keys, folders, names, gone := plain[1:], plain[1+8*n:], plain[1+12*n:], plain[1+20*n:]
	if n%8 != 0 && gone[n/8]>>(n%8) != 0 {
		return nil, errors.New("bits past the last entry")
	}
	be := binary.BigEndian
	out := make([]msgEntry, n)
	for i := range out {
		out[i] = msgEntry{key: be.Uint64(keys[8*i:]), folder: be.Uint32(folders[4*i:]), msg: be.Uint64(names[8*i:]), gone: gone[i/8]>>(i%8)&1 != 0}
		if i > 0 && compareMsgEntries(out[i-1], out[i]) >= 0 {
			return nil, errors.New("entries out of order")
		}
	}
	if keyHex(out[0].key) != p.First {
		return nil, errors.New("page does not match its entry in the run")
	}
	return out, nil
}

// readRun reads every entry of a run.
func readRun(ctx context.Context, id ID, load blobLoader) ([]msgEntry, error) {
	run, err := loadMsgRun(ctx, id, load)
	if err != nil {
		return nil, err
	}
	var out []msgEntry
	for _, p := range run.Pages {
		entries, err := loadMsgPage(ctx, run.Run, p, load)
		if err != nil {
			return nil, err
		}
		out = append(out, entries...)
	}
	if run.Run == msgRunJSON {
		// Sorted by key, but by dir and name spelled out after it.
		slices.SortStableFunc(out, compareMsgEntries)
		out = slices.CompactFunc(out, sameMsgEntry)
	}
	return out, nil
}

// msgIndexBlobs lists every blob of the index at id: root, runs, pages.
func msgIndexBlobs(ctx context.Context, id ID, load blobLoader, walked map[ID]struct{}) ([]ID, error) {
	root, err := loadMsgIndexRoot(ctx, id, load)
	if err != nil {
		return nil, err
	}
	out := []ID{id}
	for _, r := range root.Runs {
		if _, ok := walked[r.ID]; ok {
			continue
		}
		run, err := loadMsgRun(ctx, r.ID, load)
		if err != nil {
			return nil, err
		}
		walked[r.ID] = struct{}{}
		out = append(out, r.ID)
		for _, p := range run.Pages {
			out = append(out, p.ID)
		}
	}
	return out, nil
}

// runWriter stores a sorted run a page at a time: add the entries in
// order, then finish.
type runWriter struct {
	save  blobSaver
	page  []msgEntry
	run   msgRun
	count int
}

func newRunWriter(save blobSaver) *runWriter {
	return &runWriter{save: save, page: make([]msgEntry, 0, msgPageEntries), run: msgRun{Run: msgRunBinary, Pages: []msgPageRef{}}}
}

func (w *runWriter) add(ctx context.Context, e msgEntry) error {
	w.page = append(w.page, e)
	if len(w.page) == msgPageEntries {
		return w.flush(ctx)
	}
	return nil
}

func (w *runWriter) flush(ctx context.Context) error {
	if len(w.page) == 0 {
		return nil
	}
	id, err := w.save(ctx, encodeMsgPage(w.page))
	if err != nil {
		return err
	}
	w.run.Pages = append(w.run.Pages, msgPageRef{ID: id, First: keyHex(w.page[0].key), Entries: len(w.page)})
	w.count += len(w.page)
	w.page = w.page[:0]
	return nil
}

// finish stores the last page and the run that lists the pages.
func (w *runWriter) finish(ctx context.Context) (msgRunRef, error) {
	if err := w.flush(ctx); err != nil {
		return msgRunRef{}, err
	}
	raw, err := json.Marshal(w.run)
	if err != nil {
		return msgRunRef{}, err
	}
	id, err := w.save(ctx, raw)
	return msgRunRef{ID: id, Entries: w.count}, err
}

// saveRun stores a sorted run: its pages, then the run that lists them.
func saveRun(ctx context.Context, entries []msgEntry, save blobSaver) (msgRunRef, error) {
	w := newRunWriter(save)
	for _, e := range entries {
		if err := w.add(ctx, e); err != nil {
			return msgRunRef{}, err
		}
	}
	return w.finish(ctx)
}

// msgIndexBuild gathers a backup's Message-ID index folder by folder as
// the folders' trees are stored (backup.go): of a full index (full) every
// message's entry (allMsgEntries); otherwise the changes since the
// parent's index (delta), each folder's diffed against its entries in the
// parent as it is stored, so that no folder's entries outlive it.
type msgIndexBuild struct {
	off        bool // version 1 trees: no index
	full       bool
	parentRuns []msgRunRef

	mu    sync.Mutex
	all   allMsgEntries
	delta []msgEntry
}

// addListed takes the part of a listed folder: its messages now, and its
// entries in the parent when hasOld. It reports false when it could not
// (an incremental whose parent entries of the folder are not known yet):
// the caller keeps the folder's entries for storeMessageIndex.
func (ix *msgIndexBuild) addListed(dir string, msgs []Message, old []msgEntry, hasOld bool) bool {
	switch {
	case ix.off:
		return true
	case ix.full:
		ix.mu.Lock()
		ix.all.add(dir, msgs)
		ix.mu.Unlock()
		return true
	case hasOld:
		d := diffEntries(old, folderEntries(dir, msgs))
		ix.mu.Lock()
		ix.delta = append(ix.delta, d...)
		ix.mu.Unlock()
		return true
	}
	return false
}

// msgSortRun is the number of entries a full index sorts in memory at a
// time (12 MB) before writing them as a run to its scratch file; a
// variable for tests.
var msgSortRun = 1 << 19

// allMsgEntries holds the entries of a full index until it is stored: up
// to msgSortRun on the heap, then sorted into a run of an unlinked scratch
// file (as buildTable's runs, indexruns.go), 20 bytes an entry; save
// merges the runs a page of each at a time. Holding them all cost 24 bytes
// a message and as much again while the slices grew: the largest part of
// a full backup's peak at 10 M messages (790 MB). When the scratch file
// cannot be made or written, the runs stay on the heap.
type allMsgEntries struct {
	dir     string // where the scratch file is made; "" is os.TempDir()
	pending []msgEntry
	f       *os.File
	runs    [][2]int64   // first record and entries of each run in f
	records int64        // records in f
	held    [][]msgEntry // runs on the heap: f could not be made or written
	failed  bool         // f could not be made or written
}

func (a *allMsgEntries) add(dir string, msgs []Message) {
	f := msgFolder(dir)
	for i := range msgs {
		if msgs[i].MessageID == "" {
			continue
		}
		a.pending = append(a.pending, msgEntry{key: msgKey(msgs[i].MessageID), folder: f, msg: msgName(msgs[i].Unique)})
		if len(a.pending) >= msgSortRun {
			a.flush()
		}
	}
}

// held is the number of entries on the heap (tests).
func (a *allMsgEntries) heldEntries() int {
	n := len(a.pending)
	for _, h := range a.held {
		n += len(h)
	}
	return n
}

// sortPending sorts the pending entries and drops repeats: a folder lists
// a unique name once, but the same message in cur/ and new/ of one folder
// is one entry, as folderEntries makes it — and two folders whose dirs
// share a hash are one (msgFolder).
func (a *allMsgEntries) sortPending() []msgEntry {
	slices.SortFunc(a.pending, compareMsgEntries)
	return slices.CompactFunc(a.pending, sameMsgEntry)
}

// flush writes the pending entries, sorted, as a run of the scratch file.
func (a *allMsgEntries) flush() {
	run := a.sortPending()
	if !a.failed && a.f == nil {
		f, err := os.CreateTemp(a.dir, ".tmp-msgindex-")
		if err != nil {
			a.failed = true
		} else {
			// Unlinked at once: nothing outlives the process.
			_ = os.Remove(f.Name())
			a.f = f
		}
	}
	if !a.failed {
		buf := make([]byte, 0, msgPageEntries*msgRecordSize)
		off := a.records * msgRecordSize
		for k := 0; k < len(run) && !a.failed; k += msgPageEntries {
			buf = buf[:0]
			for _, e := range run[k:min(k+msgPageEntries, len(run))] {
				buf = binary.BigEndian.AppendUint64(buf, e.key)
				buf = binary.BigEndian.AppendUint64(buf, e.msg)
				buf = binary.BigEndian.AppendUint32(buf, e.folder)
			}
			if _, err := a.f.WriteAt(buf, off); err != nil {
				a.failed = true
			}
			off += int64(len(buf))
		}
		if !a.failed {
			a.runs = append(a.runs, [2]int64{a.records, int64(len(run))})
			a.records += int64(len(run))
			a.pending = a.pending[:0]
			return
		}
	}
	a.held = append(a.held, run)
	a.pending = nil
}

// runSource reads the run at first, of n entries, back from the scratch
// file a page's worth at a time.
func (a *allMsgEntries) runSource(first, n int64) *runSource {
	buf := make([]byte, msgPageEntries*msgRecordSize)
	out := make([]msgEntry, msgPageEntries)
	return &runSource{more: func() ([]msgEntry, error) {
		k := min(n, msgPageEntries)
		if k == 0 {
			return nil, nil
		}
		b := buf[:k*msgRecordSize]
		if _, err := a.f.ReadAt(b, first*msgRecordSize); err != nil {
			return nil, fmt.Errorf("reading the Message-ID index's scratch file: %w", err)
		}
		for i := range out[:k] {
			r := b[i*msgRecordSize:]
			out[i] = msgEntry{key: binary.BigEndian.Uint64(r), msg: binary.BigEndian.Uint64(r[8:]), folder: binary.BigEndian.Uint32(r[16:])}
		}
		first += k
		n -= k
		return out[:k], nil
	}}
}

// close lets the scratch file go.
func (a *allMsgEntries) close() {
	if a.f != nil {
		a.f.Close()
		a.f = nil
	}
	a.pending, a.held, a.runs = nil, nil, nil
}

// save merges the runs and stores them as the one run of an index, as
// extendMsgIndex stores a delta without parent runs, and lets the entries
// go.
func (a *allMsgEntries) save(ctx context.Context, save blobSaver) (ID, error) {
	defer a.close()
	var srcs []*runSource
	for _, r := range a.runs {
		srcs = append(srcs, a.runSource(r[0], r[1]))
	}
	for _, h := range a.held {
		srcs = append(srcs, &runSource{entries: h})
	}
	srcs = append(srcs, &runSource{entries: a.sortPending()})
	root := msgIndexRoot{Index: msgIndexFormat, Runs: []msgRunRef{}}
	w := newRunWriter(save)
	// Entries equal in several runs are emitted once.
	if err := mergeSources(ctx, srcs, true, w.add); err != nil {
		return ID{}, err
	}
	if w.count+len(w.page) > 0 {
		ref, err := w.finish(ctx)
		if err != nil {
			return ID{}, err
		}
		root.Runs = append(root.Runs, ref)
	}
	raw, err := json.Marshal(root)
	if err != nil {
		return ID{}, err
	}
	return save(ctx, raw)
}

// extendMsgIndex stores the index that is parent's runs (nil: none) plus
// a run of delta (sorted), merged as the package comment says. Which runs
// merge is decided up front from their sizes, a merged run counted as the
// sum of its parts (gone entries may make it smaller, which keeps the
// halving), and they are merged in one pass a page of each at a time
// (runSource), so that a merge into a run of millions of entries holds a
// page of each, not the runs. A parent's run of form 1 is kept as it is
// until a merge reads it and writes it anew in form 2.
func extendMsgIndex(ctx context.Context, parent []msgRunRef, delta []msgEntry, load blobLoader, save blobSaver) (ID, error) {
	runs := slices.Clone(parent)
	first := len(runs) // the runs from first on, and delta, are merged
	if len(delta) > 0 {
		size := len(delta)
		for first > 0 && 2*size >= runs[first-1].Entries {
			first--
			size += runs[first].Entries
		}
	}
	root := msgIndexRoot{Index: msgIndexFormat, Runs: runs[:first]}
	if len(delta) > 0 {
		srcs := make([]*runSource, 0, len(runs)-first+1)
		for _, r := range runs[first:] {
			src, err := openRunSource(ctx, r.ID, load)
			if err != nil {
				return ID{}, err
			}
			srcs = append(srcs, src)
		}
		srcs = append(srcs, &runSource{entries: delta})
		w := newRunWriter(save)
		if err := mergeSources(ctx, srcs, first == 0, w.add); err != nil {
			return ID{}, err
		}
		if w.count+len(w.page) > 0 {
			ref, err := w.finish(ctx)
			if err != nil {
				return ID{}, err
			}
			root.Runs = append(root.Runs, ref)
		}
	}
	raw, err := json.Marshal(root)
	if err != nil {
		return ID{}, err
	}
	return save(ctx, raw)
}

// runSource reads a run's entries in order: a stored run of form 2 a page
// at a time, one of form 1 whole (readRun: its pages are sorted by their
// own order), or entries in memory.
type runSource struct {
	entries []msgEntry // the current page, or all
	pages   []msgPageRef
	load    blobLoader
	// more, when set, gives the next entries instead of pages; none at
	// the end (a full index's scratch runs).
	more func() ([]msgEntry, error)
}

func openRunSource(ctx context.Context, id ID, load blobLoader) (*runSource, error) {
	run, err := loadMsgRun(ctx, id, load)
	if err != nil {
		return nil, err
	}
	if run.Run == msgRunJSON {
		entries, err := readRun(ctx, id, load)
		return &runSource{entries: entries}, err
	}
	return &runSource{pages: run.Pages, load: load}, nil
}

// head returns the source's next entry; ok is false at its end.
func (s *runSource) head(ctx context.Context) (e msgEntry, ok bool, err error) {
	for len(s.entries) == 0 {
		if s.more != nil {
			if s.entries, err = s.more(); err != nil {
				return msgEntry{}, false, err
			}
			if len(s.entries) == 0 {
				s.more = nil
			}
			continue
		}
		if len(s.pages) == 0 {
			return msgEntry{}, false, nil
		}
		if s.entries, err = loadMsgPage(ctx, msgRunBinary, s.pages[0], s.load); err != nil {
			return msgEntry{}, false, err
		}
		s.pages = s.pages[1:]
	}
	return s.entries[0], true, nil
}

// mergeSources gives emit the merge of srcs (oldest first), in order: of
// entries equal in all sources the newest's; into the oldest run (bottom),
// gone entries have nothing left to hide and are dropped. A backup emits to
// a runWriter; check to a digest of the index's content.
func mergeSources(ctx context.Context, srcs []*runSource, bottom bool, emit func(context.Context, msgEntry) error) error {
	heads := make([]msgEntry, len(srcs))
	live := make([]bool, len(srcs))
	for i, s := range srcs {
		var err error
		if heads[i], live[i], err = s.head(ctx); err != nil {
			return err
		}
	}
	for {
		pick := -1 // the smallest head; of equal ones, the newest
		for i := range srcs {
			if live[i] && (pick < 0 || compareMsgEntries(heads[i], heads[pick]) <= 0) {
				pick = i
			}
		}
		if pick < 0 {
			return nil
		}
		e := heads[pick]
		if !(bottom && e.gone) {
			if err := emit(ctx, e); err != nil {
				return err
			}
		}
		for i, s := range srcs {
			if live[i] && compareMsgEntries(heads[i], e) == 0 {
				s.entries = s.entries[1:]
				var err error
				if heads[i], live[i], err = s.head(ctx); err != nil {
					return err
				}
			}
		}
	}
}

// lookupMsgIndex returns the (folder, name) entries of the index at id
// whose key is key and that no newer run says are gone.
func lookupMsgIndex(ctx context.Context, id ID, key uint64, load blobLoader) ([]msgEntry, error) {
	root, err := loadMsgIndexRoot(ctx, id, load)
	if err != nil {
		return nil, err
	}
	hexKey := keyHex(key)
	type place struct {
		folder uint32
		msg    uint64
	}
	seen := map[place]bool{}
	var out []msgEntry
	for i := len(root.Runs) - 1; i >= 0; i-- {
		run, err := loadMsgRun(ctx, root.Runs[i].ID, load)
		if err != nil {
			return nil, err
		}
		// Entries with key start in the last page whose first key is
		// below it and run on through the pages that start with it.
		k := sort.Search(len(run.Pages), func(j int) bool { return run.Pages[j].First >= hexKey })
		for j := max(k-1, 0); j < len(run.Pages) && (j < k || run.Pages[j].First == hexKey); j++ {
			entries, err := loadMsgPage(ctx, run.Run, run.Pages[j], load)
			if err != nil {
				return nil, err
			}
			for _, e := range entries {
				pl := place{e.folder, e.msg}
				if e.key != key || seen[pl] {
					continue
				}
				seen[pl] = true
				if !e.gone {
					out = append(out, e)
				}
			}
		}
	}
	return out, nil
}

// msgPageJSON is a page of a run of form 1, as backups before form 2
// wrote them; read, never written (but by tests).
type msgPageJSON struct {
	Page    int            `json:"page"` // the form, 1
	Entries []msgEntryJSON `json:"entries"`
}

// msgEntryJSON is an entry of form 1: the message with unique name Unique
// in the folder at Dir has a Message-ID whose msgKey is Key (16 hex
// digits) — or, Gone, no longer has.
type msgEntryJSON struct {
	Key    string `json:"key"`
	Dir    string `json:"dir"`
	Unique string `json:"unique"`
	Gone   bool   `json:"gone,omitempty"`
	// DirRaw and UniqueRaw are the wire twins (rawnames.go).
	DirRaw    []byte `json:"dir_raw,omitempty"`
	UniqueRaw []byte `json:"unique_raw,omitempty"`
}

func (e *msgEntryJSON) needsRaw() bool {
	return !utf8.ValidString(e.Dir) || !utf8.ValidString(e.Unique)
}

func (e *msgEntryJSON) encodeRaw() { e.DirRaw, e.UniqueRaw = rawOf(e.Dir), rawOf(e.Unique) }

func compareMsgEntriesJSON(a, b msgEntryJSON) int {
	return cmp.Or(cmp.Compare(a.Key, b.Key), cmp.Compare(a.Dir, b.Dir), cmp.Compare(a.Unique, b.Unique))
}

// decodeMsgPageJSON parses a page of form 1 that p names — p's number of
// entries, the first with p's key, all sorted as form 1 sorts them — into
// entries of form 2, in the page's order (sorted by key only).
func decodeMsgPageJSON(plain []byte, p msgPageRef) ([]msgEntry, error) {
	var pg msgPageJSON
	if err := json.Unmarshal(plain, &pg); err != nil {
		return nil, err
	}
	if pg.Page != 1 {
		return nil, fmt.Errorf("unsupported message index page format %d", pg.Page)
	}
	if len(pg.Entries) == 0 || len(pg.Entries) != p.Entries || pg.Entries[0].Key != p.First {
		return nil, errors.New("page does not match its entry in the run")
	}
	out := make([]msgEntry, len(pg.Entries))
	for i := range pg.Entries {
		e := &pg.Entries[i]
		takeRaw(&e.Dir, &e.DirRaw)
		takeRaw(&e.Unique, &e.UniqueRaw)
		if i > 0 && compareMsgEntriesJSON(pg.Entries[i-1], *e) >= 0 {
			return nil, errors.New("entries out of order")
		}
		var k [8]byte
		if len(e.Key) != 16 || strings.ToLower(e.Key) != e.Key {
			return nil, fmt.Errorf("key %q", e.Key)
		}
		if _, err := hex.Decode(k[:], []byte(e.Key)); err != nil {
			return nil, fmt.Errorf("key %q", e.Key)
		}
		out[i] = msgEntry{key: binary.BigEndian.Uint64(k[:]), folder: msgFolder(e.Dir), msg: msgName(e.Unique), gone: e.Gone}
	}
	return out, nil
}

// FoundMessage is a message FindMessage found: Folder is its index in the
// root's Folders.
type FoundMessage struct {
	Folder  int
	Message Message
}

// FindMessage finds the messages of root with Message-ID messageID (no
// angle brackets) through the root's Message-ID index, reading the index
// runs' pages that may hold it and the folder tree pages it names. ok is
// false when the root has no index (a snapshot older than the index, or
// one `repair snapshots` rewrote); the caller then reads every tree.
func (r *Repository) FindMessage(ctx context.Context, root *SourceRoot, messageID string) (found []FoundMessage, ok bool, err error) {
	if root.MessageIndex == nil {
		return nil, false, nil
	}
	entries, err := lookupMsgIndex(ctx, *root.MessageIndex, msgKey(messageID), r.loadTreeBlob)
	if err != nil {
		return nil, false, err
	}
	var folders []uint32 // msgFolder of each of root's folders, once needed
	if len(entries) > 0 {
		folders = make([]uint32, len(root.Folders))
		for i := range root.Folders {
			folders[i] = msgFolder(root.Folders[i].Dir)
		}
	}
	trees := map[ID]*FolderTree{}
	pages := map[ID][]Message{}
	for _, e := range entries {
		prefix := msgNamePrefix(e.msg)
		for i := range root.Folders {
			f := &root.Folders[i]
			if folders[i] != e.folder {
				continue
			}
			t, ok := trees[f.Tree]
			if !ok {
				if t, err = r.loadFolderPages(ctx, f.Tree); err != nil {
					return nil, false, err
				}
				trees[f.Tree] = t
			}
			var cands []Message
			if len(t.Pages) == 0 {
				cands = t.Messages
			}
			// The names with the prefix start in the last page whose
			// first name is below it and run on through the pages whose
			// first name has it.
			k := sort.Search(len(t.Pages), func(j int) bool { return t.Pages[j].First >= prefix })
			for j := max(k-1, 0); j < len(t.Pages) && (j < k || strings.HasPrefix(t.Pages[j].First, prefix)); j++ {
				p := t.Pages[j]
				msgs, ok := pages[p.ID]
				if !ok {
					if msgs, err = r.loadFolderPageOf(ctx, f.Tree, p); err != nil {
						return nil, false, err
					}
					pages[p.ID] = msgs
				}
				cands = append(cands, msgs...)
			}
			for _, m := range cands {
				if m.MessageID == messageID && msgName(m.Unique) == e.msg {
					found = append(found, FoundMessage{Folder: i, Message: m})
				}
			}
		}
	}
	return found, true, nil
}

// msgIndexAll reads every blob of the index at id, pages included (check),
// and returns the IDs of those it could name.
func (r *Repository) msgIndexAll(ctx context.Context, id ID) ([]ID, error) {
	root, err := loadMsgIndexRoot(ctx, id, r.loadTreeBlob)
	if err != nil {
		return []ID{id}, err
	}
	ids := []ID{id}
	for _, rr := range root.Runs {
		ids = append(ids, rr.ID)
		run, err := loadMsgRun(ctx, rr.ID, r.loadTreeBlob)
		if err != nil {
			return ids, err
		}
		n := 0
		for _, p := range run.Pages {
			ids = append(ids, p.ID)
			entries, err := loadMsgPage(ctx, run.Run, p, r.loadTreeBlob)
			if err != nil {
				return ids, err
			}
			n += len(entries)
		}
		if n != rr.Entries {
			return ids, fmt.Errorf("message index run %s: %w: %d entries, the index says %d", rr.ID.Short(), ErrCorrupt, n, rr.Entries)
		}
	}
	return ids, nil
}
