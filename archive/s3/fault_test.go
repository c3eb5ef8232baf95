package s3

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/minio/minio-go/v7"

	"github.com/mailvault/mailvault/archive"
	"github.com/mailvault/mailvault/bench/corpus"
	"github.com/mailvault/mailvault/restore"
)

// fault is what the proxy does to a connection.
type fault int

const (
	resetOnAccept    fault = iota // reset (RST) the connection as soon as it is accepted
	resetMidRequest               // reset it in the middle of a request
	stallRequest                  // stop reading the request midway and hold the connection open
	truncateRequest               // forward part of the request, then close (FIN)
	stallResponse                 // forward the whole request, never the response
	truncateResponse              // forward the request and a few bytes of the response, then close
	// The response-side kinds strike once the responses have brought
	// another `every` bytes down, mostly inside a body.
	resetMidResponse    // reset the connection in the middle of a response
	truncateMidResponse // forward part of a response, then close (FIN)
	stallMidResponse    // stop forwarding a response midway and hold the connection open
)

func (f fault) String() string {
	return [...]string{"reset on accept", "reset mid-request", "stall request", "truncate request", "stall response", "truncate response",
		"reset mid-response", "truncate mid-response", "stall mid-response"}[f]
}

// onResponse reports whether f is counted in response bytes.
func (f fault) onResponse() bool { return f >= resetMidResponse }

// faultProxy forwards TCP connections to a server and injects faults:
// resets of freshly accepted connections, or — counting the bytes clients
// send, or for the response-side kinds the bytes servers send back — a
// fault in the middle of whatever request or response is flowing each
// time another `every` bytes have gone up or down, `left` times.
type faultProxy struct {
	l      net.Listener
	target string

	mu       sync.Mutex
	kind     fault
	left     int   // faults still to inject
	every    int64 // request or response bytes between faults
	sent     int64 // request bytes forwarded since arm
	received int64 // response bytes forwarded since arm
	next     int64 // inject when sent (received, for response kinds) passes this
	injected int   // faults injected since arm
	conns    []net.Conn
	closed   bool
	wg       sync.WaitGroup
}

func newFaultProxy(t *testing.T, target string) *faultProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &faultProxy{l: l, target: target}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(func() {
		l.Close()
		p.mu.Lock()
		p.closed = true
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (p *faultProxy) addr() string { return p.l.Addr().String() }

// arm injects n faults of kind; for the mid-request kinds the first once
// first bytes of requests have been forwarded, then one each time another
// every bytes have.
func (p *faultProxy) arm(kind fault, n int, first, every int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.kind, p.left, p.every, p.sent, p.received, p.next, p.injected = kind, n, every, 0, 0, first, 0
}

// down is how many response bytes have gone down since arm.
func (p *faultProxy) down() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.received
}

func (p *faultProxy) faults() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.injected
}

// take reports whether forwarding n more request bytes crosses the next
// fault, and if so how many of them go before it.
func (p *faultProxy) take(n int) (before int, kind fault, hit bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sent += int64(n)
	if p.kind == resetOnAccept || p.kind.onResponse() {
		return n, 0, false
	}
	return p.cross(n, p.sent)
}

// takeResponse is take for n response bytes.
func (p *faultProxy) takeResponse(n int) (before int, kind fault, hit bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.received += int64(n)
	if !p.kind.onResponse() {
		return n, 0, false
	}
	return p.cross(n, p.received)
}

// cross is take's decision once the count, now total, has grown by n.
func (p *faultProxy) cross(n int, total int64) (before int, kind fault, hit bool) {
	if p.left == 0 || total < p.next {
		return n, 0, false
	}
	before = max(0, n-int(total-p.next))
	p.left--
	p.injected++
	p.next = max(p.next+p.every, total+1)
	return before, p.kind, true
}

