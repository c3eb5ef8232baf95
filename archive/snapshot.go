package archive

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
)

// Message is one mail message in a folder tree. It is what later features
// (search, legal holds, single-message restore) know about a message
// without reading its content.
type Message struct {
	// Unique is the Maildir unique name: the part of the file name before
	// ":2,". It identifies the message across flag changes and moves.
	Unique string `json:"unique"`
	Flags  string `json:"flags"`
	// New is set for messages in new/ (not yet seen by a client).
	New bool `json:"new,omitempty"`
	// MTime is the file's modification time (the delivery time, as Maildir
	// writers set it), in Unix nanoseconds.
	MTime int64 `json:"mtime"`
	Size  int64 `json:"size"`
	// Blobs, concatenated, are the message: the header block first, then
	// the body (one blob, or content-defined chunks of a large body).
	Blobs []ID `json:"blobs"`

	From      []string `json:"from,omitempty"`
	To        []string `json:"to,omitempty"`
	Cc        []string `json:"cc,omitempty"`
	Subject   string   `json:"subject,omitempty"`
	Date      string   `json:"date,omitempty"` // RFC 3339, from the Date header
	MessageID string   `json:"message_id,omitempty"`

	// Name is the file name, kept only when it is not the one FileName
	// derives from Unique, Flags and New (an info part in new/, none in
	// cur/, unsorted flags, a '!' separator ...), so that a restore gives
	// back the very name the message had.
	Name string `json:"name,omitempty"`

	// UniqueRaw and NameRaw are the wire form of Unique and Name when
	// those are not valid UTF-8 (rawnames.go): set only while encoding,
	// consumed while decoding.
	UniqueRaw []byte `json:"unique_raw,omitempty"`
	NameRaw   []byte `json:"name_raw,omitempty"`

	// diskName is the file name in the source during a backup.
	diskName string
	// folderDir is, for a parent snapshot's message during a backup, the
	// Dir of the folder it was in (to count moves as changes).
	folderDir string
	// unchanged is set during a backup on a message taken from the
	// parent with the same name in the same folder: what the parent's
	// page holds (see storeFolder).
	unchanged bool
}

// FileName is the Maildir file name to restore the message under.
func (m *Message) FileName() string {
	if m.Name != "" {
		return m.Name
	}
	if m.New && m.Flags == "" {
		return m.Unique
	}
	return m.Unique + ":2," + m.Flags
}

// Subdir is "new" or "cur".
func (m *Message) Subdir() string {
	if m.New {
		return "new"
	}
	return "cur"
}

// FolderTree is a Maildir folder's message list, sorted by unique name.
// Version 1 (still read) is one tree blob holding every message. Version
// 2, which backups write, holds the messages itself when they make one
// page, and else lists page blobs (folderPage) of a few hundred messages
// each, cut where the message's unique name says (pageCut): a flag change
// in a 20,000-message folder then stores one page and a short page list
// instead of the whole list again, and the unchanged pages deduplicate.
type FolderTree struct {
	Version  int       `json:"version"`
	Messages []Message `json:"messages"`
	// Pages are the page blobs of a version 2 tree; LoadFolderTree has
	// read them into Messages. Walkers that keep or copy blobs (prune,
	// check, copy, repair) must take them along with the tree.
	Pages []PageRef `json:"pages,omitempty"`
}

// PageRef is an entry of a version 2 tree's page list.
type PageRef struct {
	ID ID `json:"id"`
	// Messages is how many messages the page holds, First the unique
	// name of its first one: pages are in unique-name order, so a lookup
	// by unique name reads only the page whose range holds it.
	Messages int    `json:"messages"`
	First    string `json:"first"`
	// FirstRaw is First's wire twin when it is not UTF-8 (rawnames.go).
	FirstRaw []byte `json:"first_raw,omitempty"`
}

// folderTreeV2 is the JSON of a version 2 tree blob: messages or pages,
// never both (an empty folder has neither).
type folderTreeV2 struct {
	Version  int       `json:"version"`
	Messages []Message `json:"messages,omitempty"`
	Pages    []PageRef `json:"pages,omitempty"`
}

// folderPage is the JSON of a page blob of a version 2 tree.
type folderPage struct {
	Page     int       `json:"page"` // the page format, 1
	Messages []Message `json:"messages"`
}

