package s3

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"testing"

	"github.com/mailvault/mailvault/archive"
)

// countingProxy forwards HTTP requests to the test server and counts them
// by method. The client signs for the proxy's address, which the proxy
// passes on as the Host header, so signatures still match.
type countingProxy struct {
	mu    sync.Mutex
	count map[string]int
}

func newCountingProxy(t *testing.T, target string) (*countingProxy, string) {
	t.Helper()
	p := &countingProxy{count: map[string]int{}}
	rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: target})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.count[r.Method]++
		p.mu.Unlock()
		rp.ServeHTTP(w, r)
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return p, l.Addr().String()
}

// take returns the counts since the last call and starts again.
func (p *countingProxy) take() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.count
	p.count = map[string]int{}
	return c
}

// TestPackCacheRequests: small ranged reads of a pack cost one GET per
// 1 MiB block they touch and one HEAD per pack, whatever their number, and
// give the same bytes as the object holds.
func TestPackCacheRequests(t *testing.T) {
	cfg := newBucket(t, "repo")
	proxy, addr := newCountingProxy(t, cfg.Endpoint)
	cfg.Endpoint = addr
	b, err := New(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if err := b.Create(ctx); err != nil {
		t.Fatal(err)
	}
	// 2.5 blocks: the last block is short.
	pack := make([]byte, 5*cacheBlock/2)
	rand.Read(pack)
	sum := sha256.Sum256(pack)
	name := hex.EncodeToString(sum[:]) // the server checks the name is the content's SHA-256
	if err := b.Put(ctx, archive.PackFile, name, pack); err != nil {
		t.Fatal(err)
	}
	proxy.take()

	type read struct{ off, n int64 }
	// chunks reads [from, to) in pieces of n, as age reads a blob.
	chunks := func(from, to, n int64) []read {
		var rs []read
		for off := from; off < to; off += n {
			rs = append(rs, read{off, min(n, to-off)})
		}
		return rs
	}
	size := int64(len(pack))
	for _, tc := range []struct {
		name       string
		reads      []read
		gets, head int
	}{
		// age: the header, the final chunk, then the blob's chunks.
		{"header, final chunk, blob", append([]read{{0, 4096}, {size - 1000, 1000}}, chunks(300<<10, 900<<10, 64<<10+16)...), 2, 1},
		{"whole pack in chunks, again", chunks(0, size, 64<<10+16), 1, 0}, // block 1 is the only one not read yet
		{"across a block boundary", []read{{cacheBlock - 10, 20}}, 0, 0},
		{"past the end", []read{{size - 5, 100}, {size, 10}, {size + 10, 10}}, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, r := range tc.reads {
				rc, err := b.GetRange(ctx, archive.PackFile, name, r.off, r.n)
				if err != nil {
					t.Fatalf("GetRange(%d, %d): %v", r.off, r.n, err)
				}
				got, err := io.ReadAll(rc)
				rc.Close()
				if err != nil {
					t.Fatal(err)
				}
				want := pack[min(r.off, size):min(r.off+r.n, size)]
				if !bytes.Equal(got, want) {
					t.Fatalf("GetRange(%d, %d): %d bytes, not the object's %d", r.off, r.n, len(got), len(want))
				}
			}
			c := proxy.take()
			if c[http.MethodGet] != tc.gets || c[http.MethodHead] != tc.head {
				t.Errorf("%d GETs and %d HEADs for %d reads, want %d and %d (all: %v)", c[http.MethodGet], c[http.MethodHead], len(tc.reads), tc.gets, tc.head, c)
			}
		})
	}

	// A removed pack is forgotten: reading it again asks the server.
	if err := b.Remove(ctx, archive.PackFile, name); err != nil {
		t.Fatal(err)
	}
	if _, err := b.GetRange(ctx, archive.PackFile, name, 0, 4096); !errors.Is(err, archive.ErrNotExist) {
		t.Errorf("GetRange after Remove: %v, want ErrNotExist", err)
	}
	if _, err := b.Stat(ctx, archive.PackFile, name); !errors.Is(err, archive.ErrNotExist) {
		t.Errorf("Stat after Remove: %v, want ErrNotExist", err)
	}
}
