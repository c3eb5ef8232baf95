package imapd

import (
	"net"
	"syscall"
)

// quickAck asks the kernel to acknowledge what the client sent at once
// instead of delaying the ACK (TCP_QUICKACK; it lasts for a few segments,
// so it is asked again at each point it matters).
//
// APPEND's literal needs it: a client that writes the literal and the
// line's closing CRLF in two writes without TCP_NODELAY (Python's
// imaplib, and so every script importing mail with it) holds the CRLF
// back under Nagle's algorithm until the literal is acknowledged, and
// Linux delays that ACK up to 40 ms on a connection where the server has
// been answering (its "pingpong" mode): every APPEND took 46 ms, 22 per
// second, whatever the server did (issue 10). Setting TCP_QUICKACK sends
// an ACK that is due at once and leaves pingpong mode.
func quickAck(c net.Conn) {
	for range 4 {
		if sc, ok := c.(syscall.Conn); ok {
			if rc, err := sc.SyscallConn(); err == nil {
				rc.Control(func(fd uintptr) {
					syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK, 1)
				})
			}
			return
		}
		u, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			return
		}
		c = u.NetConn()
	}
}
