package archive

import (
	"context"
	"fmt"
)

// RebuildResult says what RebuildIndex did.
type RebuildResult struct {
	Packs          int      `json:"packs"`
	Blobs          int      `json:"blobs"`
	IndexesWritten int      `json:"indexes_written"`
	IndexesRemoved int      `json:"indexes_removed"`
	Unreadable     []string `json:"unreadable,omitempty"` // packs whose header could not be read

	// Waiting are old index files that object-lock retention keeps until
	// a date; the new index supersedes them, so readers ignore them.
	Waiting []Waiting `json:"waiting,omitempty"`
}

// indexPacksPerFile bounds the size of a rebuilt index file.
const indexPacksPerFile = 4096

// RebuildIndex replaces every index file with new ones built from the
// packs' own headers — the index is only a cache of them. New index files
// are written before the old ones are removed, so a crash in between
// leaves duplicates, never a gap. The caller must hold an exclusive lock.
//
// It needs a full key: a write-only key cannot read a pack's header, so
// every pack would look unreadable and the new index — superseding every
// old file — would list nothing.
func (r *Repository) RebuildIndex(ctx context.Context) (*RebuildResult, error) {
	if r.WriteOnly() {
		return nil, fmt.Errorf("repair index: %w", ErrWriteOnly)
	}
	res := &RebuildResult{}
	old, err := r.List(ctx, IndexFile)
	if err != nil {
		return nil, err
	}
	sizes, err := r.packSizes(ctx)
	if err != nil {
		return nil, err
	}
	fresh := newIndex()
	var packs []IndexPack
	for id, size := range sizes {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		blobs, err := r.ReadPackHeader(ctx, id, size)
		if err != nil {
			res.Unreadable = append(res.Unreadable, fmt.Sprintf("%s: %v", id, err))
			continue
		}
		fresh.addPack(id, blobs)
		packs = append(packs, IndexPack{ID: id, Blobs: blobs})
		res.Packs++
		res.Blobs += len(blobs)
	}
	// The last new file supersedes every old one, so an old file that
	// retention keeps is ignored from then on (docs/FORMAT.md "Index").
	written, err := r.writeIndexFiles(ctx, packs, old)
	if err != nil {
		return nil, err
	}
	for _, id := range written {
		fresh.files[id] = struct{}{}
	}
	res.IndexesWritten = len(written)
	for _, id := range old {
		if _, justWritten := fresh.files[id]; justWritten {
			continue // identical content, same name
		}
		w, err := r.removeDurable(ctx, IndexFile, id.String())
		if err != nil {
			return nil, err
		}
		if w != nil {
			res.Waiting = append(res.Waiting, *w)
			continue
		}
		res.IndexesRemoved++
	}
	r.idx = fresh
	return res, nil
}
