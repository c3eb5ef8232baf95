package imapd

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/mailvault/mailvault/mailserver/internal/servertest"
	"github.com/mailvault/mailvault/mailserver/store"
)

// condStoreEnv is a server with INBOX holding n messages that all got
// their UIDs, and MODSEQ 2, from one scan (the first SELECT's).
func condStoreEnv(t *testing.T, n int) (*testEnv, uint32) {
	t.Helper()
	e := newTestEnv(t, nil)
	for i := range n {
		e.Deliver(t, alice, "", msg(fmt.Sprintf("m%d", i+1), "body"))
	}
	l, err := e.Store.List(t.Context(), alice, store.Inbox)
	if err != nil {
		t.Fatal(err)
	}
	return e, l.UIDValidity
}

// mustNotHave fails if some line contains every one of subs.
func mustNotHave(t testing.TB, lines []string, subs ...string) {
	t.Helper()
	if has(lines, subs...) {
		t.Fatalf("a line with %q in:\n%s", subs, strings.Join(lines, "\n"))
	}
}

// CONDSTORE (RFC 7162 section 3.1) command by command, with the exact
// MODSEQs: the first scan gives 2 (HIGHESTMODSEQ of an untouched folder
// is 1), every flag change the next one.
func TestCondStore(t *testing.T) {
	e, _ := condStoreEnv(t, 3)
	c := e.login(t, "alice")
	mustHave(t, c.ok("a0 CAPABILITY"), " CONDSTORE", " QRESYNC")
	c.Script(`
		C: a1 ENABLE CONDSTORE
		S: * ENABLED CONDSTORE
		S: a1 OK`)
	mustHave(t, c.ok("a2 SELECT INBOX (CONDSTORE)"), "* OK [HIGHESTMODSEQ 2]")
	c.Script(`
		C: a3 FETCH 1:3 (UID MODSEQ)
		S: * 1 FETCH (UID 1 MODSEQ (2))
		S: * 2 FETCH (UID 2 MODSEQ (2))
		S: * 3 FETCH (UID 3 MODSEQ (2))
		S: a3 OK
		C: a4 STORE 1 +FLAGS (\Seen)
		S: * 1 FETCH (FLAGS (\Seen \Recent) MODSEQ (3))
		S: a4 OK
		C: a5 STORE 3 +FLAGS.SILENT (\Flagged)
		S: * 3 FETCH (MODSEQ (4))
		S: a5 OK
		C: a6 FETCH 1:* (FLAGS) (CHANGEDSINCE 3)
		S: * 3 FETCH (FLAGS (\Flagged \Recent) MODSEQ (4))
		S: a6 OK
		C: a7 UID FETCH 1:* (FLAGS) (CHANGEDSINCE 2)
		S: * 1 FETCH (UID 1 FLAGS (\Seen \Recent) MODSEQ (3))
		S: * 3 FETCH (UID 3 FLAGS (\Flagged \Recent) MODSEQ (4))
		S: a7 OK
		C: a8 SEARCH MODSEQ 3
		S: * SEARCH 1 3 (MODSEQ 4)
		S: a8 OK
		C: a9 SEARCH MODSEQ "/flags/\\seen" all 4
		S: * SEARCH 3 (MODSEQ 4)
		S: a9 OK
		C: b1 SEARCH MODSEQ 5
		S: * SEARCH
		S: b1 OK
		C: b2 SEARCH RETURN (COUNT) MODSEQ 2
		S: * ESEARCH (TAG "b2") COUNT 3 MODSEQ 4
		S: b2 OK
		C: b3 SEARCH RETURN (MIN) MODSEQ 2
		S: * ESEARCH (TAG "b3") MIN 1 MODSEQ 3
		S: b3 OK
		C: b4 STATUS Sent (HIGHESTMODSEQ MESSAGES)
		S: * STATUS "Sent" (MESSAGES 0 HIGHESTMODSEQ 1)
		S: b4 OK
		C: b5 STATUS INBOX (HIGHESTMODSEQ)
		S: * STATUS INBOX (HIGHESTMODSEQ 4)
		S: b5 OK`)
}

