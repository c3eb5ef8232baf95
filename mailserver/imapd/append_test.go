package imapd

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailvault/mailvault/mailserver/auth"
	"github.com/mailvault/mailvault/mailserver/internal/servertest"
	"github.com/mailvault/mailvault/mailserver/store"
)

// What one APPEND into the selected folder costs, counted (issue 10): three
// fsyncs (message, UID record, cur/), two writes to the client (the
// continuation request; the EXISTS, RECENT and tagged OK together), and the
// file for the next APPEND is made after the answer (a spare in tmp/).
func TestAppendCounts(t *testing.T) {
	for _, tc := range []struct {
		name   string
		folder string
	}{
		{"INBOX", "INBOX"},
		{"a folder of its own", "Import"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := &testEnv{Env: servertest.NewEnv(t, store.Options{})}
			var writes atomic.Int64
			e.srv = New(Config{TLSConfig: e.ServerTLS, MaxMessageBytes: 1 << 20, ConnsPerMinute: 1e6, MaxConnsPerIP: 1000, SpoolDir: e.Dir},
				e.Store, e.Guard(auth.DefaultLimiterConfig()), e.Log)
			e.Ports = servertest.ServePorts(t, func(ln net.Listener, implicitTLS bool) error {
				return e.srv.Serve(countingListener{ln, &writes}, implicitTLS)
			}, e.srv.Shutdown)
			conn, err := tls.Dial("tcp", e.Addr(true), servertest.ClientTLS())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { conn.Close() })
			f := &fetchEnv{testEnv: e, c: conn, r: bufio.NewReader(conn)}
			f.r.ReadString('\n')
			f.run(t, `LOGIN alice@example.test "alice password"`)
			if tc.folder != "INBOX" {
				f.run(t, "CREATE "+tc.folder)
			}
			f.run(t, "SELECT "+tc.folder)
			a := store.Account{Domain: "example.test", User: "alice"}
			dir := e.Store.MaildirPath(a)
			if tc.folder != "INBOX" {
				dir = filepath.Join(dir, "."+tc.folder)
			}
			date := time.Date(2025, 12, 6, 5, 46, 40, 0, time.UTC)
			for i := range 5 {
				syncs, w := e.Store.Syncs(), writes.Load()
				f.appendOne(t, tc.folder, benchMessage(i, 4096), date)
				if n := e.Store.Syncs() - syncs; n != 3 {
					t.Errorf("APPEND %d: %d fsyncs, want 3", i, n)
				}
				if n := writes.Load() - w; n != 2 {
					t.Errorf("APPEND %d: %d writes to the client, want 2", i, n)
				}
				// The spare is made after the answer, before the next
				// command is read.
				f.run(t, "NOOP")
				tmp, err := os.ReadDir(filepath.Join(dir, "tmp"))
				if err != nil {
					t.Fatal(err)
				}
				if len(tmp) != 1 || !strings.HasPrefix(tmp[0].Name(), "spare-") {
					t.Errorf("APPEND %d: tmp/ holds %v, want one spare", i, tmp)
				}
			}
			out := f.runLines(t, "UID FETCH 1:* (FLAGS INTERNALDATE)")
			if len(out) != 5 {
				t.Fatalf("FETCH after the APPENDs: %q", out)
			}
		})
	}
}

// runLines is run returning the untagged lines.
func (f *fetchEnv) runLines(tb testing.TB, cmd string) []string {
	f.tag++
	tag := fmt.Sprintf("r%d", f.tag)
	if _, err := f.c.Write([]byte(tag + " " + cmd + "\r\n")); err != nil {
		tb.Fatal(err)
	}
	var out []string
	for {
		l, err := f.r.ReadString('\n')
		if err != nil {
			tb.Fatal(err)
		}
		if strings.HasPrefix(l, tag+" OK") {
			return out
		}
		if strings.HasPrefix(l, tag+" ") {
			tb.Fatalf("%s: %s", cmd, l)
		}
		out = append(out, l)
	}
}
