package archive

import (
	"context"
	"encoding/json"
	"slices"
)

// TaggedSize is the bytes of an entry of a run.
const TaggedSize = taggedSize

// SetRunEntries makes the runs of index table builds n entries long
// until the test ends.
func SetRunEntries(t interface{ Cleanup(func()) }, n int) {
	old := runEntries
	runEntries = n
	t.Cleanup(func() { runEntries = old })
}

// BackupV1 is Backup writing version 1 folder trees, one blob per folder,
// as releases before paged trees did (docs/FORMAT.md "Trees").
func (r *Repository) BackupV1(ctx context.Context, opt BackupOptions) (*BackupResult, error) {
	return r.backup(ctx, opt, 1)
}

// BackupV2 is Backup writing version 2 folder trees (messages as JSON
// objects), as releases before column-wise trees did.
func (r *Repository) BackupV2(ctx context.Context, opt BackupOptions) (*BackupResult, error) {
	return r.backup(ctx, opt, 2)
}

// MsgIndexSize is the plaintext and stored (compressed) bytes and the
// number of blobs of the Message-ID index at id.
func (r *Repository) MsgIndexSize(ctx context.Context, id ID) (plain, stored int64, blobs int, err error) {
	ids, err := msgIndexBlobs(ctx, id, r.loadTreeBlob, map[ID]struct{}{})
	if err != nil {
		return 0, 0, 0, err
	}
	for _, b := range ids {
		raw, err := r.LoadBlob(ctx, b)
		if err != nil {
			return 0, 0, 0, err
		}
		_, pb, _ := r.idx.Lookup(b)
		plain += int64(len(raw))
		stored += int64(pb.Length)
	}
	return plain, stored, len(ids), nil
}

// ScaleDownBounds sets a backup's memory bounds (listed messages held,
// new blobs per index file, blobs in the index's map) low, after
// LoadIndex, so that trees of a few thousand messages cross them as
// millions do the defaults.
func (r *Repository) ScaleDownBounds(listWindow, indexFileBlobs, overlay int) {
	r.bounds = memoryBounds{listWindow: listWindow, indexFileBlobs: indexFileBlobs}
	r.idx.mu.Lock()
	r.idx.sealAt = overlay
	r.idx.mu.Unlock()
}

// SetReadAheadBudget sets how many bytes of files a backup reads ahead of
// its workers into buffers of their own (directBudget).
func (r *Repository) SetReadAheadBudget(n int) {
	r.bounds.readAhead = n
}

// WriteMsgIndexForm1 stores root's Message-ID index again in form 1 (JSON
// pages), as backups before form 2 wrote it, and returns the index's root.
func (r *Repository) WriteMsgIndexForm1(ctx context.Context, root *SourceRoot) (ID, error) {
	var entries []msgEntryJSON
	for _, f := range root.Folders {
		t, err := loadFolderTree(ctx, f.Tree, r.loadTreeBlob)
		if err != nil {
			return ID{}, err
		}
		entries = append(entries, folderEntriesJSON(f.Dir, t.Messages)...)
	}
	slices.SortFunc(entries, compareMsgEntriesJSON)
	entries = slices.CompactFunc(entries, func(a, b msgEntryJSON) bool { return compareMsgEntriesJSON(a, b) == 0 })
	id, err := saveIndexJSON(ctx, entries, r.saveTreeBlob)
	if err != nil {
		return ID{}, err
	}
	return id, r.Flush(ctx)
}

// WriteMsgIndexAltered stores root's Message-ID index again (form 2, one
// run) with one wrong: "drop" leaves out its first entry, "refolder" puts
// that entry in another folder, "unsorted" swaps the first two. Every blob
// of it is sound: only a comparison with the trees can tell.
func (r *Repository) WriteMsgIndexAltered(ctx context.Context, root *SourceRoot, alter string) (ID, error) {
	var all []msgEntry
	for _, f := range root.Folders {
		t, err := loadFolderTree(ctx, f.Tree, r.loadTreeBlob)
		if err != nil {
			return ID{}, err
		}
		all = append(all, folderEntries(f.Dir, t.Messages)...)
	}
	slices.SortFunc(all, compareMsgEntries)
	switch alter {
	case "drop":
		all = all[1:]
	case "refolder":
		all[0].folder++
		slices.SortFunc(all, compareMsgEntries)
	case "unsorted":
		all[0], all[1] = all[1], all[0]
	}
	ref, err := saveRun(ctx, all, r.saveTreeBlob)
	if err != nil {
		return ID{}, err
	}
	raw, err := json.Marshal(msgIndexRoot{Index: msgIndexFormat, Runs: []msgRunRef{ref}})
	if err != nil {
		return ID{}, err
	}
	id, err := r.saveTreeBlob(ctx, raw)
	if err != nil {
		return ID{}, err
	}
	return id, r.Flush(ctx)
}

// saveTreeBlob is a blobSaver of tree blobs for the helpers above.
func (r *Repository) saveTreeBlob(ctx context.Context, raw []byte) (ID, error) {
	id, _, err := r.SaveBlob(ctx, TreeBlob, raw)
	return id, err
}

// SetRefRunIDs makes the runs of check's blob references n IDs long
// until the test ends.
func SetRefRunIDs(t interface{ Cleanup(func()) }, n int) {
	old := refRunIDs
	refRunIDs = n
	t.Cleanup(func() { refRunIDs = old })
}
