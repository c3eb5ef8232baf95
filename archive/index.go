package archive

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/bits"
	"slices"
	"sync"
	"sync/atomic"
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
	// Erase is an erasure's intent (erase.go): blobs that must leave
	// every pack unless a snapshot still uses them. Such a file lists no
	// packs; prune's new index supersedes it once the blobs are gone.
	Erase []ID `json:"erase,omitempty"`
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
			if b.Type > TreeBlob || b.Compression > maxCompression {
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

// indexEntry is one blob's place: 48 bytes, no pointers, so a table of
// them is one allocation the garbage collector never scans, and its bytes
// are exactly the cached table's on-disk entries (docs/FORMAT.md "Local
// cache"). The pack is an ordinal into Index.packs; its three top bits
// carry the blob's type (one bit) and compression (two: zstd, base64).
type indexEntry struct {
	id        ID
	pack      uint32
	offset    uint32
	length    uint32
	rawLength uint32
}

const (
	entryTree = 1 << 31
	entryZstd = 1 << 30
	// entryBase64 was the top bit of the ordinal before the base64 form:
	// a table written then has it clear (it would take 2^29 packs).
	entryBase64  = 1 << 29
	entryOrdMask = entryBase64 - 1
	// maxPacks bounds the pack ordinals the entry can hold (half a
	// billion packs of 16 MiB would be 8 PiB).
	maxPacks = entryOrdMask + 1
)

func makeEntry(ord uint32, b PackedBlob) indexEntry {
	p := ord
	if b.Type == TreeBlob {
		p |= entryTree
	}
	if b.Compression&Zstd != 0 {
		p |= entryZstd
	}
	if b.Compression&Base64 != 0 {
		p |= entryBase64
	}
	return indexEntry{id: b.ID, pack: p, offset: b.Offset, length: b.Length, rawLength: b.RawLength}
}

func (e *indexEntry) ord() uint32 { return e.pack & entryOrdMask }

func (e *indexEntry) blob() PackedBlob {
	b := PackedBlob{ID: e.id, Type: DataBlob, Offset: e.offset, Length: e.length, RawLength: e.rawLength, Compression: Uncompressed}
	if e.pack&entryTree != 0 {
		b.Type = TreeBlob
	}
	if e.pack&entryZstd != 0 {
		b.Compression |= Zstd
	}
	if e.pack&entryBase64 != 0 {
		b.Compression |= Base64
	}
	return b
}

// compareEntries orders a table: by blob ID, then by pack ordinal and
// offset, so that of a blob stored twice the place in the pack read first
// comes first and is the one kept.
func compareEntries(a, b indexEntry) int {
	return cmp.Or(bytes.Compare(a.id[:], b.id[:]), cmp.Compare(a.ord(), b.ord()), cmp.Compare(a.offset, b.offset))
}

// sortTable sorts entries and drops all but the first place of each blob,
// in place.
func sortTable(t []indexEntry) []indexEntry {
	slices.SortFunc(t, compareEntries)
	return slices.CompactFunc(t, func(a, b indexEntry) bool { return a.id == b.id })
}

// overlayMax is how many blobs addPack keeps in its map before they are
// sorted into a table of their own: a map entry costs about 100 bytes, a
// table entry 48.
const overlayMax = 1 << 16

// maxHeapLayers is how many tables built in memory may pile up (one per
// overlayMax blobs a backup adds) before they are merged into one, so that
// a lookup searches a bounded number of tables.
const maxHeapLayers = 4

// Index maps blob IDs to their places in packs. It is safe for concurrent
// use.
//
// The blobs live in a few sorted tables of 48-byte entries (layers),
// searched by binary search within the bucket of the ID's first bits; no
// two layers hold the same blob. The first layer is the index as loaded:
// built by LoadIndex one index file at a time, or mapped read-only from
// the local cache's table file (indextable.go), in which case it is not
// on the Go heap at all and the files listed since make a second. Blobs
// added afterwards (a backup's new packs, adopted packs) go to a small
// map, sorted into a further layer every overlayMax blobs; those layers
// keep their entries in a scratch file and a short key per blob in memory
// (spill.go).
type Index struct {
	mu      sync.RWMutex
	layers  []layer
	mapped  bool // layers[0] is a read-only mapping of the cached table
	inLayer int  // blobs in layers
	overlay map[ID]indexEntry
	packs   []ID
	packIdx map[ID]uint32
	// files are the index files loaded; a pack they do not mention is
	// "unindexed" (left by an interrupted backup) and gets adopted.
	files map[ID]struct{}
	// sealAt, if not zero, replaces overlayMax (tests).
	sealAt int
	// spilled are the layers sealOverlay wrote to spill (spill.go).
	spilled []spilledLayer
	spill   spillFile

	stats indexCounters
}

// indexCounters count the work of building and searching the index, for
// tests and benchmarks that assert how much an operation touched.
type indexCounters struct {
	decoded atomic.Int64 // entries parsed from index files
	lookups atomic.Int64 // blobs looked up (Has, Lookup, addPack)
	probed  atomic.Int64 // table entries compared by searches (lookups)
	checked atomic.Int64 // pages of a mapped table checked against their MACs
	built   atomic.Int64 // table files built (buildTable)
}

// IndexStats is what an index has done since it was made.
type IndexStats struct {
	// Decoded is the number of blob entries parsed from the
	// repository's index files (zero when the cached table served).
	Decoded int64
	// Lookups is the number of blobs looked up (Has, Lookup, addPack).
	Lookups int64
	// Probed is the number of table entries compared by searches.
	Probed int64
	// PagesChecked is the number of pages of a mapped table checked
	// against their MACs: those the lookups touched.
	PagesChecked int64
	// Mapped reports whether the loaded tables are the cached file,
	// mapped into memory rather than held on the Go heap.
	Mapped bool
	// TablesBuilt is the number of cached table files built: by the
	// load, or by RefreshIndexTable.
	TablesBuilt int64
}

// Stats returns the index's counters.
func (x *Index) Stats() IndexStats {
	x.mu.RLock()
	mapped := x.mapped
	x.mu.RUnlock()
	return IndexStats{Decoded: x.stats.decoded.Load(), Lookups: x.stats.lookups.Load(), Probed: x.stats.probed.Load(), PagesChecked: x.stats.checked.Load(), Mapped: mapped, TablesBuilt: x.stats.built.Load()}
}

func newIndex() *Index {
	return &Index{overlay: make(map[ID]indexEntry), packIdx: make(map[ID]uint32), files: make(map[ID]struct{})}
}

// packOrdinal returns the ordinal of a pack, adding it if new. The caller
// holds x.mu for writing.
func (x *Index) packOrdinal(pack ID) uint32 {
	pi, ok := x.packIdx[pack]
	if !ok {
		if len(x.packs) >= maxPacks {
			panic("archive: more than 2^30 packs in one index")
		}
		pi = uint32(len(x.packs))
		x.packs = append(x.packs, pack)
		x.packIdx[pack] = pi
	}
	return pi
}

func (x *Index) addPack(pack ID, blobs []PackedBlob) {
	x.mu.Lock()
	defer x.mu.Unlock()
	pi := x.packOrdinal(pack)
	for _, b := range blobs {
		if _, ok := x.find(b.ID); ok {
			continue // the same blob in two packs (concurrent backups); either copy serves
		}
		x.overlay[b.ID] = makeEntry(pi, b)
	}
	if len(x.overlay) >= cmp.Or(x.sealAt, overlayMax) {
		x.sealOverlay()
	}
}

// sealOverlay sorts the overlay into a layer of its own. The caller holds
// x.mu for writing.
//
// The layer is spilled (spill.go): its entries go to a scratch file and
// only an 8-byte key and a position per blob stay in memory, a quarter of
// the entries' 48 bytes — a full backup of a million messages adds some
// 1.9 M blobs, 90 MB of entries. Without a scratch file the entries stay
// on the heap, the layers built there merged when too many have piled up.
func (x *Index) sealOverlay() {
	t := make([]indexEntry, 0, len(x.overlay))
	for _, e := range x.overlay {
		t = append(t, e)
	}
	slices.SortFunc(t, compareEntries)
	clear(x.overlay)
	x.inLayer += len(t)
	if x.spillLayer(t) {
		return
	}
	x.layers = append(x.layers, newLayer(t))
	first := 0
	if x.mapped {
		first = 1
	}
	if len(x.layers)-first <= maxHeapLayers {
		return
	}
	// Layers are disjoint, so merging is concatenating and sorting.
	var n int
	for _, l := range x.layers[first:] {
		n += len(l.t)
	}
	merged := make([]indexEntry, 0, n)
	for _, l := range x.layers[first:] {
		merged = append(merged, l.t...)
	}
	slices.SortFunc(merged, compareEntries)
	x.layers = append(x.layers[:first], newLayer(merged))
}

// layer is one sorted table and its directory: dir[b] is the position of
// the first entry whose ID's top bits are b or more. Blob IDs are keyed
// hashes, evenly spread, so with about 16 entries per bucket a lookup
// compares ~5 entries instead of log2(n) (~20 at a million): fewer cache
// misses, and fewer pages of a mapped table touched. The directory costs
// a quarter byte a blob.
type layer struct {
	t    []indexEntry
	dir  []uint32
	bits uint
	// tab is the mapped table t and dir are in, whose pages are
	// checked as they are first used; nil for a table on the heap.
	tab *indexTable
}

// maxDirBits bounds the directory: 2^22 buckets (16 MiB) serve 64 M
// blobs at 16 a bucket.
const maxDirBits = 22

// dirBits is the directory size for n entries: about 16 a bucket.
func dirBits(n int) uint { return uint(min(max(bits.Len(uint(n))-4, 0), maxDirBits)) }

func newLayer(t []indexEntry) layer {
	l := layer{t: t, bits: dirBits(len(t))}
	l.dir = make([]uint32, 1<<l.bits+1)
	b := 0
	for i := range t {
		for top := l.top(&t[i].id); b <= top; b++ {
			l.dir[b] = uint32(i)
		}
	}
	for ; b < len(l.dir); b++ {
		l.dir[b] = uint32(len(t))
	}
	return l
}

// each calls fn for every entry of the layer, in order, but those of
// the damaged pages of a mapped table.
func (l *layer) each(fn func(*indexEntry)) {
	if l.tab != nil && !l.tab.inPlace {
		l.tab.each(fn)
		return
	}
	for lo := 0; lo < len(l.t); lo += tablePageEntries {
		hi := min(lo+tablePageEntries, len(l.t))
		if l.tab != nil && !l.tab.verify(lo, hi) {
			continue
		}
		for i := lo; i < hi; i++ {
			fn(&l.t[i])
		}
	}
}

// top returns the bucket of an ID: its first bits.
func (l *layer) top(id *ID) int {
	return int(binary.BigEndian.Uint32(id[:4]) >> (32 - l.bits) & (1<<l.bits - 1))
}

// search finds id in one layer.
func (x *Index) search(l *layer, id ID) (indexEntry, bool) {
	b := l.top(&id)
	t := l.t[:l.dir[b+1]]
	lo, hi := int(l.dir[b]), len(t)
	if l.tab != nil {
		if lo >= hi {
			return indexEntry{}, false
		}
		if !l.tab.verify(lo, hi) {
			// A damaged page of the cached table (reported once, and
			// the table removed, by its bad hook): its blobs read as
			// absent — a backup stores them again, a restore names
			// them missing.
			return indexEntry{}, false
		}
	}
	if l.tab != nil && !l.tab.inPlace {
		// The bucket, read (readEntries) into a page buffer.
		buf := pagePool.Get().(*[tablePageEntries]indexEntry)
		defer pagePool.Put(buf)
		bucket := buf[:]
		if hi-lo > len(bucket) {
			bucket = make([]indexEntry, hi-lo)
		}
		bucket = bucket[:hi-lo]
		if !l.tab.readEntries(lo, hi, bucket) {
			return indexEntry{}, false
		}
		t, lo, hi = bucket, 0, len(bucket)
	}
	var probes int64
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		probes++
		switch c := bytes.Compare(t[m].id[:], id[:]); {
		case c == 0:
			x.stats.probed.Add(probes)
			return t[m], true
		case c < 0:
			lo = m + 1
		default:
			hi = m
		}
	}
	x.stats.probed.Add(probes)
	return indexEntry{}, false
}

