package archive

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"slices"

	"filippo.io/age"
	"github.com/klauspost/compress/zstd"
)

// fileBufs are the buffers loadIndexFile reuses from one index file to
// the next: the sealed, compressed and plain bytes of a file are the
// largest allocations of a load, and made afresh for each file they are
// garbage the heap grows by until the next collection.
type fileBufs struct {
	sealed, compressed bytes.Buffer
	plain              []byte
	// zdec is the load's own decoder: a zstd decoder keeps history
	// buffers as large as the largest frame it decoded, which for the
	// repository's shared decoder would outlive the load (an index file
	// after a prune holds up to 4096 packs, hundreds of MB of JSON).
	zdec *zstd.Decoder
}

// close releases the decoder's buffers.
func (bufs *fileBufs) close() {
	if bufs.zdec != nil {
		bufs.zdec.Close()
	}
}

// loadIndexFile is LoadFile for an index file, into bufs: the plaintext
// returned is valid until the next call.
func (r *Repository) loadIndexFile(ctx context.Context, id ID, bufs *fileBufs) ([]byte, error) {
	rc, err := r.be.Get(ctx, IndexFile, id.String())
	if err != nil {
		return nil, err
	}
	bufs.sealed.Reset()
	_, err = bufs.sealed.ReadFrom(rc)
	rc.Close()
	if err != nil {
		return nil, fmt.Errorf("read %s/%s: %w", IndexFile, id, err)
	}
	sealed := bufs.sealed.Bytes()
	if sha256.Sum256(sealed) != id {
		return nil, fmt.Errorf("%s/%s: %w: content does not match its name (SHA-256)", IndexFile, id, ErrCorrupt)
	}
	ident, err := r.identityFor(IndexFile)
	if err != nil {
		return nil, err
	}
	dr, err := age.Decrypt(bytes.NewReader(sealed), ident)
	if err == nil {
		bufs.compressed.Reset()
		_, err = bufs.compressed.ReadFrom(io.LimitReader(dr, maxMetaSize))
	}
	if err == nil && bufs.zdec == nil {
		bufs.zdec, err = zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(maxMetaSize))
	}
	if err == nil {
		bufs.plain, err = bufs.zdec.DecodeAll(bufs.compressed.Bytes(), bufs.plain[:0])
	}
	if err != nil {
		return nil, fmt.Errorf("%s/%s: %w: %v", IndexFile, id, ErrCorrupt, err)
	}
	return bufs.plain, nil
}

// indexBuilder makes an index's first table from index files read one at
// a time: each file's blobs go straight into one growing slice of 48-byte
// entries (never a decoded IndexFileContent of every file, nor a map), and
// finish sorts it once. A file's entries stay apart from the others' until
// then, so that the files another file supersedes can be dropped without
// reading anything twice.
type indexBuilder struct {
	x       *Index
	fixed   int // x's packs below this ordinal (a mapped table's) are kept whatever files are dropped
	entries []indexEntry
	files   []builtFile
}

// builtFile is where one index file's blobs and packs are in the builder.
type builtFile struct {
	id         ID
	start, end int      // its entries
	packs      []uint32 // ordinals of the packs it lists
}