func (p *faultProxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		reset := p.kind == resetOnAccept && p.left > 0
		if reset {
			p.left--
			p.injected++
		}
		p.mu.Unlock()
		if reset {
			c.(*net.TCPConn).SetLinger(0) // close sends RST
			c.Close()
			continue
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			c.Close()
			up.Close()
			return
		}
		p.conns = append(p.conns, c, up)
		p.mu.Unlock()
		p.wg.Add(2)
		pc := &proxiedConn{client: c.(*net.TCPConn), server: up.(*net.TCPConn), responseCut: -1}
		go func() { defer p.wg.Done(); p.forwardRequest(pc) }()
		go func() { defer p.wg.Done(); p.forwardResponse(pc) }()
	}
}

// proxiedConn is a client connection and its server connection.
type proxiedConn struct {
	client, server *net.TCPConn

	mu          sync.Mutex
	stalled     bool // the client connection is held open, nothing forwarded
	muted       bool // responses are swallowed
	responseCut int  // ≥ 0: response bytes still to forward before closing
}

func (p *faultProxy) forwardRequest(pc *proxiedConn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := pc.client.Read(buf)
		if n > 0 {
			before, kind, hit := p.take(n)
			if _, werr := pc.server.Write(buf[:before]); werr != nil {
				break
			}
			if hit {
				switch kind {
				case resetMidRequest:
					pc.client.SetLinger(0)
					pc.client.Close()
					pc.server.Close()
					return
				case truncateRequest:
					pc.client.Close()
					pc.server.Close()
					return
				case stallRequest:
					// The client's writes fill the socket buffers and
					// then block; only its stall timeout gets it out.
					pc.mu.Lock()
					pc.stalled = true
					pc.mu.Unlock()
					pc.server.Close()
					return
				case stallResponse:
					pc.mu.Lock()
					pc.muted = true
					pc.mu.Unlock()
				case truncateResponse:
					pc.mu.Lock()
					pc.responseCut = 20 // inside the status line or headers
					pc.mu.Unlock()
				}
				if _, werr := pc.server.Write(buf[before:n]); werr != nil {
					break
				}
			}
		}
		if err != nil {
			break
		}
	}
	pc.server.CloseWrite()
}

func (p *faultProxy) forwardResponse(pc *proxiedConn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := pc.server.Read(buf)
		if before, kind, hit := p.takeResponse(n); hit {
			pc.client.Write(buf[:before])
			switch kind {
			case resetMidResponse:
				pc.client.SetLinger(0)
				pc.client.Close()
			case truncateMidResponse:
				pc.client.Close()
			case stallMidResponse:
				// The client connection stays open, silent; only the
				// client's stall timeout gets it out.
			}
			pc.server.Close()
			return
		}
		pc.mu.Lock()
		stalled, muted, cut := pc.stalled, pc.muted, pc.responseCut
		if cut >= 0 {
			pc.responseCut = max(0, cut-n)
		}
		pc.mu.Unlock()
		if stalled {
			return // the client connection stays open, unanswered
		}
		if n > 0 && !muted {
			w := buf[:n]
			if cut >= 0 {
				w = w[:min(n, cut)]
			}
			if _, werr := pc.client.Write(w); werr != nil || (cut >= 0 && cut <= n) {
				break
			}
		}
		if err != nil {
			break
		}
	}
	pc.client.Close()
	pc.server.Close()
}

