package imapd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/mailvault/mailvault/mailserver/store"
)

// mailbox is the shared in-memory view of one selected folder: the
// messages in UID order (sequence number = index+1, RFC 9051 section
// 2.3.1.2) and the views (views.go) through which every session that
// selected it learns of changes. Every change to msgs is queued on the
// views under mu.
type mailbox struct {
	srv    *Server
	key    string
	acct   store.Account
	folder string // store name: "INBOX" or "A/B"
	refs   int    // sessions holding it; guarded by srv.mu

	mu       sync.Mutex
	views    []*view // of the sessions that selected it, oldest first
	validity uint32
	uidNext  uint32
	msgs     []msgInfo
	kw       store.Keywords // names the keyword letters in msgs' flags
	// firstRecent: messages with this UID or higher are \Recent and not
	// claimed by a session yet (store.Store.ClaimRecent).
	firstRecent uint32
	// highestModSeq is the folder's HIGHESTMODSEQ (RFC 7162) as of the
	// last listing or change made through the mailbox.
	highestModSeq uint64
	// gone is set (under mu) when the folder disappeared or its
	// UIDVALIDITY changed: its sessions are told BYE (RFC 9051 section
	// 2.3.1.1 forbids reusing UIDs within a UIDVALIDITY). Atomic so that
	// acquire can read it holding only Server.mu (see the lock order).
	gone atomic.Bool

	refreshQueued atomic.Bool

	// dir is the folder's directory, learnt from a listing's paths; stamp
	// holds the modification times of it and its new/ and cur/ (statDirs)
	// taken before the last listing, valid if stamped (see refreshLocked).
	dir     string
	stamp   [3]time.Time
	stamped bool
	// listVersion is the store.Listing.Version msgs last matched: a
	// listing of the same version needs no reconciling.
	listVersion uint64
}

// settleWindow is how old a directory's modification time must be before
// an unchanged one is trusted to mean an unchanged directory. Linux sets
// it from a clock that ticks every few milliseconds (and some filesystems
// keep whole seconds), so a change made in the same tick as the stamp
// would leave it as it was; once the time is older than the window, any
// later change gives a later time. Dovecot's maildir sync has the same
// rule for the same reason.
const settleWindow = 2 * time.Second

// statDirs returns the modification times of a folder's directory (its
// UID list and keyword file are replaced by rename there) and of its new/
// and cur/ (deliveries, flag changes, expunges: creations, renames and
// removals of message files). Maildir never changes a file in place, so
// while these three stay the same, so does the folder.
func statDirs(dir string) (st [3]time.Time, ok bool) {
	for i, d := range [...]string{dir, filepath.Join(dir, "new"), filepath.Join(dir, "cur")} {
		fi, err := os.Stat(d)
		if err != nil {
			return st, false
		}
		st[i] = fi.ModTime()
	}
	return st, true
}

type msgInfo struct {
	uid    uint32
	unique string // Maildir unique name: the file's identity for the metadata cache
	flags  string // Maildir flags
	size   int64
	modseq uint64 // RFC 7162 MODSEQ
}

func mailboxKey(a store.Account, folder string) string { return a.String() + "\x00" + folder }

// acquire returns the shared view of a folder, loading it if no session has
// it selected; release gives it back.
//
// Lock order in imapd (issue 10: STORE held a mailbox's mu and asked for
// Server.mu in the store's change callback while SELECT held Server.mu
// and asked for the mailbox's mu, and once they met no client got even a
// greeting):
//
//	session.mu → mailbox.mu → the store's locks → Server.mu, metaCache.mu
//
// Server.mu and metaCache.mu are leaves: nothing else is locked, and the
// store is not called, while one is held. The store's callbacks
// (folderChanged, warmMeta) run under its locks and take only leaves.
// A view's mu (views.go) is a leaf too, taken under mailbox.mu to queue
// updates or bring queued ones up to date (supersedeLocked) and alone to
// write them.
func (s *Server) acquire(ctx context.Context, a store.Account, folder string) (*mailbox, error) {
	key := mailboxKey(a, folder)
	if m := s.shared(key); m != nil {
		return m, nil
	}
	// Listed without Server.mu: the listing takes the store's locks and
	// may read a large directory.
	l, err := s.store.List(ctx, a, folder)
	if err != nil {
		return nil, err
	}
	m := &mailbox{srv: s, key: key, acct: a, folder: folder, refs: 1,
		validity: l.UIDValidity, uidNext: l.UIDNext, kw: l.Keywords, dir: listingDir(l), firstRecent: l.FirstRecent,
		listVersion: l.Version, highestModSeq: l.HighestModSeq}
	for _, lm := range l.Messages {
		m.msgs = append(m.msgs, msgInfo{uid: lm.UID, unique: lm.Unique, flags: lm.Flags, size: lm.Size, modseq: lm.ModSeq})
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur := s.mailboxes[key]; cur != nil && !cur.gone.Load() {
		// Another session loaded it meanwhile: share that one, so that
		// all sessions of a folder see one sequence of changes.
		cur.refs++
		return cur, nil
	}
	s.mailboxes[key] = m
	return m, nil
}

// shared returns the loaded view of a folder with one more reference, or
// nil when none is loaded or the loaded one is gone.
func (s *Server) shared(key string) *mailbox {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.mailboxes[key]
	if m == nil {
		return nil
	}
	if m.gone.Load() {
		delete(s.mailboxes, key)
		return nil
	}
	m.refs++
	return m
}

func (s *Server) release(m *mailbox) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m.refs--
	if m.refs == 0 && s.mailboxes[m.key] == m {
		delete(s.mailboxes, m.key)
	}
}

