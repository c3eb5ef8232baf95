// Package servertest holds what the SMTP, IMAP and POP3 servers' tests
// share: a line-protocol client (Conn) that makes tests read like protocol
// transcripts, and a fixture (Env) with a store, accounts, a certificate
// and an audit log on a temporary directory.
//
// It is for tests only; it lives under internal so that nothing outside
// mailserver can import it.
package servertest

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
)

// A Framer reads one server response unit: one line for POP3, one
// possibly multi-line reply for SMTP, one line with its literals for IMAP.
// It returns the unit without its final CRLF.
type Framer func(r *bufio.Reader) (string, error)

// Line reads one CRLF-terminated line (POP3, RFC 1939 section 3). A line
// ending in a bare LF is an error: the server must send CRLF.
func Line(r *bufio.Reader) (string, error) {
	l, err := r.ReadString('\n')
	if err != nil {
		return l, err
	}
	if !strings.HasSuffix(l, "\r\n") {
		return l, fmt.Errorf("line without CRLF: %q", l)
	}
	return strings.TrimSuffix(l, "\r\n"), nil
}

// SMTPReply reads one reply, following "250-" continuation lines (RFC 5321
// section 4.2.1), and returns its lines joined by "\n".
func SMTPReply(r *bufio.Reader) (string, error) {
	var lines []string
	for {
		l, err := r.ReadString('\n')
		if err != nil {
			return strings.Join(append(lines, l), "\n"), err
		}
		l = strings.TrimRight(l, "\r\n")
		lines = append(lines, l)
		if len(l) < 4 || l[3] != '-' {
			return strings.Join(lines, "\n"), nil
		}
	}
}

// IMAPLine reads one response line; a line ending in a literal "{n}"
// (RFC 9051 section 4.3) goes on with the literal's n octets and the rest
// of the line, all returned as one string with the CRLFs kept inside.
func IMAPLine(r *bufio.Reader) (string, error) {
	var out strings.Builder
	for {
		l, err := r.ReadString('\n')
		if err != nil {
			out.WriteString(l)
			return out.String(), err
		}
		l = strings.TrimRight(l, "\r\n")
		out.WriteString(l)
		i := strings.LastIndexByte(l, '{')
		if i < 0 || !strings.HasSuffix(l, "}") {
			return out.String(), nil
		}
		n, err := strconv.Atoi(l[i+1 : len(l)-1])
		if err != nil || n < 0 {
			return out.String(), nil
		}
		b := make([]byte, n)
		if _, err := io.ReadFull(r, b); err != nil {
			return out.String(), err
		}
		out.WriteString("\r\n")
		out.Write(b)
	}
}

// Conn is the client end of a test connection. Every method that can fail
// fails the test, showing what was sent and received so far; the Try…
// variants return the error instead, for tests that expect the server to
// close or the handshake to fail.
type Conn struct {
	t     testing.TB
	conn  net.Conn
	r     *bufio.Reader
	frame Framer
	// log is the transcript so far, in "C: "/"S: " lines, shown when the
	// test fails.
	log []string
}

// maxLog bounds the transcript kept for failure messages.
const maxLog = 60

// Dial connects to addr, with TLS from the start for an implicit-TLS port
// (RFC 8314 section 3.3), trusting any certificate. The connection is
// closed when the test ends.
func Dial(t testing.TB, addr string, implicitTLS bool, frame Framer) *Conn {
	t.Helper()
	var conn net.Conn
	var err error
	if implicitTLS {
		conn, err = tls.Dial("tcp", addr, ClientTLS())
	} else {
		conn, err = net.Dial("tcp", addr)
	}
	if err != nil {
		t.Fatalf("dial %s (implicit TLS %v): %v", addr, implicitTLS, err)
	}
	return New(t, conn, frame)
}

// ClientTLS is the client configuration used for every handshake: the test
// servers have self-signed certificates.
func ClientTLS() *tls.Config { return &tls.Config{InsecureSkipVerify: true} }

// New wraps an open connection; it is closed when the test ends.
func New(t testing.TB, conn net.Conn, frame Framer) *Conn {
	t.Cleanup(func() { conn.Close() })
	return &Conn{t: t, conn: conn, r: bufio.NewReader(conn), frame: frame}
}

// T is the test the connection belongs to; protocol helpers built on Conn
// call c.T().Helper().
func (c *Conn) T() testing.TB { return c.t }

func (c *Conn) record(dir, s string) {
	for _, l := range strings.Split(s, "\n") {
		l = strings.TrimSuffix(l, "\r")
		if len(l) > 200 {
			l = l[:200] + fmt.Sprintf("… (%d bytes)", len(l))
		}
		c.log = append(c.log, dir+l)
	}
	if over := len(c.log) - maxLog; over > 0 {
		c.log = append(c.log[:0], c.log[over:]...)
	}
}