// TestRetriesConnectionResets: with minio-go's own retries off, resets of
// fresh connections are ridden out by the backend's retry — and are
// errors without it.
func TestRetriesConnectionResets(t *testing.T) {
	cfg := newBucket(t, "r")
	if err := mustBackend(t, cfg).Create(t.Context()); err != nil {
		t.Fatal(err)
	}
	proxy := newFaultProxy(t, cfg.Endpoint)
	cfg.Endpoint = proxy.addr()
	cfg.Region = "us-east-1" // no location lookup through the proxy
	cfg.MaxRetries = 1

	tests := []struct {
		name     string
		attempts int
		resets   int
		wantErr  bool
	}{
		{"no resets", 1, 0, false},
		{"two resets, three attempts", 3, 2, false},
		{"one reset, one attempt", 1, 1, true},
		{"three resets, three attempts", 3, 3, true},
	}
	data := bytes.Repeat([]byte("mailvault"), 1000)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := cfg
			cfg.Attempts = tt.attempts
			b := mustBackend(t, cfg) // a fresh client: no pooled connections
			proxy.arm(resetOnAccept, tt.resets, 0, 0)
			err := b.Put(t.Context(), archive.IndexFile, "idx", data)
			if (err != nil) != tt.wantErr {
				t.Fatalf("Put: %v, want error %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			b = mustBackend(t, cfg)
			proxy.arm(resetOnAccept, tt.resets, 0, 0)
			rc, err := b.Get(t.Context(), archive.IndexFile, "idx")
			if err != nil {
				t.Fatalf("Get: %v", err)
			}
			got, err := io.ReadAll(rc)
			rc.Close()
			if err != nil || !bytes.Equal(got, data) {
				t.Errorf("Get read %d bytes, %v", len(got), err)
			}
		})
	}
}

// faultRepo is a repository in a fresh bucket, reached directly and
// through a fault proxy.
type faultRepo struct {
	direct, proxied *Backend
	proxy           *faultProxy
	creds           archive.Credentials
}

// testStallTimeout keeps stalls short; the faults, not the waiting, are
// under test.
const testStallTimeout = time.Second