// find looks a blob up in every layer and the overlay. The caller holds
// x.mu.
func (x *Index) find(id ID) (indexEntry, bool) {
	x.stats.lookups.Add(1)
	for i := range x.layers {
		if e, ok := x.search(&x.layers[i], id); ok {
			return e, true
		}
	}
	for i := range x.spilled {
		if e, ok := x.searchSpilled(&x.spilled[i], id); ok {
			return e, true
		}
	}
	e, ok := x.overlay[id]
	return e, ok
}

// Has reports whether a blob is stored.
func (x *Index) Has(id ID) bool {
	x.mu.RLock()
	_, ok := x.find(id)
	x.mu.RUnlock()
	return ok
}

// Lookup returns the pack and position of a blob.
func (x *Index) Lookup(id ID) (pack ID, b PackedBlob, ok bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	e, ok := x.find(id)
	if !ok {
		return ID{}, PackedBlob{}, false
	}
	return x.packs[e.ord()], e.blob(), true
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
	return x.inLayer + len(x.overlay)
}

// packBlobCounts returns, by pack ordinal, how many blobs the index
// places in each pack: 4 bytes a pack, where PackBlobs costs 50–100 bytes
// a blob (check --read-data compares each pack's header with these counts
// and per-blob lookups instead).
func (x *Index) packBlobCounts() []uint32 {
	x.mu.RLock()
	defer x.mu.RUnlock()
	n := make([]uint32, len(x.packs))
	for i := range x.layers {
		x.layers[i].each(func(e *indexEntry) { n[e.ord()]++ })
	}
	x.eachSpilled(func(e *indexEntry) { n[e.ord()]++ })
	for _, e := range x.overlay {
		n[e.ord()]++
	}
	return n
}

