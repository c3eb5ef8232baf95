package imapd

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailvault/mailvault/mailserver/internal/servertest"
)

// hammerConn is a logged-in IMAP connection for a goroutine of its own:
// unlike servertest.Conn it returns errors instead of failing the test,
// and every read has a deadline, so a wedged server shows as an error
// naming the command that never got its answer.
type hammerConn struct {
	name string
	conn net.Conn
	r    *bufio.Reader
	n    int
}

// stuckAfter is how long a command may go unanswered before the hammer
// calls the server wedged. It is a guard against hanging the suite on a
// deadlock, not a performance bound: every command here takes
// milliseconds.
const stuckAfter = 60 * time.Second

func dialHammer(t *testing.T, e *testEnv, name string) *hammerConn {
	t.Helper()
	conn, err := tls.Dial("tcp", e.Addr(true), servertest.ClientTLS())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	h := &hammerConn{name: name, conn: conn, r: bufio.NewReader(conn)}
	if _, err := h.read(); err != nil {
		t.Fatalf("%s: greeting: %v", name, err)
	}
	if _, err := h.cmd(`LOGIN alice@example.test "alice password"`); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return h
}

func (h *hammerConn) read() (string, error) {
	h.conn.SetReadDeadline(time.Now().Add(stuckAfter))
	return servertest.IMAPLine(h.r)
}

func (h *hammerConn) send(s string) error {
	h.conn.SetWriteDeadline(time.Now().Add(stuckAfter))
	_, err := h.conn.Write([]byte(s + "\r\n"))
	return err
}

// cmd sends a command and reads up to its tagged response, which must be
// OK (or NO, when no is true: a MOVE or STORE of messages another session
// expunged meanwhile may fail, and that is not what is tested here).
func (h *hammerConn) cmd(line string) ([]string, error) {
	h.n++
	tag := fmt.Sprintf("%s%d", h.name, h.n)
	if err := h.send(tag + " " + line); err != nil {
		return nil, fmt.Errorf("%s %s: %w", tag, line, err)
	}
	var out []string
	for {
		l, err := h.read()
		if err != nil {
			return out, fmt.Errorf("%s %s: no answer: %w", tag, line, err)
		}
		out = append(out, l)
		if strings.HasPrefix(l, tag+" ") {
			if strings.HasPrefix(l, tag+" OK") || strings.HasPrefix(l, tag+" NO") {
				return out, nil
			}
			return out, fmt.Errorf("%s: %q", line, l)
		}
		if strings.HasPrefix(l, "* BYE") {
			return out, fmt.Errorf("%s: %q", line, l)
		}
	}
}

// appendMsg APPENDs through a synchronizing literal (RFC 9051 section 4.3).
func (h *hammerConn) appendMsg(folder, m string) error {
	h.n++
	tag := fmt.Sprintf("%s%d", h.name, h.n)
	if err := h.send(fmt.Sprintf("%s APPEND %s {%d}", tag, folder, len(m))); err != nil {
		return err
	}
	if l, err := h.read(); err != nil || !strings.HasPrefix(l, "+") {
		return fmt.Errorf("APPEND: no continuation: %q %v", l, err)
	}
	if err := h.send(m); err != nil {
		return err
	}
	for {
		l, err := h.read()
		if err != nil {
			return fmt.Errorf("APPEND: no answer: %w", err)
		}
		if strings.HasPrefix(l, tag+" ") {
			if !strings.HasPrefix(l, tag+" OK") {
				return fmt.Errorf("APPEND: %q", l)
			}
			return nil
		}
	}
}

// idle runs IDLE until the server has said something or a while passed,
// then DONE.
func (h *hammerConn) idle() error {
	h.n++
	tag := fmt.Sprintf("%s%d", h.name, h.n)
	if err := h.send(tag + " IDLE"); err != nil {
		return err
	}
	if l, err := h.read(); err != nil || !strings.HasPrefix(l, "+") {
		return fmt.Errorf("IDLE: %q %v", l, err)
	}
	h.conn.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	servertest.IMAPLine(h.r) // an update, or a timeout: either is fine
	if err := h.send("DONE"); err != nil {
		return err
	}
	for {
		l, err := h.read()
		if err != nil {
			return fmt.Errorf("IDLE DONE: no answer: %w", err)
		}
		if strings.HasPrefix(l, tag+" ") {
			return nil
		}
	}
}

