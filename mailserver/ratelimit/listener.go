package ratelimit

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"time"
)

// Conns limits connections per remote IP: new ones per minute (with a
// burst of the same number) and open ones at once. A server keeps one for
// all its listeners, so the limits hold across its ports.
type Conns struct {
	rate Bucket
	open Counter
}

// NewConns limits each IP to perMinute new connections and maxOpen open
// ones (0: no limit).
func NewConns(perMinute float64, maxOpen int) *Conns {
	c := &Conns{}
	c.rate.Rate, c.rate.Burst = perMinute/60, perMinute
	c.open.Max = maxOpen
	return c
}

// SetLimits changes the limits while they are in use; what each IP has
// used is kept, not reset (see Bucket.SetRate and Counter.SetMax).
func (c *Conns) SetLimits(perMinute float64, maxOpen int) {
	c.rate.SetRate(perMinute/60, perMinute)
	c.open.SetMax(maxOpen)
}

// Replies are a protocol's answers to a refused connection, each a whole
// line with its CRLF: "421 4.7.0 …" (RFC 5321 section 3.8), "* BYE …"
// (RFC 9051 section 7.1.5), "-ERR [SYS/TEMP] …" (RFC 3206).
type Replies struct {
	TooFast string // over the rate of new connections
	TooMany string // over the number open at once
}

// Listener hands on the connections of the inner listener that Conns
// admits, each giving its slot back when it is closed. It refuses the
// others before any session starts: logs them, writes the reply on a
// cleartext port (on an implicit-TLS port nothing may precede the
// handshake) and closes them, in the background so that a client that
// does not read holds up neither Accept nor its slot.
type Listener struct {
	net.Listener
	Conns       *Conns
	Replies     Replies
	ImplicitTLS bool
	Log         *slog.Logger
}

// Accept returns the next admitted connection, or the inner listener's
// error once it is closed or broken. A temporary accept error (EMFILE,
// ENFILE, ENOBUFS) is waited out, as net/http does, with a delay that
// doubles from 5 ms to 1 s: returning it would end the server's accept
// loop, and a client that exhausts the descriptors for a moment would
// shut the port for good.
func (l *Listener) Accept() (net.Conn, error) {
	var delay time.Duration
	for {
		c, err := l.Listener.Accept()
		var ne net.Error
		if errors.As(err, &ne) && ne.Temporary() {
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			l.Log.Warn("accept", "addr", l.Addr().String(), "err", err, "retry_in", delay)
			time.Sleep(delay)
			continue
		}
		if err != nil {
			return nil, err
		}
		delay = 0
		ip := RemoteIP(c.RemoteAddr())
		if !l.Conns.rate.Allow(ip) {
			l.refuse(c, ip, l.Replies.TooFast)
			continue
		}
		release, ok := l.Conns.open.Acquire(ip)
		if !ok {
			l.refuse(c, ip, l.Replies.TooMany)
			continue
		}
		return ReleaseOnClose(c, release), nil
	}
}

func (l *Listener) refuse(c net.Conn, ip, reply string) {
	l.Log.Info("connection refused", "ip", ip, "reason", strings.TrimSpace(reply))
	go func() {
		if !l.ImplicitTLS {
			c.SetWriteDeadline(time.Now().Add(10 * time.Second))
			io.WriteString(c, reply)
		}
		c.Close()
	}()
}
