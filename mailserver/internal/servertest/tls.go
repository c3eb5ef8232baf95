package servertest

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
)

// BadHandshake is a client that starts TLS in a way the server must
// refuse.
type BadHandshake struct {
	Name string
	// Start runs the client's side on conn; it must fail.
	Start func(conn net.Conn) error
}

// BadHandshakes returns the refused handshakes every TLS port is tested
// with: bytes that are not TLS at all, a TLS 1.0 client (the servers ask
// for 1.2 at least), and a TLS 1.2 client offering only a cipher suite
// without forward secrecy (the servers allow ECDHE with AEAD only).
func BadHandshakes() []BadHandshake {
	client := func(cfg *tls.Config) func(net.Conn) error {
		return func(conn net.Conn) error {
			cfg.InsecureSkipVerify = true
			if err := tls.Client(conn, cfg).Handshake(); err == nil {
				return fmt.Errorf("the server completed a handshake it must refuse")
			}
			return nil
		}
	}
	return []BadHandshake{
		{"garbage", func(conn net.Conn) error {
			_, err := io.WriteString(conn, "GET / HTTP/1.0\r\n\r\n")
			return err
		}},
		{"TLS 1.0", client(&tls.Config{MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS10})},
		{"no common cipher", client(&tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_RSA_WITH_AES_128_CBC_SHA}})},
	}
}

// FailTLS runs a refused handshake where the server expects TLS to begin
// (after its STARTTLS answer, or at once on an implicit-TLS port reached
// with a cleartext Dial). Then, as a client that did not notice, it sends
// a cleartext command, ends its side and reads until the server closes.
// It returns every byte the server sent from the start of the handshake.
func (c *Conn) FailTLS(bad BadHandshake, command string) []byte {
	c.t.Helper()
	if n := c.r.Buffered(); n > 0 {
		c.Fatalf("%d bytes unread before the TLS handshake", n)
	}
	rec := &recordingConn{Conn: c.conn}
	if err := bad.Start(rec); err != nil {
		c.Fatalf("%s: %v", bad.Name, err)
	}
	c.record("-- ", bad.Name+" handshake refused")
	io.WriteString(rec, command+"\r\n") // the server may have closed: errors are expected
	c.CloseWrite()
	io.Copy(io.Discard, rec) // to EOF, or a reset
	out := rec.received()
	c.record("S: ", fmt.Sprintf("%q", out))
	return out
}

// RefusedHandshakes runs every BadHandshake against the port at addr, each
// in a subtest on a new connection: start (nil on an implicit-TLS port)
// brings the cleartext session to where TLS begins, command is what the
// client sends after the failure. Only TLS records may come back.
func RefusedHandshakes(t *testing.T, addr string, frame Framer, start func(*Conn), command string) {
	t.Helper()
	for _, b := range BadHandshakes() {
		t.Run(b.Name, func(t *testing.T) {
			c := Dial(t, addr, false, frame)
			if start != nil {
				start(c)
			}
			TLSRecordsOnly(t, c.FailTLS(b, command))
		})
	}
}

// recordingConn keeps every byte read from the connection.
type recordingConn struct {
	net.Conn
	mu  sync.Mutex
	got []byte
}

func (r *recordingConn) Read(b []byte) (int, error) {
	n, err := r.Conn.Read(b)
	r.mu.Lock()
	r.got = append(r.got, b[:n]...)
	r.mu.Unlock()
	return n, err
}

func (r *recordingConn) received() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]byte(nil), r.got...)
}

// TLSRecordsOnly fails the test unless b is a sequence of whole TLS
// records (RFC 8446 section 5.1: content type 20–24, version 3.x, length),
// i.e. holds no cleartext protocol reply.
func TLSRecordsOnly(t testing.TB, b []byte) {
	t.Helper()
	all := b
	for len(b) > 0 {
		if len(b) < 5 || b[0] < 20 || b[0] > 24 || b[1] != 3 {
			t.Fatalf("not a TLS record at offset %d of %q", len(all)-len(b), all)
		}
		n := 5 + int(b[3])<<8 + int(b[4])
		if len(b) < n {
			t.Fatalf("truncated TLS record at offset %d of %q", len(all)-len(b), all)
		}
		b = b[n:]
	}
}

// LogBuffer collects log output from many goroutines.
type LogBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *LogBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *LogBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
