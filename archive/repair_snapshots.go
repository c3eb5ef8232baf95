package archive

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Repairing snapshots follows restic's `repair snapshots`: a snapshot
// that refers to blobs no longer stored (after RepairPacks lost them, or
// a pack went missing) or to trees that cannot be loaded is written again
// without the messages and files whose content is gone, tagged
// "repaired" and carrying the original's ID in "original" (as a copy
// does, docs/FORMAT.md "Copies between repositories"). The original is
// kept unless Forget asks to remove it, as restic keeps it unless
// --forget. Every message dropped is listed, so an admin knows what is
// lost and can look for it elsewhere.

// repairedTag is the tag a repaired snapshot carries (as restic's).
const repairedTag = "repaired"

// LostMessage is a message, or another file, of a snapshot whose content
// is gone; or a whole folder whose message list is gone.
type LostMessage struct {
	Snapshot  ID     `json:"snapshot"`
	User      string `json:"user,omitempty"`
	Folder    string `json:"folder,omitempty"`
	MessageID string `json:"message_id,omitempty"`
	Subject   string `json:"subject,omitempty"`
	Unique    string `json:"unique,omitempty"` // the Maildir unique name
	// Messages is set for a whole folder: how many it held.
	Messages int64 `json:"messages,omitempty"`
	// File is a root's other file (not a message), by path; "" with
	// Root set means all of the root's other files.
	File string `json:"file,omitempty"`
	Root string `json:"root,omitempty"`
}

func (m LostMessage) String() string {
	s := "snapshot " + m.Snapshot.Short() + " "
	switch {
	case m.Root != "" && m.File == "":
		return s + "all other files (not messages) of " + m.Root
	case m.File != "":
		return s + "file " + m.File
	case m.Unique == "":
		return fmt.Sprintf("%s%s/%s: the whole folder (%d messages; its message list is gone)", s, m.User, m.Folder, m.Messages)
	}
	id := "no Message-ID"
	if m.MessageID != "" {
		id = fmt.Sprintf("Message-ID %q", m.MessageID)
	}
	return fmt.Sprintf("%s%s/%s: %s, subject %q (%s)", s, m.User, m.Folder, id, m.Subject, m.Unique)
}

// RepairSnapshotsOptions tune RepairSnapshots.
type RepairSnapshotsOptions struct {
	// Forget removes each original snapshot once its repaired one is
	// written (restic's --forget).
	Forget bool
	// DryRun lists what would be dropped and writes nothing.
	DryRun bool
}

// RepairSnapshotsResult says what RepairSnapshots did.
type RepairSnapshotsResult struct {
	DryRun    bool `json:"dry_run,omitempty"`
	Snapshots int  `json:"snapshots"` // readable snapshots looked at
	// Repaired pairs each damaged snapshot with its repaired one (To is
	// zero in a dry run).
	Repaired []CopiedSnapshot `json:"repaired,omitempty"`
	// Dropped are the messages and files left out, per original snapshot.
	Dropped []LostMessage `json:"dropped,omitempty"`
	// IndexesDropped name the Message-ID indexes left out of snapshots
	// that lost nothing, because they did not match the folder trees (as
	// check reports): "snapshot <id> Message-ID index of <root>: <why>".
	IndexesDropped []string `json:"indexes_dropped,omitempty"`
	// Forgotten are the originals removed (Forget); Waiting those that
	// object-lock retention keeps until a date.
	Forgotten []ID      `json:"forgotten,omitempty"`
	Waiting   []Waiting `json:"waiting,omitempty"`
	// Unreadable are snapshot files that cannot be read at all; they are
	// left as they are (check reports them).
	Unreadable []string `json:"unreadable,omitempty"`
}