// folderChanged is the store's Watch callback: it schedules a refresh of a
// selected folder so that sessions in IDLE hear of the change at once.
func (s *Server) folderChanged(a store.Account, folder string) {
	s.mu.Lock()
	m := s.mailboxes[mailboxKey(a, folder)]
	s.mu.Unlock()
	if m != nil {
		m.scheduleRefresh()
	}
	s.notifyChanged(a, folder) // NOTIFY (notify.go)
}

// scheduleRefresh refreshes in the background, coalescing requests.
func (m *mailbox) scheduleRefresh() {
	if !m.refreshQueued.CompareAndSwap(false, true) {
		return
	}
	go func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		m.refreshQueued.Store(false)
		if err := m.refreshLocked(m.srv.ctx); err != nil && m.srv.ctx.Err() == nil {
			m.srv.log.Warn("refresh folder", "account", m.acct.String(), "folder", m.folder, "err", err)
		}
	}()
}

// refreshLocked reconciles the view with the store (which may have been
// changed by SMTP delivery, POP3, another process or another session) and
// queues the differences on the views: FLAGS when keywords were added,
// EXPUNGE for messages that went (highest sequence number first, so the
// others' numbers stay valid), FETCH FLAGS for changed flags, EXISTS (and
// so RECENT, see claimLocked) for new messages.
//
// Every command polls (RFC 9051 section 5.2), and a listing reads both
// directories and parses every name: for 10,000 messages a third of the
// server's time in an ENVELOPE FETCH served from the header cache. So the
// directories' modification times are taken before each listing and, if
// they had settled (settleWindow), the next refresh that finds them the
// same lists nothing: three stat calls instead.
func (m *mailbox) refreshLocked(ctx context.Context) error {
	if m.gone.Load() {
		return nil
	}
	var pre [3]time.Time
	settled := false
	if m.dir != "" {
		now := time.Now()
		st, ok := statDirs(m.dir)
		if ok && m.stamped && sameTimes(st, m.stamp) {
			return nil
		}
		pre, settled = st, ok
		for _, t := range st {
			settled = settled && t.Before(now.Add(-settleWindow))
		}
	}
	m.stamped = false
	m.srv.listings.Add(1)
	l, err := m.srv.store.List(ctx, m.acct, m.folder)
	if errors.Is(err, store.ErrNoSuchFolder) {
		m.gone.Store(true)
		return nil
	}
	if err != nil {
		return err
	}
	if l.UIDValidity != m.validity {
		m.gone.Store(true)
		return nil
	}
	m.setKeywordsLocked(l.Keywords)
	m.firstRecent = max(m.firstRecent, l.FirstRecent) // before EXISTS is queued
	if l.Version == 0 || l.Version != m.listVersion {
		if err := m.reconcileLocked(l.Messages); err != nil {
			return err
		}
		m.listVersion = l.Version
	}
	m.uidNext = l.UIDNext
	m.highestModSeq = max(m.highestModSeq, l.HighestModSeq)
	m.stamp, m.stamped = pre, settled
	if d := listingDir(l); d != "" {
		m.dir = d
	}
	return nil
}

