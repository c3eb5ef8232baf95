package archive

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/mailvault/mailvault/mailmeta"
)

// Erasing messages (issue 12, GDPR Art. 17) is the mechanism only: which
// messages, who may erase them and which holds refuse it are decided by
// the caller. RemoveMessages rewrites every snapshot holding a picked
// message without it, removes the old snapshot files and prunes so that
// no pack keeps a blob only the removed messages used, nor the old
// folder trees and Message-ID indexes that named them.
//
// Crash safety. The blobs to purge are known only while an old snapshot
// still names them, so before anything else is written they are recorded
// in an index file of their own, with no packs and an "erase" list
// (docs/FORMAT.md "Erasure"). Then: the new trees and their index, the new
// snapshots, the old snapshots go, and prune repacks every pack holding
// an unused blob of the list; prune's new index supersedes every old
// index file, the intent's included, so a finished erasure leaves no
// trace of it. Killed anywhere, every snapshot refers only to stored
// blobs (at worst both an old and its new snapshot exist), and the next
// RemoveMessages — the same selector, or any — finds the intent still in
// force and finishes it (its prune, like every prune, purges the blobs of
// every intent in force); a rewritten snapshot whose twin is already
// stored is not written again. Killed after prune's new index, the
// intent is superseded and the bytes are left only in packs no index
// lists; a rerun finding such packs prunes them.

// ErrNoMatch is returned when no snapshot holds a message the selector
// picks and no interrupted erasure waits to be finished.
var ErrNoMatch = errors.New("no message in any snapshot matches")

// ErrHeld is returned when a picked message is held (EraseOptions.Held).
var ErrHeld = errors.New("message is under a legal hold")

// MessageSelector picks messages; a message is picked when any of its
// criteria matches. An empty selector picks nothing.
type MessageSelector struct {
	// MessageIDs are Message-ID header values, angle brackets optional:
	// compared as the backup recorded them (mailmeta.MessageID).
	MessageIDs []string
	// Users are mailbox users as the snapshot names them.
	Users []string
	// Match picks by anything else (a retention or query rule).
	Match func(user, folder string, m *Message) bool
}

func (s MessageSelector) empty() bool {
	return len(s.MessageIDs) == 0 && len(s.Users) == 0 && s.Match == nil
}

func (s MessageSelector) picks(user, folder string, m *Message) bool {
	if m.MessageID != "" && slices.Contains(s.MessageIDs, m.MessageID) {
		return true
	}
	if slices.Contains(s.Users, user) {
		return true
	}
	return s.Match != nil && s.Match(user, folder, m)
}

// EraseOptions tune RemoveMessages.
type EraseOptions struct {
	Select MessageSelector
	// DryRun lists what would be removed and writes nothing.
	DryRun bool
	// Held is asked about every picked message before anything is
	// written; a non-empty answer (the hold's case) refuses the whole
	// erasure with ErrHeld. The legal-hold engine plugs in here.
	Held func(user, folder string, m *Message) string
	// Progress is handed to the prune that purges the bytes.
	Progress func(PruneProgress)
	// ParentCache is this host's write-only parent cache directory
	// (BackupOptions.ParentCache), if it has one: its copies of the
	// purged trees and its entries naming a rewritten snapshot are
	// removed, since they hold the removed messages' headers. Other
	// hosts' caches are out of reach; their next backup finds the
	// snapshot gone and the trees no longer indexed, and ignores them.
	ParentCache string
}

// ErasedMessage is one message removed from one snapshot.
type ErasedMessage struct {
	Snapshot  ID     `json:"snapshot"`
	User      string `json:"user"`
	Folder    string `json:"folder"`
	MessageID string `json:"message_id,omitempty"`
	Subject   string `json:"subject,omitempty"`
	Unique    string `json:"unique"`
}

// EraseResult says what RemoveMessages did, or with DryRun would do.
type EraseResult struct {
	DryRun  bool            `json:"dry_run,omitempty"`
	Removed []ErasedMessage `json:"removed"`
	// Snapshots pairs each rewritten snapshot with its new one (To is
	// zero in a dry run).
	Snapshots []CopiedSnapshot `json:"snapshots"`
	// Forgotten are the old snapshot files removed.
	Forgotten []ID `json:"forgotten,omitempty"`
	// Resumed is set when an interrupted erasure was found and finished.
	Resumed bool `json:"resumed,omitempty"`
	// PacksRewritten held erased bytes next to kept ones and were
	// repacked; PacksDeleted held nothing kept, or no index listed them
	// (left by a killed erasure, or backup). All of them are deleted.
	PacksRewritten []ID `json:"packs_rewritten"`
	PacksDeleted   []ID `json:"packs_deleted"`
	// Waiting are old snapshots and packs that object-lock retention
	// keeps until a date: their bytes stay until then, and a later
	// prune (or erasure) removes them.
	Waiting []Waiting    `json:"waiting,omitempty"`
	Prune   *PruneResult `json:"prune,omitempty"`
}

