package imapd

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailvault/mailvault/mailserver/internal/servertest"
	"github.com/mailvault/mailvault/mailserver/store"
)

// benchMessage is a delivered message as bench/mailserver's get them:
// the headers mailvault's MX adds, a sender's usual ones, and a body
// making it size bytes.
func benchMessage(i, size int) string {
	h := fmt.Sprintf("Return-Path: <sender%d@example.org>\r\n"+
		"Authentication-Results: mx.test; spf=none smtp.mailfrom=example.org; dkim=none; dmarc=none header.from=example.org\r\n"+
		"Received: from client.example.org (localhost [127.0.0.1])\r\n\tby mx.test (mailvault) with ESMTP id %08x\r\n\tfor <alice@example.test>; Sun, 22 Nov 2026 12:00:00 +0000\r\n"+
		"From: Sender %d <sender%d@example.org>\r\n"+
		"To: Alice <alice@example.test>\r\n"+
		"Cc: bob@example.test\r\n"+
		"Subject: Message number %d of the benchmark\r\n"+
		"Date: Sun, 22 Nov 2026 12:00:00 +0000\r\n"+
		"Message-ID: <%d.bench@example.org>\r\n"+
		"MIME-Version: 1.0\r\n"+
		"Content-Type: text/plain; charset=us-ascii\r\n\r\n", i, i, i, i, i, i)
	line := strings.Repeat("x", 76) + "\r\n"
	return h + strings.Repeat(line, max(0, size-len(h))/len(line))
}

// fetchEnv is a logged-in, selected session over implicit TLS on a
// mailbox of n messages, read by a client that only counts lines, so that
// a profile of the benchmark is the server's.
type fetchEnv struct {
	*testEnv
	c   net.Conn
	r   *bufio.Reader
	tag int
}

func newFetchEnv(tb testing.TB, n, size int) *fetchEnv {
	e := newTestEnv(tb, nil)
	a := store.Account{Domain: "example.test", User: "alice"}
	for i := range n {
		e.Deliver(tb, a, "", benchMessage(i, size))
	}
	c, err := tls.Dial("tcp", e.Addr(true), servertest.ClientTLS())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	f := &fetchEnv{testEnv: e, c: c, r: bufio.NewReaderSize(c, 64<<10)}
	if _, err := f.r.ReadString('\n'); err != nil {
		tb.Fatal(err)
	}
	f.run(tb, `LOGIN alice@example.test "alice password"`)
	f.run(tb, "SELECT INBOX")
	// The mail came in, and the first login made the special-use folders
	// in the Maildir, a while ago (see settleWindow).
	ageDirs(tb, e.Store.MaildirPath(a))
	return f
}

// run sends a command and reads up to its tagged OK, returning how many
// untagged FETCH responses came.
func (f *fetchEnv) run(tb testing.TB, cmd string) int {
	f.tag++
	tag := fmt.Sprintf("t%d", f.tag)
	if _, err := fmt.Fprintf(f.c, "%s %s\r\n", tag, cmd); err != nil {
		tb.Fatal(err)
	}
	n := 0
	for {
		l, err := f.r.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			tb.Fatal(err)
		}
		switch {
		case strings.HasPrefix(string(l), tag+" OK"):
			return n
		case strings.HasPrefix(string(l), tag+" "):
			tb.Fatalf("%s: %s", cmd, l)
		case strings.Contains(string(l), " FETCH ("):
			n++
		}
	}
}

// ageDirs sets the modification times of a folder's directories a minute
// back.
func ageDirs(tb testing.TB, dir string) {
	tb.Helper()
	t := time.Now().Add(-time.Minute)
	for _, d := range []string{dir, filepath.Join(dir, "new"), filepath.Join(dir, "cur")} {
		if err := os.Chtimes(d, t, t); err != nil {
			tb.Fatal(err)
		}
	}
}

const envelopeFetch = "FETCH 1:* (UID FLAGS RFC822.SIZE ENVELOPE)"

// BenchmarkFetchEnvelope is bench/mailserver's ENVELOPE FETCH of a whole
// INBOX, served from the header cache (the first FETCH fills it):
//
//	go test -run '^$' -bench FetchEnvelope -cpuprofile cpu.out ./mailserver/imapd
func BenchmarkFetchEnvelope(b *testing.B) {
	const n = 2000
	f := newFetchEnv(b, n, 4096)
	f.run(b, envelopeFetch)
	b.ResetTimer()
	for b.Loop() {
		if got := f.run(b, envelopeFetch); got != n {
			b.Fatalf("%d FETCH responses, want %d", got, n)
		}
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "msg/s")
}
