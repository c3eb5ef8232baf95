package imapd

import (
	"io"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/mailvault/mailvault/mailserver/store"
)

// view is what one session that selected a mailbox has been told of it,
// and the updates it is still to be told (RFC 3501 section 7: EXPUNGE,
// EXISTS, RECENT, FETCH FLAGS and FLAGS responses). It takes the place of
// imapserver.SessionTracker, which sends every session the same FETCH
// FLAGS and knows neither \Recent, a per-session flag (RFC 3501 section
// 2.3.2), nor PERMANENTFLAGS.
//
// The mailbox queues updates under its mu, for each view; the session's
// goroutine writes them (Poll, IDLE) without holding the mailbox's lock.
type view struct {
	m        *mailbox
	readOnly bool

	// recent holds the UIDs that are \Recent in this session; guarded by
	// the mailbox's mu. A message is \Recent for the whole session it was
	// claimed by (RFC 3501 section 2.3.2), until it is expunged.
	recent map[uint32]bool

	mu    sync.Mutex // guards queue; a leaf
	queue []update
	// wake has a token when something was queued (for IDLE).
	wake chan struct{}

	// Written only by the session's goroutine that writes responses (the
	// command's, or IDLE's while the command goroutine waits for DONE).
	clientRecent uint32         // \Recent messages in the client's view
	toldRecent   uint32         // the last RECENT count sent
	announced    store.Keywords // the keywords of the last FLAGS sent
	// newFrom:newTo are the sequence numbers the EXISTS written since
	// they were last reset announced (NOTIFY's MessageNew FETCH,
	// notify.go); 0 when none.
	newFrom, newTo uint32
}

// flagRecent is IMAP4rev1's \Recent (RFC 3501 section 2.3.2); go-imap v2
// follows IMAP4rev2, which dropped it, and does not export it.
const flagRecent imap.Flag = `\Recent`

type updateKind uint8

const (
	updExpunge updateKind = iota + 1
	updExists
	updFetch
	updKeywords
	updRecent  // messages claimed: recent more are \Recent
	updWritten // an expunge written with the one before it (VANISHED)
)

type update struct {
	kind updateKind
	// updExpunge: the sequence number; updExists: the new count;
	// updFetch: the message's sequence number.
	seq uint32
	// updExists: the count before (sequence numbers above it are not
	// known to the client until this update is written).
	prev uint32
	// updExpunge: 1 if the message was \Recent in this view; updExists,
	// updRecent: how many more messages are.
	recent uint32
	uid    uint32      // updFetch, updExpunge (QRESYNC's VANISHED names UIDs)
	flags  []imap.Flag // updFetch
	modseq uint64      // updFetch: written once CONDSTORE is enabled
	kw     store.Keywords
}

func (v *view) push(u update) {
	v.mu.Lock()
	v.queue = append(v.queue, u)
	v.mu.Unlock()
	select {
	case v.wake <- struct{}{}:
	default:
	}
}

// newViewLocked registers a session's view of m (SELECT or EXAMINE). A
// SELECT claims the messages that are \Recent and no session has claimed
// yet; an EXAMINE sees them as \Recent without claiming them (RFC 3501
// sections 6.3.1 and 6.3.2).
func (m *mailbox) newViewLocked(readOnly bool) *view {
	v := &view{m: m, readOnly: readOnly, recent: map[uint32]bool{}, wake: make(chan struct{}, 1), announced: m.kw}
	for _, mi := range m.msgs {
		if mi.uid >= m.firstRecent {
			v.recent[mi.uid] = true
		}
	}
	v.clientRecent, v.toldRecent = uint32(len(v.recent)), uint32(len(v.recent))
	if !readOnly {
		m.recordClaimLocked()
	}
	m.views = append(m.views, v)
	return v
}

// claimLocked makes the messages that came since the last claim \Recent
// in v, if v SELECTed the mailbox: RFC 3501 section 2.3.2 gives \Recent to
// the first session notified of a message, which is the one whose command
// (or IDLE) finds it first; a refresh in the background claims nothing.
// The client hears of it as RECENT after the EXISTS (section 7.3.2).
func (m *mailbox) claimLocked(v *view) {
	if v == nil || v.readOnly || m.firstRecent >= m.uidNext {
		return
	}
	n := uint32(0)
	for i := len(m.msgs) - 1; i >= 0 && m.msgs[i].uid >= m.firstRecent; i-- {
		if !v.recent[m.msgs[i].uid] {
			v.recent[m.msgs[i].uid] = true
			n++
		}
	}
	m.recordClaimLocked()
	if n > 0 {
		v.push(update{kind: updRecent, recent: n})
	}
}

// recordClaimLocked records that the messages m has are claimed.
func (m *mailbox) recordClaimLocked() {
	if m.uidNext <= m.firstRecent {
		return
	}
	m.firstRecent = m.uidNext
	if err := m.srv.store.ClaimRecent(m.srv.ctx, m.acct, m.folder, m.firstRecent); err != nil {
		m.srv.log.Warn("claim recent messages", "account", m.acct.String(), "folder", m.folder, "err", err)
	}
}

