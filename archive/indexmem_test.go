package archive_test

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailvault/mailvault/archive"
	"github.com/mailvault/mailvault/archive/cache"
)

// syntheticIndex stores files index files listing n blobs in all, spread
// over packs of perPack blobs, and returns every blob ID. Nothing of it is
// real data: only the index is read.
func syntheticIndex(t testing.TB, tr *testRepo, n, files, perPack int) []archive.ID {
	t.Helper()
	r := tr.openOpt(t, archive.Options{Compression: 2})
	rng := rand.New(rand.NewPCG(uint64(n), 11))
	randID := func() (id archive.ID) {
		for i := 0; i < len(id); i += 8 {
			v := rng.Uint64()
			for j := range 8 {
				id[i+j] = byte(v >> (8 * j))
			}
		}
		return id
	}
	ids := make([]archive.ID, 0, n)
	perFile := (n + files - 1) / files
	for f := 0; f < files && len(ids) < n; f++ {
		var ic archive.IndexFileContent
		ic.Version = 1
		for len(ids) < n && len(ids) < (f+1)*perFile {
			p := archive.IndexPack{ID: randID()}
			var off uint32
			for range perPack {
				if len(ids) == n || len(ids) == (f+1)*perFile {
					break
				}
				b := archive.PackedBlob{ID: randID(), Type: archive.DataBlob, Offset: off, Length: 3000, RawLength: 9000, Compression: archive.Zstd}
				off += b.Length
				p.Blobs = append(p.Blobs, b)
				ids = append(ids, b.ID)
			}
			ic.Packs = append(ic.Packs, p)
		}
		if _, err := r.SaveJSONFile(t.Context(), archive.IndexFile, ic); err != nil {
			t.Fatal(err)
		}
	}
	return ids
}

// heapBytes is the live heap: the bytes of objects the last GC kept plus
// those allocated since (runtime/metrics; an exact count, no sampling).
func heapBytes() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// peakHeap samples heapBytes while fn runs and returns the highest value
// seen. Sampling can only miss a peak, never invent one, so an upper bound
// asserted on it holds for the true peak only approximately; the bound is
// set with a wide margin.
func peakHeap(fn func()) uint64 {
	return peakMetric("/memory/classes/heap/objects:bytes", fn, false)
}