const (
	// folderTreeVersion is the version of the trees a backup writes.
	folderTreeVersion = 3
	// pageSpread is the mean number of messages a page holds: a page
	// ends after a message whose unique name hashes to 0 mod pageSpread.
	// A page holding a given message has about twice that on average;
	// a flag change rewrites that page (~20 KiB of JSON at 300 bytes a
	// message) and the page list (~100 bytes a page). 32 rather than
	// 128: an incremental after 1 % of the messages changed (a few
	// changes in most folders) rewrote most pages of most folders; with
	// pages a quarter the size it writes 40 % fewer bytes and encodes 40 %
	// fewer messages, for 1.2 % more repository after a full backup
	// (more, smaller pages compress a little worse; docs/PERFORMANCE.md,
	// "incr1pct"). Every cut of 128 is one of 32 too.
	pageSpread = 32
	// pageMax ends a page that has gone on this long without a cut (a
	// run of unlucky names), so that no page is unbounded.
	pageMax = 1024
)

// pageCut reports whether a page ends after the message with unique name
// u. It depends on u alone, so inserting, removing or changing a message
// changes only the page it is in (and, for a cut message, its neighbour).
func pageCut(u string) bool {
	h := sha256.Sum256([]byte(u))
	return h[0]%pageSpread == 0
}

// splitPages cuts a folder's sorted messages into pages.
func splitPages(msgs []Message) [][]Message {
	var pages [][]Message
	start := 0
	for i := range msgs {
		if pageCut(msgs[i].Unique) || i+1-start >= pageMax {
			pages = append(pages, msgs[start:i+1])
			start = i + 1
		}
	}
	if start < len(msgs) {
		pages = append(pages, msgs[start:])
	}
	return pages
}

// saveFolderTree stores msgs (sorted by unique name) as a tree of the
// given version (2 or 3; backups write folderTreeVersion, tests the older
// one) through save, which stores one tree blob: its pages first, then the
// tree that names them, so that a tree in the repository never names a
// page that is not (docs/FORMAT.md "Write order").
func saveFolderTree(ctx context.Context, msgs []Message, version int, save func(context.Context, []byte) (ID, error)) (ID, error) {
	return saveFolderTreeReusing(ctx, msgs, version, save, nil)
}

// saveFolderTreeReusing is saveFolderTree where reuse, if not nil, may
// give for a page the ID of a stored page of the same messages (and of
// the same version), which is then named without encoding the page again:
// an incremental backup rewrote every page of every folder it listed,
// most of them unchanged.
func saveFolderTreeReusing(ctx context.Context, msgs []Message, version int, save func(context.Context, []byte) (ID, error), reuse func([]Message) (ID, bool)) (ID, error) {
	pages := splitPages(msgs)
	if len(pages) <= 1 {
		raw, err := encodeFolderTree(version, msgs, nil)
		if err != nil {
			return ID{}, err
		}
		return save(ctx, raw)
	}
	refs := make([]PageRef, 0, len(pages))
	for _, pg := range pages {
		if reuse != nil {
			if id, ok := reuse(pg); ok {
				refs = append(refs, PageRef{ID: id, Messages: len(pg), First: pg[0].Unique})
				continue
			}
		}
		var raw []byte
		var err error
		if version == 3 {
			raw, err = encodePageV3(pg)
		} else {
			raw, err = encodeTree(folderPage{Page: 1, Messages: pg})
		}
		if err != nil {
			return ID{}, err
		}
		id, err := save(ctx, raw)
		if err != nil {
			return ID{}, err
		}
		refs = append(refs, PageRef{ID: id, Messages: len(pg), First: pg[0].Unique})
	}
	raw, err := encodeFolderTree(version, nil, refs)
	if err != nil {
		return ID{}, err
	}
	return save(ctx, raw)
}

// encodeFolderTree is a version 2 or 3 tree blob holding msgs or listing
// the pages refs.
func encodeFolderTree(version int, msgs []Message, refs []PageRef) ([]byte, error) {
	if version == 3 {
		return encodeTreeV3(msgs, refs)
	}
	return encodeTree(folderTreeV2{Version: 2, Messages: msgs, Pages: refs})
}

