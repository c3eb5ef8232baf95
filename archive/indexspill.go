package archive

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
	"os"
	"sort"
	"unsafe"
)

// A backup adds a blob to the index for every part of every message it
// stores: some 1.9 M blobs, 90 MB of 48-byte entries, at a million small
// messages, and nearly all of them are only ever looked up to learn that
// a new blob is not there yet. So the layers that sealOverlay makes are
// spilled: their entries go to a scratch file (unlinked at once, so that
// nothing outlives the process) and memory keeps, per blob, the first 8
// bytes of its ID and its position in the file — 12 bytes. A lookup
// searches the keys; only a key that matches (a blob that is there, or
// one in 2^64 that is not) reads its 48 bytes back with one pread. The
// file is read with pread, not mapped: mapped pages that lookups touched
// would count in the process's resident memory, which is what this is
// to bound.
//
// Spilled layers are merged as the runs of the Message-ID index are: the
// newest two while the newest is at least half the size of the one before
// it, so that sizes fall by half or more and there are O(log n) of them.
// Merging moves keys and positions only; the file is never rewritten.

// spillFile is an Index's scratch file: spilled entries, as in memory, in
// the order they were spilled.
type spillFile struct {
	dir    string // where to make it; "" is os.TempDir()
	f      *os.File
	n      int64 // entries written
	failed bool  // it could not be made or written: layers stay on the heap
}

// spilledLayer is one sorted layer of the scratch file: keys[i] is the
// first 8 bytes (big-endian) of the ID of the entry at pos[i]. dir is
// layer.dir over the keys.
type spilledLayer struct {
	keys []uint64
	pos  []uint32
	dir  []uint32
	bits uint
}

// spillLayer writes the sorted table t to the scratch file as a new
// spilled layer and merges as the comment above says. It reports false,
// leaving t to the caller, when the file cannot be made or written. The
// caller holds x.mu for writing.
func (x *Index) spillLayer(t []indexEntry) bool {
	s := &x.spill
	if s.failed || len(t) == 0 {
		return false
	}
	if s.n+int64(len(t)) > math.MaxUint32 {
		s.failed = true
		return false
	}
	if s.f == nil {
		f, err := os.CreateTemp(s.dir, "mailvault-index-*.tmp")
		if err != nil {
			s.failed = true
			return false
		}
		// Unlinked at once: the file lives until the Index (and its
		// *os.File, closed by its finalizer) is garbage or the process
		// ends, however that ends.
		_ = os.Remove(f.Name())
		s.f = f
	}
	raw := unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(t))), len(t)*tableEntrySize)
	if _, err := s.f.WriteAt(raw, s.n*tableEntrySize); err != nil {
		s.failed = true
		return false
	}
	keys := make([]uint64, len(t))
	pos := make([]uint32, len(t))
	for i := range t {
		keys[i] = binary.BigEndian.Uint64(t[i].id[:8])
		pos[i] = uint32(s.n) + uint32(i)
	}
	s.n += int64(len(t))
	x.spilled = append(x.spilled, newSpilledLayer(keys, pos))
	for n := len(x.spilled); n >= 2 && 2*len(x.spilled[n-1].keys) >= len(x.spilled[n-2].keys); n = len(x.spilled) {
		x.spilled = append(x.spilled[:n-2], mergeSpilled(&x.spilled[n-2], &x.spilled[n-1]))
	}
	return true
}

func newSpilledLayer(keys []uint64, pos []uint32) spilledLayer {
	l := spilledLayer{keys: keys, pos: pos, bits: uint(min(max(bits.Len(uint(len(keys)))-4, 0), maxDirBits))}
	l.dir = make([]uint32, 1<<l.bits+1)
	b := 0
	for i, k := range keys {
		for top := l.top(k); b <= top; b++ {
			l.dir[b] = uint32(i)
		}
	}
	for ; b < len(l.dir); b++ {
		l.dir[b] = uint32(len(keys))
	}
	return l
}

// top is layer.top for a key: its first bits (a shift by 64 is 0).
func (l *spilledLayer) top(k uint64) int { return int(k >> (64 - l.bits)) }

// mergeSpilled merges two spilled layers (disjoint, as all layers are).
func mergeSpilled(a, b *spilledLayer) spilledLayer {
	n := len(a.keys) + len(b.keys)
	keys, pos := make([]uint64, 0, n), make([]uint32, 0, n)
	i, j := 0, 0
	for i < len(a.keys) || j < len(b.keys) {
		if j == len(b.keys) || i < len(a.keys) && a.keys[i] <= b.keys[j] {
			keys, pos = append(keys, a.keys[i]), append(pos, a.pos[i])
			i++
		} else {
			keys, pos = append(keys, b.keys[j]), append(pos, b.pos[j])
			j++
		}
	}
	return newSpilledLayer(keys, pos)
}

