// Package hangup tells a server that its client has gone while the
// session is busy with something other than reading the connection: a
// login queued for a password-check slot (auth.Options.MaxConcurrentHashes)
// must stop waiting, and not then run a 64 MiB argon2id hash, when the
// client that asked for it has disconnected. The protocol libraries read
// the connection only between commands, so nothing else would notice.
package hangup

import (
	"context"
	"errors"
	"net"
	"syscall"
	"time"
)

// ErrClientGone is the cause (context.Cause) of a Watch context that ended
// because the client closed its connection.
var ErrClientGone = errors.New("client closed the connection")

// Watch returns a context derived from ctx that also ends, with cause
// ErrClientGone, when the peer of c closes its end (FIN or RST), and a
// stop function that must be called when the caller no longer needs it
// (before the session reads c again). c is unwrapped through NetConn methods (tls.Conn has one) to the socket;
// Watch reads nothing from it, so no byte of the client's is taken from the
// session. If c has no socket underneath, only ctx ends the context.
//
// Watching clears c's read deadline, and stop leaves it cleared: every
// caller (imapserver, go-smtp, pop3d) sets a new one before its next read.
func Watch(ctx context.Context, c net.Conn) (context.Context, func()) {
	wctx, cancelCause := context.WithCancelCause(ctx)
	cancel := func() { cancelCause(nil) }
	sc := socketOf(c)
	if sc == nil {
		return wctx, cancel
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return wctx, cancel
	}
	// A read deadline set for the command just read would end the wait
	// early. stop sets one in the past: the one way to end
	// RawConn.Read's wait.
	if err := sc.SetReadDeadline(time.Time{}); err != nil {
		return wctx, cancel
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		gone := false
		// RawConn.Read waits on the runtime's poller (edge-triggered) each
		// time the callback says false, so this costs no thread while the
		// client stays.
		rc.Read(func(fd uintptr) bool {
			gone = peerClosed(fd)
			return gone
		})
		if gone {
			cancelCause(ErrClientGone)
		}
	}()
	return wctx, func() {
		sc.SetReadDeadline(time.Unix(1, 0))
		<-done
		sc.SetReadDeadline(time.Time{})
		cancel()
	}
}

type socketConn interface {
	net.Conn
	syscall.Conn
}

// socketOf unwraps c to the connection that owns the socket.
func socketOf(c net.Conn) socketConn {
	for range 8 {
		if sc, ok := c.(socketConn); ok {
			return sc
		}
		u, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			return nil
		}
		c = u.NetConn()
	}
	return nil
}

// Gone reports whether ctx, from Watch, ended because the client left.
func Gone(ctx context.Context) bool { return errors.Is(context.Cause(ctx), ErrClientGone) }