// RepairSnapshots rewrites every snapshot that refers to a blob no index
// lists, a blob in a pack missing from storage, or a tree that cannot be
// loaded (see the comment above). It does not read data blobs: run
// RepairPacks first for damaged packs. The caller holds the exclusive
// lock; RepairSnapshots loads the index itself (adopting unindexed packs,
// whose blobs are stored) and refuses while an index file cannot be read,
// since the blobs it lists would look gone.
func (r *Repository) RepairSnapshots(ctx context.Context, opt RepairSnapshotsOptions) (*RepairSnapshotsResult, error) {
	if r.WriteOnly() {
		return nil, fmt.Errorf("repair snapshots: %w", ErrWriteOnly)
	}
	res := &RepairSnapshotsResult{DryRun: opt.DryRun}
	r.idx, r.damagedIdx = newIndex(), nil
	unindexed, err := r.LoadIndex(ctx)
	if err != nil {
		return nil, fmt.Errorf("repair snapshots: %w", err)
	}
	if bad := r.DamagedIndexes(); len(bad) > 0 {
		return nil, fmt.Errorf("repair snapshots: %w (run `mailvault repair index` first): %v", ErrCorrupt, errors.Join(bad...))
	}
	if opt.DryRun {
		r.IndexPacks(ctx, unindexed)
	} else if _, err := r.AdoptPacks(ctx, unindexed); err != nil {
		return nil, fmt.Errorf("repair snapshots: %w", err)
	}
	sizes, err := r.packSizes(ctx)
	if err != nil {
		return nil, fmt.Errorf("repair snapshots: %w", err)
	}
	gone := func(id ID) bool {
		pack, _, ok := r.idx.Lookup(id)
		if ok {
			_, ok = sizes[pack]
		}
		return !ok
	}
	snaps, err := r.snapshotsWithOriginals(ctx, res)
	if err != nil {
		return nil, fmt.Errorf("repair snapshots: %w", err)
	}
	res.Snapshots = len(snaps)
	// A snapshot repaired before (kept by retention, or without --forget)
	// is not repaired again: its repaired one names it as original.
	repairedAs := map[ID]ID{}
	for _, s := range snaps {
		if slices.Contains(s.Tags, repairedTag) {
			repairedAs[s.orig] = s.ID
		}
	}

	m := newMender(r, gone, !opt.DryRun)
	verify := newMsgIndexVerifier(r)
	type fixed struct {
		from origSnapshot
		to   *Snapshot // nil: repaired before
	}
	var todo []fixed
	for _, s := range snaps {
		ns, lost, err := m.mend(ctx, s.Snapshot)
		if err != nil {
			return nil, fmt.Errorf("repair snapshots: snapshot %s: %w", s.ID.Short(), err)
		}
		if len(lost) == 0 {
			// Nothing lost, but a Message-ID index that does not match
			// the trees (check says which) would make restores by
			// Message-ID miss messages, and every later backup carries
			// it forward: the snapshot is written again without it.
			var dropped []string
			if ns, dropped = withoutWrongIndexes(ctx, verify, s.Snapshot); ns == nil {
				continue
			}
			res.IndexesDropped = append(res.IndexesDropped, dropped...)
		}
		res.Dropped = append(res.Dropped, lost...)
		if done, ok := repairedAs[s.orig]; ok && done != s.ID {
			res.Repaired = append(res.Repaired, CopiedSnapshot{From: s.ID, To: done})
			todo = append(todo, fixed{s, nil})
			continue
		}
		if opt.DryRun {
			res.Repaired = append(res.Repaired, CopiedSnapshot{From: s.ID})
			continue
		}
		todo = append(todo, fixed{s, ns})
	}
	if len(todo) == 0 || opt.DryRun {
		return res, nil
	}
	// Trees, then the snapshots that name them, then the originals go:
	// killed anywhere, nothing refers to what is not stored, and at worst
	// both the original and the repaired snapshot are there.
	if err := r.Flush(ctx); err != nil {
		return nil, fmt.Errorf("repair snapshots: %w", err)
	}
	for _, f := range todo {
		if f.to == nil {
			continue
		}
		id, err := r.SaveJSONFile(ctx, SnapshotFile, copiedSnapshot{Snapshot: f.to, Original: f.from.orig})
		if err != nil {
			return nil, fmt.Errorf("repair snapshots: store snapshot: %w", err)
		}
		res.Repaired = append(res.Repaired, CopiedSnapshot{From: f.from.ID, To: id})
	}
	if opt.Forget {
		for _, f := range todo {
			w, err := r.removeDurable(ctx, SnapshotFile, f.from.ID.String())
			if err != nil {
				return nil, fmt.Errorf("repair snapshots: forget snapshot %s: %w", f.from.ID.Short(), err)
			}
			if w != nil {
				res.Waiting = append(res.Waiting, *w)
				continue
			}
			res.Forgotten = append(res.Forgotten, f.from.ID)
		}
	}
	return res, nil
}

// origSnapshot is a snapshot and the ID of the snapshot it stands for:
// its "original" (a copy's or a repaired snapshot's), else its own.
type origSnapshot struct {
	*Snapshot
	orig ID
}

// snapshotsWithOriginals is Snapshots with each snapshot's original; the
// snapshot files that cannot be read go to res.Unreadable.
func (r *Repository) snapshotsWithOriginals(ctx context.Context, res *RepairSnapshotsResult) ([]origSnapshot, error) {
	ids, err := r.List(ctx, SnapshotFile)
	if err != nil {
		return nil, err
	}
	var out []origSnapshot
	for _, id := range ids {
		s, orig, err := r.loadSnapshotOriginal(ctx, id)
		if errors.Is(err, ErrCorrupt) {
			res.Unreadable = append(res.Unreadable, err.Error())
			continue
		}
		if err != nil {
			return nil, err
		}
		if orig == nil {
			orig = &s.ID
		}
		out = append(out, origSnapshot{s, *orig})
	}
	slices.SortStableFunc(out, func(a, b origSnapshot) int { return a.Time.Compare(b.Time) })
	return out, nil
}

