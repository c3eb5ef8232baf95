package hangup

import (
	"context"
	"io"
	"net"
	"testing"
)

func pair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// wrapped hides the socket behind a NetConn method, as tls.Conn and the
// servers' connection wrappers do.
type wrapped struct{ net.Conn }

func (w wrapped) NetConn() net.Conn { return w.Conn }

func TestWatch(t *testing.T) {
	for _, tc := range []struct {
		name string
		// client acts; gone is whether the server should see it leave.
		client func(net.Conn)
		gone   bool
	}{
		{"close", func(c net.Conn) { c.Close() }, true},
		{"close after pipelined bytes", func(c net.Conn) { c.Write([]byte("a2 NOOP\r\n")); c.Close() }, true},
		{"half close", func(c net.Conn) { c.(*net.TCPConn).CloseWrite() }, true},
		{"reset", func(c net.Conn) { c.(*net.TCPConn).SetLinger(0); c.Close() }, true},
		{"pipelined bytes, still there", func(c net.Conn) { c.Write([]byte("a2 NOOP\r\n")) }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client, server := pair(t)
			ctx, stop := Watch(t.Context(), wrapped{server})
			tc.client(client)
			if tc.gone {
				<-ctx.Done()
				if !Gone(ctx) {
					t.Fatalf("cause %v", context.Cause(ctx))
				}
				stop()
				return
			}
			// The bytes arrive, and the session reads them after stop:
			// the watch took none of them.
			stop()
			if Gone(ctx) {
				t.Fatal("gone while the client stays")
			}
			b := make([]byte, 9)
			if _, err := io.ReadFull(server, b); err != nil || string(b) != "a2 NOOP\r\n" {
				t.Fatalf("read after stop: %q %v", b, err)
			}
		})
	}
}

// Without a socket underneath, the context is ctx's.
func TestWatchWithoutSocket(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	ctx, stop := Watch(t.Context(), a)
	b.Close()
	stop()
	if Gone(ctx) {
		t.Fatal("gone without a socket to watch")
	}
}
