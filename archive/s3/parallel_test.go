package s3

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/mailvault/mailvault/archive"
	"github.com/mailvault/mailvault/restore"
)

// gateProxy forwards requests to the test server, but holds each request
// for a whole pack (a PUT while backing up, a GET while restoring) until want
// of them are in flight at once, or until a timeout lets it go anyway. A
// repository that moves one pack at a time therefore never reaches want,
// and the test sees it in maxInFlight, not in a clock.
type gateProxy struct {
	want    int
	timeout time.Duration

	mu          sync.Mutex
	inFlight    int
	maxInFlight int
	released    chan struct{} // closed once want requests were in flight
}

func newGateProxy(t *testing.T, target string, want int) (*gateProxy, string) {
	t.Helper()
	p := &gateProxy{want: want, timeout: 10 * time.Second, released: make(chan struct{})}
	rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: target})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Packs: stored, or read by a restore, whole or a span of
		// them (reads of a few trees before it are ranged reads of
		// aligned 1 MiB blocks, one after the other).
		pack := r.Method == http.MethodPut || r.Method == http.MethodGet && !isBlockRead(r.Header.Get("Range"))
		if pack && strings.Contains(r.URL.Path, "/data/") {
			p.enter()
			defer p.leave()
		}
		rp.ServeHTTP(w, r)
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return p, l.Addr().String()
}

// isBlockRead reports whether a Range header asks for whole aligned blocks
// of the pack cache (packcache.go).
func isBlockRead(rng string) bool {
	var from, to int64
	if _, err := fmt.Sscanf(rng, "bytes=%d-%d", &from, &to); err != nil {
		return false
	}
	return from%cacheBlock == 0 && (to+1)%cacheBlock == 0
}

func (p *gateProxy) enter() {
	p.mu.Lock()
	p.inFlight++
	p.maxInFlight = max(p.maxInFlight, p.inFlight)
	if p.inFlight >= p.want {
		select {
		case <-p.released:
		default:
			close(p.released)
		}
	}
	p.mu.Unlock()
	select {
	case <-p.released:
	case <-time.After(p.timeout):
	}
}

func (p *gateProxy) leave() {
	p.mu.Lock()
	p.inFlight--
	p.mu.Unlock()
}

// reset starts counting again, with the gate closed.
func (p *gateProxy) reset() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := p.maxInFlight
	p.maxInFlight, p.released = 0, make(chan struct{})
	return n
}

// TestPacksMoveInParallel: a backup to S3 keeps several pack uploads in
// flight, and a restore from S3 several pack downloads (Config.Connections),
// where a local disk is served one pack at a time.
func TestPacksMoveInParallel(t *testing.T) {
	cfg := newBucket(t, "repo")
	direct := mustBackend(t, cfg)
	ctx := t.Context()
	if err := direct.Create(ctx); err != nil {
		t.Fatal(err)
	}
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	creds := archive.Credentials{Identities: []age.Identity{id}}
	if _, err := archive.Init(ctx, direct, archive.KeyRecipients{Recipients: []string{id.Recipient().String()}}); err != nil {
		t.Fatal(err)
	}
	setPackSize(t, direct, 1<<20) // a few packs from a few MB

	gate, addr := newGateProxy(t, cfg.Endpoint, 2)
	cfg.Endpoint, cfg.Region = addr, "us-east-1"
	cfg.Connections = 3
	be := mustBackend(t, cfg)
	if got := archive.Connections(be); got != 3 {
		t.Fatalf("Connections = %d, want 3", got)
	}
	r, err := archive.Open(ctx, be, creds, archive.Options{Compression: 0})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := r.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	src := faultCorpus(t)
	res, err := r.Backup(ctx, archive.BackupOptions{Paths: []string{src}, Host: "parallel"})
	if err != nil {
		t.Fatal(err)
	}
	if n := gate.reset(); n < 2 {
		t.Errorf("backup: at most %d pack upload(s) in flight, want 2 or more", n)
	}

	target := filepath.Join(t.TempDir(), "restored")
	if _, err := restore.Restore(ctx, r, res.Snapshot, restore.Options{Target: target}); err != nil {
		t.Fatal(err)
	}
	if n := gate.reset(); n < 2 {
		t.Errorf("restore: at most %d pack download(s) in flight, want 2 or more", n)
	}
	compareTrees(t, src, target)
}