// STORE (UNCHANGEDSINCE n), RFC 7162 section 3.1.3: messages changed
// since n are left alone and named in [MODIFIED] (sequence numbers, UIDs
// for UID STORE), the others are stored; 0 fails for every message;
// values above 2^63-1 are BAD, 2^63-1 itself is fine.
func TestStoreUnchangedSince(t *testing.T) {
	e, _ := condStoreEnv(t, 3)
	c := e.login(t, "alice")
	c.ok("a1 SELECT INBOX")
	c.Script(`
		C: a2 STORE 2 +FLAGS (\Seen)
		S: * 2 FETCH (FLAGS (\Seen \Recent))
		S: a2 OK
		C: a3 STORE 1:3 (UNCHANGEDSINCE 2) +FLAGS (\Answered)
		S: * OK [HIGHESTMODSEQ 3]
		S: * 1 FETCH (FLAGS (\Answered \Recent) MODSEQ (4))
		S: * 3 FETCH (FLAGS (\Answered \Recent) MODSEQ (5))
		S: a3 OK [MODIFIED 2] Conditional STORE failed
		C: a4 UID STORE 1:3 (UNCHANGEDSINCE 0) +FLAGS (\Answered)
		S: a4 OK [MODIFIED 1:3] Conditional STORE failed
		C: a5 STORE 1 (UNCHANGEDSINCE 9223372036854775808) -FLAGS (\Answered)
		S: a5 BAD
		C: a6 STORE 1 (UNCHANGEDSINCE 99999999999999999999) -FLAGS (\Answered)
		S: a6 BAD
		C: a7 STORE 1 (UNCHANGEDSINCE 9223372036854775807) -FLAGS (\Answered)
		S: * 1 FETCH (FLAGS (\Recent) MODSEQ (6))
		S: a7 OK
		C: a8 STORE 1 (UNCHANGEDSINCE 6) -FLAGS.SILENT (\Answered)
		S: a8 OK
		C: a9 STORE 1 (FOO 1) -FLAGS (\Answered)
		S: a9 BAD`)
	// Nothing was stored by the refused ones.
	c.Script(`
		C: b1 FETCH 1:3 (FLAGS MODSEQ)
		S: * 1 FETCH (FLAGS (\Recent) MODSEQ (6))
		S: * 2 FETCH (FLAGS (\Seen \Recent) MODSEQ (3))
		S: * 3 FETCH (FLAGS (\Answered \Recent) MODSEQ (5))
		S: b1 OK`)
}

