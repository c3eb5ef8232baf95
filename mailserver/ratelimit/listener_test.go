package ratelimit

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/mailvault/mailvault/mailserver/internal/servertest"
)

var testReplies = Replies{TooFast: "421 too fast\r\n", TooMany: "421 too many\r\n"}

// listen serves l on 127.0.0.1 and sends each connection it admits,
// still open, on the returned channel.
func listen(t *testing.T, l *Listener) (addr string, admitted <-chan net.Conn) {
	t.Helper()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l.Listener = inner
	t.Cleanup(func() { l.Close() })
	ch := make(chan net.Conn, 8)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				close(ch)
				return
			}
			ch <- c
		}
	}()
	return inner.Addr().String(), ch
}

// dial connects to addr; the connection is closed when the test ends.
func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// readAll reads what the server writes until it closes c.
func readAll(t *testing.T, c net.Conn) string {
	t.Helper()
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestListener(t *testing.T) {
	for _, tc := range []struct {
		name        string
		perMinute   float64
		maxOpen     int
		implicitTLS bool
		want        string // what the second connection reads before it is closed
	}{
		{"rate", 1, 0, false, testReplies.TooFast},
		{"open", 0, 1, false, testReplies.TooMany},
		{"rate on a TLS port", 1, 0, true, ""},
		{"open on a TLS port", 0, 1, true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logs := &servertest.LogBuffer{}
			l := &Listener{Conns: NewConns(tc.perMinute, tc.maxOpen), Replies: testReplies, ImplicitTLS: tc.implicitTLS, Log: slog.New(slog.NewTextHandler(logs, nil))}
			addr, admitted := listen(t, l)
			dial(t, addr)
			first := <-admitted
			if got := readAll(t, dial(t, addr)); got != tc.want {
				t.Fatalf("refused connection read %q, want %q", got, tc.want)
			}
			if n := strings.Count(logs.String(), "connection refused"); n != 1 {
				t.Fatalf("%d refusals logged, want 1:\n%s", n, logs.String())
			}
			if tc.maxOpen == 0 {
				return
			}
			// Closing the first gives its slot back: the next is
			// admitted, and the one after refused again.
			first.Close()
			dial(t, addr)
			<-admitted
			if got := readAll(t, dial(t, addr)); got != tc.want {
				t.Fatalf("refused connection read %q, want %q", got, tc.want)
			}
		})
	}
}

// emfileListener fails its first n Accepts the way net does when the
// process is out of file descriptors.
type emfileListener struct {
	net.Listener
	n int
}

func (l *emfileListener) Accept() (net.Conn, error) {
	if l.n > 0 {
		l.n--
		return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: l.Addr(), Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	return l.Listener.Accept()
}

// TestListenerWaitsOutEMFILE: running out of descriptors does not end the
// accept loop (which would close the port for good): the error is logged,
// waited out, and the next connection is admitted. A closed listener's
// error still ends it.
func TestListenerWaitsOutEMFILE(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	logs := &servertest.LogBuffer{}
	l := &Listener{Listener: &emfileListener{Listener: inner, n: 3}, Conns: NewConns(0, 0), Replies: testReplies, Log: slog.New(slog.NewTextHandler(logs, nil))}
	dial(t, inner.Addr().String())
	c, err := l.Accept()
	if err != nil {
		t.Fatalf("Accept: %v, want the connection after the EMFILE errors", err)
	}
	c.Close()
	if n := strings.Count(logs.String(), "too many open files"); n != 3 {
		t.Errorf("%d EMFILE errors logged, want 3:\n%s", n, logs.String())
	}
	l.Close()
	if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept after Close: %v, want net.ErrClosed", err)
	}
}