// dropViewLocked unregisters a view (UNSELECT, CLOSE, logout).
func (m *mailbox) dropViewLocked(v *view) {
	for i, x := range m.views {
		if x == v {
			m.views = append(m.views[:i], m.views[i+1:]...)
			return
		}
	}
}

// flagsFor is a message's FLAGS as view v shows them: \Recent is added in
// the session that holds it.
func (m *mailbox) flagsFor(v *view, mi *msgInfo) []imap.Flag {
	f := imapFlags(mi.flags, &m.kw)
	if v != nil && v.recent[mi.uid] {
		f = append(f, flagRecent)
	}
	return f
}

// queueExpungeLocked tells every view that the message at index i (before
// its removal from msgs) is gone.
func (m *mailbox) queueExpungeLocked(i int) {
	uid := m.msgs[i].uid
	for _, v := range m.views {
		u := update{kind: updExpunge, seq: uint32(i + 1), uid: uid}
		if v.recent[uid] {
			u.recent = 1
			delete(v.recent, uid)
		}
		v.push(u)
	}
}

// queueExistsLocked tells every view of the messages msgs[prev:], which
// are new. Sessions that only EXAMINEd the mailbox see those no session
// has claimed as \Recent without claiming them (RFC 3501 section 6.3.2);
// a session that SELECTed it claims them when it is notified
// (claimLocked).
func (m *mailbox) queueExistsLocked(prev int) {
	var recent []uint32
	for _, mi := range m.msgs[prev:] {
		if mi.uid >= m.firstRecent {
			recent = append(recent, mi.uid)
		}
	}
	for _, v := range m.views {
		u := update{kind: updExists, seq: uint32(len(m.msgs)), prev: uint32(prev)}
		if v.readOnly {
			for _, uid := range recent {
				v.recent[uid] = true
			}
			u.recent = uint32(len(recent))
		}
		v.push(u)
	}
}

// queueFlagsLocked tells every view but source of msgs[i]'s flags.
func (m *mailbox) queueFlagsLocked(i int, source *view) {
	mi := &m.msgs[i]
	for _, v := range m.views {
		if v != source {
			v.push(update{kind: updFetch, seq: uint32(i + 1), uid: mi.uid, flags: m.flagsFor(v, mi), modseq: mi.modseq})
		}
	}
}

// supersedeLocked is called under the mailbox's mu by a command that
// answers with the current state of the messages of targets (FETCH,
// STORE): the updates queued for them in v, with the flags and MODSEQ of
// when they were queued, are brought up to that state. The queue is
// written after the command's answer (the poll before the tagged
// response, or a later one when an EXPUNGE not allowed yet holds it
// back, RFC 3501 section 7.4.1), so a queued FETCH left as it was would
// tell the client an older MODSEQ after the newer one (RFC 7162 section
// 3.1.1: a message's MODSEQ never goes down; imaptest's "MODSEQ dropped",
// issue 10) and flags older than those just answered. Updates queued
// after this call carry later states; those before now say what the
// answer says, once more.
func (m *mailbox) supersedeLocked(v *view, targets []target) {
	v.mu.Lock()
	defer v.mu.Unlock()
	var idx map[uint32]int // UID → index in msgs, built on the first queued FETCH
	for k := range v.queue {
		u := &v.queue[k]
		if u.kind != updFetch {
			continue
		}
		if idx == nil {
			idx = make(map[uint32]int, len(targets))
			for _, t := range targets {
				idx[t.msg.uid] = t.idx
			}
		}
		if i, ok := idx[u.uid]; ok {
			mi := &m.msgs[i]
			u.flags, u.modseq = m.flagsFor(v, mi), mi.modseq
		}
	}
}

// queueKeywordsLocked tells every view of new keywords: a FLAGS and a
// PERMANENTFLAGS response (RFC 3501 section 7.2.6, 7.1), written before
// any FETCH that shows them.
func (m *mailbox) queueKeywordsLocked() {
	for _, v := range m.views {
		v.push(update{kind: updKeywords, kw: m.kw})
	}
}

// seqNum converts a message's sequence number in the mailbox (its index
// in msgs + 1) to the client's: 0 if the client has not been told of the
// message yet. The view's queued updates are undone from the newest:
// an EXISTS hides the numbers above its previous count, an EXPUNGE not
// yet written shifts the numbers from its own up by one. Called with the
// mailbox's mu held.
func (v *view) seqNum(seq uint32) uint32 {
	v.mu.Lock()
	defer v.mu.Unlock()
	for i := len(v.queue) - 1; i >= 0; i-- {
		switch u := &v.queue[i]; u.kind {
		case updExists:
			if seq > u.prev {
				return 0
			}
		case updExpunge:
			if seq >= u.seq {
				seq++
			}
		}
	}
	return seq
}

