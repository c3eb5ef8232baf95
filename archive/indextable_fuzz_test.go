package archive

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/zeebo/blake3"
)

// tableRepo is a Repository with just what the table code uses: the
// keyed hashers of the MAC.
func tableRepo(t testing.TB) *Repository {
	r := &Repository{}
	key := bytes.Repeat([]byte{7}, 32)
	r.hashers.New = func() any {
		h, err := blake3.NewKeyed(key)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	return r
}

// sealTable appends the MAC parseIndexTable expects — over the tail that
// body's trailer places after its entries — so that the fuzzer reaches
// the parsing behind it.
func sealTable(r *Repository, body []byte) []byte {
	from := 0
	if len(body) >= tableTrailerSize {
		n := binary.LittleEndian.Uint64(body[len(body)-8:])
		if n < 1<<40 && tableEntrySize*n <= uint64(len(body)) {
			from = int(tableEntrySize * n)
		}
	}
	h := r.tableMAC()
	_, _ = h.Write(body[from:])
	out := h.Sum(append([]byte(nil), body...))
	r.hashers.Put(h)
	return out
}

// FuzzParseIndexTable: whatever bytes a table file holds (with a valid
// MAC of its tail, which only this repository's keys make), parsing
// either fails or yields a table whose every entry in a page that passes
// its check names a pack it lists, and whose directory keeps searches in
// bounds — no panic, no read outside the bytes.
func FuzzParseIndexTable(f *testing.F) {
	r := tableRepo(f)
	x := newIndex()
	x.addPack(ID{1}, []PackedBlob{{ID: ID{2}, Type: TreeBlob, Length: 10, RawLength: 10}, {ID: ID{3}, Offset: 10, Length: 5, RawLength: 9, Compression: Zstd}})
	x.addPack(ID{4}, []PackedBlob{{ID: ID{5}, Length: 1, RawLength: 1}})
	x.spill.failed = true // a table on the heap, as LoadIndex builds it
	x.sealOverlay()
	path := filepath.Join(f.TempDir(), "table")
	if err := r.writeIndexTable(x, path, []ID{{9}}, []ID{{8}}); err != nil {
		f.Fatal(err)
	}
	seed, err := os.ReadFile(path)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed[:len(seed)-tableMACSize])
	f.Add([]byte(tableMagic))
	f.Fuzz(func(t *testing.T, body []byte) {
		tab, err := r.parseIndexTable(sealTable(r, body))
		if err != nil {
			return
		}
		y := newIndex()
		y.packs = tab.packs
		for i := range tab.entries {
			if !tab.verify(i, i+1) {
				continue
			}
			e := &tab.entries[i]
			if int(e.ord()) >= len(tab.packs) {
				t.Fatalf("entry %d names pack %d of %d", i, e.ord(), len(tab.packs))
			}
			_ = e.blob()
		}
		y.layers = []layer{{t: tab.entries, dir: tab.dir, bits: tab.bits, tab: tab}}
		for i := range tab.entries {
			y.Lookup(tab.entries[i].id)
		}
		y.Lookup(ID{})
	})
}

// TestIndexTableRoundTrip: a table written from an index parses back to
// the same places.
func TestIndexTableRoundTrip(t *testing.T) {
	r := tableRepo(t)
	for _, n := range []int{0, 1, 1000} {
		x := newIndex()
		var blobs []PackedBlob
		for i := range n {
			blobs = append(blobs, PackedBlob{ID: ID{byte(i), byte(i >> 8), 1}, Type: BlobType(i % 2), Offset: uint32(i * 10), Length: 10, RawLength: 20, Compression: Compression(i % 4)})
		}
		x.addPack(ID{1}, blobs)
		x.spill.failed = true // a table on the heap, as LoadIndex builds it
		x.sealOverlay()
		path := filepath.Join(t.TempDir(), "table")
		if err := r.writeIndexTable(x, path, []ID{{9}}, nil); err != nil {
			t.Fatal(err)
		}
		tab, err := r.openIndexTable(path)
		if err != nil {
			t.Fatal(err)
		}
		y := newIndex()
		tab.install(y)
		if y.Len() != n || len(tab.live) != 1 || tab.live[0] != (ID{9}) {
			t.Fatalf("n=%d: table holds %d blobs, files %v", n, y.Len(), tab.live)
		}
		for _, b := range blobs {
			p, got, ok := y.Lookup(b.ID)
			if !ok || p != (ID{1}) || got != b {
				t.Fatalf("n=%d: %v: got %v %+v %v", n, b.ID.Short(), p.Short(), got, ok)
			}
		}
	}
}

