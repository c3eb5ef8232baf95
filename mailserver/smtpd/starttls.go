package smtpd

import (
	"crypto/tls"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/mailvault/mailvault/mailserver/ratelimit"
)

// readyToStartTLS is go-smtp's (v0.25.1 conn.go handleStartTLS) answer to
// STARTTLS, written in one Write.
const readyToStartTLS = "220 2.0.0 Ready to start TLS\r\n"

// startTLSGuard wraps a cleartext connection given to go-smtp, to close
// it when a STARTTLS handshake fails.
//
// go-smtp answers a failed STARTTLS handshake with "550 5.0.0 Handshake
// error" in cleartext onto a connection whose client is speaking TLS, and
// then goes on reading cleartext commands from a stream whose state is
// undefined (part of it was eaten by the handshake). RFC 3207 section 4.1
// leaves nothing to say at that point; the only safe end is to close.
// go-smtp offers no hook, so the guard watches what it writes: from
// readyToStartTLS on, the raw connection carries only TLS records (crypto/tls
// starts every write at a record boundary); the first write that is not one
// is that cleartext reply. It is dropped, the failure logged, and the
// connection closed, which ends go-smtp's session at its next read.
//
// It also bounds the handshake: go-smtp runs it under the deadline of the
// command read before, up to five minutes; the guard sets handshakeTimeout
// (go-smtp sets its own deadline again before the next command).
type startTLSGuard struct {
	net.Conn
	log     *slog.Logger
	timeout time.Duration

	mu        sync.Mutex
	upgrading bool  // readyToStartTLS was written
	alert     error // the last cleartext TLS alert sent, for the log
}

// NetConn returns the guarded connection, so that AUTH's password check
// can watch its socket for the client hanging up (package hangup).
func (g *startTLSGuard) NetConn() net.Conn { return g.Conn }

func (g *startTLSGuard) Write(b []byte) (int, error) {
	g.mu.Lock()
	if g.upgrading && !isTLSRecord(b) {
		alert := g.alert
		g.mu.Unlock()
		g.log.Info("STARTTLS handshake failed; closing without a cleartext reply",
			"ip", ratelimit.RemoteIP(g.RemoteAddr()), "alert", alert, "dropped", string(b))
		g.Conn.Close()
		return 0, net.ErrClosed
	}
	if g.upgrading && b[0] == recordAlert && len(b) >= 7 {
		g.alert = tls.AlertError(b[6]) // a handshake alert is sent before encryption
	}
	if !g.upgrading && string(b) == readyToStartTLS {
		g.upgrading = true
		g.Conn.SetDeadline(time.Now().Add(g.timeout))
	}
	g.mu.Unlock()
	return g.Conn.Write(b)
}

// TLS record header (RFC 8446 section 5.1): content type, legacy version
// 3.x, length.
const (
	recordChangeCipherSpec = 20
	recordAlert            = 21
	recordHeartbeat        = 24 // the highest content type in use
)

func isTLSRecord(b []byte) bool {
	return len(b) >= 5 && b[0] >= recordChangeCipherSpec && b[0] <= recordHeartbeat && b[1] == 3
}