// FileEntry is a plain file, symlink or directory of the source tree that
// is not a message (uid lists, subscriptions, configuration ...).
type FileEntry struct {
	Path  string `json:"path"` // slash path relative to the source root
	Type  string `json:"type"` // "file", "dir" or "symlink"
	Mode  uint32 `json:"mode"` // permission bits
	MTime int64  `json:"mtime"`
	// CTime and Ino are the inode change time and number: a file
	// rewritten with its old size and mtime (rsync -t, tar, touch -r, or
	// twice within the mtime granularity) still gets a new ctime.
	CTime int64  `json:"ctime,omitempty"`
	Ino   uint64 `json:"ino,omitempty"`
	Size  int64  `json:"size,omitempty"`
	Link  string `json:"link,omitempty"`
	Blobs []ID   `json:"blobs,omitempty"`

	// PathRaw and LinkRaw: wire form of Path and Link when not valid
	// UTF-8 (rawnames.go).
	PathRaw []byte `json:"path_raw,omitempty"`
	LinkRaw []byte `json:"link_raw,omitempty"`
}

// FilesTree is the content of the tree blob listing a root's other files.
type FilesTree struct {
	Version int         `json:"version"`
	Entries []FileEntry `json:"entries"`
}

// DirStamp is what a folder's cur/ or new/ directory looked like; when it
// has not changed since the parent snapshot, the folder is not listed
// again (every Maildir change — delivery, flag rename, move, expunge —
// changes the directory's mtime and ctime).
type DirStamp struct {
	Ino   uint64 `json:"ino"`
	MTime int64  `json:"mtime"`
	CTime int64  `json:"ctime"`
}

// FolderEntry is one folder of one user in a snapshot.
type FolderEntry struct {
	User     string   `json:"user"`
	Folder   string   `json:"folder"`
	Dir      string   `json:"dir"` // slash path relative to the root
	Tree     ID       `json:"tree"`
	Messages int64    `json:"messages"`
	Bytes    int64    `json:"bytes"`
	Cur      DirStamp `json:"cur"`
	New      DirStamp `json:"new"`
	// Listed is when the backup read Cur and New (Unix nanoseconds; for a
	// source read through a snapshot view, the backup's start). A stamp
	// more than 2 s older than that cannot be shared by a change the
	// listing missed, so the next backup may trust it; snapshots without
	// it are judged by their start time, which for a long backup of a
	// live server made most folders "racy" and listed again.
	Listed int64 `json:"listed,omitempty"`

	// UserRaw, FolderRaw and DirRaw: wire form of User, Folder and Dir
	// when not valid UTF-8 (rawnames.go).
	UserRaw   []byte `json:"user_raw,omitempty"`
	FolderRaw []byte `json:"folder_raw,omitempty"`
	DirRaw    []byte `json:"dir_raw,omitempty"`
}

// SourceRoot is one backed-up path.
type SourceRoot struct {
	// Path is the absolute source path.
	Path string `json:"path"`
	// Name is where the root is restored below the target: "" when the
	// snapshot has a single root, else a unique base name.
	Name    string        `json:"name"`
	Folders []FolderEntry `json:"folders"`
	Files   ID            `json:"files"`
	// MessageIndex is the root of the Message-ID index of the root's
	// messages (msgindex.go); nil in snapshots from before it.
	MessageIndex *ID `json:"message_index,omitempty"`

	// PathRaw and NameRaw: wire form of Path and Name when not valid
	// UTF-8 (rawnames.go).
	PathRaw []byte `json:"path_raw,omitempty"`
	NameRaw []byte `json:"name_raw,omitempty"`
}

// Summary is what a backup did.
type Summary struct {
	Messages          int64   `json:"messages"`
	MessagesNew       int64   `json:"messages_new"`
	MessagesChanged   int64   `json:"messages_changed"` // flags or folder changed, content reused
	Folders           int64   `json:"folders"`
	FoldersUnchanged  int64   `json:"folders_unchanged"` // not even listed again
	Files             int64   `json:"files"`
	FilesNew          int64   `json:"files_new"`
	BytesTotal        int64   `json:"bytes_total"`       // size of everything in the snapshot
	BytesRead         int64   `json:"bytes_read"`        // content bytes read from the source
	BytesNew          int64   `json:"bytes_new"`         // plaintext of blobs added
	BytesStored       int64   `json:"bytes_stored"`      // the same after compression
	DedupRatio        float64 `json:"dedup_ratio"`       // bytes read / bytes new (≥ 1)
	CompressionRatio  float64 `json:"compression_ratio"` // bytes new / bytes stored
	Errors            int64   `json:"errors"`            // unreadable entries (skipped)
	DurationSeconds   float64 `json:"duration_seconds"`
	PacksWritten      int64   `json:"packs_written"`
	BlobsNew          int64   `json:"blobs_new"`
	BlobsDeduplicated int64   `json:"blobs_deduplicated"`
}