// add puts one index file's plaintext into the builder and returns the
// files it supersedes. On error nothing of the file is kept.
func (b *indexBuilder) add(f ID, plain []byte) (supersedes []ID, err error) {
	x := b.x
	start, npacks := len(b.entries), len(x.packs)
	bf := builtFile{id: f, start: start}
	var (
		ord  uint32
		end  uint64 // the furthest blob end in the current pack
		over bool   // a blob extends past 4 GiB
	)
	pack := func(id ID) {
		ord = x.packOrdinal(id)
		bf.packs = append(bf.packs, ord)
		end = 0
	}
	blob := func(bl PackedBlob) {
		if e := uint64(bl.Offset) + uint64(bl.Length); e > end {
			end = e
			over = over || e > 1<<32
		}
		b.entries = append(b.entries, makeEntry(ord, bl))
	}
	// Room for this file's blobs (the compact form has one "raw_length"
	// per blob), grown by at least an eighth so that many small files do
	// not copy the table each.
	if want := len(b.entries) + bytes.Count(plain, []byte(`"raw_length":`)); want > cap(b.entries) {
		grown := make([]indexEntry, len(b.entries), max(want, cap(b.entries)+cap(b.entries)/8))
		copy(grown, b.entries)
		b.entries = grown
	}
	ok := parseIndexFast(plain, indexVisitor{pack: pack, blob: blob, supersedes: func(id ID) { supersedes = append(supersedes, id) }})
	if ok && over {
		ok, err = false, fmt.Errorf("index: a blob extends past 4 GiB")
	}
	if !ok {
		// Not in the compact form this package writes (or invalid):
		// forget what was read and take the general decoder's word.
		b.entries = b.entries[:start]
		for _, p := range x.packs[npacks:] {
			delete(x.packIdx, p)
		}
		x.packs = x.packs[:npacks]
		bf.packs, supersedes = bf.packs[:0], nil
		if err != nil {
			return nil, err
		}
		ic, err := decodeIndex(plain)
		if err != nil {
			return nil, err
		}
		for _, p := range ic.Packs {
			pack(p.ID)
			for _, bl := range p.Blobs {
				blob(bl)
			}
		}
		supersedes = ic.Supersedes
	}
	bf.end = len(b.entries)
	x.stats.decoded.Add(int64(bf.end - bf.start))
	b.files = append(b.files, bf)
	return supersedes, nil
}

// finish keeps the entries of the files in live (dropping the others' and
// the packs only they list), sorts them, keeps the first place of each
// blob and makes the result the index's only table. The pack list is
// renumbered when files were dropped, so that HasPack answers for the
// files in force only (a superseded file may list packs deleted since).
func (b *indexBuilder) finish(live map[ID]bool) {
	x := b.x
	t := b.entries
	if dropped := len(b.files) > 0 && !allLive(b.files, live); dropped {
		keep := make([]bool, len(x.packs))
		for i := range b.fixed {
			keep[i] = true
		}
		n := 0
		for _, f := range b.files {
			if !live[f.id] {
				continue
			}
			for _, p := range f.packs {
				keep[p] = true
			}
			n += copy(t[n:], t[f.start:f.end])
		}
		t = t[:n]
		renum := make([]uint32, len(x.packs))
		packs := x.packs[:0]
		clear(x.packIdx)
		for i, p := range x.packs {
			if keep[i] {
				renum[i] = uint32(len(packs))
				x.packIdx[p] = uint32(len(packs))
				packs = append(packs, p)
			}
		}
		x.packs = packs
		for i := range t {
			t[i].pack = t[i].pack&^entryOrdMask | renum[t[i].ord()]
		}
	}
	t = sortTable(t)
	if b.fixed > 0 || len(x.layers) > 0 {
		// Over a mapped table: keep only what it does not hold.
		base := x.layers
		t = slices.DeleteFunc(t, func(e indexEntry) bool {
			for i := range base {
				if _, ok := x.search(&base[i], e.id); ok {
					return true
				}
			}
			return false
		})
	}
	// Give back spare capacity (duplicates, dropped files) when it is
	// worth a copy, which holds the table twice for a moment; growth
	// alone leaves at most an eighth.
	if cap(t)-len(t) > len(t)/8 {
		t = append([]indexEntry(nil), t...)
	}
	if len(t) > 0 || len(x.layers) == 0 {
		x.layers = append(x.layers, newLayer(t))
		x.inLayer += len(t)
	}
	b.entries, b.files = nil, nil
}

func allLive(files []builtFile, live map[ID]bool) bool {
	for _, f := range files {
		if !live[f.id] {
			return false
		}
	}
	return true
}
