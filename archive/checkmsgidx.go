package archive

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/maphash"
)

// The Message-ID index is derived data: a backup writes it from the same
// listings as the folder trees, and a restore by Message-ID trusts it. An
// index that disagreed with the trees — a bug, or a wrong parent index
// carried forward run after run — would make such a restore miss a message
// without a word, and no blob of it would be damaged. So check compares
// the two for every snapshot root: the index's content (its runs merged,
// the newest entry of each (key, folder, name) winning, gone entries
// dropped: what a lookup sees) against the entries the root's folder
// trees give (folderEntries, what a full backup would write).
//
// Both sides are reduced to a set digest, so that neither set is held: at
// 10 M messages each would be 200 MB. Folder trees are shared between
// snapshots, so a folder's part is kept per (tree, folder) and each tree is
// read once, as the rest of check reads it.

// entrySetDigest is an order-independent digest of a set of index entries:
// their number and two sums of hashes under seeds chosen per check, which
// no repository content can be made to cancel.
type entrySetDigest struct {
	n          int64
	sum1, sum2 uint64
}

func (s *entrySetDigest) plus(o entrySetDigest) {
	s.n += o.n
	s.sum1 += o.sum1
	s.sum2 += o.sum2
}

// msgIndexVerifier collects, during check's walk of the snapshots, the
// folder trees' side of each root with an index and compares it with the
// index's side.
type msgIndexVerifier struct {
	r            *Repository
	seed1, seed2 maphash.Seed
	folders      map[treeInFolder]entrySetDigest
	indexes      map[ID]entrySetDigest // content digest of each index read
}

type treeInFolder struct {
	tree   ID
	folder uint32 // msgFolder of the dir
}

func newMsgIndexVerifier(r *Repository) *msgIndexVerifier {
	return &msgIndexVerifier{r: r, seed1: maphash.MakeSeed(), seed2: maphash.MakeSeed(),
		folders: map[treeInFolder]entrySetDigest{}, indexes: map[ID]entrySetDigest{}}
}

func (v *msgIndexVerifier) add(s *entrySetDigest, e msgEntry) {
	var b [msgRecordSize]byte
	binary.BigEndian.PutUint64(b[0:8], e.key)
	binary.BigEndian.PutUint32(b[8:12], e.folder)
	binary.BigEndian.PutUint64(b[12:20], e.msg)
	s.n++
	s.sum1 += maphash.Bytes(v.seed1, b[:])
	s.sum2 += maphash.Bytes(v.seed2, b[:])
}

// noteTree records the part of a folder whose tree check has just read.
func (v *msgIndexVerifier) noteTree(f *FolderEntry, t *FolderTree) {
	k := treeInFolder{f.Tree, msgFolder(f.Dir)}
	if _, ok := v.folders[k]; ok {
		return
	}
	var d entrySetDigest
	for _, e := range folderEntries(f.Dir, t.Messages) {
		v.add(&d, e)
	}
	v.folders[k] = d
}

// folder returns the part of a folder of a root: noted, or — for a tree
// check read under another folder's name — read again now.
func (v *msgIndexVerifier) folder(ctx context.Context, f *FolderEntry) (entrySetDigest, error) {
	k := treeInFolder{f.Tree, msgFolder(f.Dir)}
	if d, ok := v.folders[k]; ok {
		return d, nil
	}
	t, err := v.r.LoadFolderTree(ctx, f.Tree)
	if err != nil {
		return entrySetDigest{}, err
	}
	v.noteTree(f, t)
	return v.folders[k], nil
}

// index returns the digest of the content of the index at id.
func (v *msgIndexVerifier) index(ctx context.Context, id ID) (entrySetDigest, error) {
	if d, ok := v.indexes[id]; ok {
		return d, nil
	}
	load := v.r.loadTreeBlob
	root, err := loadMsgIndexRoot(ctx, id, load)
	if err != nil {
		return entrySetDigest{}, err
	}
	srcs := make([]*runSource, 0, len(root.Runs))
	for _, rr := range root.Runs {
		src, err := openRunSource(ctx, rr.ID, load)
		if err != nil {
			return entrySetDigest{}, err
		}
		srcs = append(srcs, src)
	}
	var d entrySetDigest
	var last msgEntry
	err = mergeSources(ctx, srcs, true, func(_ context.Context, e msgEntry) error {
		// A run out of order would hide entries from a lookup (it reads
		// the pages where the key sorts) and from this merge.
		if d.n > 0 && compareMsgEntries(e, last) <= 0 {
			return fmt.Errorf("message index %s: %w: a run's entries are out of order", id.Short(), ErrCorrupt)
		}
		last = e
		v.add(&d, e)
		return nil
	})
	if err != nil {
		return entrySetDigest{}, err
	}
	v.indexes[id] = d
	return d, nil
}

// verifyRoot compares root's index with its folder trees; it returns the
// problem found, or nil. Call it after the root's trees were walked (their
// parts noted); a root whose trees could not be read is not compared.
func (v *msgIndexVerifier) verifyRoot(ctx context.Context, snap ID, root *SourceRoot) *Problem {
	where := fmt.Sprintf("snapshot %s Message-ID index of %s", snap.Short(), root.Path)
	var trees entrySetDigest
	for i := range root.Folders {
		d, err := v.folder(ctx, &root.Folders[i])
		if err != nil {
			return nil // reported as a damaged tree
		}
		trees.plus(d)
	}
	idx, err := v.index(ctx, *root.MessageIndex)
	if err != nil {
		return &Problem{Object: "message index " + root.MessageIndex.String(), Err: err.Error(), Affected: []string{where}}
	}
	if idx == trees {
		return nil
	}
	what := fmt.Sprintf("it lists %d messages by Message-ID where the folder trees have %d", idx.n, trees.n)
	if idx.n == trees.n {
		what = fmt.Sprintf("it lists other messages than the folder trees hold (%d each)", idx.n)
	}
	return &Problem{
		Object: "message index " + root.MessageIndex.String(),
		Err: "does not match the folder trees: " + what +
			"; a restore by Message-ID from this snapshot may miss messages (restore by folder is not affected; " +
			"`mailvault repair snapshots` writes the snapshot again without the index, and the next backup builds a new one)",
		Affected: []string{where},
	}
}
