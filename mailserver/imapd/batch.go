package imapd

import (
	"net"
	"sync"
	"time"
)

// batchBytes is how much FETCH output a session gathers before writing
// it: two full TLS records (RFC 8446 section 5.1, 16 KiB of plaintext
// each).
const batchBytes = 32 << 10

// batchWriteTimeout bounds the write of what a batch holds at its end, as
// imapserver bounds each response's (its respWriteTimeout).
const batchWriteTimeout = 30 * time.Second

var batchPool = sync.Pool{New: func() any { b := make([]byte, 0, batchBytes); return &b }}

// batchConn lets a FETCH write its responses in batches. imapserver
// flushes its buffered writer at the end of every response line
// (imapwire.Encoder.CRLF), so a FETCH of 10,000 ENVELOPEs was 10,000
// writes — 10,000 TLS records and system calls, a fifth of the server's
// time in that FETCH (BenchmarkFetchEnvelope's profile). go-imap v2
// (beta.8) has no way to hold those flushes back, so the connection under
// it does: between begin and end, writes are gathered up to batchBytes.
// It sits under TLS (imapserver requires a *tls.Conn for LOGIN), so each
// response is still its own TLS record, but the records go out together.
// Outside a batch it writes through, so IDLE updates, continuation
// requests and tagged responses go out at once, as before.
type batchConn struct {
	net.Conn

	mu  sync.Mutex
	buf *[]byte // non-nil between begin and end
}

// begin starts gathering writes.
func (c *batchConn) begin() {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.buf == nil {
		c.buf = batchPool.Get().(*[]byte)
	}
}

// end writes what was gathered and goes back to writing through.
func (c *batchConn) end() error {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.buf == nil {
		return nil
	}
	err := c.flushLocked(true)
	*c.buf = (*c.buf)[:0]
	batchPool.Put(c.buf)
	c.buf = nil
	return err
}

// flushLocked writes the gathered bytes. At a batch's end imapserver has
// already cleared its write deadline, so the write gets its own.
func (c *batchConn) flushLocked(last bool) error {
	b := *c.buf
	if len(b) == 0 {
		return nil
	}
	if last {
		c.Conn.SetWriteDeadline(time.Now().Add(batchWriteTimeout))
		defer c.Conn.SetWriteDeadline(time.Time{})
	}
	_, err := c.Conn.Write(b)
	*c.buf = b[:0]
	return err
}

func (c *batchConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.buf == nil {
		return c.Conn.Write(p)
	}
	if len(*c.buf)+len(p) > batchBytes {
		if err := c.flushLocked(false); err != nil {
			return 0, err
		}
		if len(p) >= batchBytes {
			return c.Conn.Write(p) // a large literal's chunk: as it is
		}
	}
	*c.buf = append(*c.buf, p...)
	return len(p), nil
}

// Close writes what a batch holds first (a BYE from Shutdown may be in
// it), under the batch's write deadline.
func (c *batchConn) Close() error {
	c.mu.Lock()
	if c.buf != nil {
		c.flushLocked(true)
	}
	c.mu.Unlock()
	return c.Conn.Close()
}

// NetConn returns the wrapped connection (see package hangup).
func (c *batchConn) NetConn() net.Conn { return c.Conn }

// batchListener hands out batchConns.
type batchListener struct{ net.Listener }

func (l batchListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &batchConn{Conn: c}, nil
}

// batchConnOf finds the batchConn under a session's connection (under
// its tls.Conn).
func batchConnOf(c net.Conn) *batchConn {
	for range 4 {
		if bc, ok := c.(*batchConn); ok {
			return bc
		}
		u, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			return nil
		}
		c = u.NetConn()
	}
	return nil
}
