package archive

import (
	"encoding/binary"
	"runtime"
	"testing"
)

// spillID makes distinct IDs; with shared, pairs share their first 8
// bytes, so that a key matches and the scratch file decides.
func spillID(i int, shared bool) ID {
	var id ID
	k := uint64(i) * 0x9e3779b97f4a7c15
	if shared {
		k = uint64(i/2) * 0x9e3779b97f4a7c15
	}
	binary.BigEndian.PutUint64(id[:8], k)
	binary.BigEndian.PutUint64(id[8:], uint64(i))
	return id
}

// TestIndexSpill: blobs added past the overlay go to spilled layers, which
// answer Has and Lookup as the heap did, count in Len and in the per-pack
// views, and stay few (merged); blobs sharing their first 8 bytes are
// told apart by the scratch file.
func TestIndexSpill(t *testing.T) {
	for _, shared := range []bool{false, true} {
		x := newIndex()
		x.spill.dir = t.TempDir()
		x.sealAt = 100
		const n, perPack = 10000, 50
		for p := 0; p < n/perPack; p++ {
			var blobs []PackedBlob
			for i := p * perPack; i < (p+1)*perPack; i++ {
				blobs = append(blobs, PackedBlob{ID: spillID(i, shared), Type: BlobType(i % 2), Offset: uint32(i), Length: 7, RawLength: 9, Compression: Compression(i % 4)})
			}
			x.addPack(ID{byte(p), byte(p >> 8), 1}, blobs)
		}
		if len(x.spilled) == 0 || len(x.layers) != 0 {
			t.Fatalf("shared %v: %d spilled layers, %d on the heap", shared, len(x.spilled), len(x.layers))
		}
		if len(x.spilled) > 8 { // log2(10000/100) + 1
			t.Errorf("shared %v: %d spilled layers, not merged", shared, len(x.spilled))
		}
		if x.Len() != n {
			t.Errorf("shared %v: Len %d, want %d", shared, x.Len(), n)
		}
		for i := range n {
			pack, b, ok := x.Lookup(spillID(i, shared))
			p := i / perPack
			if !ok || pack != (ID{byte(p), byte(p >> 8), 1}) || b.Offset != uint32(i) || b.Type != BlobType(i%2) || b.Compression != Compression(i%4) || b.Length != 7 || b.RawLength != 9 {
				t.Fatalf("shared %v: blob %d: %v %+v %v", shared, i, pack.Short(), b, ok)
			}
		}
		for i := n; i < n+1000; i++ {
			if x.Has(spillID(i, false)) {
				t.Fatalf("shared %v: blob %d found, never added", shared, i)
			}
		}
		// A set of the index's blobs: every third in.
		set := x.newBlobSet()
		for i := 0; i < n; i += 3 {
			_, pos, ok := x.locate(spillID(i, shared))
			if !ok {
				t.Fatalf("shared %v: blob %d not located", shared, i)
			}
			set.add(spillID(i, shared), pos)
		}
		for i := range n + 10 {
			id := spillID(i, shared)
			_, pos, _ := x.locate(id)
			if set.has(id, pos) != (i%3 == 0 && i < n) {
				t.Fatalf("shared %v: blob %d: in the set %v", shared, i, !(i%3 == 0))
			}
		}
		// A blob added again is not added twice.
		x.addPack(ID{9, 9, 9}, []PackedBlob{{ID: spillID(5, shared), Length: 1, RawLength: 1}})
		counts := x.packBlobCounts()
		total := 0
		for _, c := range counts {
			total += int(c)
		}
		if total != n {
			t.Errorf("shared %v: packBlobCounts sum %d, want %d", shared, total, n)
		}
		byPack := x.PackBlobs()
		if len(byPack) != n/perPack || len(byPack[ID{3, 0, 1}]) != perPack {
			t.Errorf("shared %v: PackBlobs: %d packs, pack 3 has %d blobs", shared, len(byPack), len(byPack[ID{3, 0, 1}]))
		}
		runtime.KeepAlive(x)
	}
}

// TestIndexSpillFallback: without a scratch file the layers stay on the
// heap and everything still answers.
func TestIndexSpillFallback(t *testing.T) {
	x := newIndex()
	x.spill.dir = "/nonexistent/dir"
	x.sealAt = 10
	for i := range 100 {
		x.addPack(ID{byte(i)}, []PackedBlob{{ID: spillID(i, false), Length: 1, RawLength: 1}})
	}
	if len(x.spilled) != 0 || len(x.layers) == 0 || x.Len() != 100 {
		t.Fatalf("%d spilled, %d heap layers, Len %d", len(x.spilled), len(x.layers), x.Len())
	}
	for i := range 100 {
		if !x.Has(spillID(i, false)) {
			t.Fatalf("blob %d lost", i)
		}
	}
}

// heapInUse is the heap's live bytes after a collection.
func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestIndexSpillHeapPerBlob: the blobs a backup adds cost the heap some 12
// bytes each once spilled (key and position), where the sorted tables held
// their 48-byte entries: at a million messages, 1.9 M new blobs are ~22 MB
// instead of ~90 MB. The growth from one count of blobs to another, so
// that the overlay's map (a fixed cost) cancels out. Counts bytes, not
// time.
func TestIndexSpillHeapPerBlob(t *testing.T) {
	const n1, n2, perPack = 4 * overlayMax, 12 * overlayMax, 512 // the overlay empty at both
	for _, spill := range []bool{true, false} {
		x := newIndex()
		x.spill.dir = t.TempDir()
		x.spill.failed = !spill
		blobs := make([]PackedBlob, perPack)
		var at1 uint64
		for p := range n2 / perPack {
			if p*perPack == n1 {
				at1 = heapInUse()
			}
			for i := range blobs {
				blobs[i] = PackedBlob{ID: spillID(p*perPack+i, false), Length: 1, RawLength: 1}
			}
			x.addPack(ID{byte(p), byte(p >> 8), 2}, blobs)
		}
		per := float64(heapInUse()-at1) / (n2 - n1)
		t.Logf("spill %v: %.1f heap bytes a blob, %d spilled layers", spill, per, len(x.spilled))
		if spill && per > 16 {
			t.Errorf("spilled index: %.1f heap bytes a blob, want at most 16", per)
		}
		if !spill && per < 48 {
			t.Errorf("index on the heap: %.1f bytes a blob, want at least 48 (the test measures nothing)", per)
		}
		runtime.KeepAlive(x)
	}
}