// The modifiers' syntax (RFC 7162 section 7): bad values are BAD, and
// VANISHED wants UID FETCH, CHANGEDSINCE and QRESYNC enabled.
func TestCondStoreSyntax(t *testing.T) {
	e, v := condStoreEnv(t, 1)
	c := e.login(t, "alice")
	c.ok("a1 SELECT INBOX")
	for _, bad := range []string{
		"FETCH 1 (FLAGS) (CHANGEDSINCE 0)",
		"FETCH 1 (FLAGS) (CHANGEDSINCE 9223372036854775808)",
		"FETCH 1 (FLAGS) (CHANGEDSINCE)",
		"FETCH 1 (FLAGS) (CHANGEDSINCE 1 FOO)",
		"UID FETCH 1 (FLAGS) (CHANGEDSINCE 1 VANISHED)", // QRESYNC not enabled
		"SEARCH MODSEQ 9223372036854775808",
		`SEARCH MODSEQ "/flags/\\seen" mine 1`,
		"SEARCH MODSEQ",
		fmt.Sprintf("SELECT INBOX (QRESYNC (%d 1))", v), // QRESYNC not enabled
		"SELECT INBOX (FOO)",
		"STATUS INBOX (HIGHESTMODSEQ FOO)",
	} {
		out := c.cmd("x " + bad)
		if !strings.HasPrefix(out[len(out)-1], "x BAD") {
			t.Errorf("%s: %q, want BAD", bad, out[len(out)-1])
		}
	}
	c.ok("b1 ENABLE QRESYNC")
	for _, bad := range []string{
		"FETCH 1 (FLAGS) (CHANGEDSINCE 1 VANISHED)",     // not UID FETCH
		"UID FETCH 1 (FLAGS) (VANISHED)",                // no CHANGEDSINCE
		"SELECT INBOX (QRESYNC (0 1))",                  // UIDVALIDITY 0
		fmt.Sprintf("SELECT INBOX (QRESYNC (%d 0))", v), // MODSEQ 0
		fmt.Sprintf("SELECT INBOX (QRESYNC (%d 9223372036854775808))", v),
		fmt.Sprintf("SELECT INBOX (QRESYNC (%d 1 1:2 (1:2 1)))", v), // sizes differ
		fmt.Sprintf("SELECT INBOX (QRESYNC (%d 1 1:2 (1:* 1:2)))", v),
		fmt.Sprintf("SELECT INBOX (QRESYNC (%d 1 1:* (1:100000 1:100000)))", v), // too many pairs
	} {
		out := c.cmd("y " + bad)
		if !strings.HasPrefix(out[len(out)-1], "y BAD") {
			t.Errorf("%s: %q, want BAD", bad, out[len(out)-1])
		}
	}
	// A refused SELECT leaves no mailbox selected (RFC 9051 section
	// 6.3.2) and nothing behind in the server.
	if out := c.cmd("z1 FETCH 1 (FLAGS)"); !strings.HasPrefix(out[len(out)-1], "z1 BAD") {
		t.Errorf("FETCH after a refused SELECT: %q", out)
	}
	c.ok("z2 SELECT INBOX")
	e.srv.mu.Lock()
	defer e.srv.mu.Unlock()
	for _, m := range e.srv.mailboxes {
		if m.refs != 1 {
			t.Errorf("%s: %d references from the one session", m.folder, m.refs)
		}
	}
}

// A CONDSTORE-enabling command (RFC 7162 section 3.1) with a mailbox
// selected gets one untagged HIGHESTMODSEQ first; SELECT always has it
// (section 3.1.2.1); a session that enabled CONDSTORE sees MODSEQ in the
// FETCHes of other sessions' flag changes, one that did not does not.
func TestCondStoreEnablingAndUnsolicited(t *testing.T) {
	e, _ := condStoreEnv(t, 2)
	plain := e.login(t, "alice")
	mustHave(t, plain.ok("p1 SELECT INBOX"), "* OK [HIGHESTMODSEQ 2]")
	cs := e.login(t, "alice")
	cs.ok("c1 SELECT INBOX")
	cs.Script(`
		C: c2 FETCH 2 (MODSEQ)
		S: * OK [HIGHESTMODSEQ 2]
		S: * 2 FETCH (MODSEQ (2))
		S: c2 OK
		C: c3 FETCH 2 (MODSEQ)
		S: * 2 FETCH (MODSEQ (2))
		S: c3 OK`)
	plain.ok("p2 STORE 1 +FLAGS.SILENT (\\Flagged)")
	mustHave(t, cs.ok("c4 NOOP"), "* 1 FETCH (UID 1 FLAGS (\\Flagged) MODSEQ (3))")
	cs.ok("c5 STORE 2 +FLAGS.SILENT (\\Seen)")
	out := plain.ok("p3 NOOP")
	mustHave(t, out, "* 2 FETCH (UID 2 FLAGS (\\Seen")
	mustNotHave(t, out, "MODSEQ")
	// FETCH BODY[] sets \Seen: with CONDSTORE, MODSEQ comes along.
	mustHave(t, cs.ok("c6 FETCH 1 (BODY[TEXT])"), "FLAGS (\\Flagged \\Seen) MODSEQ (5)")
}