// reconcileLocked brings msgs to the store's listing (both in UID order)
// and queues the differences: EXPUNGE for messages that went (highest
// sequence number first, so that the others' numbers stay valid), FETCH
// FLAGS for changed flags, EXISTS for new messages. One merging walk and
// no allocation when little changed: it runs after every change to the
// folder, and a map of the listing cost an APPEND into a folder of 2,000
// messages more than its own work (issue 10).
func (m *mailbox) reconcileLocked(list []store.Message) error {
	var gone []int
	j := 0
	for i := range m.msgs {
		for j < len(list) && list[j].UID < m.msgs[i].uid {
			j++
		}
		if j == len(list) || list[j].UID != m.msgs[i].uid {
			gone = append(gone, i)
		}
	}
	for k := len(gone) - 1; k >= 0; k-- {
		m.queueExpungeLocked(gone[k])
		m.msgs = slices.Delete(m.msgs, gone[k], gone[k]+1)
	}
	// Every message left is in list, in the same order.
	j = 0
	for i := range m.msgs {
		mi := &m.msgs[i]
		for list[j].UID != mi.uid {
			j++
		}
		// A new MODSEQ with the same flags (changed and changed back
		// by another process) is told too: CONDSTORE clients keep it.
		if list[j].Flags != mi.flags || list[j].ModSeq != mi.modseq {
			mi.flags, mi.modseq = list[j].Flags, list[j].ModSeq
			m.queueFlagsLocked(i, nil)
		}
		j++
	}
	prev := len(m.msgs)
	for _, lm := range list[j:] {
		m.msgs = append(m.msgs, msgInfo{uid: lm.UID, unique: lm.Unique, flags: lm.Flags, size: lm.Size, modseq: lm.ModSeq})
	}
	if len(m.msgs) > prev {
		m.queueExistsLocked(prev)
	}
	if len(m.msgs) != len(list) {
		// A UID below the highest known one appeared: the index was
		// rebuilt behind our back. Treat it like a UIDVALIDITY change.
		m.gone.Store(true)
		return fmt.Errorf("imapd: folder %s: UID order broken, closing sessions", m.folder)
	}
	return nil
}

// listingDir is the folder's directory, from a message's path in it
// (<dir>/cur/<name> or <dir>/new/<name>); "" for an empty folder, which
// is listed every time (cheaply).
func listingDir(l *store.Listing) string {
	if len(l.Messages) == 0 {
		return ""
	}
	return filepath.Dir(filepath.Dir(l.Messages[0].Path))
}

func sameTimes(a, b [3]time.Time) bool {
	for i := range a {
		if !a[i].Equal(b[i]) {
			return false
		}
	}
	return true
}

// setFlagsLocked changes one message's flags in the store and in the view
// and tells the other sessions (source is the session that did it).
// unchangedSince is STORE's UNCHANGEDSINCE (RFC 7162 section 3.1.3),
// store.Unconditional without one: a message with a higher MODSEQ is
// left alone and store.ErrModified returned, even if its flags would not
// change.
func (m *mailbox) setFlagsLocked(ctx context.Context, i int, flags string, source *view, unchangedSince uint64) error {
	mi := &m.msgs[i]
	if flags == mi.flags && unchangedSince == store.Unconditional {
		return nil
	}
	ms, err := m.srv.store.SetFlagsModSeq(ctx, m.acct, m.folder, mi.uid, flags, unchangedSince)
	if err != nil {
		return err
	}
	if flags == mi.flags && ms == mi.modseq {
		return nil
	}
	mi.flags, mi.modseq = flags, ms
	m.highestModSeq = max(m.highestModSeq, ms)
	m.queueFlagsLocked(i, source)
	return nil
}

// setKeywordsLocked takes a newer keyword table and tells every session
// of the folder its new FLAGS (RFC 9051 section 7.3.5).
func (m *mailbox) setKeywordsLocked(kw store.Keywords) {
	if kw == m.kw {
		return
	}
	m.kw = kw
	m.queueKeywordsLocked()
}

// addKeywordsLocked gives the folder letters for the keywords among flags
// that it lacks (STORE, APPEND): NO [LIMIT] when they do not fit in the 26
// a folder can hold, BAD for a keyword that is not an atom.
func (m *mailbox) addKeywordsLocked(ctx context.Context, flags []imap.Flag) error {
	names, err := newKeywords(flags, &m.kw)
	if err != nil {
		return imapErr(err)
	}
	if len(names) == 0 {
		return nil
	}
	kw, err := m.srv.store.AddKeywords(ctx, m.acct, m.folder, names)
	if err != nil {
		return imapErr(err)
	}
	m.setKeywordsLocked(kw)
	return nil
}