// readSpilled reads the entry at position p of the scratch file.
func (x *Index) readSpilled(p uint32) (indexEntry, error) {
	var e indexEntry
	raw := unsafe.Slice((*byte)(unsafe.Pointer(&e)), tableEntrySize)
	_, err := x.spill.f.ReadAt(raw, int64(p)*tableEntrySize)
	return e, err
}

// searchSpilled finds id in a spilled layer. A scratch file that cannot
// be read back answers "not there": a backup then stores the blob again
// (two copies are allowed), a reader reports the blob missing.
func (x *Index) searchSpilled(l *spilledLayer, id ID) (indexEntry, bool) {
	e, _, ok := x.searchSpilledPos(l, id)
	return e, ok
}

// searchSpilledPos is searchSpilled that also returns the entry's position
// in the scratch file.
func (x *Index) searchSpilledPos(l *spilledLayer, id ID) (indexEntry, uint32, bool) {
	k := binary.BigEndian.Uint64(id[:8])
	b := l.top(k)
	lo, hi := int(l.dir[b]), int(l.dir[b+1])
	var probes int64
	i := lo + sort.Search(hi-lo, func(j int) bool { probes++; return l.keys[lo+j] >= k })
	x.stats.probed.Add(probes)
	for ; i < hi && l.keys[i] == k; i++ {
		if e, err := x.readSpilled(l.pos[i]); err == nil && e.id == id {
			return e, l.pos[i], true
		}
	}
	return indexEntry{}, 0, false
}

// locate is Lookup's pack of a blob and, for a spilled blob, its position
// in the scratch file (-1 for one elsewhere): a blobSet's key.
func (x *Index) locate(id ID) (pack ID, pos int64, ok bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	x.stats.lookups.Add(1)
	for i := range x.layers {
		if e, ok := x.search(&x.layers[i], id); ok {
			return x.packs[e.ord()], -1, true
		}
	}
	for i := range x.spilled {
		if e, p, ok := x.searchSpilledPos(&x.spilled[i], id); ok {
			return x.packs[e.ord()], int64(p), true
		}
	}
	if e, ok := x.overlay[id]; ok {
		return x.packs[e.ord()], -1, true
	}
	return ID{}, -1, false
}

// blobSet is a set of blobs of an Index (prune's used blobs): a bit per
// blob in the scratch file, by position — 1.9 M blobs are 240 KB, where a
// map of their IDs is over 100 MB — and a map for the blobs elsewhere.
type blobSet struct {
	bits  []uint64
	other map[ID]struct{}
}

func (x *Index) newBlobSet() *blobSet {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return &blobSet{bits: make([]uint64, (x.spill.n+63)/64), other: map[ID]struct{}{}}
}

// add adds the blob id at pos (locate).
func (s *blobSet) add(id ID, pos int64) {
	if pos >= 0 && pos/64 < int64(len(s.bits)) {
		s.bits[pos/64] |= 1 << (pos % 64)
		return
	}
	s.other[id] = struct{}{}
}

// has reports whether the blob id at pos (locate) is in the set.
func (s *blobSet) has(id ID, pos int64) bool {
	if pos >= 0 && pos/64 < int64(len(s.bits)) {
		return s.bits[pos/64]&(1<<(pos%64)) != 0
	}
	_, ok := s.other[id]
	return ok
}

// eachSpilled calls fn with every spilled entry, reading the scratch file
// in order a chunk at a time. The caller holds x.mu. The callers (check,
// prune) have no error to return; a scratch file this process wrote and
// cannot read back is as fatal as a failed allocation.
func (x *Index) eachSpilled(fn func(*indexEntry)) {
	if x.spill.n == 0 {
		return
	}
	buf := make([]indexEntry, 4096)
	for off := int64(0); off < x.spill.n; off += int64(len(buf)) {
		chunk := buf[:min(int64(len(buf)), x.spill.n-off)]
		raw := unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(chunk))), len(chunk)*tableEntrySize)
		if _, err := x.spill.f.ReadAt(raw, off*tableEntrySize); err != nil {
			panic(fmt.Sprintf("archive: reading the index's scratch file back: %v", err))
		}
		for i := range chunk {
			fn(&chunk[i])
		}
	}
}