func newFaultRepo(t *testing.T, cfg Config) *faultRepo {
	t.Helper()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	f := &faultRepo{direct: mustBackend(t, cfg), creds: archive.Credentials{Identities: []age.Identity{id}}}
	if err := f.direct.Create(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := archive.Init(t.Context(), f.direct, archive.KeyRecipients{Recipients: []string{id.Recipient().String()}}); err != nil {
		t.Fatal(err)
	}
	setPackSize(t, f.direct, 1<<20) // several pack uploads per backup
	f.proxy = newFaultProxy(t, cfg.Endpoint)
	cfg.Endpoint = f.proxy.addr()
	cfg.Region = "us-east-1" // no location lookup through the proxy
	cfg.StallTimeout = testStallTimeout
	f.proxied = mustBackend(t, cfg)
	return f
}

func (f *faultRepo) open(t *testing.T, be archive.Backend) *archive.Repository {
	t.Helper()
	r, err := archive.Open(t.Context(), be, f.creds, archive.Options{Compression: 0})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	unindexed, err := r.LoadIndex(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.AdoptPacks(t.Context(), unindexed); err != nil {
		t.Fatal(err)
	}
	return r
}

// checkClean reads every pack back without faults: no errors, and no
// warnings (every stored pack is indexed).
func (f *faultRepo) checkClean(t *testing.T, snapshots int) {
	t.Helper()
	chk, err := f.open(t, f.direct).Check(t.Context(), archive.CheckOptions{ReadData: true})
	if err != nil {
		t.Fatalf("check: %v", err)
	}
	if !chk.OK() || len(chk.Warnings) != 0 || chk.Snapshots != snapshots {
		t.Errorf("check --read-data: %d snapshots (want %d), errors %v, warnings %v", chk.Snapshots, snapshots, chk.Errors, chk.Warnings)
	}
}

func faultCorpus(t *testing.T) string {
	t.Helper()
	src := filepath.Join(t.TempDir(), "mail")
	if _, err := corpus.Generate(t.Context(), src, corpus.Options{Seed: 7, TargetBytes: 3e6, Domains: 1, UsersPerDomain: 3}); err != nil {
		t.Fatal(err)
	}
	return src
}

// TestBackupThroughFaults injects each kind of fault into the uploads of
// a backup, three times, with the backend configured as the CLI's (minio-go
// retrying, the backend retrying on top). Resets and truncations fail
// the request at once; stalls are caught by the stall timeout. Each time
// the backup completes through the retries, and the repository, read
// back without faults, checks clean and restores.
func TestBackupThroughFaults(t *testing.T) {
	src := faultCorpus(t)
	for _, kind := range []fault{resetMidRequest, stallRequest, truncateRequest, stallResponse, truncateResponse} {
		t.Run(kind.String(), func(t *testing.T) {
			f := newFaultRepo(t, newBucket(t, "faults"))
			r := f.open(t, f.proxied)
			const faults = 3
			// Every 300 kB: inside the pack uploads (about 500 kB each;
			// 1.4 MB in all before any retry).
			f.proxy.arm(kind, faults, 300<<10, 300<<10)
			res, err := r.Backup(t.Context(), archive.BackupOptions{Paths: []string{src}, Host: "faulty"})
			if err != nil {
				t.Fatalf("backup through %d faults: %v", f.proxy.faults(), err)
			}
			t.Logf("%d request bytes through the proxy, %d faults; %d bytes stored in %d packs", f.proxy.sent, f.proxy.faults(), res.Snapshot.Summary.BytesStored, res.Snapshot.Summary.PacksWritten)
			f.checkClean(t, 1)
			if n := f.proxy.faults(); n != faults {
				t.Fatalf("%d faults injected, want %d (the backup uploaded too little)", n, faults)
			}
			target := filepath.Join(t.TempDir(), "restored")
			if _, err := restore.Restore(t.Context(), f.open(t, f.direct), res.Snapshot, restore.Options{Target: target}); err != nil {
				t.Fatalf("restore: %v", err)
			}
			compareTrees(t, src, target)
		})
	}
}

// TestBackupFailsCleanlyOnStalls: when every upload stalls and the
// retries run out, the backup fails with a timeout and leaves no snapshot
// (nothing refers to data that is not there); the next backup completes,
// taking over what the failed one stored, and the repository checks
// clean.
func TestBackupFailsCleanlyOnStalls(t *testing.T) {
	src := faultCorpus(t)
	cfg := newBucket(t, "stalls")
	cfg.MaxRetries = 2
	cfg.Attempts = 2
	f := newFaultRepo(t, cfg)

	// Let the first pack through, then stall everything.
	f.proxy.arm(stallRequest, 1<<30, 1200<<10, 1)
	_, err := f.open(t, f.proxied).Backup(t.Context(), archive.BackupOptions{Paths: []string{src}, Host: "faulty"})
	var ne net.Error
	if err == nil || !(errors.As(err, &ne) && ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded)) {
		t.Fatalf("backup through endless stalls: %v, want a timeout", err)
	}
	if n := f.proxy.faults(); n < cfg.MaxRetries*cfg.Attempts {
		t.Errorf("%d stalls, want at least %d (every try of one upload)", n, cfg.MaxRetries*cfg.Attempts)
	}
	var snaps int
	f.direct.List(t.Context(), archive.SnapshotFile, func(string, int64) error { snaps++; return nil })
	if snaps != 0 {
		t.Fatalf("the failed backup left %d snapshots", snaps)
	}

	f.proxy.arm(stallRequest, 0, 0, 0)
	if _, err := f.open(t, f.proxied).Backup(t.Context(), archive.BackupOptions{Paths: []string{src}, Host: "faulty"}); err != nil {
		t.Fatalf("the next backup: %v", err)
	}
	f.checkClean(t, 1)
}

// TestStallTimeoutAllowsSlowTransfers: the stall timeout bounds silence,
// not transfers — a download that takes many stall timeouts but keeps
// moving completes on the first try. (A download, because there every
// piece that arrives is seen; an upload's progress is only seen as the
// kernel's send buffer drains, which is why the stall timeout must exceed
// the time a full send buffer takes on the slowest link.)
func TestStallTimeoutAllowsSlowTransfers(t *testing.T) {
	cfg := newBucket(t, "slow")
	direct := mustBackend(t, cfg)
	if err := direct.Create(t.Context()); err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("0123456789abcdef"), 128<<10) // 2 MiB
	if err := direct.Put(t.Context(), archive.IndexFile, "big", data); err != nil {
		t.Fatal(err)
	}
	proxy := newSlowProxy(t, cfg.Endpoint, 64<<10, 10*time.Millisecond)
	cfg.Endpoint = proxy.l.Addr().String()
	cfg.Region = "us-east-1"
	cfg.StallTimeout = 100 * time.Millisecond
	cfg.MaxRetries = 1
	cfg.Attempts = 1
	rc, err := mustBackend(t, cfg).Get(t.Context(), archive.IndexFile, "big")
	if err != nil {
		t.Fatalf("slow download: %v", err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("slow download: %d bytes, %v", len(got), err)
	}
	// 2 MiB in 64 KiB pieces 10 ms apart: 32 pauses, over 3 stall
	// timeouts in all, never one without progress.
	if proxy.pauses() < 32 {
		t.Errorf("the download paused %d times, want 32 or more", proxy.pauses())
	}
}

// slowProxy forwards responses in pieces of at most chunk bytes with a
// pause before each.
type slowProxy struct {
	l      net.Listener
	chunk  int
	pause  time.Duration
	mu     sync.Mutex
	paused int
	wg     sync.WaitGroup
}

func newSlowProxy(t *testing.T, target string, chunk int, pause time.Duration) *slowProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &slowProxy{l: l, chunk: chunk, pause: pause}
	var conns []net.Conn
	var mu sync.Mutex
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, c, up)
			mu.Unlock()
			p.wg.Add(2)
			go func() { defer p.wg.Done(); io.Copy(up, c); up.(*net.TCPConn).CloseWrite() }()
			go func() {
				defer p.wg.Done()
				defer c.Close()
				buf := make([]byte, p.chunk)
				for {
					n, err := up.Read(buf)
					if n > 0 {
						time.Sleep(p.pause)
						p.mu.Lock()
						p.paused++
						p.mu.Unlock()
						if _, err := c.Write(buf[:n]); err != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (p *slowProxy) pauses() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.paused
}

func mustBackend(t testing.TB, cfg Config) *Backend {
	t.Helper()
	b, err := New(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	b.backoff = 0 // the attempts, not the waiting, are under test
	return b
}

// TestRestoreThroughFaults backs a corpus up without faults, then
// restores it and runs check --read-data through each response-side
// fault, injected several times into the response bodies (a restore's
// spans, check's whole packs, index and snapshot loads). The broken
// bodies are resumed (resume.go): the restore is byte-identical and the
// check finds nothing wrong.
func TestRestoreThroughFaults(t *testing.T) {
	src := faultCorpus(t)
	for _, kind := range []fault{resetMidResponse, truncateMidResponse, stallMidResponse} {
		t.Run(kind.String(), func(t *testing.T) {
			f := newFaultRepo(t, newBucket(t, "rfaults"))
			res, err := f.open(t, f.direct).Backup(t.Context(), archive.BackupOptions{Paths: []string{src}, Host: "faulty"})
			if err != nil {
				t.Fatal(err)
			}
			const faults = 3
			// Every 400 kB of responses: the restore reads about
			// 1.5 MB (the corpus's 3 MB compressed) in 1 MiB packs,
			// so each fault lands inside some body.
			f.proxy.arm(kind, faults, 300<<10, 400<<10)
			target := filepath.Join(t.TempDir(), "restored")
			if _, err := restore.Restore(t.Context(), f.open(t, f.proxied), res.Snapshot, restore.Options{Target: target}); err != nil {
				t.Fatalf("restore through %d faults: %v", f.proxy.faults(), err)
			}
			compareTrees(t, src, target)
			restoreFaults, restoreResumes := f.proxy.faults(), f.proxied.resumes.Load()
			t.Logf("restore: %d response bytes, %d faults, %d re-requested bodies", f.proxy.down(), restoreFaults, restoreResumes)
			if restoreFaults != faults {
				t.Fatalf("%d faults injected into the restore, want %d (it read too little)", restoreFaults, faults)
			}

			f.proxy.arm(kind, faults, 300<<10, 400<<10)
			chk, err := f.open(t, f.proxied).Check(t.Context(), archive.CheckOptions{ReadData: true})
			if err != nil {
				t.Fatalf("check --read-data through %d faults: %v", f.proxy.faults(), err)
			}
			if !chk.OK() || len(chk.Warnings) != 0 || chk.Snapshots != 1 || chk.PacksRead == 0 {
				t.Errorf("check --read-data: %d snapshots, %d packs read, errors %v, warnings %v", chk.Snapshots, chk.PacksRead, chk.Errors, chk.Warnings)
			}
			checkResumes := f.proxied.resumes.Load() - restoreResumes
			t.Logf("check: %d response bytes, %d faults, %d re-requested bodies", f.proxy.down(), f.proxy.faults(), checkResumes)
			if n := f.proxy.faults(); n != faults {
				t.Fatalf("%d faults injected into the check, want %d", n, faults)
			}
			// A fault may land in a response's headers, which minio-go
			// retries itself; most land in bodies.
			if restoreResumes+checkResumes == 0 {
				t.Error("no body was re-requested: the faults did not test resuming")
			}
		})
	}
}

// countingBackend counts the pack reads made through it.
type countingBackend struct {
	archive.Backend
	mu    sync.Mutex
	reads map[string]int
}

func (c *countingBackend) GetRange(ctx context.Context, t archive.FileType, name string, offset, length int64) (io.ReadCloser, error) {
	if t == archive.PackFile {
		c.mu.Lock()
		c.reads[name]++
		c.mu.Unlock()
	}
	return c.Backend.GetRange(ctx, t, name, offset, length)
}

func (c *countingBackend) Get(ctx context.Context, t archive.FileType, name string) (io.ReadCloser, error) {
	return c.GetRange(ctx, t, name, 0, 0)
}

// TestCorruptChunkNotRetried: a pack whose stored bytes are flipped is
// damage, not a transport error: reading its blobs fails with
// ErrCorrupt at once, without re-requesting the body or reading the pack
// again — also while the proxy truncates responses — and a restore of
// the snapshot fails the same way.
func TestCorruptChunkNotRetried(t *testing.T) {
	src := faultCorpus(t)
	f := newFaultRepo(t, newBucket(t, "corrupt"))
	res, err := f.open(t, f.direct).Backup(t.Context(), archive.BackupOptions{Paths: []string{src}, Host: "faulty"})
	if err != nil {
		t.Fatal(err)
	}
	// The data pack holding the most blobs, with a byte of its first
	// age chunk (which holds its first blob) flipped. Written with a
	// bare PUT: the backend's would send the name's SHA-256, which the
	// damaged bytes no longer match.
	r := f.open(t, f.direct)
	var pack archive.ID
	var blobs []archive.PackedBlob
	for p, bs := range r.Index().PackBlobs() {
		if len(bs) > len(blobs) && bs[0].Type == archive.DataBlob {
			pack, blobs = p, bs
		}
	}
	rc, err := f.direct.Get(t.Context(), archive.PackFile, pack.String())
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	sealed[2000] ^= 0x40
	k, _ := f.direct.key(archive.PackFile, pack.String())
	if _, err := f.direct.client.PutObject(t.Context(), f.direct.cfg.Bucket, k, bytes.NewReader(sealed), int64(len(sealed)), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name   string
		faults int
	}{
		{"no faults", 0},
		{"responses truncated", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			proxied := mustBackend(t, f.proxied.cfg)
			counted := &countingBackend{Backend: proxied, reads: map[string]int{}}
			r := f.open(t, counted)
			// Past the index loads, into the pack's body.
			f.proxy.arm(truncateMidResponse, tc.faults, 1000, 1000)
			handed := 0
			err := r.ReadBlobs(t.Context(), pack, slices.Clone(blobs), func(archive.PackedBlob, []byte) error { handed++; return nil })
			if !errors.Is(err, archive.ErrCorrupt) {
				t.Fatalf("ReadBlobs of the damaged pack: %v, want ErrCorrupt", err)
			}
			if handed != 0 {
				t.Errorf("%d blobs handed from a pack whose first chunk is damaged", handed)
			}
			reads, resumes := counted.reads[pack.String()], proxied.resumes.Load()
			t.Logf("%d faults, %d reads of the pack, %d re-requested bodies: %v", f.proxy.faults(), reads, resumes, err)
			if reads != 1 {
				t.Errorf("the damaged pack was read %d times, want 1", reads)
			}
			// Each fault may cost one re-request of the body, and nothing
			// more: the damage itself is never retried.
			if int(resumes) > f.proxy.faults() {
				t.Errorf("%d re-requests for %d faults", resumes, f.proxy.faults())
			}
			if tc.faults > 0 && f.proxy.faults() == 0 {
				t.Error("no fault injected")
			}
		})
	}

	f.proxy.arm(truncateMidResponse, 0, 0, 0)
	target := filepath.Join(t.TempDir(), "restored")
	if _, err := restore.Restore(t.Context(), f.open(t, f.proxied), res.Snapshot, restore.Options{Target: target}); !errors.Is(err, archive.ErrCorrupt) {
		t.Fatalf("restore with a damaged pack: %v, want ErrCorrupt", err)
	}
}

// TestResumeRefusesAChangedObject: a body re-requested after a break asks
// for the version first read (If-Match); an object replaced in between
// fails the read rather than join the bytes of two versions. (config, the
// one file the backend overwrites.)
func TestResumeRefusesAChangedObject(t *testing.T) {
	cfg := newBucket(t, "changed")
	direct := mustBackend(t, cfg)
	if err := direct.Create(t.Context()); err != nil {
		t.Fatal(err)
	}
	old, replaced := bytes.Repeat([]byte("old version "), 10_000), bytes.Repeat([]byte("new version "), 10_000)
	if err := direct.Put(t.Context(), archive.ConfigFile, "config", old); err != nil {
		t.Fatal(err)
	}
	proxy := newFaultProxy(t, cfg.Endpoint)
	cfg.Endpoint = proxy.addr()
	cfg.Region = "us-east-1"
	for _, tt := range []struct {
		name    string
		replace bool
	}{{"unchanged", false}, {"replaced", true}} {
		t.Run(tt.name, func(t *testing.T) {
			b := mustBackend(t, cfg)
			if err := direct.Put(t.Context(), archive.ConfigFile, "config", old); err != nil {
				t.Fatal(err)
			}
			// Cut within the first response's body.
			proxy.arm(truncateMidResponse, 1, 5000, 1)
			rc, err := b.Get(t.Context(), archive.ConfigFile, "config")
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			if tt.replace {
				if err := direct.Put(t.Context(), archive.ConfigFile, "config", replaced); err != nil {
					t.Fatal(err)
				}
			}
			got, err := io.ReadAll(rc)
			var resp minio.ErrorResponse
			errors.As(err, &resp)
			if proxy.faults() != 1 || b.resumes.Load() != 1 {
				t.Fatalf("%d faults, %d re-requests, want 1 each", proxy.faults(), b.resumes.Load())
			}
			switch {
			case tt.replace && resp.Code != "PreconditionFailed":
				t.Errorf("read of a replaced object: %d bytes, %v; want PreconditionFailed", len(got), err)
			case !tt.replace && (err != nil || !bytes.Equal(got, old)):
				t.Errorf("read: %d bytes, %v", len(got), err)
			}
		})
	}
}
