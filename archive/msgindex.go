package archive

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"unicode/utf8"
)

// The Message-ID index of a snapshot root (SourceRoot.MessageIndex) finds
// the folder and unique name of a message by its Message-ID without
// reading every folder tree (docs/FORMAT.md "Message-ID index").
//
// It is a short list of runs, each a sorted table of entries (key, folder
// dir, unique name) in pages, like the levels of a log-structured merge
// tree: a backup adds one run holding only what changed since its parent
// — an entry per message that appeared in a folder, a "gone" entry per
// message that left one — and merges the newest runs while the newest is
// at least half the size of the one before it, so that run sizes fall by
// half or more and a lookup reads O(log n) blobs. A flag change adds
// nothing; a day of new mail adds a run of that day's messages. Runs a
// backup did not merge are the parent's blobs again and cost nothing.
// Within the runs the newest entry for a (key, dir, unique) wins; a merge
// into the oldest run drops the gone entries.

const (
	msgIndexFormat = 1
	// msgPageEntries is the number of entries per page of a run; the
	// last page holds the rest.
	msgPageEntries = 256
)

type msgIndexRoot struct {
	Index int         `json:"index"` // the format, 1
	Runs  []msgRunRef `json:"runs"`  // oldest (largest) first
}

type msgRunRef struct {
	ID      ID  `json:"id"`
	Entries int `json:"entries"`
}

type msgRun struct {
	Run   int          `json:"run"` // the format, 1
	Pages []msgPageRef `json:"pages"`
}

type msgPageRef struct {
	ID      ID     `json:"id"`
	First   string `json:"first"` // key of the page's first entry
	Entries int    `json:"entries"`
}

type msgPage struct {
	Page    int        `json:"page"` // the format, 1
	Entries []msgEntry `json:"entries"`
}

// msgEntry is one entry of a run: the message with unique name Unique in
// the folder at Dir has a Message-ID that hashes to Key — or, Gone, no
// longer has.
type msgEntry struct {
	// Key is 16 lower-case hex digits: the first 8 bytes of the SHA-256
	// of the Message-ID as the tree stores it (no angle brackets).
	Key    string `json:"key"`
	Dir    string `json:"dir"`
	Unique string `json:"unique"`
	Gone   bool   `json:"gone,omitempty"`
	// DirRaw and UniqueRaw are the wire twins (rawnames.go).
	DirRaw    []byte `json:"dir_raw,omitempty"`
	UniqueRaw []byte `json:"unique_raw,omitempty"`
}

func msgKey(messageID string) string {
	h := sha256.Sum256([]byte(messageID))
	return hex.EncodeToString(h[:8])
}

func compareMsgEntries(a, b msgEntry) int {
	return cmp.Or(cmp.Compare(a.Key, b.Key), cmp.Compare(a.Dir, b.Dir), cmp.Compare(a.Unique, b.Unique))
}

