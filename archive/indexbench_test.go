package archive_test

import (
	"path/filepath"
	"runtime"
	"testing"

	"github.com/mailvault/mailvault/archive"
	"github.com/mailvault/mailvault/archive/cache"
)

// benchBlobs is the size of the benchmarks' synthetic index: about what
// 300k messages make.
const benchBlobs = 600_000

// benchIndexRepo makes a repository whose index lists benchBlobs blobs in
// eight files, and returns it with the IDs and a cache directory.
func benchIndexRepo(b *testing.B) (*testRepo, []archive.ID, string) {
	b.Helper()
	tr := newTestRepo(b, 0)
	ids := syntheticIndex(b, tr, benchBlobs, 8, 300)
	return tr, ids, filepath.Join(b.TempDir(), "cache")
}

// openIndex opens tr (through the local cache when cacheDir is set) and
// loads its index.
func openIndex(b *testing.B, tr *testRepo, cacheDir string) *archive.Repository {
	be := archive.Backend(tr.be)
	if cacheDir != "" {
		be = cache.New(tr.be, cacheDir, nil)
	}
	r, err := archive.Open(b.Context(), be, tr.creds(), archive.Options{Compression: 2})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := r.LoadIndex(b.Context()); err != nil {
		b.Fatal(err)
	}
	return r
}

// BenchmarkIndexLoad is the index load every command starts with:
// decoding the index files (no cache: a local repository, or a first
// run), or with the local cache warm. heap-B/blob is what the loaded index
// keeps on the Go heap.
func BenchmarkIndexLoad(b *testing.B) {
	tr, _, cacheDir := benchIndexRepo(b)
	for _, bc := range []struct {
		name  string
		cache string
	}{{"files", ""}, {"cached", cacheDir}} {
		b.Run(bc.name, func(b *testing.B) {
			openIndex(b, tr, bc.cache).Close() // fills the cache
			var kept uint64
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				b.StopTimer()
				gc()
				before := heapBytes()
				b.StartTimer()
				r := openIndex(b, tr, bc.cache)
				b.StopTimer()
				gc()
				kept = heapBytes() - before
				runtime.KeepAlive(r.Index())
				r.Close()
				b.StartTimer()
			}
			b.ReportMetric(float64(kept)/benchBlobs, "heap-B/blob")
		})
	}
}

// BenchmarkIndexLookup looks blobs up in a loaded index (what backup's
// Has and restore's Lookup do per blob).
func BenchmarkIndexLookup(b *testing.B) {
	tr, ids, cacheDir := benchIndexRepo(b)
	for _, bc := range []struct {
		name  string
		cache string
	}{{"heap", ""}, {"mapped", cacheDir}} {
		b.Run(bc.name, func(b *testing.B) {
			openIndex(b, tr, bc.cache).Close()
			r := openIndex(b, tr, bc.cache)
			defer r.Close()
			x := r.Index()
			i := 0
			for b.Loop() {
				if _, _, ok := x.Lookup(ids[i%len(ids)]); !ok {
					b.Fatal("not found")
				}
				i += 7919
			}
		})
	}
}