// Fatalf fails the test with the transcript so far.
func (c *Conn) Fatalf(format string, args ...any) {
	c.t.Helper()
	c.t.Fatalf("%s\ntranscript (last %d lines):\n%s", fmt.Sprintf(format, args...), len(c.log), strings.Join(c.log, "\n"))
}

// Send writes s and CRLF. s may hold CRLFs of its own, e.g. a command and
// the message it carries.
func (c *Conn) Send(s string) {
	c.t.Helper()
	if err := c.TrySend(s); err != nil {
		c.Fatalf("send %q: %v", s, err)
	}
}

// TrySend is Send returning the error, for a session the server may have
// closed already.
func (c *Conn) TrySend(s string) error {
	c.record("C: ", s)
	_, err := io.WriteString(c.conn, s+"\r\n")
	return err
}

// Next reads one response unit.
func (c *Conn) Next() string {
	c.t.Helper()
	s, err := c.TryNext()
	if err != nil {
		c.Fatalf("read: %v (after %q)", err, s)
	}
	return s
}

// TryNext is Next returning the error (io.EOF when the server closed).
func (c *Conn) TryNext() (string, error) {
	s, err := c.frame(c.r)
	if s != "" || err == nil {
		c.record("S: ", s)
	}
	return s, err
}

// Expect reads one response unit that must start with prefix, and returns
// it.
func (c *Conn) Expect(prefix string) string {
	c.t.Helper()
	got := c.Next()
	if !strings.HasPrefix(got, prefix) {
		c.Fatalf("expected a response starting %q, got %q", prefix, got)
	}
	return got
}

// ReadUntil reads response units until one for which last is true, and
// returns them all, that one included.
func (c *Conn) ReadUntil(last func(string) bool) []string {
	c.t.Helper()
	var out []string
	for {
		l := c.Next()
		out = append(out, l)
		if last(l) {
			return out
		}
	}
}

// HasPrefix returns a ReadUntil condition: the unit starts with prefix
// (e.g. an IMAP tag and a space).
func HasPrefix(prefix string) func(string) bool {
	return func(s string) bool { return strings.HasPrefix(s, prefix) }
}

// Script runs a transcript, one step a line (leading white space is
// ignored): "C: x" sends x, a bare "C:" sends an empty line, "S: x"
// reads a response unit that must start with x, a bare "S:" reads any.
// It returns the last unit read.
func (c *Conn) Script(transcript string) string {
	c.t.Helper()
	var last string
	for _, l := range strings.Split(strings.TrimSpace(transcript), "\n") {
		l = strings.TrimSpace(l)
		switch {
		case l == "":
		case l == "C:":
			c.Send("")
		case strings.HasPrefix(l, "C: "):
			c.Send(l[3:])
		case l == "S:" || strings.HasPrefix(l, "S: "):
			last = c.Expect(strings.TrimPrefix(strings.TrimPrefix(l, "S:"), " "))
		default:
			c.Fatalf("bad transcript line %q (want \"C: \" or \"S: \")", l)
		}
	}
	return last
}

// StartTLS upgrades the connection after the server agreed to STARTTLS or
// STLS.
func (c *Conn) StartTLS() {
	c.t.Helper()
	if err := c.TryStartTLS(); err != nil {
		c.Fatalf("TLS handshake: %v", err)
	}
}

// TryStartTLS is StartTLS returning the handshake's error.
func (c *Conn) TryStartTLS() error {
	tc := tls.Client(c.conn, ClientTLS())
	if err := tc.Handshake(); err != nil {
		c.record("-- ", "TLS handshake failed: "+err.Error())
		return err
	}
	c.record("-- ", "TLS handshake done")
	c.conn, c.r = tc, bufio.NewReader(tc)
	return nil
}

// CloseWrite ends the client's side (a TLS close_notify or a TCP
// half-close), so that a server waiting for more input sees EOF.
func (c *Conn) CloseWrite() {
	switch conn := c.conn.(type) {
	case *tls.Conn:
		conn.CloseWrite()
	case *net.TCPConn:
		conn.CloseWrite()
	}
}

// Close closes the connection.
func (c *Conn) Close() { c.conn.Close() }

// ExpectClosed reads until the server closes the connection and fails if
// it answers with anything first other than lines for which ok is true (nil:
// nothing is allowed).
func (c *Conn) ExpectClosed(ok func(string) bool) {
	c.t.Helper()
	for {
		s, err := c.TryNext()
		if err != nil && s == "" {
			return // EOF, a reset or a TLS alert: closed all the same
		}
		if ok == nil || !ok(s) {
			c.Fatalf("expected the server to close, got %q", s)
		}
		if err != nil {
			return
		}
	}
}