// folderEntries are the index entries of a folder's messages, sorted;
// messages without a Message-ID have none.
func folderEntries(dir string, msgs []Message) []msgEntry {
	out := make([]msgEntry, 0, len(msgs))
	for i := range msgs {
		if msgs[i].MessageID != "" {
			out = append(out, msgEntry{Key: msgKey(msgs[i].MessageID), Dir: dir, Unique: msgs[i].Unique})
		}
	}
	slices.SortFunc(out, compareMsgEntries)
	return slices.CompactFunc(out, func(a, b msgEntry) bool { return compareMsgEntries(a, b) == 0 })
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
			e.Gone = true
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

// mergeRuns merges two sorted runs, newer's entry winning where both have
// one; into the oldest run (bottom), gone entries have nothing left to
// hide and are dropped.
func mergeRuns(older, newer []msgEntry, bottom bool) []msgEntry {
	out := make([]msgEntry, 0, len(older)+len(newer))
	add := func(e msgEntry) {
		if !(bottom && e.Gone) {
			out = append(out, e)
		}
	}
	i, j := 0, 0
	for i < len(older) || j < len(newer) {
		switch {
		case j == len(newer) || i < len(older) && compareMsgEntries(older[i], newer[j]) < 0:
			add(older[i])
			i++
		case i == len(older) || compareMsgEntries(older[i], newer[j]) > 0:
			add(newer[j])
			j++
		default:
			add(newer[j])
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

func loadMsgIndexRoot(ctx context.Context, id ID, load blobLoader) (*msgIndexRoot, error) {
	plain, err := load(ctx, id)
	if err != nil {
		return nil, err
	}
	root, err := decodeMsgIndexRoot(plain)
	if err != nil {
		return nil, fmt.Errorf("message index %s: %w: %v", id.Short(), ErrCorrupt, err)
	}
	return root, nil
}

func decodeMsgIndexRoot(plain []byte) (*msgIndexRoot, error) {
	var root msgIndexRoot
	if err := json.Unmarshal(plain, &root); err != nil {
		return nil, err
	}
	if root.Index != msgIndexFormat {
		return nil, fmt.Errorf("unsupported message index format %d", root.Index)
	}
	return &root, nil
}

func loadMsgRun(ctx context.Context, id ID, load blobLoader) (*msgRun, error) {
	plain, err := load(ctx, id)
	if err != nil {
		return nil, err
	}
	run, err := decodeMsgRun(plain)
	if err != nil {
		return nil, fmt.Errorf("message index run %s: %w: %v", id.Short(), ErrCorrupt, err)
	}
	return run, nil
}

func decodeMsgRun(plain []byte) (*msgRun, error) {
	var run msgRun
	if err := json.Unmarshal(plain, &run); err != nil {
		return nil, err
	}
	if run.Run != msgIndexFormat {
		return nil, fmt.Errorf("unsupported message index run format %d", run.Run)
	}
	for _, p := range run.Pages {
		if p.Entries < 1 || p.Entries > msgPageEntries {
			return nil, fmt.Errorf("page %s: %d entries", p.ID.Short(), p.Entries)
		}
	}
	return &run, nil
}

func loadMsgPage(ctx context.Context, p msgPageRef, load blobLoader) ([]msgEntry, error) {
	plain, err := load(ctx, p.ID)
	if err != nil {
		return nil, err
	}
	entries, err := decodeMsgPage(plain, p)
	if err != nil {
		return nil, fmt.Errorf("message index page %s: %w: %v", p.ID.Short(), ErrCorrupt, err)
	}
	return entries, nil
}

// decodeMsgPage parses a page that p names: p's number of entries, the
// first with p's key, all sorted.
func decodeMsgPage(plain []byte, p msgPageRef) ([]msgEntry, error) {
	var pg msgPage
	if err := json.Unmarshal(plain, &pg); err != nil {
		return nil, err
	}
	if pg.Page != msgIndexFormat {
		return nil, fmt.Errorf("unsupported message index page format %d", pg.Page)
	}
	if len(pg.Entries) == 0 || len(pg.Entries) != p.Entries || pg.Entries[0].Key != p.First {
		return nil, errors.New("page does not match its entry in the run")
	}
	for i := range pg.Entries {
		e := &pg.Entries[i]
		takeRaw(&e.Dir, &e.DirRaw)
		takeRaw(&e.Unique, &e.UniqueRaw)
		if i > 0 && compareMsgEntries(pg.Entries[i-1], *e) >= 0 {
			return nil, errors.New("entries out of order")
		}
	}
	return pg.Entries, nil
}

// readRun reads every entry of a run.
func readRun(ctx context.Context, id ID, load blobLoader) ([]msgEntry, error) {
	run, err := loadMsgRun(ctx, id, load)
	if err != nil {
		return nil, err
	}
	var out []msgEntry
	for _, p := range run.Pages {
		entries, err := loadMsgPage(ctx, p, load)
		if err != nil {
			return nil, err
		}
		out = append(out, entries...)
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

// saveRun stores a sorted run: its pages, then the run that lists them.
func saveRun(ctx context.Context, entries []msgEntry, save blobSaver) (msgRunRef, error) {
	return saveRunPages(ctx, len(entries), func(start, end int) []msgEntry { return entries[start:end] }, save)
}

// saveRunPages is saveRun for a run of n entries that page gives a page
// at a time (entries start to end), so that a run need not be held as
// msgEntry values whole.
func saveRunPages(ctx context.Context, n int, page func(start, end int) []msgEntry, save blobSaver) (msgRunRef, error) {
	entries := n
	run := msgRun{Run: msgIndexFormat, Pages: []msgPageRef{}}
	for start := 0; start < n; start += msgPageEntries {
		pg := page(start, min(start+msgPageEntries, n))
		raw, err := encodeTree(msgPage{Page: msgIndexFormat, Entries: pg})
		if err != nil {
			return msgRunRef{}, err
		}
		id, err := save(ctx, raw)
		if err != nil {
			return msgRunRef{}, err
		}
		run.Pages = append(run.Pages, msgPageRef{ID: id, First: pg[0].Key, Entries: len(pg)})
	}
	raw, err := json.Marshal(run)
	if err != nil {
		return msgRunRef{}, err
	}
	id, err := save(ctx, raw)
	return msgRunRef{ID: id, Entries: entries}, err
}

// msgIndexBuild gathers a backup's Message-ID index folder by folder as
// the folders' trees are stored (backup.go): of a full index (full) every
// message's entry, compactly (allMsgEntries); otherwise the changes since
// the parent's index (delta), each folder's diffed against its entries
// in the parent as it is stored, so that no folder's entries outlive it.
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

// allMsgEntries holds the entries of a run of every message in 24 bytes
// and the unique name's bytes each, where a msgEntry costs over 100 and
// three allocations (strings and hex key): the key as a number, the
// folder as an index into dirs, the unique name a span of names. No
// pointers, so the garbage collector does not scan it either. At a million
// messages about 65 MB against some 270 MB for the entries and their
// sorted copy before.
type allMsgEntries struct {
	dirs  []string
	ents  []compactMsgEntry
	names []byte
}

type compactMsgEntry struct {
	key uint64 // the first 8 bytes of the SHA-256 of the Message-ID, as msgKey's hex
	off uint64 // unique name: names[off : off+n]
	dir uint32
	n   uint32
}

func (a *allMsgEntries) add(dir string, msgs []Message) {
	d := uint32(len(a.dirs))
	a.dirs = append(a.dirs, dir)
	for i := range msgs {
		m := &msgs[i]
		if m.MessageID == "" {
			continue
		}
		h := sha256.Sum256([]byte(m.MessageID))
		a.ents = append(a.ents, compactMsgEntry{key: binary.BigEndian.Uint64(h[:8]), off: uint64(len(a.names)), dir: d, n: uint32(len(m.Unique))})
		a.names = append(a.names, m.Unique...)
	}
}

func (a *allMsgEntries) unique(e *compactMsgEntry) []byte { return a.names[e.off : e.off+uint64(e.n)] }

// compare orders as compareMsgEntries does the entries it stands for: a
// big-endian key compares as its hex digits do.
func (a *allMsgEntries) compare(x, y compactMsgEntry) int {
	return cmp.Or(cmp.Compare(x.key, y.key), cmp.Compare(a.dirs[x.dir], a.dirs[y.dir]), bytes.Compare(a.unique(&x), a.unique(&y)))
}

// save sorts the entries and stores them as the one run of an index, as
// extendMsgIndex stores a delta without parent runs, a page of msgEntry
// values made at a time.
func (a *allMsgEntries) save(ctx context.Context, save blobSaver) (ID, error) {
	slices.SortFunc(a.ents, a.compare)
	// A folder lists a unique name once; the same message twice in one
	// folder (cur/ and new/) is one entry, as folderEntries makes it.
	a.ents = slices.CompactFunc(a.ents, func(x, y compactMsgEntry) bool { return a.compare(x, y) == 0 })
	root := msgIndexRoot{Index: msgIndexFormat, Runs: []msgRunRef{}}
	if len(a.ents) > 0 {
		buf := make([]msgEntry, 0, msgPageEntries)
		ref, err := saveRunPages(ctx, len(a.ents), func(start, end int) []msgEntry {
			buf = buf[:0]
			for i := start; i < end; i++ {
				e := &a.ents[i]
				var k [8]byte
				binary.BigEndian.PutUint64(k[:], e.key)
				buf = append(buf, msgEntry{Key: hex.EncodeToString(k[:]), Dir: a.dirs[e.dir], Unique: string(a.unique(e))})
			}
			return buf
		}, save)
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
// a run of delta (sorted), merged as the package comment says.
func extendMsgIndex(ctx context.Context, parent []msgRunRef, delta []msgEntry, load blobLoader, save blobSaver) (ID, error) {
	type run struct {
		ref     msgRunRef
		entries []msgEntry // set for a run not yet stored
	}
	runs := make([]run, 0, len(parent)+1)
	for _, r := range parent {
		runs = append(runs, run{ref: r})
	}
	if len(delta) > 0 {
		runs = append(runs, run{ref: msgRunRef{Entries: len(delta)}, entries: delta})
	}
	entriesOf := func(r run) ([]msgEntry, error) {
		if r.entries != nil {
			return r.entries, nil
		}
		return readRun(ctx, r.ref.ID, load)
	}
	for n := len(runs); n >= 2 && 2*runs[n-1].ref.Entries >= runs[n-2].ref.Entries; n = len(runs) {
		older, err := entriesOf(runs[n-2])
		if err != nil {
			return ID{}, err
		}
		newer, err := entriesOf(runs[n-1])
		if err != nil {
			return ID{}, err
		}
		merged := mergeRuns(older, newer, n == 2)
		runs = runs[:n-2]
		if len(merged) > 0 {
			runs = append(runs, run{ref: msgRunRef{Entries: len(merged)}, entries: merged})
		}
	}
	root := msgIndexRoot{Index: msgIndexFormat, Runs: []msgRunRef{}}
	for _, r := range runs {
		if r.entries != nil {
			var err error
			if r.ref, err = saveRun(ctx, r.entries, save); err != nil {
				return ID{}, err
			}
		}
		root.Runs = append(root.Runs, r.ref)
	}
	raw, err := json.Marshal(root)
	if err != nil {
		return ID{}, err
	}
	return save(ctx, raw)
}

// lookupMsgIndex returns the (dir, unique) entries of the index at id
// whose key is key and that no newer run says are gone.
func lookupMsgIndex(ctx context.Context, id ID, key string, load blobLoader) ([]msgEntry, error) {
	root, err := loadMsgIndexRoot(ctx, id, load)
	if err != nil {
		return nil, err
	}
	seen := map[[2]string]bool{}
	var out []msgEntry
	for i := len(root.Runs) - 1; i >= 0; i-- {
		run, err := loadMsgRun(ctx, root.Runs[i].ID, load)
		if err != nil {
			return nil, err
		}
		// Entries with key start in the last page whose first key is
		// below it and run on through the pages that start with it.
		k := sort.Search(len(run.Pages), func(j int) bool { return run.Pages[j].First >= key })
		for j := max(k-1, 0); j < len(run.Pages) && (j < k || run.Pages[j].First == key); j++ {
			entries, err := loadMsgPage(ctx, run.Pages[j], load)
			if err != nil {
				return nil, err
			}
			for _, e := range entries {
				if e.Key != key || seen[[2]string{e.Dir, e.Unique}] {
					continue
				}
				seen[[2]string{e.Dir, e.Unique}] = true
				if !e.Gone {
					out = append(out, e)
				}
			}
		}
	}
	return out, nil
}

func (e *msgEntry) needsRaw() bool { return !utf8.ValidString(e.Dir) || !utf8.ValidString(e.Unique) }

func (e *msgEntry) encodeRaw() { e.DirRaw, e.UniqueRaw = rawOf(e.Dir), rawOf(e.Unique) }

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
	trees := map[ID]*FolderTree{}
	pages := map[ID][]Message{}
	for _, e := range entries {
		for i := range root.Folders {
			f := &root.Folders[i]
			if f.Dir != e.Dir {
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
			k := sort.Search(len(t.Pages), func(j int) bool { return t.Pages[j].First >= e.Unique })
			for j := max(k-1, 0); j < len(t.Pages) && (j < k || t.Pages[j].First == e.Unique); j++ {
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
				if m.Unique == e.Unique && m.MessageID == messageID {
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
			entries, err := loadMsgPage(ctx, p, r.loadTreeBlob)
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
