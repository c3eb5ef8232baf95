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
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"filippo.io/age"
	"github.com/minio/minio-go/v7"

	"github.com/mailvault/mailvault/archive"
	"github.com/mailvault/mailvault/bench/corpus"
	"github.com/mailvault/mailvault/restore"
)

// countingProxy forwards HTTP requests to the test server and counts them
// by method. The client signs for the proxy's address, which the proxy
// passes on as the Host header, so signatures still match.
type countingProxy struct {
	mu    sync.Mutex
	count map[string]int
	// objects counts by method and path ("GET /bucket/key").
	objects map[string]int
}

func newCountingProxy(t *testing.T, target string) (*countingProxy, string) {
	t.Helper()
	p := &countingProxy{count: map[string]int{}, objects: map[string]int{}}
	rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: target})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.count[r.Method]++
		p.objects[r.Method+" "+r.URL.Path]++
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
	p.count, p.objects = map[string]int{}, map[string]int{}
	return c
}

// takeObjects is take by method and path.
func (p *countingProxy) takeObjects() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	o := p.objects
	p.count, p.objects = map[string]int{}, map[string]int{}
	return o
}

// TestPackCacheRequests: ranged reads of a pack of up to one age chunk
// cost one GET per run of 1 MiB blocks they touch, whatever their number,
// and no HEAD; longer reads go to the server unless their blocks are
// cached; every read gives the bytes the object holds.
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
	obj, data := name, pack
	run := func(reads []read, gets, head int) func(t *testing.T) {
		return func(t *testing.T) {
			for _, r := range reads {
				rc, err := b.GetRange(ctx, archive.PackFile, obj, r.off, r.n)
				if err != nil {
					t.Fatalf("GetRange(%d, %d): %v", r.off, r.n, err)
				}
				got, err := io.ReadAll(rc)
				rc.Close()
				if err != nil {
					t.Fatal(err)
				}
				want := data[min(r.off, size):min(r.off+r.n, size)]
				if !bytes.Equal(got, want) {
					t.Fatalf("GetRange(%d, %d): %d bytes, not the object's %d", r.off, r.n, len(got), len(want))
				}
			}
			c := proxy.take()
			if c[http.MethodGet] != gets || c[http.MethodHead] != head {
				t.Errorf("%d GETs and %d HEADs for %d reads, want %d and %d (all: %v)", c[http.MethodGet], c[http.MethodHead], len(reads), gets, head, c)
			}
		}
	}
	for _, tc := range []struct {
		name       string
		reads      []read
		gets, head int
	}{
		// age: the header, the final chunk, then the blob's chunks.
		{"header, final chunk, blob", append([]read{{0, 4096}, {size - 1000, 1000}}, chunks(300<<10, 900<<10, 64<<10+16)...), 2, 0},
		{"whole pack in chunks, again", chunks(0, size, 64<<10+16), 1, 0}, // block 1 is the only one not read yet
		{"across a block boundary", []read{{cacheBlock - 10, 20}}, 0, 0},
		{"past the end", []read{{size - 5, 100}, {size, 10}, {size + 10, 10}}, 0, 0},
		{"longer reads within cached blocks", []read{{100, cacheBlock}, {cacheBlock - 1000, cacheBlock}}, 0, 0},
		{"longer than the cache serves", []read{{0, size}, {10, cacheBlock + 1}}, 2, 0},
	} {
		t.Run(tc.name, run(tc.reads, tc.gets, tc.head))
	}
	// A second object, nothing of it cached.
	pack2 := make([]byte, 3*cacheBlock/2)
	rand.Read(pack2)
	sum2 := sha256.Sum256(pack2)
	name2 := hex.EncodeToString(sum2[:])
	if err := b.Put(ctx, archive.PackFile, name2, pack2); err != nil {
		t.Fatal(err)
	}
	proxy.take()
	obj, data = name2, pack2
	size = int64(len(pack2))
	for _, tc := range []struct {
		name       string
		reads      []read
		gets, head int
	}{
		// A span of chunks (archive.ReadBlobs) is read as asked, and
		// reading it again asks again.
		{"a span", []read{{200 << 10, 3 * (64<<10 + 16)}, {200 << 10, 3 * (64<<10 + 16)}}, 2, 0},
		{"a chunk across a block boundary: both blocks in one GET", []read{{cacheBlock - 100, 64<<10 + 16}, {0, 10}, {size - 10, 10}}, 1, 0},
		{"past the end of a fresh object", []read{{size + cacheBlock, 10}}, 1, 0},
	} {
		t.Run(tc.name, run(tc.reads, tc.gets, tc.head))
	}

	// An object overwritten behind the backend's back (not through Put,
	// which never overwrites) with other bytes of another size is not
	// cached: the read fails, and once the original is back it is read.
	pack3 := make([]byte, 100<<10)
	rand.Read(pack3)
	sum3 := sha256.Sum256(pack3)
	name3 := hex.EncodeToString(sum3[:])
	if err := b.Put(ctx, archive.PackFile, name3, pack3); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Stat(ctx, archive.PackFile, name3); err != nil {
		t.Fatal(err)
	}
	key3, err := b.key(archive.PackFile, name3)
	if err != nil {
		t.Fatal(err)
	}
	rawPut := func(data []byte) {
		t.Helper()
		if _, err := b.client.PutObject(ctx, cfg.Bucket, key3, bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	rawPut([]byte("garbage"))
	if rc, err := b.GetRange(ctx, archive.PackFile, name3, 0, 100); err == nil {
		got, _ := io.ReadAll(rc)
		t.Errorf("read of a replaced object gave %q, want an error", got)
	}
	rawPut(pack3)
	proxy.take()
	obj, data, size = name3, pack3, int64(len(pack3))
	t.Run("the original back", run([]read{{0, 100}, {50 << 10, 10}}, 1, 0))

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

// TestOneUserRestoreOverS3: a restore of one user reads each data pack it
// needs in one GET (packs of 1 MiB, so every span takes the age header
// along) and no HEAD, and the tree packs through the block cache.
func TestOneUserRestoreOverS3(t *testing.T) {
	ctx := t.Context()
	src := filepath.Join(t.TempDir(), "mail")
	if _, err := corpus.Generate(ctx, src, corpus.Options{Seed: 23, TargetBytes: 30e6, Domains: 2, UsersPerDomain: 4}); err != nil {
		t.Fatal(err)
	}
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	cfg := newBucket(t, "repo")
	proxy, addr := newCountingProxy(t, cfg.Endpoint)
	cfg.Endpoint = addr
	be, err := New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := be.Create(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := archive.Init(ctx, be, archive.KeyRecipients{Recipients: []string{id.Recipient().String()}}); err != nil {
		t.Fatal(err)
	}
	setPackSize(t, be, 1<<20)
	creds := archive.Credentials{Identities: []age.Identity{id}}
	r, err := archive.Open(ctx, be, creds, archive.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	res, err := r.Backup(ctx, archive.BackupOptions{Paths: []string{src}, Host: "testhost"})
	if err != nil {
		t.Fatalf("backup: %v", err)
	}
	snap := res.Snapshot

	// A fresh backend, as a new command would have: nothing cached.
	fresh, err := New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := archive.Open(ctx, fresh, creds, archive.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	if _, err := r2.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	kind := map[string]archive.BlobType{} // object path → what its pack holds
	for p, blobs := range r2.Index().PackBlobs() {
		kind["/"+cfg.Bucket+"/repo/data/"+p.String()[:2]+"/"+p.String()] = blobs[0].Type
	}
	msgs := map[string]int64{}
	var user string
	for _, f := range snap.Roots[0].Folders {
		msgs[f.User] += f.Messages
		if msgs[f.User] > msgs[user] {
			user = f.User
		}
	}
	proxy.takeObjects()
	target := filepath.Join(t.TempDir(), "restored")
	rres, err := restore.Restore(ctx, r2, snap, restore.Options{Target: target, User: user})
	if err != nil {
		t.Fatal(err)
	}
	dataPacks, treeGets, other := 0, 0, 0
	for req, n := range proxy.takeObjects() {
		method, path, _ := strings.Cut(req, " ")
		k, isPack := kind[path]
		switch {
		case isPack && k == archive.DataBlob:
			dataPacks++
			if method != http.MethodGet || n != 1 {
				t.Errorf("%s %s: %d requests, want one GET", method, path, n)
			}
		case isPack && method == http.MethodGet:
			treeGets += n
		default:
			other += n
		}
	}
	t.Logf("%s: %d messages; GETs: one for each of %d data packs, %d of tree packs; %d other requests", user, rres.Messages, dataPacks, treeGets, other)
	if rres.Messages == 0 || dataPacks < 2 {
		t.Fatalf("restored %d messages from %d data packs; corpus too small", rres.Messages, dataPacks)
	}
}