// TestConcurrentCommandsNoDeadlock runs STORE, SELECT/UNSELECT, EXPUNGE,
// MOVE both ways, APPEND, IDLE, NOTIFY sessions, folder creations,
// renames, deletions and subscriptions, and deliveries on one mailbox at
// once (issue
// 10: STORE took the mailbox lock and then the server's, SELECT the two
// the other way round, and once they met no client got a greeting until a
// restart). Then a new client must be greeted and served. Run it under
// -race (scripts/test.sh does).
func TestConcurrentCommandsNoDeadlock(t *testing.T) {
	e := newTestEnv(t, nil)
	for i := range 20 {
		e.Deliver(t, alice, "", msg(fmt.Sprint("seed ", i), "x"))
	}
	if err := e.Store.CreateFolder(t.Context(), alice, "Archive"); err != nil {
		t.Fatal(err)
	}
	seeded, err := e.Store.List(t.Context(), alice, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	validity := seeded.UIDValidity
	const rounds = 60
	workers := map[string]func(h *hammerConn) error{
		"store": func(h *hammerConn) error {
			if _, err := h.cmd("SELECT INBOX"); err != nil {
				return err
			}
			for i := range rounds {
				op := "+"
				if i%2 == 1 {
					op = "-"
				}
				if _, err := h.cmd("STORE 1:* " + op + `FLAGS (\Flagged)`); err != nil {
					return err
				}
			}
			return nil
		},
		"select": func(h *hammerConn) error {
			for range rounds {
				if _, err := h.cmd("SELECT INBOX"); err != nil {
					return err
				}
				if _, err := h.cmd("UNSELECT"); err != nil {
					return err
				}
			}
			return nil
		},
		"examine": func(h *hammerConn) error {
			for range rounds {
				if _, err := h.cmd("EXAMINE INBOX"); err != nil {
					return err
				}
				if _, err := h.cmd("FETCH 1:* (FLAGS UID)"); err != nil {
					return err
				}
			}
			return nil
		},
		"expunge": func(h *hammerConn) error {
			if _, err := h.cmd("SELECT INBOX"); err != nil {
				return err
			}
			for range rounds / 3 {
				if _, err := h.cmd(`STORE 1 +FLAGS.SILENT (\Deleted)`); err != nil {
					return err
				}
				if _, err := h.cmd("EXPUNGE"); err != nil {
					return err
				}
			}
			return nil
		},
		"move-out": func(h *hammerConn) error {
			if _, err := h.cmd("SELECT INBOX"); err != nil {
				return err
			}
			for range rounds {
				if _, err := h.cmd("MOVE 1 Archive"); err != nil {
					return err
				}
			}
			return nil
		},
		"move-back": func(h *hammerConn) error {
			if _, err := h.cmd("SELECT Archive"); err != nil {
				return err
			}
			for range rounds {
				if _, err := h.cmd("MOVE 1:2 INBOX"); err != nil {
					return err
				}
			}
			return nil
		},
		"append": func(h *hammerConn) error {
			for i := range rounds / 2 {
				if err := h.appendMsg("INBOX", msg(fmt.Sprint("appended ", i), "y")); err != nil {
					return err
				}
			}
			return nil
		},
		"idle": func(h *hammerConn) error {
			if _, err := h.cmd("SELECT INBOX"); err != nil {
				return err
			}
			for range rounds {
				if err := h.idle(); err != nil {
					return err
				}
			}
			return nil
		},

		// SEARCH and SORT RETURN (UPDATE) contexts, told of every change
		// in IDLE (context.go), and SORT, THREAD, SEARCHRES beside them.
		"contexts": func(h *hammerConn) error {
			if _, err := h.cmd("SELECT INBOX"); err != nil {
				return err
			}
			if _, err := h.cmd(`SEARCH RETURN (UPDATE) FLAGGED`); err != nil {
				return err
			}
			if _, err := h.cmd(`SORT RETURN (UPDATE) (REVERSE SUBJECT) UTF-8 UNDELETED`); err != nil {
				return err
			}
			for range rounds {
				if err := h.idle(); err != nil {
					return err
				}
			}
			return nil
		},
		"sort": func(h *hammerConn) error {
			if _, err := h.cmd("SELECT INBOX"); err != nil {
				return err
			}
			for range rounds / 2 {
				for _, c := range []string{"SORT (ARRIVAL) UTF-8 ALL", "THREAD REFERENCES UTF-8 ALL", "UID SEARCH RETURN (SAVE) FLAGGED", "FETCH $ (FLAGS)"} {
					if _, err := h.cmd(c); err != nil {
						return err
					}
				}
			}
			return nil
		},
		// CONDSTORE and QRESYNC (condstore.go): ENABLE takes the
		// mailbox's lock from the session's, QRESYNC's SELECT asks the
		// store for expunges under the mailbox's lock, conditional STOREs
		// race the plain ones.
		"qresync": func(h *hammerConn) error {
			if _, err := h.cmd("ENABLE QRESYNC"); err != nil {
				return err
			}
			for range rounds / 2 {
				out, err := h.cmd(fmt.Sprintf("SELECT INBOX (QRESYNC (%d 2 1:* (1 1)))", validity))
				if err != nil {
					return err
				}
				if !hasPrefixIn(out, "* OK [HIGHESTMODSEQ ") {
					return fmt.Errorf("SELECT (QRESYNC): no HIGHESTMODSEQ: %q", out)
				}
				for _, c := range []string{`STORE 1:* (UNCHANGEDSINCE 3) +FLAGS.SILENT (\Seen)`, "UID FETCH 1:* (FLAGS) (CHANGEDSINCE 2 VANISHED)",
					"SEARCH RETURN (MIN MAX) MODSEQ 2", "STATUS Archive (HIGHESTMODSEQ)", "NOOP"} {
					if _, err := h.cmd(c); err != nil {
						return err
					}
				}
			}
			return nil
		},
		// NOTIFY (notify.go): the store's callbacks queue events for
		// these sessions under Server.mu and the notifier's mu while the
		// others change INBOX and Archive and the folder list.
		"notify-selected": func(h *hammerConn) error {
			for _, c := range []string{"ENABLE QRESYNC", "SELECT INBOX",
				"NOTIFY SET STATUS (selected (MessageNew (UID FLAGS) MessageExpunge FlagChange)) (personal (MessageNew MessageExpunge FlagChange MailboxName SubscriptionChange))"} {
				if _, err := h.cmd(c); err != nil {
					return err
				}
			}
			for range rounds {
				if err := h.idle(); err != nil {
					return err
				}
			}
			return nil
		},
		"notify-other": func(h *hammerConn) error {
			for i := range rounds {
				if i%10 == 0 {
					if _, err := h.cmd("NOTIFY SET STATUS (inboxes (MessageNew MessageExpunge)) (subtree Archive (MessageNew MessageExpunge FlagChange)) (subscribed (SubscriptionChange MailboxName))"); err != nil {
						return err
					}
				}
				if err := h.idle(); err != nil {
					return err
				}
				if _, err := h.cmd("NOOP"); err != nil {
					return err
				}
			}
			return nil
		},
		"folders": func(h *hammerConn) error {
			for range rounds / 3 {
				for _, c := range []string{"CREATE Scratch", "SUBSCRIBE Scratch", "RENAME Scratch Scratch2", "UNSUBSCRIBE Scratch2", "DELETE Scratch2"} {
					if _, err := h.cmd(c); err != nil {
						return err
					}
				}
			}
			return nil
		},
	}
	conns := map[string]*hammerConn{}
	for name := range workers {
		conns[name] = dialHammer(t, e, name)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, len(workers)+1)
	for name, work := range workers {
		wg.Go(func() {
			if err := work(conns[name]); err != nil {
				errs <- fmt.Errorf("%s: %w", name, err)
			}
		})
	}
	delivered := 0
	deliveries := make(chan struct{})
	go func() {
		defer close(deliveries)
		for i := 0; i < rounds && ctx.Err() == nil; i++ {
			if _, err := e.Store.Deliver(ctx, alice, "", strings.NewReader(msg(fmt.Sprint("delivered ", i), "z"))); err != nil {
				errs <- fmt.Errorf("deliver: %w", err)
				return
			}
			delivered++
		}
	}()
	wg.Wait()
	cancel()
	select {
	case <-deliveries:
	case <-time.After(stuckAfter):
		t.Fatal("a delivery never returned: the server is wedged")
	}
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// The NOTIFY session still hears of a delivery to INBOX.
	notified := conns["notify-other"]
	if _, err := notified.cmd("NOOP"); err != nil {
		t.Fatal(err)
	}
	e.Deliver(t, alice, "", msg("after the hammer", "z"))
	if out, err := notified.cmd("NOOP"); err != nil || !hasPrefixIn(out, "* STATUS INBOX (MESSAGES ") {
		t.Errorf("NOTIFY after the hammer: %q %v", out, err)
	}
	// Whatever happened above, a new client is greeted and served.
	h := dialHammer(t, e, "fresh")
	out, err := h.cmd("SELECT INBOX")
	if err != nil {
		t.Fatalf("a new client after the hammer: %v", err)
	}
	if !hasPrefixIn(out, "* ") || delivered == 0 {
		t.Errorf("SELECT after the hammer: %q (%d delivered)", out, delivered)
	}
	if _, err := h.cmd("LOGOUT"); err != nil && !errors.Is(err, net.ErrClosed) && !strings.Contains(err.Error(), "BYE") {
		t.Error(err)
	}
}

func hasPrefixIn(lines []string, prefix string) bool {
	for _, l := range lines {
		if strings.HasPrefix(l, prefix) {
			return true
		}
	}
	return false
}
