package mailserver

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailvault/mailvault/mailserver/store"
)

// TestKill9AppendDurability: IMAP clients APPEND 400 messages one by one
// while the server is killed with SIGKILL and restarted twice. Every
// message whose APPEND was answered OK must be in the folder afterwards
// under the UID its APPENDUID gave, in the same UIDVALIDITY; the folder's
// UIDs stay unique and below UIDNEXT (the store writes a message's UID
// record before its rename into cur/ and fsyncs the two at once, issue 10).
func TestKill9AppendDurability(t *testing.T) {
	if testing.Short() {
		t.Skip("short mode")
	}
	dataDir := bobDataDir(t)
	addrs := freeAddrs(t, 2)
	smtpAddr, imapsAddr := addrs[0], addrs[1]
	const clients, total = 4, 400
	type ack struct{ uid, validity uint32 }
	var next, acked atomic.Int64
	acks := make([]ack, total)
	k := startKiller(t, dataDir, &acked, []int64{100, 250}, smtpAddr, imapsAddr)
	var wg sync.WaitGroup
	var failures atomic.Int64
	for range clients {
		wg.Go(func() {
			var c *appendClient
			var err error
			for {
				id := next.Add(1) - 1
				if id >= total {
					if c != nil {
						c.conn.Close()
					}
					return
				}
				for {
					if c == nil {
						c, err = dialAppendClient(imapsAddr)
					}
					var uid, validity uint32
					if err == nil {
						uid, validity, err = c.append(fmt.Sprintf("From: carol@remote.test\r\nSubject: appended-%d\r\n\r\nmessage %d\r\n", id, id))
					}
					if err == nil {
						acks[id] = ack{uid, validity}
						acked.Add(1)
						break
					}
					if c != nil {
						c.conn.Close()
						c = nil
					}
					if k.stopped() {
						return
					}
					if failures.Add(1) < 5 {
						t.Logf("append %d: %v", id, err)
					}
					time.Sleep(5 * time.Millisecond) // server down: retry
				}
			}
		})
	}
	wg.Wait()
	k.finish()
	t.Logf("%d APPEND attempts failed while the server was down", failures.Load())

	st, err := store.Open(t.Context(), dataDir+"/mail", store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	l, err := st.List(t.Context(), store.Account{Domain: ExampleDomain, User: "bob"}, store.Inbox)
	if err != nil {
		t.Fatal(err)
	}
	byUID := map[uint32]int{}
	for _, m := range l.Messages {
		if _, dup := byUID[m.UID]; dup || m.UID >= l.UIDNext {
			t.Errorf("UID %d twice or not below UIDNEXT %d", m.UID, l.UIDNext)
		}
		b, err := os.ReadFile(m.Path)
		if err != nil {
			t.Fatal(err)
		}
		id := -1
		if i := strings.Index(string(b), "Subject: appended-"); i >= 0 {
			fmt.Sscanf(string(b[i:]), "Subject: appended-%d", &id)
		}
		byUID[m.UID] = id
	}
	bad := 0
	for id, a := range acks {
		if a.validity != l.UIDValidity || byUID[a.uid] != id {
			if bad++; bad < 5 {
				t.Errorf("message %d: APPENDUID %d %d; now UIDVALIDITY %d, UID %d holds message %d", id, a.validity, a.uid, l.UIDValidity, a.uid, byUID[a.uid])
			}
		}
	}
	if bad > 0 || int(acked.Load()) != total {
		t.Fatalf("%d of %d acknowledged APPENDs not where their APPENDUID put them", bad, acked.Load())
	}
}

// appendClient is a logged-in IMAP client that APPENDs to INBOX.
type appendClient struct {
	conn net.Conn
	r    *bufio.Reader
	tag  int
}

func dialAppendClient(addr string) (*appendClient, error) {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		return nil, err
	}
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	c := &appendClient{conn: conn, r: bufio.NewReader(conn)}
	if _, err := c.r.ReadString('\n'); err != nil {
		conn.Close()
		return nil, err
	}
	if _, err := c.cmd(`LOGIN bob@example.test "bob password"`, ""); err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

// cmd sends a command (and literal, after the continuation request, if
// not empty) and returns its tagged answer, which must be OK.
func (c *appendClient) cmd(line, literal string) (string, error) {
	c.tag++
	tag := fmt.Sprintf("a%d", c.tag)
	c.conn.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := fmt.Fprintf(c.conn, "%s %s\r\n", tag, line); err != nil {
		return "", err
	}
	for {
		l, err := c.r.ReadString('\n')
		if err != nil {
			return "", err
		}
		switch {
		case literal != "" && strings.HasPrefix(l, "+"):
			if _, err := fmt.Fprintf(c.conn, "%s\r\n", literal); err != nil {
				return "", err
			}
		case strings.HasPrefix(l, tag+" OK"):
			return l, nil
		case strings.HasPrefix(l, tag+" "):
			return "", fmt.Errorf("%s: %s", line, l)
		}
	}
}

func (c *appendClient) append(msg string) (uid, validity uint32, err error) {
	l, err := c.cmd(fmt.Sprintf("APPEND INBOX {%d}", len(msg)), msg)
	if err != nil {
		return 0, 0, err
	}
	if _, err := fmt.Sscanf(l[strings.Index(l, "[APPENDUID"):], "[APPENDUID %d %d]", &validity, &uid); err != nil {
		return 0, 0, fmt.Errorf("no APPENDUID in %q: %v", l, err)
	}
	return uid, validity, nil
}