// peakMetric samples the runtime/metrics value name (a byte count) every
// 200 µs while fn runs, once more after it (after a collection if gcAfter:
// what fn left live counts too), and returns the highest value seen.
func peakMetric(name string, fn func(), gcAfter bool) uint64 {
	s := []metrics.Sample{{Name: name}}
	var peak atomic.Uint64
	sample := func() {
		metrics.Read(s)
		if v := s[0].Value.Uint64(); v > peak.Load() {
			peak.Store(v)
		}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(200 * time.Microsecond)
		defer tick.Stop()
		for {
			sample()
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	fn()
	close(done)
	wg.Wait()
	if gcAfter {
		runtime.GC()
	}
	sample()
	return peak.Load()
}

// TestIndexMemory builds an index of a million synthetic blobs (200k
// under the race detector) in one, eight and 64 index files, and measures
// what loading it costs: what the loaded index keeps (after a GC), and the
// highest the heap reached while loading (garbage not yet collected
// included, as RSS sees it). The map form this replaced kept 124–314 bytes
// a blob and peaked at 189–442 (docs/PERFORMANCE.md).
func TestIndexMemory(t *testing.T) {
	n := 1_000_000
	if raceEnabled || testing.Short() {
		n = 200_000
	}
	for _, tc := range []struct {
		files int
		// peak is the bound on the heap's peak, bytes per blob: the
		// entries read (48, in chunks) and the table finish copies them
		// into (48) at once, and the streaming reader's buffers. Index
		// files are never held whole, so their size does not matter.
		peak float64
	}{
		{files: 1, peak: 150},
		{files: 8, peak: 150},
		{files: 64, peak: 150},
	} {
		t.Run(fmt.Sprintf("files=%d", tc.files), func(t *testing.T) {
			tr := newTestRepo(t, 0)
			ids := syntheticIndex(t, tr, n, tc.files, 300)

			r := tr.openOpt(t, archive.Options{Compression: 2})
			gc()
			before := heapBytes()
			peak := peakHeap(func() {
				if _, err := r.LoadIndex(t.Context()); err != nil {
					t.Fatal(err)
				}
			})
			gc()
			kept := heapBytes() - before
			x := r.Index()
			if x.Len() != n {
				t.Fatalf("index holds %d blobs, want %d", x.Len(), n)
			}
			perBlob := float64(kept) / float64(n)
			peakPerBlob := float64(peak-before) / float64(n)
			t.Logf("%d blobs in %d files: loaded index keeps %.1f bytes/blob (%d bytes), peak while loading %.1f bytes/blob", n, tc.files, perBlob, kept, peakPerBlob)
			// 48 bytes a blob in the table (at most an eighth spare), 32 +
			// a map entry per pack (300 blobs).
			if perBlob > 56 {
				t.Errorf("loaded index costs %.1f bytes per blob, want <= 56", perBlob)
			}
			// Plus what does not grow with the index: the zstd decoder's
			// 2 MiB window and block buffers, the parser's 256 KiB
			// window, a 3 MiB chunk's spare room.
			const fixed = 8 << 20
			if limit := tc.peak*float64(n) + fixed; float64(peak-before) > limit {
				t.Errorf("heap peaked at %.1f bytes per blob while loading, want <= %.0f + 8 MiB", peakPerBlob, tc.peak)
			}
			st := x.Stats()
			if st.Decoded != int64(n) {
				t.Errorf("decoded %d entries, want %d", st.Decoded, n)
			}
			// Every blob is found.
			for i, id := range ids {
				if i%97 != 0 {
					continue
				}
				if _, b, ok := x.Lookup(id); !ok || b.ID != id || b.Length != 3000 {
					t.Fatalf("blob %d: lookup %v %+v", i, ok, b)
				}
			}
			// The directory narrows each search to a bucket of ~16 entries
			// (log2 16 + 1 = 5 comparisons; buckets vary in size).
			probes := x.Stats().Probed - st.Probed
			lookups := int64((len(ids) + 96) / 97)
			t.Logf("%d lookups compared %d entries (%.2f each)", lookups, probes, float64(probes)/float64(lookups))
			if max := lookups * 6; probes > max {
				t.Errorf("%d lookups compared %d entries, want <= %d (6 each)", lookups, probes, max)
			}

			// Through the local cache: the first load writes the table,
			// the second maps it and keeps only the pack list on the heap.
			// The index on the heap goes first: live, it would let the
			// garbage of the loads below grow as large before a
			// collection.
			r = nil
			x = nil
			// Runs of 64k entries (3.4 MB), so that the million blobs
			// make 16 of them, as 10 M make 20 of the default size.
			const run = 1 << 16
			archive.SetRunEntries(t, run)
			cacheDir := filepath.Join(t.TempDir(), "cache")
			// The table alone, as for a local-directory repository (an
			// S3 cache's copies of the index files are read whole).
			c := cache.NewIndexTable(tr.be, cacheDir, nil)
			r1, err := archive.Open(t.Context(), c, tr.creds(), archive.Options{Compression: 2})
			if err != nil {
				t.Fatal(err)
			}
			gc()
			liveBefore := peakLive(func() {})
			livePeak := peakLive(func() {
				if _, err := r1.LoadIndex(t.Context()); err != nil {
					t.Fatal(err)
				}
			})
			// The table is built on disk, through sorted runs: what is
			// live at most is one run (52 bytes an entry), the fixed
			// buffers above, and the pack list, the directory and a page
			// MAC per 1024 blobs (4 bytes a blob is ample) — not the
			// 48 bytes a blob the table on the heap keeps.
			grew := int64(livePeak) - int64(liveBefore)
			t.Logf("cached, first load (the table built in runs of %d): live heap peaked %.1f bytes/blob above the start", run, float64(grew)/float64(n))
			if limit := int64(run*archive.TaggedSize + fixed + 4*n); grew > limit {
				t.Errorf("building the table: live heap grew by %d bytes, want <= %d", grew, limit)
			}
			if st := r1.Index().Stats(); !st.Mapped || st.Decoded != int64(n) || r1.Index().Len() != n {
				t.Fatalf("cached first load: %+v, %d blobs", st, r1.Index().Len())
			}
			r1.Close()
			r1 = nil
			r2, err := archive.Open(t.Context(), cache.New(tr.be, cacheDir, nil), tr.creds(), archive.Options{Compression: 2})
			if err != nil {
				t.Fatal(err)
			}
			defer r2.Close()
			gc()
			before = heapBytes()
			peak = peakHeap(func() {
				if _, err := r2.LoadIndex(t.Context()); err != nil {
					t.Fatal(err)
				}
			})
			gc()
			kept = heapBytes() - before
			y := r2.Index()
			st = y.Stats()
			t.Logf("cached: loaded index keeps %.1f bytes/blob on the heap, peak %.1f", float64(kept)/float64(n), float64(peak-before)/float64(n))
			if !st.Mapped || st.Decoded != 0 || y.Len() != n {
				t.Fatalf("cached load: %+v, %d blobs", st, y.Len())
			}
			if perBlob := float64(kept) / float64(n); perBlob > 4 {
				t.Errorf("cached index keeps %.1f bytes per blob on the heap, want <= 4 (the pack list)", perBlob)
			}
			if peakPerBlob := float64(peak-before) / float64(n); peakPerBlob > 8 {
				t.Errorf("cached load peaked at %.1f bytes per blob, want <= 8", peakPerBlob)
			}
			// One message: its header and body blobs, each one binary
			// search of a bucket of the mapped table.
			for _, id := range ids[:2] {
				if _, _, ok := y.Lookup(id); !ok {
					t.Fatal("not found")
				}
			}
			if probed := y.Stats().Probed; probed > 2*9 {
				t.Errorf("two lookups compared %d entries of %d, want <= 18", probed, n)
			}
			// Each lookup checks the MAC of the page (1024 entries) or
			// two its bucket lies in, not the whole table.
			if c := y.Stats().PagesChecked; c > 4 {
				t.Errorf("two lookups checked %d pages of the table (of %d), want <= 4", c, (n+1023)/1024)
			}
			if d := y.Stats().Decoded; d != 0 {
				t.Errorf("decoded %d entries", d)
			}
		})
	}
}

// gc collects twice: sync.Pool keeps what it held for one more cycle.
func gc() {
	runtime.GC()
	runtime.GC()
}