// TestIndexTablePages: a lookup checks the page or two its bucket lies
// in; lookups from several goroutines at once (a backup's workers) check
// each page at least once and find every blob.
func TestIndexTablePages(t *testing.T) {
	r := tableRepo(t)
	const n = 20 * tablePageEntries
	x := newIndex()
	var blobs []PackedBlob
	for i := range n {
		blobs = append(blobs, PackedBlob{ID: ID{byte(i), byte(i >> 8), byte(i >> 16), 1}, Offset: uint32(i), Length: 1, RawLength: 1})
	}
	x.addPack(ID{1}, blobs)
	x.spill.failed = true
	x.sealOverlay()
	path := filepath.Join(t.TempDir(), "table")
	if err := r.writeIndexTable(x, path, []ID{{9}}, nil); err != nil {
		t.Fatal(err)
	}
	// Read in place (a small table) and with pread (a large one).
	for _, inPlace := range []bool{true, false} {
		tab, err := r.openIndexTable(path)
		if err != nil {
			t.Fatal(err)
		}
		tab.inPlace = inPlace
		y := newIndex()
		tab.install(y)
		if _, _, ok := y.Lookup(blobs[n/2].ID); !ok {
			t.Fatal("not found")
		}
		if c := y.Stats().PagesChecked; c < 1 || c > 2 {
			t.Fatalf("inPlace=%v: one lookup checked %d pages of %d, want 1 or 2", inPlace, c, n/tablePageEntries)
		}
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				for _, b := range blobs {
					if _, got, ok := y.Lookup(b.ID); !ok || got != b {
						t.Errorf("inPlace=%v: %v: %+v %v", inPlace, b.ID.Short(), got, ok)
						return
					}
				}
			})
		}
		wg.Wait()
		if c := y.Stats().PagesChecked; c < n/tablePageEntries || c > 4*n/tablePageEntries+2 {
			t.Errorf("inPlace=%v: %d pages checked, want each of %d once, or a few times when lookups race", inPlace, c, n/tablePageEntries)
		}
		if got := y.PackBlobs()[ID{1}]; len(got) != n {
			t.Errorf("inPlace=%v: PackBlobs lists %d blobs, want %d", inPlace, len(got), n)
		}
	}
}

// writeIndexTable writes x's layers (its whole index as loaded: no
// overlay, no mapped table) merged to path: the tests' tables.
func (r *Repository) writeIndexTable(x *Index, path string, live, superseded []ID) error {
	x.mu.RLock()
	defer x.mu.RUnlock()
	if len(x.overlay) > 0 || len(x.layers) > 2 || len(x.spilled) > 0 || x.mapped {
		return fmt.Errorf("index table: index is not as loaded")
	}
	tw, err := r.newTableWriter(filepath.Dir(path), x.inLayer)
	if err != nil {
		return err
	}
	// The layers are sorted and disjoint: write them merged.
	var a, b []indexEntry
	if len(x.layers) > 0 {
		a = x.layers[0].t
	}
	if len(x.layers) > 1 {
		b = x.layers[1].t
	}
	for len(a) > 0 || len(b) > 0 {
		if len(b) == 0 || (len(a) > 0 && bytes.Compare(a[0].id[:], b[0].id[:]) < 0) {
			tw.add(&a[0])
			a = a[1:]
		} else {
			tw.add(&b[0])
			b = b[1:]
		}
	}
	t, err := tw.finish(path, live, superseded, x.packs)
	if t != nil {
		t.unmap()
	}
	return err
}