// QRESYNC (RFC 7162 section 3.2): ENABLE, SELECT (QRESYNC ...) with
// VANISHED (EARLIER) and the changed messages, known-uids, VANISHED in
// place of EXPUNGE, and UID FETCH (CHANGEDSINCE n VANISHED).
func TestQResync(t *testing.T) {
	e, v := condStoreEnv(t, 5)
	a := e.login(t, "alice")
	a.Script(`
		C: a1 ENABLE QRESYNC
		S: * ENABLED QRESYNC
		S: a1 OK`)
	a.ok("a2 SELECT INBOX")
	a.ok("a3 STORE 2 +FLAGS.SILENT (\\Seen)")      // MODSEQ 3
	a.ok("a4 STORE 3,5 +FLAGS.SILENT (\\Deleted)") // 4, 5
	out := a.ok("a5 EXPUNGE")                      // 6
	mustHave(t, out, "* VANISHED ")
	mustHave(t, out, "a5 OK [HIGHESTMODSEQ 6]")
	mustNotHave(t, out, "* ", " EXPUNGE")
	if vs := vanishedSet(out); vs != "3,5" {
		t.Fatalf("VANISHED %q, want 3 and 5:\n%s", vs, strings.Join(out, "\n"))
	}

	b := e.login(t, "alice")
	b.ok("b1 ENABLE QRESYNC")
	out = b.ok(fmt.Sprintf("b2 SELECT INBOX (QRESYNC (%d 2))", v))
	mustHave(t, out, "* OK [HIGHESTMODSEQ 6]")
	mustHave(t, out, "* VANISHED (EARLIER) 3,5")
	mustHave(t, out, "* 2 FETCH (UID 2 FLAGS (\\Seen) MODSEQ (3))")
	if n := count(out, " FETCH "); n != 1 {
		t.Fatalf("%d FETCHes, want 1:\n%s", n, strings.Join(out, "\n"))
	}
	// known-uids: only those are reported.
	out = b.ok(fmt.Sprintf("b3 EXAMINE INBOX (QRESYNC (%d 2 1,4:5))", v))
	mustHave(t, out, "* VANISHED (EARLIER) 5")
	mustNotHave(t, out, "FETCH")
	// Nothing since 6; another UIDVALIDITY: a plain SELECT.
	for _, sel := range []string{fmt.Sprintf("(QRESYNC (%d 6))", v), fmt.Sprintf("(QRESYNC (%d 2))", v+1)} {
		out = b.ok("b4 SELECT INBOX " + sel)
		mustNotHave(t, out, "VANISHED")
		mustNotHave(t, out, "FETCH")
	}
	b.Script(`
		C: b5 UID FETCH 1:* (FLAGS) (CHANGEDSINCE 2 VANISHED)
		S: * VANISHED (EARLIER) 3,5
		S: * 2 FETCH (UID 2 FLAGS (\Seen) MODSEQ (3))
		S: b5 OK
		C: b6 UID FETCH 4:* (FLAGS) (CHANGEDSINCE 2 VANISHED)
		S: * VANISHED (EARLIER) 5
		S: b6 OK`)
	// A QRESYNC session's view of another's expunge: VANISHED.
	a.ok("a6 STORE 1 +FLAGS.SILENT (\\Deleted)")
	mustHave(t, b.ok("b7 NOOP"), "* 1 FETCH (UID 1 FLAGS (\\Deleted) MODSEQ (7))")
	a.ok("a7 UID EXPUNGE 1")
	out = b.ok("b8 NOOP")
	mustHave(t, out, "* VANISHED 1")
	mustNotHave(t, out, "* ", " EXPUNGE")
	// CLOSE sends nothing (RFC 7162 section 3.2.7).
	b.ok("b9 STORE 1 +FLAGS.SILENT (\\Deleted)")
	out = b.ok("c1 CLOSE")
	if len(out) != 1 {
		t.Fatalf("CLOSE answered %q", out)
	}
}

