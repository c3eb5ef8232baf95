package imapd

import (
	"fmt"
	"math/rand/v2"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// modSeqWatch follows what one session is told of MODSEQs, as imaptest's
// stress run does: RFC 7162 section 3.1.1, a message's MODSEQ never goes
// down while UIDVALIDITY stays (and UIDs are not reused, so an expunged
// UID needs no forgetting); section 3.1.2.1, neither does HIGHESTMODSEQ.
// It reads every FETCH that carries both UID and MODSEQ (solicited or
// not: the tests ask with UID STORE and UID FETCH, and unsolicited ones
// always carry the UID) and every [HIGHESTMODSEQ n].
type modSeqWatch struct {
	last    map[uint32]uint64
	highest uint64
	// fetches counts the FETCH responses with a MODSEQ checked.
	fetches int
	drops   []string
}

var (
	fetchUIDModSeq = regexp.MustCompile(`^\* \d+ FETCH \(.*\bUID (\d+)\b.*\bMODSEQ \((\d+)\)`)
	highestModSeq  = regexp.MustCompile(`\[HIGHESTMODSEQ (\d+)\]`)
)

func newModSeqWatch() *modSeqWatch { return &modSeqWatch{last: map[uint32]uint64{}} }

func (w *modSeqWatch) see(lines []string) {
	for _, l := range lines {
		if m := fetchUIDModSeq.FindStringSubmatch(l); m != nil {
			uid, _ := strconv.ParseUint(m[1], 10, 32)
			ms, _ := strconv.ParseUint(m[2], 10, 64)
			w.fetches++
			if old := w.last[uint32(uid)]; ms < old {
				w.drops = append(w.drops, fmt.Sprintf("UID %d: MODSEQ %d after %d: %s", uid, ms, old, l))
			}
			w.last[uint32(uid)] = max(w.last[uint32(uid)], ms)
		}
		if m := highestModSeq.FindStringSubmatch(l); m != nil {
			h, _ := strconv.ParseUint(m[1], 10, 64)
			if h < w.highest {
				w.drops = append(w.drops, fmt.Sprintf("HIGHESTMODSEQ %d after %d: %s", h, w.highest, l))
			}
			w.highest = max(w.highest, h)
		}
	}
}

// Issue 10's "MODSEQ dropped": an update queued for a session (another
// session's STORE, with the MODSEQ of then) was written after the
// session's own STORE or FETCH had answered with the message's newer
// MODSEQ, so the client was told 3 after 4, and flags older than those it
// had just been given.
func TestModSeqNotDroppedByQueuedUpdate(t *testing.T) {
	e, _ := condStoreEnv(t, 2)
	a, b := e.login(t, "alice"), e.login(t, "alice")
	wa := newModSeqWatch()
	wa.see(a.ok("a1 SELECT INBOX (CONDSTORE)"))
	b.ok("b1 SELECT INBOX (CONDSTORE)")

	// b's change is queued for a with MODSEQ 3; a's own STORE answers
	// with 4, and the queued update must not follow with 3.
	b.ok(`b2 UID STORE 1 +FLAGS (\Seen)`)
	out := a.ok(`a2 UID STORE 1 +FLAGS (\Flagged)`)
	mustHave(t, out, "* 1 FETCH (UID 1 FLAGS (", "MODSEQ (4))")
	wa.see(out)

	// Two changes queued (5, 6); a's FETCH answers with 6 before the
	// poll writes the queue.
	b.ok(`b3 UID STORE 2 +FLAGS (\Seen)`)
	b.ok(`b4 UID STORE 2 +FLAGS (\Answered)`)
	out = a.ok("a3 UID FETCH 2 (MODSEQ)")
	mustHave(t, out, "* 2 FETCH (UID 2 MODSEQ (6))")
	wa.see(out)

	// A change queued behind an EXPUNGE, which neither STORE's nor
	// FETCH's poll may write (RFC 3501 section 7.4.1: not during FETCH,
	// STORE or SEARCH), is still queued when a's STORE and FETCH answer
	// with 10; the NOOP writes the EXPUNGE and then the queued change (9).
	b.ok(`b5 UID STORE 1 +FLAGS (\Deleted)`)
	b.ok("b6 EXPUNGE")
	b.ok(`b7 UID STORE 2 +FLAGS (\Draft)`)
	out = a.ok(`a4 STORE 2 -FLAGS (\Answered)`)
	mustHave(t, out, "* 2 FETCH (FLAGS (", "MODSEQ (10))")
	mustNotHave(t, out, "EXPUNGE")
	out = a.ok("a5 FETCH 2 (UID MODSEQ)")
	mustHave(t, out, "* 2 FETCH (UID 2 MODSEQ (10))")
	wa.see(out)
	out = a.ok("a6 NOOP")
	mustHave(t, out, "* 1 EXPUNGE")
	wa.see(out)

	if len(wa.drops) > 0 {
		t.Fatalf("session told a lower MODSEQ after a higher one:\n%s", strings.Join(wa.drops, "\n"))
	}
	// The flags a was told last are the message's: none of the stale
	// updates came after the answers.
	out = a.ok("a7 UID FETCH 2 (FLAGS MODSEQ)")
	wa.see(out)
	mustHave(t, out, `* 1 FETCH (UID 2 FLAGS (\Draft \Seen`, "MODSEQ (10))")
	if len(wa.drops) > 0 {
		t.Fatalf("session told a lower MODSEQ after a higher one:\n%s", strings.Join(wa.drops, "\n"))
	}
}

// Several sessions STORE, FETCH MODSEQ, APPEND and EXPUNGE in one mailbox
// with CONDSTORE (half of them QRESYNC) enabled; every session checks
// that no MODSEQ it is told for a UID is below one it was told before,
// and that HIGHESTMODSEQ never goes down: imaptest's stress check, with
// counts and a fixed seed per session.
func TestModSeqNeverDropsUnderConcurrentChanges(t *testing.T) {
	const sessions, commands = 4, 60
	e, _ := condStoreEnv(t, 8)
	var wg sync.WaitGroup
	watches := make([]*modSeqWatch, sessions)
	for i := range sessions {
		c := e.login(t, "alice")
		w := newModSeqWatch()
		watches[i] = w
		if i%2 == 1 {
			c.ok("q1 ENABLE QRESYNC")
		}
		w.see(c.ok("s1 SELECT INBOX (CONDSTORE)"))
		wg.Add(1)
		go func() {
			defer wg.Done()
			rnd := rand.New(rand.NewPCG(uint64(i), 10))
			flags := []string{`\Seen`, `\Flagged`, `\Answered`, `\Draft`, "$Label1"}
			for n := range commands {
				tag := fmt.Sprintf("c%d", n)
				var line string
				switch r := rnd.IntN(20); {
				case r < 9:
					op := "+FLAGS"
					if rnd.IntN(2) == 0 {
						op = "-FLAGS"
					}
					line = fmt.Sprintf("%s UID STORE 1:* %s (%s)", tag, op, flags[rnd.IntN(len(flags))])
					if rnd.IntN(3) == 0 {
						line = fmt.Sprintf("%s UID STORE %d %s.SILENT (%s)", tag, 1+rnd.IntN(20), op, flags[rnd.IntN(len(flags))])
					}
				case r < 15:
					line = tag + " UID FETCH 1:* (FLAGS MODSEQ)"
				case r < 17:
					m := msg(fmt.Sprintf("new %d %d", i, n), "body")
					line = fmt.Sprintf("%s APPEND INBOX {%d+}\r\n%s", tag, len(m), m)
				case r < 18:
					line = fmt.Sprintf(`%s UID STORE %d +FLAGS.SILENT (\Deleted)`, tag, 1+rnd.IntN(20))
				case r < 19:
					line = tag + " EXPUNGE"
				default:
					line = tag + " NOOP"
				}
				w.see(c.cmd(line))
			}
			w.see(c.ok("z1 NOOP"))
		}()
	}
	wg.Wait()
	fetches := 0
	for i, w := range watches {
		if len(w.drops) > 0 {
			t.Errorf("session %d told %d lower MODSEQs after higher ones, the first:\n%s", i, len(w.drops), strings.Join(w.drops[:min(5, len(w.drops))], "\n"))
		}
		fetches += w.fetches
	}
	// The check saw the traffic it is about: many FETCHes with MODSEQ.
	if fetches < sessions*commands {
		t.Fatalf("%d FETCH responses with MODSEQ checked, want at least %d", fetches, sessions*commands)
	}
}