// lostMessages lists, for every readable snapshot, the messages and files
// that use a blob gone says is gone (RepairPacks's report).
func (r *Repository) lostMessages(ctx context.Context, gone func(ID) bool) ([]LostMessage, error) {
	snaps, _, err := r.Snapshots(ctx)
	if err != nil {
		return nil, err
	}
	m := newMender(r, gone, false)
	var out []LostMessage
	for _, s := range snaps {
		_, lost, err := m.mend(ctx, s)
		if err != nil {
			return nil, fmt.Errorf("snapshot %s: %w", s.ID.Short(), err)
		}
		out = append(out, lost...)
	}
	return out, nil
}

// mender rewrites snapshots without what is gone. A tree is looked at
// once however many snapshots name it (most folders are the same from
// one snapshot to the next).
type mender struct {
	r       *Repository
	gone    func(ID) bool
	save    bool // store the mended trees
	folders map[ID]*folderFix
	files   map[ID]*filesFix
}

// folderFix is what becomes of one folder tree.
type folderFix struct {
	lost            bool      // the tree itself cannot be loaded
	dropped         []Message // the messages whose content is gone
	tree            ID        // the tree without them (when saved)
	messages, bytes int64     // what is left
}

// filesFix is what becomes of one root's files tree.
type filesFix struct {
	lost    bool
	dropped []string // paths
	tree    ID
	files   int64 // plain files dropped
}

func newMender(r *Repository, gone func(ID) bool, save bool) *mender {
	return &mender{r: r, gone: gone, save: save, folders: map[ID]*folderFix{}, files: map[ID]*filesFix{}}
}

// isDamage tells damage (which a repair drops) from a failure to read
// (which stops it).
func isDamage(err error) bool { return errors.Is(err, ErrCorrupt) || errors.Is(err, ErrNotExist) }

func (m *mender) anyGone(ids []ID) bool { return slices.ContainsFunc(ids, m.gone) }

func (m *mender) folder(ctx context.Context, id ID) (*folderFix, error) {
	if f, ok := m.folders[id]; ok {
		return f, nil
	}
	f := &folderFix{tree: id}
	m.folders[id] = f
	if m.gone(id) {
		f.lost = true
		return f, nil
	}
	t, err := m.r.LoadFolderTree(ctx, id)
	if err != nil {
		if !isDamage(err) {
			delete(m.folders, id)
			return nil, err
		}
		f.lost = true
		return f, nil
	}
	if slices.ContainsFunc(t.Pages, func(p PageRef) bool { return m.gone(p.ID) }) {
		// Read, but in a pack about to go: what it lists is lost.
		f.lost = true
		return f, nil
	}
	kept := make([]Message, 0, len(t.Messages))
	for _, msg := range t.Messages {
		if m.anyGone(msg.Blobs) {
			f.dropped = append(f.dropped, Message{Unique: msg.Unique, MessageID: msg.MessageID, Subject: msg.Subject})
			continue
		}
		kept = append(kept, msg)
		f.messages++
		f.bytes += msg.Size
	}
	if len(f.dropped) == 0 || !m.save {
		return f, nil
	}
	// As a backup stores it (backup.go storeFolder): the same messages
	// in the same order give the same tree.
	f.tree, err = saveFolderTree(ctx, kept, folderTreeVersion, func(ctx context.Context, raw []byte) (ID, error) {
		id, _, err := m.r.SaveBlob(ctx, TreeBlob, raw)
		return id, err
	})
	if err != nil {
		return nil, err
	}
	return f, nil
}

func (m *mender) filesTree(ctx context.Context, id ID) (*filesFix, error) {
	if f, ok := m.files[id]; ok {
		return f, nil
	}
	f := &filesFix{tree: id}
	m.files[id] = f
	if m.gone(id) {
		f.lost = true
		return f, nil
	}
	t, err := m.r.LoadFilesTree(ctx, id)
	if err != nil {
		if !isDamage(err) {
			delete(m.files, id)
			return nil, err
		}
		f.lost = true
		return f, nil
	}
	kept := make([]FileEntry, 0, len(t.Entries))
	for _, e := range t.Entries {
		if m.anyGone(e.Blobs) {
			f.dropped = append(f.dropped, e.Path)
			if e.Type == "file" {
				f.files++
			}
			continue
		}
		kept = append(kept, e)
	}
	if len(f.dropped) == 0 || !m.save {
		return f, nil
	}
	raw, err := encodeTree(FilesTree{Version: 1, Entries: kept})
	if err != nil {
		return nil, err
	}
	if f.tree, _, err = m.r.SaveBlob(ctx, TreeBlob, raw); err != nil {
		return nil, err
	}
	return f, nil
}

