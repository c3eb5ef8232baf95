package handshake

import (
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/mailvault/mailvault/mailserver/internal/servertest"
	"github.com/mailvault/mailvault/mailserver/store"
)

func serverTLS(t *testing.T) *tls.Config {
	return servertest.NewEnv(t, store.Options{}).ServerTLS
}

func listen(t *testing.T, timeout time.Duration) (*Listener, *servertest.LogBuffer) {
	t.Helper()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	logs := &servertest.LogBuffer{}
	l := NewListener(inner, serverTLS(t), timeout, slog.New(slog.NewTextHandler(logs, nil)))
	t.Cleanup(func() { l.Close() })
	return l, logs
}

// silent connects and sends nothing; it returns the connection once the
// listener has closed it (the read sees EOF or a reset).
func silent(t *testing.T, addr string) <-chan error {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	done := make(chan error, 1)
	go func() {
		_, err := io.ReadAll(c)
		done <- err
	}()
	return done
}

// A client that never starts its handshake neither holds up the clients
// behind it nor keeps its connection past the timeout; the failure is
// logged.
func TestSlowHandshakeHoldsNothingUp(t *testing.T) {
	l, logs := listen(t, 50*time.Millisecond)
	closed := silent(t, l.Addr().String())
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			t.Error(err)
		}
		accepted <- c
	}()
	c, err := tls.Dial("tcp", l.Addr().String(), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sc := <-accepted
	tc, ok := sc.(*tls.Conn)
	if !ok || !tc.ConnectionState().HandshakeComplete {
		t.Fatalf("accepted %T without a finished handshake", sc)
	}
	<-closed
	if n := strings.Count(logs.String(), `msg="TLS handshake failed"`); n != 1 {
		t.Fatalf("%d failures logged:\n%s", n, logs)
	}
	if !strings.Contains(logs.String(), "timeout") {
		t.Fatalf("the log does not say the handshake timed out:\n%s", logs)
	}
}

// notifyListener reports each connection it accepts.
type notifyListener struct {
	net.Listener
	accepted chan struct{}
}

func (n *notifyListener) Accept() (net.Conn, error) {
	c, err := n.Listener.Accept()
	if err == nil {
		n.accepted <- struct{}{}
	}
	return c, err
}

// Close ends the handshakes under way, and Accept reports the close.
func TestCloseEndsPendingHandshakes(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n := &notifyListener{Listener: inner, accepted: make(chan struct{}, 1)}
	l := NewListener(n, serverTLS(t), time.Hour, slog.New(slog.DiscardHandler))
	errc := make(chan error, 1)
	go func() {
		_, err := l.Accept()
		errc <- err
	}()
	closed := silent(t, l.Addr().String())
	<-n.accepted // the silent client's handshake has begun
	l.Close()
	<-closed
	if err := <-errc; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after Close: %v", err)
	}
}