// folderKey names one folder of one snapshot: a selector by user or
// folder makes the same tree erase differently under different names.
type folderKey struct {
	tree         ID
	user, folder string
}

// folderErase is what becomes of one folder.
type folderErase struct {
	kept, dropped   []Message
	tree            ID // the tree without the dropped messages, once saved
	messages, bytes int64
}

// RemoveMessages removes the picked messages from every snapshot and
// purges their bytes from every pack (see the comment above). The caller
// holds the exclusive lock; RemoveMessages loads the index itself. It
// needs a full key, and refuses while a snapshot or index file cannot be
// read: it could not tell what the damaged one holds.
func (r *Repository) RemoveMessages(ctx context.Context, opt EraseOptions) (*EraseResult, error) {
	if r.WriteOnly() {
		return nil, fmt.Errorf("erase: %w", ErrWriteOnly)
	}
	ids := make([]string, 0, len(opt.Select.MessageIDs))
	for _, id := range opt.Select.MessageIDs {
		if id = mailmeta.MessageID(id); id != "" {
			ids = append(ids, id)
		}
	}
	if len(ids) < len(opt.Select.MessageIDs) {
		return nil, errors.New("erase: a Message-ID to erase is empty once its brackets, spaces and control characters are left out")
	}
	opt.Select.MessageIDs = ids
	if opt.Select.empty() {
		return nil, errors.New("erase: no message selected (give a Message-ID, a user or a rule)")
	}
	res := &EraseResult{DryRun: opt.DryRun, Removed: []ErasedMessage{}, Snapshots: []CopiedSnapshot{}, PacksRewritten: []ID{}, PacksDeleted: []ID{}}
	r.idx, r.damagedIdx = newIndex(), nil
	unindexed, err := r.LoadIndex(ctx)
	if err != nil {
		return nil, fmt.Errorf("erase: %w", err)
	}
	if bad := r.DamagedIndexes(); len(bad) > 0 {
		return nil, fmt.Errorf("erase: %w (run `mailvault repair index` first): %v", ErrCorrupt, errors.Join(bad...))
	}
	pending, err := r.pendingErasure(ctx)
	if err != nil {
		return nil, fmt.Errorf("erase: %w", err)
	}
	snaps, bad, err := r.Snapshots(ctx)
	if err != nil {
		return nil, fmt.Errorf("erase: %w", err)
	}
	if len(bad) > 0 {
		return nil, fmt.Errorf("erase: refusing while a snapshot cannot be read (it may hold the messages; run check): %w", errors.Join(bad...))
	}

	// 1. What goes, written nowhere yet.
	folders := map[folderKey]*folderErase{}
	purge := map[ID]struct{}{} // blobs that must leave every pack unless still used
	var changed []*Snapshot
	for _, s := range snaps {
		hit := false
		for _, root := range s.Roots {
			for _, fe := range root.Folders {
				fx, err := r.eraseFolder(ctx, folders, purge, opt.Select, fe)
				if err != nil {
					return nil, fmt.Errorf("erase: snapshot %s %s/%s: %w", s.ID.Short(), fe.User, fe.Folder, err)
				}
				if fx == nil {
					continue
				}
				hit = true
				for _, m := range fx.dropped {
					if opt.Held != nil {
						if hold := opt.Held(fe.User, fe.Folder, &m); hold != "" {
							return nil, fmt.Errorf("erase: %w: case %q holds %s/%s %q (Message-ID %q)", ErrHeld, hold, fe.User, fe.Folder, m.Unique, m.MessageID)
						}
					}
					res.Removed = append(res.Removed, ErasedMessage{Snapshot: s.ID, User: fe.User, Folder: fe.Folder,
						MessageID: m.MessageID, Subject: m.Subject, Unique: m.Unique})
				}
			}
		}
		if !hit {
			continue
		}
		changed = append(changed, s)
		// The new snapshot has no Message-ID index (withoutErased): the
		// old ones name the removed messages.
		for _, root := range s.Roots {
			if root.MessageIndex == nil {
				continue
			}
			ids, err := msgIndexBlobs(ctx, *root.MessageIndex, r.loadTreeBlob, map[ID]struct{}{})
			if err != nil {
				return nil, fmt.Errorf("erase: snapshot %s Message-ID index: %w", s.ID.Short(), err)
			}
			for _, id := range ids {
				purge[id] = struct{}{}
			}
		}
	}
	// Killed after prune's new index superseded the intent, an erasure
	// leaves its bytes only in packs no index lists: prune deletes them.
	res.Resumed = pending || len(unindexed) > 0
	if len(changed) == 0 && !res.Resumed {
		return nil, fmt.Errorf("erase: %w", ErrNoMatch)
	}
	if opt.DryRun {
		for _, s := range changed {
			res.Snapshots = append(res.Snapshots, CopiedSnapshot{From: s.ID})
		}
		return res, nil
	}

	// 2. The intent, before anything it describes changes.
	if len(purge) > 0 {
		list := make([]ID, 0, len(purge))
		for id := range purge {
			list = append(list, id)
		}
		sortIDs(list)
		if _, err := r.SaveJSONFile(ctx, IndexFile, IndexFileContent{Version: 1, Packs: []IndexPack{}, Erase: list}); err != nil {
			return nil, fmt.Errorf("erase: store intent: %w", err)
		}
	}

	// 3. The new trees, then the snapshots that name them.
	for _, fx := range folders {
		if fx == nil {
			continue
		}
		fx.tree, err = saveFolderTree(ctx, fx.kept, folderTreeVersion, func(ctx context.Context, raw []byte) (ID, error) {
			id, _, err := r.SaveBlob(ctx, TreeBlob, raw)
			return id, err
		})
		if err != nil {
			return nil, fmt.Errorf("erase: store folder tree: %w", err)
		}
	}
	if err := r.Flush(ctx); err != nil {
		return nil, fmt.Errorf("erase: %w", err)
	}
	// A snapshot's JSON → its ID, to write no twin. A twin keeps its
	// old snapshot's time: only those of a changed snapshot's time are
	// marshalled (a snapshot of 40,000 folders is megabytes of JSON).
	times := map[int64]bool{} // Unix ns: a decoded zone is a new *Location each time
	for _, s := range changed {
		times[s.Time.UnixNano()] = true
	}
	stored := map[string]ID{}
	for _, s := range snaps {
		if !times[s.Time.UnixNano()] {
			continue
		}
		raw, err := json.Marshal(s)
		if err != nil {
			return nil, fmt.Errorf("erase: %w", err)
		}
		stored[string(raw)] = s.ID
	}
	for _, s := range changed {
		ns := withoutErased(s, folders)
		raw, err := json.Marshal(ns)
		if err != nil {
			return nil, fmt.Errorf("erase: %w", err)
		}
		id, ok := stored[string(raw)]
		if !ok {
			// The same bytes SaveJSONFile stores (it marshals ns again).
			if id, err = r.SaveJSONFile(ctx, SnapshotFile, ns); err != nil {
				return nil, fmt.Errorf("erase: store snapshot: %w", err)
			}
			stored[string(raw)] = id
		}
		res.Snapshots = append(res.Snapshots, CopiedSnapshot{From: s.ID, To: id})
	}

	// 4. The old snapshots.
	for _, s := range changed {
		w, err := r.removeDurable(ctx, SnapshotFile, s.ID.String())
		if err != nil {
			return nil, fmt.Errorf("erase: remove snapshot %s: %w", s.ID.Short(), err)
		}
		if w != nil {
			res.Waiting = append(res.Waiting, *w)
			continue
		}
		res.Forgotten = append(res.Forgotten, s.ID)
	}

	// 5. The bytes.
	list := make([]ID, 0, len(purge))
	for id := range purge {
		list = append(list, id)
	}
	pr, err := r.Prune(ctx, PruneOptions{Erase: list, Progress: opt.Progress})
	if err != nil {
		return nil, fmt.Errorf("erase: %w", err)
	}
	res.Prune = pr
	res.PacksRewritten = append(res.PacksRewritten, pr.Repack...)
	res.PacksDeleted = append(append(res.PacksDeleted, pr.Delete...), pr.Unindexed...)
	res.Waiting = append(res.Waiting, pr.Waiting...)

	// 6. Local copies. The metadata cache lost the old snapshot and index
	// files as they were removed (archive/cache removes a cached copy
	// first); the index table still lists the purged blob IDs until it
	// is built again from the index now in force.
	r.RefreshIndexTable(ctx)
	if opt.ParentCache != "" {
		old := make(map[ID]bool, len(changed))
		for _, s := range changed {
			old[s.ID] = true
		}
		if err := r.purgeParentCache(opt.ParentCache, old, purge); err != nil {
			return res, fmt.Errorf("erase: parent cache: %w", err)
		}
	}
	return res, nil
}

