package archive

import (
	"encoding/json"
	"fmt"
	"sync"
)

// IndexFileContent is the JSON of an index file: which blobs each pack
// holds and where. Index files only speed things up — every fact in them is
// also in the packs' own headers — so they can always be rebuilt.
type IndexFileContent struct {
	Version int         `json:"version"`
	Packs   []IndexPack `json:"packs"`
	// Supersedes names index files this one replaces (written by prune
	// and repair index): readers ignore them, since an old file that
	// object-lock retention keeps may list packs deleted since.
	Supersedes []ID `json:"supersedes,omitempty"`
}

// IndexPack lists one pack's blobs.
type IndexPack struct {
	ID    ID           `json:"id"`
	Blobs []PackedBlob `json:"blobs"`
}

// decodeIndex parses and validates an index file's JSON.
func decodeIndex(plain []byte) (*IndexFileContent, error) {
	if ic, ok := decodeIndexFast(plain); ok {
		return ic, validateIndex(ic)
	}
	var ic IndexFileContent
	if err := json.Unmarshal(plain, &ic); err != nil {
		return nil, fmt.Errorf("index: %w", err)
	}
	return &ic, validateIndex(&ic)
}

// validateIndex checks what JSON decoding cannot.
func validateIndex(ic *IndexFileContent) error {
	if ic.Version != 1 {
		return fmt.Errorf("index: unsupported version %d", ic.Version)
	}
	for _, p := range ic.Packs {
		var end uint64
		for i, b := range p.Blobs {
			if b.Type > TreeBlob || b.Compression > Zstd {
				return fmt.Errorf("index: pack %s blob %d: unknown type or compression", p.ID.Short(), i)
			}
			if e := uint64(b.Offset) + uint64(b.Length); e > end {
				end = e
			}
		}
		if end > 1<<32 {
			return fmt.Errorf("index: pack %s: blob extends past 4 GiB", p.ID.Short())
		}
	}
	return nil
}

// location is where a blob is stored; pack is an index into Index.packs
// to keep the in-memory entry small (a million blobs cost ~80 MB).
type location struct {
	pack        uint32
	offset      uint32
	length      uint32
	rawLength   uint32
	typ         BlobType
	compression Compression
}

// Index maps blob IDs to their places in packs. It is safe for concurrent use.
type Index struct {
	mu      sync.RWMutex
	blobs   map[ID]location
	packs   []ID
	packIdx map[ID]uint32
	// files are the index files loaded; a pack they do not mention is
	// "unindexed" (left by an interrupted backup) and gets adopted.
	files map[ID]struct{}
}

func newIndex() *Index {
	return &Index{blobs: make(map[ID]location), packIdx: make(map[ID]uint32), files: make(map[ID]struct{})}
}

func (x *Index) addPack(pack ID, blobs []PackedBlob) {
	x.mu.Lock()
	defer x.mu.Unlock()
	pi, ok := x.packIdx[pack]
	if !ok {
		pi = uint32(len(x.packs))
		x.packs = append(x.packs, pack)
		x.packIdx[pack] = pi
	}
	for _, b := range blobs {
		if _, dup := x.blobs[b.ID]; dup {
			continue // the same blob in two packs (concurrent backups); either copy serves
		}
		x.blobs[b.ID] = location{pi, b.Offset, b.Length, b.RawLength, b.Type, b.Compression}
	}
}

// Has reports whether a blob is stored.
func (x *Index) Has(id ID) bool {
	x.mu.RLock()
	_, ok := x.blobs[id]
	x.mu.RUnlock()
	return ok
}

// Lookup returns the pack and position of a blob.
func (x *Index) Lookup(id ID) (pack ID, b PackedBlob, ok bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	l, ok := x.blobs[id]
	if !ok {
		return ID{}, PackedBlob{}, false
	}
	return x.packs[l.pack], PackedBlob{ID: id, Type: l.typ, Offset: l.offset, Length: l.length, RawLength: l.rawLength, Compression: l.compression}, true
}

// HasPack reports whether the index knows a pack.
func (x *Index) HasPack(id ID) bool {
	x.mu.RLock()
	_, ok := x.packIdx[id]
	x.mu.RUnlock()
	return ok
}

// Packs returns every known pack ID.
func (x *Index) Packs() []ID {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return append([]ID(nil), x.packs...)
}

// Len returns the number of blobs.
func (x *Index) Len() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.blobs)
}

// PackBlobs returns, per pack, the blobs the index places there.
func (x *Index) PackBlobs() map[ID][]PackedBlob {
	x.mu.RLock()
	defer x.mu.RUnlock()
	out := make(map[ID][]PackedBlob, len(x.packs))
	for id, l := range x.blobs {
		p := x.packs[l.pack]
		out[p] = append(out[p], PackedBlob{ID: id, Type: l.typ, Offset: l.offset, Length: l.length, RawLength: l.rawLength, Compression: l.compression})
	}
	return out
}