// flush writes the queued updates. Without allowExpunge (during FETCH,
// STORE and SEARCH, RFC 3501 section 7.4.1) it stops before the first
// EXPUNGE. Then, if the number of \Recent messages the client sees has
// changed, a RECENT response (RFC 3501 section 7.3.2; imapserver ignores
// it when the client has enabled IMAP4rev2, which has no \Recent).
func (s *session) flush(v *view, w *imapserver.UpdateWriter, allowExpunge bool) error {
	v.mu.Lock()
	n := len(v.queue)
	if !allowExpunge {
		for i, u := range v.queue {
			if u.kind == updExpunge {
				n = i
				break
			}
		}
	}
	updates := v.queue[:n:n]
	v.queue = append([]update(nil), v.queue[n:]...)
	v.mu.Unlock()
	condStore, qresync := s.condStore.Load(), s.qresync.Load()
	for i, u := range updates {
		var err error
		switch u.kind {
		case updExpunge:
			v.clientRecent -= u.recent
			if !qresync {
				err = w.WriteExpunge(u.seq)
				break
			}
			// RFC 7162 section 3.2.10: VANISHED instead of EXPUNGE once
			// QRESYNC is enabled; a run of expunges in one response.
			var uids imap.UIDSet
			uids.AddNum(imap.UID(u.uid))
			for j := i + 1; j < len(updates) && updates[j].kind == updExpunge; j++ {
				uids.AddNum(imap.UID(updates[j].uid))
				v.clientRecent -= updates[j].recent
				updates[j].kind = updWritten
			}
			err = w.WriteVanished(uids)
		case updExists:
			err = w.WriteNumMessages(u.seq)
			if v.newFrom == 0 {
				v.newFrom = u.prev + 1
			}
			v.newTo = u.seq
			v.clientRecent += u.recent
		case updRecent:
			v.clientRecent += u.recent
		case updFetch:
			if condStore {
				// RFC 7162 section 3.1.4: MODSEQ in every unsolicited
				// FETCH once CONDSTORE is enabled.
				err = w.WriteMessageFlagsModSeq(u.seq, imap.UID(u.uid), u.flags, u.modseq)
			} else {
				err = w.WriteMessageFlags(u.seq, imap.UID(u.uid), u.flags)
			}
		case updKeywords:
			err = s.announce(v, &u.kw)
		}
		if err != nil {
			return err
		}
	}
	if v.clientRecent != v.toldRecent {
		v.toldRecent = v.clientRecent
		return w.WriteNumRecent(v.clientRecent)
	}
	return nil
}

// announce sends FLAGS and PERMANENTFLAGS (RFC 3501 sections 7.2.6 and
// 7.1) if kw has keywords the client has not been told of, so that no
// FETCH shows a flag the mailbox's FLAGS lack (imaptest checks this).
// imapserver has no writer for these responses outside SELECT (and none
// for PERMANENTFLAGS at all), so they are written to the connection
// directly, between two of imapserver's responses: it flushes each at
// its end, and a session's responses are written by one goroutine at a
// time (the command's, or IDLE's while the command waits for DONE).
func (s *session) announce(v *view, kw *store.Keywords) error {
	if covers(&v.announced, kw) {
		return nil
	}
	v.announced = *kw
	var b strings.Builder
	b.WriteString("* FLAGS (")
	writeFlagList(&b, mailboxFlags(kw))
	b.WriteString(")\r\n* OK [PERMANENTFLAGS (")
	if !v.readOnly {
		writeFlagList(&b, permanentFlags(kw))
	}
	b.WriteString(")] Flags permitted\r\n")
	c := s.conn.NetConn()
	c.SetWriteDeadline(time.Now().Add(batchWriteTimeout))
	defer c.SetWriteDeadline(time.Time{})
	_, err := io.WriteString(c, b.String())
	return err
}

func writeFlagList(b *strings.Builder, flags []imap.Flag) {
	for i, f := range flags {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(string(f))
	}
}

// covers reports whether every keyword of kw is in have (keyword tables
// only grow, letter by letter).
func covers(have, kw *store.Keywords) bool {
	for i := range kw {
		if kw[i] != "" && have[i] != kw[i] {
			return false
		}
	}
	return true
}

// flags is the message's FLAGS in the session that resolved it.
func (t *target) flags(kw *store.Keywords) []imap.Flag {
	f := imapFlags(t.msg.flags, kw)
	if t.recent {
		f = append(f, flagRecent)
	}
	return f
}

// hasTargetFlag is hasIMAPFlag for SEARCH, with \Recent (SEARCH RECENT,
// NEW and OLD, RFC 3501 section 6.4.4) as the session sees it.
func hasTargetFlag(t *target, f imap.Flag, kw *store.Keywords) bool {
	if strings.EqualFold(string(f), string(flagRecent)) {
		return t.recent
	}
	return hasIMAPFlag(t.msg.flags, f, kw)
}