// purgeParentCache removes from the write-only parent cache at dir the
// entries naming a snapshot in old and the cached trees in purge.
func (r *Repository) purgeParentCache(dir string, old map[ID]bool, purge map[ID]struct{}) error {
	c := &parentCache{dir: dir, r: r}
	entries, err := os.ReadDir(filepath.Join(dir, "parents"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	for _, de := range entries {
		p := filepath.Join(dir, "parents", de.Name())
		raw, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		var e parentEntry
		plain, err := r.zdec.DecodeAll(raw, nil)
		if err == nil {
			err = json.Unmarshal(plain, &e)
		}
		// A damaged entry is never used (parentCache.load); it may as
		// well name an old snapshot.
		if err != nil || old[e.Snapshot] {
			if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
	}
	for id := range purge {
		if err := os.Remove(c.treePath(id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

// eraseFolder returns what becomes of the folder fe names, nil when the
// selector picks none of its messages; the blobs of the picked messages
// and the old tree's go to purge.
func (r *Repository) eraseFolder(ctx context.Context, folders map[folderKey]*folderErase, purge map[ID]struct{}, sel MessageSelector, fe FolderEntry) (*folderErase, error) {
	key := folderKey{fe.Tree, fe.User, fe.Folder}
	if fx, ok := folders[key]; ok {
		return fx, nil
	}
	t, err := r.LoadFolderTree(ctx, fe.Tree)
	if err != nil {
		return nil, err
	}
	fx := &folderErase{kept: make([]Message, 0, len(t.Messages))}
	for _, m := range t.Messages {
		if sel.picks(fe.User, fe.Folder, &m) {
			fx.dropped = append(fx.dropped, m)
			continue
		}
		fx.kept = append(fx.kept, m)
		fx.messages++
		fx.bytes += m.Size
	}
	if len(fx.dropped) == 0 {
		folders[key] = nil
		return nil, nil
	}
	folders[key] = fx
	// The old tree and pages list the removed messages' headers.
	purge[fe.Tree] = struct{}{}
	for _, p := range t.Pages {
		purge[p.ID] = struct{}{}
	}
	for _, m := range fx.dropped {
		for _, b := range m.Blobs {
			purge[b] = struct{}{}
		}
	}
	return fx, nil
}

// withoutErased is s with its folders' new trees and totals and without
// Message-ID indexes; time, host, tags and paths stay.
func withoutErased(s *Snapshot, folders map[folderKey]*folderErase) *Snapshot {
	ns := *s
	ns.Roots = make([]SourceRoot, len(s.Roots))
	for i, root := range s.Roots {
		nr := root
		nr.Folders = slices.Clone(root.Folders)
		for j, fe := range nr.Folders {
			fx := folders[folderKey{fe.Tree, fe.User, fe.Folder}]
			if fx == nil {
				continue
			}
			fe.Tree, fe.Messages, fe.Bytes = fx.tree, fx.messages, fx.bytes
			// The next backup lists the folder again rather than reuse
			// this entry as unchanged: the stamps describe the
			// directory with the removed messages in it.
			fe.Cur, fe.New = DirStamp{}, DirStamp{}
			nr.Folders[j] = fe
		}
		// Without an index a restore by Message-ID reads the folder
		// lists, and the next backup builds the index anew (as check
		// requires, an index must match the trees).
		nr.MessageIndex = nil
		ns.Roots[i] = nr
	}
	sumFolders(&ns)
	return &ns
}

// pendingErasure reports whether an index file in force carries an
// "erase" list: the intent of an erasure killed before its prune
// finished. (Prune purges those blobs itself; this only tells whether
// there is an erasure to finish.)
func (r *Repository) pendingErasure(ctx context.Context) (bool, error) {
	intents := map[ID]bool{}
	scan, err := r.scanIndexFiles(ctx, func(f ID, ic *IndexFileContent) {
		if len(ic.Erase) > 0 {
			intents[f] = true
		}
	})
	if err != nil {
		return false, err
	}
	for _, f := range scan.live {
		if intents[f] {
			return true, nil
		}
	}
	return false, nil
}