// packOrd returns the ordinal of a pack the index knows.
func (x *Index) packOrd(id ID) (uint32, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	pi, ok := x.packIdx[id]
	return pi, ok
}

// blobsInPacks returns, per pack of packs (every pack when packs is nil),
// the blobs the index places there: one pass over the tables, holding only
// those packs' blobs (check asks for the packs it names as damaged).
func (x *Index) blobsInPacks(packs map[ID]bool) map[ID][]PackedBlob {
	x.mu.RLock()
	defer x.mu.RUnlock()
	var want map[uint32]bool // nil: every pack
	size := len(x.packs)
	if packs != nil {
		want, size = make(map[uint32]bool, len(packs)), len(packs)
		for p := range packs {
			if pi, ok := x.packIdx[p]; ok {
				want[pi] = true
			}
		}
	}
	out := make(map[ID][]PackedBlob, size)
	add := func(e *indexEntry) {
		if want == nil || want[e.ord()] {
			p := x.packs[e.ord()]
			out[p] = append(out[p], e.blob())
		}
	}
	for i := range x.layers {
		x.layers[i].each(add)
	}
	x.eachSpilled(add)
	for _, e := range x.overlay {
		add(&e)
	}
	return out
}

// PackBlobs returns, per pack, the blobs the index places there.
func (x *Index) PackBlobs() map[ID][]PackedBlob { return x.blobsInPacks(nil) }
