package imapd

import (
	"bufio"
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/mailvault/mailvault/mailserver/auth"
	"github.com/mailvault/mailvault/mailserver/internal/servertest"
	"github.com/mailvault/mailvault/mailserver/store"
)

// countingListener counts the writes to its connections: the server's
// write system calls.
type countingListener struct {
	net.Listener
	writes *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return countingConn{c, l.writes}, nil
}

type countingConn struct {
	net.Conn
	writes *atomic.Int64
}

func (c countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// countingReader counts the bytes the client reads.
type countingReader struct {
	net.Conn
	n *atomic.Int64
}

func (r countingReader) Read(p []byte) (int, error) {
	n, err := r.Conn.Read(p)
	r.n.Add(int64(n))
	return n, err
}

// An ENVELOPE FETCH of a whole folder that has not changed writes its
// responses in batches, not one write per message, and does not list the
// folder's directories again; a change made behind the server's back (by
// another process, straight in the Maildir) is still seen at the next
// command.
func TestEnvelopeFetchCounts(t *testing.T) {
	const n = 300
	for _, implicitTLS := range []bool{true, false} {
		e := &testEnv{Env: servertest.NewEnv(t, store.Options{})}
		var writes atomic.Int64
		e.srv = New(Config{TLSConfig: e.ServerTLS, MaxMessageBytes: 1 << 20, ConnsPerMinute: 1e6, MaxConnsPerIP: 1000, SpoolDir: e.Dir},
			e.Store, e.Guard(auth.DefaultLimiterConfig()), e.Log)
		e.Ports = servertest.ServePorts(t, func(ln net.Listener, implicitTLS bool) error {
			return e.srv.Serve(countingListener{ln, &writes}, implicitTLS)
		}, e.srv.Shutdown)
		a := store.Account{Domain: "example.test", User: "alice"}
		for i := range n {
			e.Deliver(t, a, "", benchMessage(i, 4096))
		}
		raw, err := net.Dial("tcp", e.Addr(implicitTLS))
		if err != nil {
			t.Fatal(err)
		}
		var read atomic.Int64
		var conn net.Conn = countingReader{raw, &read}
		f := &fetchEnv{testEnv: e}
		if implicitTLS {
			conn = tls.Client(conn, servertest.ClientTLS())
		}
		f.c, f.r = conn, bufio.NewReader(conn)
		f.r.ReadString('\n')
		if !implicitTLS {
			f.run(t, "STARTTLS")
			conn = tls.Client(conn, servertest.ClientTLS())
			f.c, f.r = conn, bufio.NewReader(conn)
		}
		f.run(t, `LOGIN alice@example.test "alice password"`)
		f.run(t, "SELECT INBOX")
		dir := e.Store.MaildirPath(a)
		ageDirs(t, dir)
		f.run(t, envelopeFetch) // fills the header cache, takes the stamp

		for i := range 2 {
			w, b, l := writes.Load(), read.Load(), e.srv.listings.Load()
			if got := f.run(t, envelopeFetch); got != n {
				t.Fatalf("%d FETCH responses, want %d", got, n)
			}
			w, b, l = writes.Load()-w, read.Load()-b, e.srv.listings.Load()-l
			// 32 KiB batches: about one write per 32 KiB, and no
			// fewer than one per 16 KiB.
			if w > b/(16<<10)+2 {
				t.Errorf("implicit TLS %v, FETCH %d: %d writes for %d bytes of %d responses", implicitTLS, i, w, b, n)
			}
			if l != 0 {
				t.Errorf("implicit TLS %v, FETCH %d: %d listings of an unchanged folder", implicitTLS, i, l)
			}
		}

		// Another process (a mail client on the Maildir) marks a new
		// message \Seen: it moves it to cur/ with the flag in its name.
		fresh, err := os.ReadDir(filepath.Join(dir, "new"))
		if err != nil || len(fresh) == 0 {
			t.Fatalf("new/: %d entries, %v", len(fresh), err)
		}
		name := fresh[0].Name()
		if err := os.Rename(filepath.Join(dir, "new", name), filepath.Join(dir, "cur", name+":2,S")); err != nil {
			t.Fatal(err)
		}
		f.tag++
		f.c.Write([]byte("x1 NOOP\r\n"))
		saw := false
		for {
			l, err := f.r.ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			saw = saw || strings.Contains(l, `FETCH (`) && strings.Contains(l, `\Seen`)
			if strings.HasPrefix(l, "x1 ") {
				break
			}
		}
		if !saw {
			t.Errorf("implicit TLS %v: the flag set behind the server's back was not reported", implicitTLS)
		}
	}
}