// Snapshot is the content of a snapshot file.
type Snapshot struct {
	Version  int          `json:"version"`
	Time     time.Time    `json:"time"`
	EndTime  time.Time    `json:"end_time"`
	Host     string       `json:"host"`
	Tags     []string     `json:"tags,omitempty"`
	Parent   *ID          `json:"parent,omitempty"`
	Roots    []SourceRoot `json:"roots"`
	Summary  Summary      `json:"summary"`
	ID       ID           `json:"-"`
	Paths    []string     `json:"paths"`
	Partial  bool         `json:"partial,omitempty"` // some entries could not be read
	Program  string       `json:"program,omitempty"`
	Username string       `json:"username,omitempty"`
}

// decodeSnapshot parses and validates a snapshot file's JSON; names inside
// are checked so that a hostile manifest cannot direct a restore outside
// its target.
func decodeSnapshot(plain []byte) (*Snapshot, error) {
	var s Snapshot
	if err := json.Unmarshal(plain, &s); err != nil {
		return nil, err
	}
	if s.Version != 1 && s.Version != 2 {
		return nil, fmt.Errorf("unsupported snapshot version %d", s.Version)
	}
	s.decodeRaw()
	for i := range s.Roots {
		if err := checkRoot(&s.Roots[i]); err != nil {
			return nil, err
		}
	}
	return &s, nil
}

// checkRoot validates the names of a snapshot root and its folders. A
// backup runs it on what it is about to store, and every reader on what
// it decoded, so that a name the backup accepts is one a restore takes.
func checkRoot(root *SourceRoot) error {
	if root.Name != "" {
		if err := CheckFileName(root.Name); err != nil {
			return fmt.Errorf("root name: %w", err)
		}
	}
	for _, f := range root.Folders {
		if err := checkFolder(&f); err != nil {
			return err
		}
	}
	return nil
}

func checkFolder(f *FolderEntry) error {
	if err := CheckRelPath(f.Dir); err != nil {
		return fmt.Errorf("folder %q: %w", f.Folder, err)
	}
	return nil
}

// CheckRelPath rejects a manifest path that could escape the restore
// target: absolute paths, "..", empty or NUL-containing components. Every
// other byte is allowed, as Linux allows it in a name: a backslash (which
// Dovecot writes itself, escaping '/' in a unique name as "\057"), bytes
// that are not UTF-8, newlines. Backup checks each path with this before
// storing it and readers check it after decoding, so that nothing is
// stored that a restore would refuse.
func CheckRelPath(p string) error {
	if p == "." {
		return nil
	}
	if p == "" || strings.HasPrefix(p, "/") {
		return fmt.Errorf("unsafe path %q in manifest", p)
	}
	for c := range strings.SplitSeq(p, "/") {
		if err := CheckFileName(c); err != nil {
			return fmt.Errorf("unsafe path %q in manifest", p)
		}
	}
	return nil
}

// CheckFileName rejects a file name (one path component) that no file can
// have or that names something else: empty, ".", "..", or holding '/' or
// NUL. The maximum length is the file system's to enforce.
func CheckFileName(n string) error {
	if n == "" || n == "." || n == ".." || strings.ContainsAny(n, "/\x00") {
		return fmt.Errorf("unsafe file name %q in manifest", n)
	}
	return nil
}

// LoadSnapshot reads one snapshot.
func (r *Repository) LoadSnapshot(ctx context.Context, id ID) (*Snapshot, error) {
	plain, err := r.LoadFile(ctx, SnapshotFile, id)
	if err != nil {
		return nil, err
	}
	r.snapReads.Add(1)
	s, err := decodeSnapshot(plain)
	if err != nil {
		return nil, fmt.Errorf("snapshot %s: %w: %v", id.Short(), ErrCorrupt, err)
	}
	s.ID = id
	return s, nil
}