// mend returns s without what is gone, and what that is; no loss, no
// snapshot.
func (m *mender) mend(ctx context.Context, s *Snapshot) (*Snapshot, []LostMessage, error) {
	var lost []LostMessage
	ns := *s
	ns.Roots = make([]SourceRoot, len(s.Roots))
	var filesDropped int64
	for i, root := range s.Roots {
		nr := root
		nr.Folders = make([]FolderEntry, 0, len(root.Folders))
		for _, fe := range root.Folders {
			fx, err := m.folder(ctx, fe.Tree)
			if err != nil {
				return nil, nil, fmt.Errorf("%s/%s: %w", fe.User, fe.Folder, err)
			}
			switch {
			case fx.lost:
				lost = append(lost, LostMessage{Snapshot: s.ID, User: fe.User, Folder: fe.Folder, Messages: fe.Messages})
				continue // the folder goes: nothing of it can be restored
			case len(fx.dropped) > 0:
				for _, msg := range fx.dropped {
					lost = append(lost, LostMessage{Snapshot: s.ID, User: fe.User, Folder: fe.Folder,
						MessageID: msg.MessageID, Subject: msg.Subject, Unique: msg.Unique})
				}
				fe.Tree, fe.Messages, fe.Bytes = fx.tree, fx.messages, fx.bytes
				// The next backup must list the folder again (not reuse
				// this entry as unchanged), so that the dropped messages
				// still on disk are stored again.
				fe.Cur, fe.New = DirStamp{}, DirStamp{}
			}
			nr.Folders = append(nr.Folders, fe)
		}
		if !root.Files.IsNull() {
			fx, err := m.filesTree(ctx, root.Files)
			if err != nil {
				return nil, nil, fmt.Errorf("other files of %s: %w", root.Path, err)
			}
			switch {
			case fx.lost:
				lost = append(lost, LostMessage{Snapshot: s.ID, Root: root.Path})
				nr.Files = ID{}
			case len(fx.dropped) > 0:
				for _, p := range fx.dropped {
					lost = append(lost, LostMessage{Snapshot: s.ID, Root: root.Path, File: p})
				}
				nr.Files = fx.tree
				filesDropped += fx.files
			}
		}
		ns.Roots[i] = nr
	}
	if len(lost) == 0 {
		return nil, nil, nil
	}
	for i := range ns.Roots {
		// The index would name messages that are gone; without one a
		// restore by Message-ID reads every folder list, and the next
		// backup builds the index anew.
		ns.Roots[i].MessageIndex = nil
	}
	sumFolders(&ns)
	ns.Summary.Files = max(ns.Summary.Files-filesDropped, 0)
	markRepaired(&ns, s)
	return &ns, lost, nil
}

// sumFolders sets s's message, byte and folder totals from its folder
// entries, as a backup computes them (backup.go).
func sumFolders(s *Snapshot) {
	sum := &s.Summary
	sum.Messages, sum.BytesTotal, sum.Folders = 0, 0, 0
	for _, root := range s.Roots {
		for _, f := range root.Folders {
			sum.Messages += f.Messages
			sum.BytesTotal += f.Bytes
		}
		sum.Folders += int64(len(root.Folders))
	}
}

// markRepaired dates and tags ns, the repair of s.
func markRepaired(ns, s *Snapshot) {
	// One nanosecond later than the original, so that while both exist
	// (no --forget, or retention keeps the original) the repaired one is
	// "latest" and the next backup's parent: the original's folder
	// entries would let that backup reuse folders whose messages are gone,
	// and its index would be carried forward.
	ns.Time = s.Time.Add(time.Nanosecond)
	ns.Tags = slices.Clone(s.Tags)
	if !slices.Contains(ns.Tags, repairedTag) {
		ns.Tags = append(ns.Tags, repairedTag)
	}
}

// withoutWrongIndexes returns s without the Message-ID indexes of its
// roots that do not match their trees or cannot be read, and what it left
// out; nil when every index is sound. Restores by Message-ID from the
// repaired snapshot read every folder list, and the next backup builds a
// new index from its trees.
func withoutWrongIndexes(ctx context.Context, v *msgIndexVerifier, s *Snapshot) (*Snapshot, []string) {
	var ns *Snapshot
	var dropped []string
	for i := range s.Roots {
		if s.Roots[i].MessageIndex == nil {
			continue
		}
		p := v.verifyRoot(ctx, s.ID, &s.Roots[i])
		if p == nil {
			continue
		}
		if ns == nil {
			cp := *s
			cp.Roots = slices.Clone(s.Roots)
			markRepaired(&cp, s)
			ns = &cp
		}
		ns.Roots[i].MessageIndex = nil
		dropped = append(dropped, p.Affected[0]+": "+p.Err)
	}
	return ns, dropped
}