// The expunges QRESYNC reports outlive the server (they are records in
// the folder's UID list, store/uidlist.go); once the list is rewritten
// they are no longer known one by one, and every missing UID is reported,
// less those below an agreeing run of seq-match pairs (RFC 7162 section
// 3.2.5.2). HIGHESTMODSEQ does not go down through either: after the
// restart it is the last reservation of MODSEQs (store/uidlist.go: the
// first flag change, MODSEQ 3, reserved up to 3+1024).
func TestQResyncAfterRestartAndRewrite(t *testing.T) {
	e, v := condStoreEnv(t, 5)
	a := e.login(t, "alice")
	a.ok("a1 SELECT INBOX")
	a.ok("a2 STORE 3,5 +FLAGS.SILENT (\\Deleted)") // 3, 4
	a.ok("a3 EXPUNGE")                             // 5
	a.ok("a4 STORE 1 +FLAGS.SILENT (\\Seen)")      // 6
	a.ok("a5 LOGOUT")

	const reserved = 3 + 1024
	e2 := restart(t, e)
	b := e2.login(t, "alice")
	b.ok("b1 ENABLE QRESYNC")
	out := b.ok(fmt.Sprintf("b2 SELECT INBOX (QRESYNC (%d 2))", v))
	mustHave(t, out, fmt.Sprintf("* OK [HIGHESTMODSEQ %d]", reserved))
	mustHave(t, out, "* VANISHED (EARLIER) 3,5")
	mustHave(t, out, "* 1 FETCH (UID 1 FLAGS (\\Seen) MODSEQ (6))")
	out = b.ok(fmt.Sprintf("b3 SELECT INBOX (QRESYNC (%d 5))", v))
	mustNotHave(t, out, "VANISHED")
	b.ok("b4 LOGOUT")

	// The list rewritten as the store rewrites it: no X or H records, the
	// expunges forgotten up to E, which is H, the reservation.
	idx := filepath.Join(e.Store.MaildirPath(alice), "mailvault-uidlist")
	data, err := os.ReadFile(idx)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	header := regexp.MustCompile(` N\d+ `).ReplaceAllString(lines[0], " N6 ")
	kept := []string{regexp.MustCompile(` H\d+ E\d+$`).ReplaceAllString(header, "") + fmt.Sprintf(" H%d E%d", reserved, reserved)}
	gone := map[string]bool{}
	for _, l := range lines[1:] {
		if f := strings.Fields(l); f[0] == "X" {
			gone[f[1]] = true
		}
	}
	for _, l := range lines[1:] {
		if f := strings.Fields(l); !gone[f[1]] && f[0] != "H" {
			kept = append(kept, l)
		}
	}
	if err := os.WriteFile(idx, []byte(strings.Join(kept, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e3 := restart(t, e)
	c := e3.login(t, "alice")
	c.ok("c1 ENABLE QRESYNC")
	for _, tc := range []struct{ param, vanished string }{
		{fmt.Sprintf("(QRESYNC (%d 2))", v), "3,5"},
		{fmt.Sprintf("(QRESYNC (%d 2 1:5))", v), "3,5"},
		{fmt.Sprintf("(QRESYNC (%d 2 1:4))", v), "3"},
		// Pairs that agree up to UID 4 (sequence 3 is UID 4 now):
		// only 5 can have gone unseen.
		{fmt.Sprintf("(QRESYNC (%d 2 1:5 (1,2,3 1,2,4)))", v), "5"},
		// The client's sequence 3 is UID 3: it missed an expunge
		// there, so the run ends at UID 2.
		{fmt.Sprintf("(QRESYNC (%d 2 1:5 (1,2,3 1,2,3)))", v), "3,5"},
		{fmt.Sprintf("(QRESYNC (%d 2 1:5 (9 9)))", v), "3,5"},
		// From E on the expunges are known one by one again: none.
		{fmt.Sprintf("(QRESYNC (%d %d))", v, reserved), ""},
	} {
		out := c.ok("c2 SELECT INBOX " + tc.param)
		mustHave(t, out, fmt.Sprintf("* OK [HIGHESTMODSEQ %d]", reserved))
		if got := vanishedSet(out); got != tc.vanished {
			t.Errorf("%s: VANISHED %q, want %q", tc.param, got, tc.vanished)
		}
	}
	// The next change is above everything before the rewrite.
	mustHave(t, c.ok("c3 STORE 2 +FLAGS (\\Flagged)"), fmt.Sprintf("MODSEQ (%d)", reserved+1))
}

// Flags changed behind the server's back (another program renames the
// file in the Maildir) get a new MODSEQ: FETCH CHANGEDSINCE and the
// other sessions see them.
func TestModSeqOfOutsideRename(t *testing.T) {
	e, _ := condStoreEnv(t, 2)
	c := e.login(t, "alice")
	c.ok("a1 SELECT INBOX (CONDSTORE)")
	dir := e.Store.MaildirPath(alice)
	ageDirs(t, dir)
	c.ok("a2 NOOP") // a full scan, with settled times
	fresh, err := os.ReadDir(filepath.Join(dir, "new"))
	if err != nil || len(fresh) != 2 {
		t.Fatalf("new/: %v %v", fresh, err)
	}
	name := fresh[0].Name() // the first delivered: UID 1
	if err := os.Rename(filepath.Join(dir, "new", name), filepath.Join(dir, "cur", name+":2,F")); err != nil {
		t.Fatal(err)
	}
	mustHave(t, c.ok("a3 NOOP"), "* 1 FETCH (UID 1 FLAGS (\\Flagged \\Recent) MODSEQ (3))")
	c.Script(`
		C: a4 FETCH 1:* (FLAGS) (CHANGEDSINCE 2)
		S: * 1 FETCH (FLAGS (\Flagged \Recent) MODSEQ (3))
		S: a4 OK
		C: a5 STATUS INBOX (HIGHESTMODSEQ)
		S: * STATUS INBOX (HIGHESTMODSEQ 3)
		S: a5 OK`)
}

// Two sessions store on one message with the same UNCHANGEDSINCE at
// once: exactly one stores, the other gets [MODIFIED]. Run many times,
// each round from a fresh MODSEQ.
func TestStoreUnchangedSinceRace(t *testing.T) {
	e, _ := condStoreEnv(t, 1)
	cs := [2]*client{e.login(t, "alice"), e.login(t, "alice")}
	for i, c := range cs {
		c.ok(fmt.Sprintf("s%d SELECT INBOX (CONDSTORE)", i))
	}
	modseq := "2"
	for round := range 20 {
		var wg sync.WaitGroup
		var results [2]string
		for i, c := range cs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				// Flags the message does not have: a store that
				// goes through changes it.
				flag := []string{`\Seen`, `\Flagged`, `\Answered`, `\Draft`}[round%2*2+i]
				out := c.cmd(fmt.Sprintf("r%d STORE 1 (UNCHANGEDSINCE %s) FLAGS.SILENT (%s)", i, modseq, flag))
				results[i] = out[len(out)-1]
			}()
		}
		wg.Wait()
		won := 0
		for _, r := range results {
			switch {
			case strings.Contains(r, "[MODIFIED 1]"):
			case strings.Contains(r, " OK "):
				won++
			default:
				t.Fatalf("round %d: %q", round, results)
			}
		}
		if won != 1 {
			t.Fatalf("round %d: %d stores went through, want 1: %q", round, won, results)
		}
		for i, c := range cs {
			c.ok(fmt.Sprintf("n%d NOOP", i))
		}
		// The next round starts from the winner's MODSEQ.
		out := cs[0].ok("f1 FETCH 1 (MODSEQ)")
		m := regexp.MustCompile(`MODSEQ \((\d+)\)`).FindStringSubmatch(out[0])
		if m == nil {
			t.Fatalf("no MODSEQ in %q", out)
		}
		modseq = m[1]
	}
}

// count counts the lines containing sub.
func count(lines []string, sub string) int {
	n := 0
	for _, l := range lines {
		if strings.Contains(l, sub) {
			n++
		}
	}
	return n
}

// vanishedSet is the UID set of the VANISHED responses among lines, its
// UIDs in ascending order ("" for none).
func vanishedSet(lines []string) string {
	var uids []int
	for _, l := range lines {
		rest, ok := strings.CutPrefix(l, "* VANISHED ")
		if !ok {
			continue
		}
		rest = strings.TrimPrefix(rest, "(EARLIER) ")
		for _, r := range strings.Split(rest, ",") {
			var a, b int
			if n, _ := fmt.Sscanf(r, "%d:%d", &a, &b); n == 2 {
				for u := min(a, b); u <= max(a, b); u++ {
					uids = append(uids, u)
				}
			} else if _, err := fmt.Sscanf(r, "%d", &a); err == nil {
				uids = append(uids, a)
			}
		}
	}
	for i := 1; i < len(uids); i++ {
		for j := i; j > 0 && uids[j] < uids[j-1]; j-- {
			uids[j], uids[j-1] = uids[j-1], uids[j]
		}
	}
	s := make([]string, len(uids))
	for i, u := range uids {
		s[i] = fmt.Sprint(u)
	}
	return strings.Join(s, ",")
}

// restart is a new server on the same Maildirs through a new store, as
// after a restart of the process: nothing of the old one's memory.
func restart(t *testing.T, e *testEnv) *testEnv {
	t.Helper()
	st, err := store.Open(context.Background(), e.Store.Root(), store.Options{Hostname: "mx.test", MaxMessageBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	env := &servertest.Env{Dir: e.Dir, Store: st, DB: e.DB, Audit: e.Audit, ServerTLS: e.ServerTLS, Log: e.Log}
	e2 := &testEnv{Env: env}
	cfg, lcfg := servertest.Configure(Config{TLSConfig: env.ServerTLS, MaxMessageBytes: 1 << 20, ConnsPerMinute: 1e6, MaxConnsPerIP: 1000, SpoolDir: env.Dir}, nil)
	e2.srv = New(cfg, st, env.Guard(lcfg), env.Log)
	e2.Ports = servertest.ServePorts(t, e2.srv.Serve, e2.srv.Shutdown)
	return e2
}

// MOVE out of a folder a QRESYNC session has selected is VANISHED there
// (RFC 6851 section 4.3), for the session that moved and for another;
// the destination's HIGHESTMODSEQ grows with the arrival, and STATUS
// HIGHESTMODSEQ never goes down across a restart.
func TestQResyncMove(t *testing.T) {
	e, _ := condStoreEnv(t, 3)
	a, b := e.login(t, "alice"), e.login(t, "alice")
	for i, c := range []*client{a, b} {
		c.ok(fmt.Sprintf("e%d ENABLE QRESYNC", i))
		c.ok(fmt.Sprintf("s%d SELECT INBOX", i))
	}
	before := a.ok("a0 STATUS Archive (HIGHESTMODSEQ)")
	mustHave(t, before, "HIGHESTMODSEQ 1)")
	out := a.ok("a1 UID MOVE 2 Archive")
	mustHave(t, out, "* OK [COPYUID ")
	mustHave(t, out, "* VANISHED 2")
	mustNotHave(t, out, "* ", " EXPUNGE")
	mustHave(t, b.ok("b1 NOOP"), "* VANISHED 2")
	mustHave(t, a.ok("a2 STATUS Archive (HIGHESTMODSEQ)"), "HIGHESTMODSEQ 2)")
	highest := func(c *client, folder string) uint64 {
		t.Helper()
		out := c.ok("h STATUS " + folder + " (HIGHESTMODSEQ)")
		m := regexp.MustCompile(`HIGHESTMODSEQ (\d+)\)`).FindStringSubmatch(strings.Join(out, "\n"))
		if m == nil {
			t.Fatalf("no HIGHESTMODSEQ in %q", out)
		}
		n, _ := strconv.ParseUint(m[1], 10, 64)
		return n
	}
	was := map[string]uint64{"INBOX": highest(a, "INBOX"), "Archive": highest(a, "Archive")}
	a.ok("a3 LOGOUT")
	b.ok("b2 LOGOUT")
	c := restart(t, e).login(t, "alice")
	for f, h := range was {
		if now := highest(c, f); now < h {
			t.Errorf("%s: HIGHESTMODSEQ %d after the restart, %d before", f, now, h)
		}
	}
}