// Snapshots loads every readable snapshot, oldest first. Damaged snapshot
// files are skipped and their errors returned in damaged, so that one bad
// file hides none of the others (check reports them as errors).
func (r *Repository) Snapshots(ctx context.Context) (snaps []*Snapshot, damaged []error, err error) {
	ids, err := r.List(ctx, SnapshotFile)
	if err != nil {
		return nil, nil, err
	}
	snaps = make([]*Snapshot, 0, len(ids))
	for _, id := range ids {
		s, err := r.LoadSnapshot(ctx, id)
		if errors.Is(err, ErrCorrupt) {
			damaged = append(damaged, err)
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		snaps = append(snaps, s)
	}
	sort.Slice(snaps, func(i, j int) bool { return snaps[i].Time.Before(snaps[j].Time) })
	return snaps, damaged, nil
}

// SnapshotsDecoded is how many snapshot files were decoded whole (folder
// lists included) since the repository was opened; tests assert with it
// that choosing the latest snapshot decodes only the one chosen.
func (r *Repository) SnapshotsDecoded() int64 { return r.snapReads.Load() }

// snapshotHead is what choosing the latest snapshot needs of a snapshot
// file. Decoding into it skips the folder list — at 40,000 folders some
// 16 MB of JSON, which took a restore of one message at 10 M messages
// most of a second to decode per snapshot — though the JSON is still
// checked whole.
type snapshotHead struct {
	Version int       `json:"version"`
	Time    time.Time `json:"time"`
}

// latestSnapshot returns the newest snapshot, decoding only the time of
// the others. It returns nil when there is none or one cannot be read:
// FindSnapshot then decodes them all to say which.
func (r *Repository) latestSnapshot(ctx context.Context) (*Snapshot, error) {
	ids, err := r.List(ctx, SnapshotFile)
	if err != nil {
		return nil, err
	}
	if len(ids) == 1 {
		// Nothing to choose from: decoded once, not twice.
		s, err := r.LoadSnapshot(ctx, ids[0])
		if errors.Is(err, ErrCorrupt) {
			return nil, nil
		}
		return s, err
	}
	var newest ID
	var newestTime time.Time
	for _, id := range ids {
		plain, err := r.LoadFile(ctx, SnapshotFile, id)
		if errors.Is(err, ErrCorrupt) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		var h snapshotHead
		if json.Unmarshal(plain, &h) != nil {
			return nil, nil
		}
		if newest.IsNull() || h.Time.After(newestTime) {
			newest, newestTime = id, h.Time
		}
	}
	if newest.IsNull() {
		return nil, nil
	}
	s, err := r.LoadSnapshot(ctx, newest)
	if errors.Is(err, ErrCorrupt) {
		return nil, nil
	}
	return s, err
}

// ErrNoSnapshot means no snapshot matches.
var ErrNoSnapshot = errors.New("no matching snapshot")

// FindSnapshot resolves "latest" or an ID prefix (at least 4 hex digits).
func (r *Repository) FindSnapshot(ctx context.Context, ref string) (*Snapshot, error) {
	if ref == "latest" {
		if s, err := r.latestSnapshot(ctx); s != nil || err != nil {
			return s, err
		}
		all, damaged, err := r.Snapshots(ctx)
		if err != nil {
			return nil, err
		}
		if len(damaged) > 0 {
			// A snapshot that cannot be read has no time to compare:
			// it may be the newest. Quietly taking the newest readable
			// one would restore older mail and say nothing.
			hint := ""
			if len(all) > 0 {
				hint = fmt.Sprintf("; to use the newest readable one, name it: %s (%s)", all[len(all)-1].ID.Short(), all[len(all)-1].Time.Local().Format(time.DateTime))
			}
			// The damaged errors wrap ErrCorrupt.
			return nil, fmt.Errorf("latest: %d snapshot file(s) cannot be read and may be the newest: %w%s; `mailvault repair snapshots` or `forget` deals with a damaged one",
				len(damaged), errors.Join(damaged...), hint)
		}
		if len(all) == 0 {
			return nil, fmt.Errorf("latest: %w (the repository has none)", ErrNoSnapshot)
		}
		return all[len(all)-1], nil
	}
	if len(ref) < 4 {
		return nil, fmt.Errorf("snapshot %q: give at least 4 hex digits or \"latest\"", ref)
	}
	ids, err := r.List(ctx, SnapshotFile)
	if err != nil {
		return nil, err
	}
	var match []ID
	for _, id := range ids {
		if strings.HasPrefix(id.String(), strings.ToLower(ref)) {
			match = append(match, id)
		}
	}
	switch len(match) {
	case 0:
		return nil, fmt.Errorf("snapshot %q: %w", ref, ErrNoSnapshot)
	case 1:
		return r.LoadSnapshot(ctx, match[0])
	}
	return nil, fmt.Errorf("snapshot prefix %q is ambiguous (%d matches)", ref, len(match))
}

// loadTreeBlob is LoadBlob for a tree, page or Message-ID index blob,
// counted (TreeBlobsRead).
func (r *Repository) loadTreeBlob(ctx context.Context, id ID) ([]byte, error) {
	r.treeReads.Add(1)
	pack, b, ok := r.idx.Lookup(id)
	if !ok {
		return nil, fmt.Errorf("blob %s: %w: not in any index", id, ErrCorrupt)
	}
	// Through readBlobs rather than LoadBlob, whose age.DecryptReaderAt
	// asks for the pack's size and reads and opens its final chunk (and
	// allocates 64 KiB a read) before the chunk holding the blob: an
	// incremental reads the tree of every folder it lists.
	var plain []byte
	err := r.readBlobs(ctx, pack, []PackedBlob{b}, 0, func(_ PackedBlob, data []byte) error {
		plain = bytes.Clone(data) // data is only valid during the call
		return nil
	})
	return plain, err
}

// TreeBlobsRead is how many tree, page and Message-ID index blobs this
// Repository has read: what a lookup costs, for tests and benchmarks.
func (r *Repository) TreeBlobsRead() int64 { return r.treeReads.Load() }

// LoadFolderTree reads a folder's message list, following a version 2
// tree's pages.
func (r *Repository) LoadFolderTree(ctx context.Context, id ID) (*FolderTree, error) {
	t, err := r.loadFolderPages(ctx, id)
	if err != nil || len(t.Pages) == 0 {
		return t, err
	}
	pages, err := r.loadPages(ctx, id, t.Pages)
	if err != nil {
		return nil, err
	}
	n := 0
	for _, msgs := range pages {
		n += len(msgs)
	}
	t.Messages = make([]Message, 0, n)
	for _, msgs := range pages {
		t.Messages = append(t.Messages, msgs...)
	}
	return t, nil
}

// pageGap is the most unneeded bytes loadPages reads through between two
// pages of a pack rather than fetch them apart: a folder's pages are
// stored one after the other, among those of the folders stored at the
// same time.
const pageGap = 256 << 10

// loadPages reads and decodes the pages refs of tree, each pack's in one
// pass (ReadBlobs): LoadBlob opened the pack for each page — its size,
// age header and final chunk, then the 64 KiB chunk holding the page,
// each authenticated — which made reading a listed folder's pages a
// fifth of an incremental's CPU (docs/PERFORMANCE.md, "incr1pct").
// pages[i] are the messages of refs[i].
func (r *Repository) loadPages(ctx context.Context, tree ID, refs []PageRef) ([][]Message, error) {
	r.treeReads.Add(int64(len(refs)))
	slots := make(map[ID][]int, len(refs)) // a page listed twice is read once
	byPack := make(map[ID][]PackedBlob)
	var packs []ID
	for i, p := range refs {
		if _, seen := slots[p.ID]; !seen {
			pack, b, ok := r.idx.Lookup(p.ID)
			if !ok {
				return nil, fmt.Errorf("tree %s page %s: blob %s: %w: not in any index", tree.Short(), p.ID.Short(), p.ID, ErrCorrupt)
			}
			if _, ok := byPack[pack]; !ok {
				packs = append(packs, pack)
			}
			byPack[pack] = append(byPack[pack], b)
		}
		slots[p.ID] = append(slots[p.ID], i)
	}
	pages := make([][]Message, len(refs))
	for _, pack := range packs {
		err := r.readBlobs(ctx, pack, byPack[pack], pageGap, func(b PackedBlob, plain []byte) error {
			for _, i := range slots[b.ID] {
				// The messages copy what they keep: plain is only
				// valid during the call.
				msgs, err := decodeFolderPage(plain, refs[i])
				if err != nil {
					return fmt.Errorf("page %s: %w: %v", b.ID.Short(), ErrCorrupt, err)
				}
				pages[i] = msgs
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("tree %s: %w", tree.Short(), err)
		}
	}
	return pages, nil
}

// loadFolderPages reads a folder tree blob without its pages: a version 2
// tree of more than one page comes back with Pages and no Messages.
func (r *Repository) loadFolderPages(ctx context.Context, id ID) (*FolderTree, error) {
	plain, err := r.loadTreeBlob(ctx, id)
	if err != nil {
		return nil, err
	}
	t, err := decodeFolderTree(plain)
	if err != nil {
		return nil, fmt.Errorf("tree %s: %w: %v", id.Short(), ErrCorrupt, err)
	}
	return t, nil
}

// loadFolderPageOf reads the messages of one page of tree (for errors).
func (r *Repository) loadFolderPageOf(ctx context.Context, tree ID, p PageRef) ([]Message, error) {
	return loadFolderPage(ctx, tree, p, r.loadTreeBlob)
}

func loadFolderPage(ctx context.Context, tree ID, p PageRef, load func(context.Context, ID) ([]byte, error)) ([]Message, error) {
	plain, err := load(ctx, p.ID)
	if err != nil {
		return nil, fmt.Errorf("tree %s page %s: %w", tree.Short(), p.ID.Short(), err)
	}
	msgs, err := decodeFolderPage(plain, p)
	if err != nil {
		return nil, fmt.Errorf("tree %s page %s: %w: %v", tree.Short(), p.ID.Short(), ErrCorrupt, err)
	}
	return msgs, nil
}

// LoadFolderTreeSalvage is LoadFolderTree for a restore that goes on past
// damage: a page that is damaged or missing is left out and returned in
// lost, with the other pages' messages in the tree. An error is a tree
// blob that cannot be read, or a failure that is no damage.
func (r *Repository) LoadFolderTreeSalvage(ctx context.Context, id ID) (t *FolderTree, lost []PageRef, err error) {
	if t, err = r.loadFolderPages(ctx, id); err != nil {
		return nil, nil, err
	}
	if len(t.Pages) == 0 {
		return t, nil, nil
	}
	for _, p := range t.Pages {
		msgs, err := r.loadFolderPageOf(ctx, id, p)
		if errors.Is(err, ErrCorrupt) || errors.Is(err, ErrNotExist) {
			lost = append(lost, p)
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		t.Messages = append(t.Messages, msgs...)
	}
	return t, lost, nil
}

// loadFolderTree reads tree id and its pages through load (the
// repository, or a write-only host's parent cache).
func loadFolderTree(ctx context.Context, id ID, load func(context.Context, ID) ([]byte, error)) (*FolderTree, error) {
	plain, err := load(ctx, id)
	if err != nil {
		return nil, err
	}
	t, err := decodeFolderTree(plain)
	if err != nil {
		return nil, fmt.Errorf("tree %s: %w: %v", id.Short(), ErrCorrupt, err)
	}
	if len(t.Pages) == 0 {
		return t, nil
	}
	n := 0
	for _, p := range t.Pages {
		n += p.Messages
	}
	// The counts are the tree's word, not yet checked against the pages.
	t.Messages = make([]Message, 0, min(n, 1<<16))
	for _, p := range t.Pages {
		msgs, err := loadFolderPage(ctx, id, p, load)
		if err != nil {
			return nil, err
		}
		t.Messages = append(t.Messages, msgs...)
	}
	return t, nil
}

// decodeFolderTree parses a tree blob of any version. A version 2 or 3
// tree that lists pages comes back with Pages and no Messages.
func decodeFolderTree(plain []byte) (*FolderTree, error) {
	// Small folders' trees as backups write them skip encoding/json
	// (treefast.go).
	if c, ok := fastTreeV3(plain); ok {
		msgs, err := decodeColumns(&c)
		if err != nil {
			return nil, err
		}
		if err := decodeMessages(msgs); err != nil {
			return nil, err
		}
		return &FolderTree{Version: 3, Messages: msgs}, nil
	}
	// The messages are an array of objects up to version 2 and an object
	// of columns in version 3: they are parsed once the version is known.
	var w struct {
		Version  int             `json:"version"`
		Messages json.RawMessage `json:"messages"`
		Pages    []PageRef       `json:"pages"`
	}
	if err := json.Unmarshal(plain, &w); err != nil {
		return nil, err
	}
	t := FolderTree{Version: w.Version, Pages: w.Pages}
	hasMessages := len(w.Messages) > 0 && string(w.Messages) != "null"
	switch t.Version {
	case 1, 2:
		if hasMessages {
			if err := json.Unmarshal(w.Messages, &t.Messages); err != nil {
				return nil, err
			}
		}
	case 3:
		if hasMessages {
			var c messageColumns
			if err := decodeColumnsJSON(w.Messages, &c); err != nil {
				return nil, err
			}
			msgs, err := decodeColumns(&c)
			if err != nil {
				return nil, err
			}
			t.Messages = msgs
		}
	default:
		return nil, fmt.Errorf("unsupported tree version %d", t.Version)
	}
	if t.Version == 1 {
		if t.Pages != nil {
			return nil, errors.New("version 1 tree with pages")
		}
	} else {
		if len(t.Messages) > 0 && len(t.Pages) > 0 {
			return nil, errors.New("tree has both messages and pages")
		}
		if len(t.Pages) == 1 {
			return nil, errors.New("tree of one page") // written inline
		}
		for i := range t.Pages {
			p := &t.Pages[i]
			takeRaw(&p.First, &p.FirstRaw)
			if p.Messages < 1 || p.Messages > pageMax {
				return nil, fmt.Errorf("page %s: %d messages", p.ID.Short(), p.Messages)
			}
		}
	}
	if err := decodeMessages(t.Messages); err != nil {
		return nil, err
	}
	return &t, nil
}

// decodeFolderPage parses a page blob that p names: it must hold the
// number of messages p says, the first being p.First.
func decodeFolderPage(plain []byte, p PageRef) ([]Message, error) {
	// Pages as backups write them skip encoding/json (treefast.go).
	if c, ok := fastPageV3(plain); ok {
		msgs, err := decodeColumns(&c)
		if err != nil {
			return nil, err
		}
		return checkPage(msgs, p)
	}
	// Format 1 (version 2 trees) holds an array of message objects, 2
	// (version 3) an object of columns.
	var w struct {
		Page     int             `json:"page"`
		Messages json.RawMessage `json:"messages"`
	}
	if err := json.Unmarshal(plain, &w); err != nil {
		return nil, err
	}
	var msgs []Message
	switch w.Page {
	case 1:
		if err := json.Unmarshal(w.Messages, &msgs); err != nil && len(w.Messages) > 0 {
			return nil, err
		}
	case 2:
		var c messageColumns
		if err := json.Unmarshal(w.Messages, &c); err != nil && len(w.Messages) > 0 {
			return nil, err
		}
		var err error
		if msgs, err = decodeColumns(&c); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("unsupported page format %d", w.Page)
	}
	return checkPage(msgs, p)
}

// checkPage checks a decoded page's messages against p, its entry in the
// tree.
func checkPage(msgs []Message, p PageRef) ([]Message, error) {
	if err := decodeMessages(msgs); err != nil {
		return nil, err
	}
	if len(msgs) == 0 || len(msgs) != p.Messages || msgs[0].Unique != p.First {
		return nil, errors.New("page does not match its entry in the tree")
	}
	return msgs, nil
}

// decodeMessages puts the exact names back and checks the file names.
func decodeMessages(msgs []Message) error {
	for i := range msgs {
		msgs[i].decodeRaw()
		if err := CheckFileName(msgs[i].FileName()); err != nil {
			return err
		}
	}
	return nil
}

// LoadFilesTree reads a root's list of other files.
func (r *Repository) LoadFilesTree(ctx context.Context, id ID) (*FilesTree, error) {
	plain, err := r.loadTreeBlob(ctx, id)
	if err != nil {
		return nil, err
	}
	t, err := decodeFilesTree(plain)
	if err != nil {
		return nil, fmt.Errorf("tree %s: %w: %v", id.Short(), ErrCorrupt, err)
	}
	return t, nil
}

func decodeFilesTree(plain []byte) (*FilesTree, error) {
	var t FilesTree
	if err := json.Unmarshal(plain, &t); err != nil {
		return nil, err
	}
	if t.Version != 1 {
		return nil, fmt.Errorf("unsupported tree version %d", t.Version)
	}
	for i := range t.Entries {
		t.Entries[i].decodeRaw()
		if err := checkFileEntry(&t.Entries[i]); err != nil {
			return nil, err
		}
	}
	return &t, nil
}

// checkFileEntry validates an entry of a files tree: what backup stores
// and what readers accept.
func checkFileEntry(e *FileEntry) error {
	if err := CheckRelPath(e.Path); err != nil {
		return err
	}
	switch e.Type {
	case "file", "dir", "symlink":
	default:
		return fmt.Errorf("entry %q: unknown type %q", e.Path, e.Type)
	}
	return nil
}
