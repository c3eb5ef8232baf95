package s3

import (
	"bytes"
	"io"
	"net"
	"sync"
	"testing"

	"github.com/mailvault/mailvault/archive"
)

// resetProxy forwards TCP connections to a server, except that it resets
// the first n connections as soon as they are accepted.
type resetProxy struct {
	l      net.Listener
	target string
	mu     sync.Mutex
	resets int        // still to do
	conns  []net.Conn // open ones, closed at the end
	closed bool
	wg     sync.WaitGroup
}

func newResetProxy(t *testing.T, target string) *resetProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &resetProxy{l: l, target: target}
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

func (p *resetProxy) arm(n int) {
	p.mu.Lock()
	p.resets = n
	p.mu.Unlock()
}

func (p *resetProxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		reset := p.resets > 0
		if reset {
			p.resets--
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
		go func() { defer p.wg.Done(); io.Copy(up, c); up.(*net.TCPConn).CloseWrite() }()
		go func() { defer p.wg.Done(); io.Copy(c, up); c.Close(); up.Close() }()
	}
}

// TestRetriesConnectionResets: with minio-go's own retries off, resets of
// fresh connections are ridden out by the backend's retry — and are
// errors without it.
func TestRetriesConnectionResets(t *testing.T) {
	cfg := newBucket(t, "r")
	if err := mustBackend(t, cfg).Create(t.Context()); err != nil {
		t.Fatal(err)
	}
	proxy := newResetProxy(t, cfg.Endpoint)
	cfg.Endpoint = proxy.l.Addr().String()
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
			proxy.arm(tt.resets)
			err := b.Put(t.Context(), archive.IndexFile, "idx", data)
			if (err != nil) != tt.wantErr {
				t.Fatalf("Put: %v, want error %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			b = mustBackend(t, cfg)
			proxy.arm(tt.resets)
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

func mustBackend(t testing.TB, cfg Config) *Backend {
	t.Helper()
	b, err := New(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	b.backoff = 0 // the attempts, not the waiting, are under test
	return b
}
