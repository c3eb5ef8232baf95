// Package handshake completes the TLS handshake of implicit-TLS
// connections (RFC 8314 section 3.3: SMTP submission on 465, IMAP on 993)
// before the protocol server sees them.
//
// go-smtp and imapserver would run the handshake themselves, inside the
// session: go-smtp bounded only by its 5-minute command timeout and
// reporting a failure through its printf logger, imapserver lazily on the
// greeting's write with no read deadline at all, so a client that
// connects and sends nothing holds a connection slot until it goes away.
// Here each handshake runs in its own goroutine under a short deadline (so
// a slow one does not hold up Accept), a failure is logged through slog
// and the connection closed without a byte of plaintext, and only
// connections with a finished handshake are handed on, as *tls.Conn (the
// servers look for that type to know the session is encrypted).
package handshake

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/mailvault/mailvault/mailserver/ratelimit"
)

// Timeout is the default time a client has to complete the handshake.
const Timeout = 30 * time.Second

// Listener hands on connections from an inner listener once their TLS
// handshake is done.
type Listener struct {
	inner   net.Listener
	cfg     *tls.Config
	timeout time.Duration
	log     *slog.Logger

	start  sync.Once
	ready  chan *tls.Conn
	errs   chan error    // the inner listener's errors, in order
	failed chan struct{} // closed when the inner listener fails for good
	err    error         // that failure; set before failed is closed

	ctx       context.Context // ends pending handshakes at Close
	cancel    context.CancelFunc
	closeOnce sync.Once
}

// NewListener wraps inner. timeout bounds each handshake (Timeout if 0);
// log receives one Info record per failed handshake.
func NewListener(inner net.Listener, cfg *tls.Config, timeout time.Duration, log *slog.Logger) *Listener {
	if timeout == 0 {
		timeout = Timeout
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Listener{
		inner: inner, cfg: cfg, timeout: timeout, log: log,
		ready: make(chan *tls.Conn), errs: make(chan error), failed: make(chan struct{}),
		ctx: ctx, cancel: cancel,
	}
}

// Accept returns the next connection whose handshake succeeded, or the
// inner listener's error.
func (l *Listener) Accept() (net.Conn, error) {
	l.start.Do(func() { go l.acceptLoop() })
	select {
	case c := <-l.ready:
		return c, nil
	case err := <-l.errs:
		return nil, err
	case <-l.failed:
		return nil, l.err
	case <-l.ctx.Done():
		return nil, net.ErrClosed
	}
}

func (l *Listener) acceptLoop() {
	for {
		c, err := l.inner.Accept()
		if err != nil {
			var ne net.Error
			// Temporary errors (EMFILE, …) are passed on for the server's
			// accept loop to back off and retry, as go-smtp and imapserver
			// do with a plain listener.
			if errors.As(err, &ne) && ne.Temporary() {
				select {
				case l.errs <- err:
					continue
				case <-l.ctx.Done():
					return
				}
			}
			l.err = err
			close(l.failed)
			return
		}
		go l.handshake(c)
	}
}

func (l *Listener) handshake(c net.Conn) {
	tc := tls.Server(c, l.cfg)
	c.SetDeadline(time.Now().Add(l.timeout))
	if err := tc.HandshakeContext(l.ctx); err != nil {
		l.log.Info("TLS handshake failed", "ip", ratelimit.RemoteIP(c.RemoteAddr()), "err", err)
		c.Close() // the raw conn: nothing more is written
		return
	}
	c.SetDeadline(time.Time{})
	select {
	case l.ready <- tc:
	case <-l.ctx.Done():
		c.Close()
	}
}

// Close stops accepting and ends the handshakes under way.
func (l *Listener) Close() error {
	err := net.ErrClosed
	l.closeOnce.Do(func() {
		l.cancel()
		err = l.inner.Close()
	})
	return err
}

// Addr is the inner listener's address.
func (l *Listener) Addr() net.Addr { return l.inner.Addr() }
