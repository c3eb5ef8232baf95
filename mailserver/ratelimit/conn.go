package ratelimit

import (
	"net"
	"sync"
)

// RemoteIP returns the address of a connection's peer without its port:
// the key that per-IP limits count by.
func RemoteIP(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}

// ReleaseOnClose wraps c so that closing it calls release exactly once,
// however often Close is called: the way a slot taken with
// Counter.Acquire is given back when the connection ends.
func ReleaseOnClose(c net.Conn, release func()) net.Conn {
	return &releaseConn{Conn: c, release: release}
}

type releaseConn struct {
	net.Conn
	release func()
	once    sync.Once
}

// NetConn returns the wrapped connection, as tls.Conn's does, so that
// package hangup can reach the socket.
func (c *releaseConn) NetConn() net.Conn { return c.Conn }

func (c *releaseConn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}
