package imapd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/mailvault/mailvault/mailserver/auth"
	"github.com/mailvault/mailvault/mailserver/internal/hangup"
	"github.com/mailvault/mailvault/mailserver/store"
)

// specialUse maps the folders every account gets (created at first login)
// to their RFC 6154 attributes.
var specialUse = []struct {
	folder string
	attr   imap.MailboxAttr
}{
	{"Archive", imap.MailboxAttrArchive},
	{"Drafts", imap.MailboxAttrDrafts},
	{store.Junk, imap.MailboxAttrJunk},
	{"Sent", imap.MailboxAttrSent},
	{"Trash", imap.MailboxAttrTrash},
}

func specialUseOf(folder string) imap.MailboxAttr {
	for _, su := range specialUse {
		if su.folder == folder {
			return su.attr
		}
	}
	return ""
}

// session is one IMAP connection.
type session struct {
	srv  *Server
	conn *imapserver.Conn
	ip   string
	out  *batchConn // the connection under conn, where FETCH batches writes

	acct     store.Account
	loggedIn bool
	// sel is set and cleared by the connection's goroutine; mu guards it
	// against Idle, which imapserver runs on a goroutine that may outlive
	// the command when the connection breaks.
	mu  sync.Mutex
	sel *selection

	// condStore and qresync: the client enabled CONDSTORE or QRESYNC (RFC
	// 7162, condstore.go); read by the goroutine that writes updates.
	condStore, qresync atomic.Bool

	// notify is the NOTIFY SET in force (notify.go), nil without one.
	notify atomic.Pointer[notifier]

	// appended is the folder the last command APPENDed to, and batching
	// whether Poll began a batch of writes, for CommandDone; set and read
	// by the connection's goroutine only.
	appended string
	batching bool
}

// selection is the selected folder of a session (RFC 9051 section 3.3).
type selection struct {
	mbox     *mailbox
	view     *view
	readOnly bool

	searchRes imap.UIDSet      // SEARCHRES: the last saved SEARCH result (searchres.go)
	contexts  []*searchContext // CONTEXT=SEARCH: SEARCH RETURN (UPDATE)s (context.go)
}

var (
	_ imapserver.Session            = (*session)(nil)
	_ imapserver.SessionNamespace   = (*session)(nil)
	_ imapserver.SessionMove        = (*session)(nil)
	_ imapserver.SessionAppendLimit = (*session)(nil)
	_ imapserver.SessionCommandDone = (*session)(nil)
	_ imapserver.SessionCondStore   = (*session)(nil)
	_ imapserver.SessionNotify      = (*session)(nil)
)

// CommandDone runs after each command's tagged answer is written: it
// writes what Poll batched, the answer with it. After an
// APPEND the client is likely to APPEND again (an import, a mail client
// saving a draft or a sent message), so the store makes the file for the
// next one now (store.PrepareAppend), while the client reads the answer and
// sends its next command, rather than in the next APPEND (issue 10).
func (s *session) CommandDone() {
	if s.batching {
		s.batching = false
		if err := s.out.end(); err != nil {
			return // the connection is broken: the next read says so
		}
	}
	if s.appended != "" {
		s.srv.store.PrepareAppend(s.acct, s.appended)
		s.appended = ""
	}
}

func (s *session) ctx() context.Context { return s.srv.ctx }

func (s *session) Close() error {
	if s.sel != nil {
		s.Unselect()
	}
	s.setNotifier(nil)
	s.srv.endSession(s)
	return nil
}

// Login checks credentials through auth.Guard (RFC 9051 section 6.2.3).
// The library refuses it before TLS. An unknown user and a wrong password
// get the same answer (RFC 5530 AUTHENTICATIONFAILED). A login waiting
// for a password-check slot gives up when the client hangs up (package
// hangup): imapserver reads nothing while Login runs.
func (s *session) Login(username, password string) error {
	ctx, stop := hangup.Watch(s.ctx(), s.conn.NetConn())
	u, err := s.srv.guard.Login(ctx, auth.Attempt{Username: username, Password: password, IP: s.ip, Protocol: "imap"})
	gone := hangup.Gone(ctx)
	stop()
	switch {
	case err != nil && gone:
		s.srv.log.Debug("login abandoned: client hung up", "ip", s.ip)
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeUnavailable, Text: "Login abandoned"}
	case errors.Is(err, auth.ErrLocked):
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeUnavailable, Text: "Too many failed logins, try again later"}
	case errors.Is(err, auth.ErrInvalidCredentials):
		return imapserver.ErrAuthFailed
	case err != nil:
		s.srv.log.Error("login", "err", err)
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeUnavailable, Text: "Login temporarily unavailable"}
	}
	a, err := store.AccountOf(u.Address)
	if err != nil {
		return fmt.Errorf("imapd: account %q: %w", u.Address, err)
	}
	if err := s.srv.store.EnsureInbox(s.ctx(), a); err != nil {
		return err
	}
	// RFC 6154: the special-use folders exist from the first login on,
	// subscribed.
	var created []string
	for _, su := range specialUse {
		err := s.srv.store.CreateFolder(s.ctx(), a, su.folder)
		if err == nil {
			created = append(created, su.folder)
		} else if !errors.Is(err, store.ErrFolderExists) {
			return err
		}
	}
	if len(created) > 0 {
		if err := s.srv.updateSubscriptions(a, func(subs map[string]bool) {
			for _, f := range created {
				subs[f] = true
			}
		}); err != nil {
			return err
		}
	}
	s.acct, s.loggedIn = a, true
	return nil
}

// folderName maps a mailbox name to the store's: INBOX is
// case-insensitive (RFC 9051 section 5.1), a trailing hierarchy delimiter
// is dropped (section 6.3.4).
func folderName(name string) (string, error) {
	name = strings.TrimSuffix(name, string(store.Separator))
	if strings.EqualFold(name, store.Inbox) {
		return store.Inbox, nil
	}
	if err := store.ValidFolderName(name); err != nil {
		return "", &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot,
			Text: "Invalid mailbox name (levels separated by '/', no '.', no control characters)"}
	}
	return name, nil
}

// imapErr maps store errors to tagged NO responses with RFC 5530 codes.
func imapErr(err error) error {
	var ie *imap.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ie):
		return err
	case errors.Is(err, store.ErrNoSuchFolder):
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeNonExistent, Text: "No such mailbox"}
	case errors.Is(err, store.ErrFolderExists):
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeAlreadyExists, Text: "Mailbox already exists"}
	case errors.Is(err, store.ErrBadFolderName):
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot, Text: "Invalid mailbox name"}
	case errors.Is(err, store.ErrMessageTooLarge):
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeTooBig, Text: "Message too large"}
	case errors.Is(err, store.ErrTooManyKeywords):
		// Refused rather than dropped: the client learns the keyword
		// did not stick (RFC 9051 section 7.1, LIMIT).
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeLimit, Text: "This mailbox has 26 keywords already, the most it can hold"}
	case errors.Is(err, store.ErrBadKeyword):
		return &imap.Error{Type: imap.StatusResponseTypeBad, Text: "Invalid keyword"}
	}
	return err
}

var errReadOnly = &imap.Error{Type: imap.StatusResponseTypeNo, Code: "READ-ONLY", Text: "Mailbox is read-only (EXAMINE)"}

// Select opens a folder (RFC 9051 section 6.3.2, EXAMINE 6.3.3).
func (s *session) Select(name string, options *imap.SelectOptions) (*imap.SelectData, error) {
	folder, err := folderName(name)
	if err != nil {
		return nil, err
	}
	m, err := s.srv.acquire(s.ctx(), s.acct, folder)
	if err != nil {
		return nil, imapErr(err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.refreshLocked(s.ctx()); err != nil || m.gone.Load() {
		s.srv.release(m)
		if err == nil {
			err = store.ErrNoSuchFolder
		}
		return nil, imapErr(err)
	}
	// QRESYNC's answer (condstore.go) is worked out before the view
	// exists: a BAD seq-match leaves nothing selected.
	var resync *qresyncAnswer
	if q := options.QResync; q != nil && q.UIDValidity == m.validity {
		if resync, err = s.qresyncLocked(m, q); err != nil {
			s.srv.release(m)
			return nil, imapErr(err)
		}
	}
	// The view claims the \Recent messages, unless EXAMINE (RFC 3501
	// sections 2.3.2, 6.3.1 and 6.3.2).
	v := m.newViewLocked(options.ReadOnly)
	s.mu.Lock()
	s.sel = &selection{mbox: m, view: v, readOnly: options.ReadOnly}
	s.mu.Unlock()
	data := &imap.SelectData{
		Flags:       mailboxFlags(&m.kw),
		NumMessages: uint32(len(m.msgs)),
		NumRecent:   uint32(len(v.recent)), // "* n RECENT", RFC 3501 section 7.3.2
		UIDNext:     imap.UID(m.uidNext),
		UIDValidity: m.validity,
	}
	if !options.ReadOnly {
		data.PermanentFlags = permanentFlags(&m.kw)
	}
	for i, mi := range m.msgs {
		if data.FirstUnseenSeqNum == 0 && !hasFlag(mi.flags, 'S') {
			data.FirstUnseenSeqNum = uint32(i + 1)
		}
	}
	data.HighestModSeq = m.highestModSeq
	if resync != nil {
		data.Vanished = resync.vanished
		for _, i := range resync.changed {
			mi := &m.msgs[i]
			data.Changed = append(data.Changed, imap.SelectChangedMessage{
				SeqNum: uint32(i + 1), UID: imap.UID(mi.uid), Flags: m.flagsFor(v, mi), ModSeq: mi.modseq})
		}
	}
	return data, nil
}

func (s *session) Unselect() error {
	if s.sel == nil {
		return nil
	}
	s.mu.Lock()
	sel := s.sel
	s.sel = nil
	s.mu.Unlock()
	sel.mbox.mu.Lock()
	sel.mbox.dropViewLocked(sel.view)
	sel.mbox.mu.Unlock()
	s.srv.release(sel.mbox)
	return nil
}

// Create makes a folder (RFC 9051 section 6.3.4).
func (s *session) Create(name string, options *imap.CreateOptions) error {
	folder, err := folderName(name)
	if err != nil {
		return err
	}
	if folder == store.Inbox {
		return imapErr(store.ErrFolderExists)
	}
	return imapErr(s.srv.store.CreateFolder(s.ctx(), s.acct, folder))
}

// Delete removes a folder and its messages (RFC 9051 section 6.3.5).
func (s *session) Delete(name string) error {
	folder, err := folderName(name)
	if err != nil {
		return err
	}
	if folder == store.Inbox {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot, Text: "INBOX cannot be deleted"}
	}
	return imapErr(s.srv.store.DeleteFolder(s.ctx(), s.acct, folder))
}

// Rename renames a folder with its sub-folders and their subscriptions
// (RFC 9051 section 6.3.6). Renaming INBOX is not supported.
func (s *session) Rename(oldName, newName string, options *imap.RenameOptions) error {
	from, err := folderName(oldName)
	if err != nil {
		return err
	}
	to, err := folderName(newName)
	if err != nil {
		return err
	}
	if from == store.Inbox || to == store.Inbox {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot, Text: "Renaming INBOX is not supported"}
	}
	if err := s.srv.store.RenameFolder(s.ctx(), s.acct, from, to); err != nil {
		return imapErr(err)
	}
	return s.srv.updateSubscriptions(s.acct, func(subs map[string]bool) {
		for name := range subs {
			if name == from || strings.HasPrefix(name, from+"/") {
				delete(subs, name)
				subs[to+name[len(from):]] = true
			}
		}
	})
}

// Subscribe and Unsubscribe edit the subscription list (RFC 9051 sections
// 6.3.7 and 6.3.8); a name need not exist to be subscribed.
func (s *session) Subscribe(name string) error {
	folder, err := folderName(name)
	if err != nil {
		return err
	}
	if err := s.srv.updateSubscriptions(s.acct, func(subs map[string]bool) { subs[folder] = true }); err != nil {
		return err
	}
	s.srv.notifySubscription(s.acct, folder, true) // RFC 5465 section 5.5
	return nil
}

func (s *session) Unsubscribe(name string) error {
	folder, err := folderName(name)
	if err != nil {
		return err
	}
	if err := s.srv.updateSubscriptions(s.acct, func(subs map[string]bool) { delete(subs, folder) }); err != nil {
		return err
	}
	s.srv.notifySubscription(s.acct, folder, false) // RFC 5465 section 5.5
	return nil
}

// Namespace: one personal namespace, "/" delimited (RFC 2342).
func (s *session) Namespace() (*imap.NamespaceData, error) {
	return &imap.NamespaceData{Personal: []imap.NamespaceDescriptor{{Prefix: "", Delim: store.Separator}}}, nil
}

func (s *session) AppendLimit() uint32 { return s.srv.appendLimit() }

// Status answers STATUS (RFC 9051 section 6.3.11) from the store.
func (s *session) Status(name string, options *imap.StatusOptions) (*imap.StatusData, error) {
	folder, err := folderName(name)
	if err != nil {
		return nil, err
	}
	st, err := s.status(folder, options)
	return st, imapErr(err)
}

func (s *session) status(folder string, options *imap.StatusOptions) (*imap.StatusData, error) {
	l, err := s.srv.store.List(s.ctx(), s.acct, folder)
	if err != nil {
		return nil, err
	}
	data := &imap.StatusData{Mailbox: folder, UIDNext: imap.UID(l.UIDNext), UIDValidity: l.UIDValidity}
	var n, unseen, deleted, recent uint32
	var size, deletedSize int64
	for _, m := range l.Messages {
		n++
		if !hasFlag(m.Flags, 'S') {
			unseen++
		}
		if hasFlag(m.Flags, 'T') {
			deleted++
			deletedSize += m.Size
		}
		if m.UID >= l.FirstRecent {
			recent++ // not claimed by a session yet (RFC 3501 section 6.3.10)
		}
		size += m.Size
	}
	if options.NumMessages {
		data.NumMessages = &n
	}
	if options.NumUnseen {
		data.NumUnseen = &unseen
	}
	if options.NumDeleted {
		data.NumDeleted = &deleted
	}
	if options.NumRecent {
		data.NumRecent = &recent
	}
	if options.Size {
		data.Size = &size
	}
	if options.DeletedStorage { // RFC 9208; go-imap parses it whatever is offered
		data.DeletedStorage = &deletedSize
	}
	if options.AppendLimit {
		lim := s.srv.appendLimit()
		data.AppendLimit = &lim
	}
	if options.HighestModSeq {
		data.HighestModSeq = l.HighestModSeq // RFC 7162 section 3.1.6
	}
	return data, nil
}

// Append stores a message (RFC 9051 section 6.3.12). The literal is first
// received into memory, or a spool file when large (spool.go), so that a
// slow upload holds no store lock; the tagged
// OK (with APPENDUID, RFC 4315) is sent only after store.Append has
// fsynced the message and its directory.
func (s *session) Append(name string, r imap.LiteralReader, options *imap.AppendOptions) (*imap.AppendData, error) {
	folder, err := folderName(name)
	if err != nil {
		return nil, err
	}
	if folder != store.Inbox {
		if err := s.srv.store.CheckFolder(s.acct, folder); errors.Is(err, store.ErrNoSuchFolder) {
			return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeTryCreate, Text: "No such mailbox"}
		}
	}
	if r.Size() > s.srv.limits.Load().MaxMessageBytes {
		return nil, imapErr(store.ErrMessageTooLarge)
	}
	// Keywords new to the folder get their letters first (a keyword
	// without a message is harmless; a message whose keyword has no
	// letter would lose it). imapserver has asked for the literal
	// already, so NO [LIMIT] comes after it.
	names, err := newKeywords(options.Flags, &store.Keywords{})
	if err != nil {
		return nil, imapErr(err)
	}
	kw, err := s.srv.store.AddKeywords(s.ctx(), s.acct, folder, names)
	if err != nil {
		return nil, imapErr(err)
	}
	quickAck(s.conn.NetConn()) // quickack_linux.go
	// In memory, or a spool file when large (spool.go); NUL octets are
	// noticed on the way in (binary.go).
	var nul nulWriter
	f, n, release, err := spoolLiteral(io.TeeReader(r, &nul), r.Size(), s.srv.limits.Load().MaxMessageBytes, s.srv.cfg.SpoolDir)
	if err != nil {
		return nil, err
	}
	defer release()
	quickAck(s.conn.NetConn()) // the literal's last segment: see quickAck
	if n != r.Size() {
		return nil, &imap.Error{Type: imap.StatusResponseTypeBad, Text: "Literal shorter than announced"}
	}
	if nul.found { // binary content (RFC 3516): binary.go
		if f, err = unbinary(f); err != nil {
			return nil, err
		}
	}
	// INTERNALDATE is the file's modification time, set by the store
	// before the file appears: setting it afterwards left the header
	// cache, filled at delivery, with the time of the APPEND while the
	// file (and so a COPY of it) had the date given (issue 10).
	d, err := s.srv.store.AppendAt(s.ctx(), s.acct, folder, f, maildirFlags(options.Flags, &kw), options.Time)
	if err != nil {
		return nil, imapErr(err)
	}
	s.appended = folder
	return &imap.AppendData{UID: imap.UID(d.UID), UIDValidity: d.UIDValidity}, nil
}

// Poll reports changes since the last command (RFC 9051 section 5.2):
// the folder is reconciled with the store, then the queued updates are
// written.
func (s *session) Poll(w *imapserver.UpdateWriter, allowExpunge bool) error {
	if s.sel == nil {
		return s.flushNotify(w) // NOTIFY (notify.go)
	}
	m := s.sel.mbox
	m.mu.Lock()
	err := m.refreshLocked(s.ctx())
	m.claimLocked(s.sel.view) // this session is told of new messages first
	gone := m.gone.Load()
	m.mu.Unlock()
	if gone {
		return s.conn.Bye("Selected mailbox was deleted or renamed, or its UIDVALIDITY changed")
	}
	if err != nil {
		return err
	}
	// The updates and the tagged answer after them go out in one write
	// (CommandDone ends the batch): after an APPEND, "* n EXISTS",
	// "* 1 RECENT" and the OK were three writes, each a wakeup of the
	// client (issue 10).
	s.out.begin()
	s.batching = s.out != nil
	return s.flushAll(s.sel, w, allowExpunge)
}

// Idle pushes updates until the client says DONE (RFC 2177). Changes made
// through the store wake it at once (store.Watch); changes made by other
// processes are found by a rescan every IdlePoll.
func (s *session) Idle(w *imapserver.UpdateWriter, stop <-chan struct{}) error {
	s.mu.Lock()
	sel := s.sel
	s.mu.Unlock()
	// NOTIFY's events wake IDLE too (RFC 5465 section 4).
	notifyWake := s.notifyWake()
	if sel == nil {
		if err := s.flushNotify(w); err != nil {
			return err
		}
		for {
			select {
			case <-stop:
				return nil
			case <-notifyWake:
				if err := s.flushNotify(w); err != nil {
					return err
				}
			}
		}
	}
	m := sel.mbox
	// New messages are \Recent in the session that is told of them
	// first (claimLocked).
	claim := func() {
		m.mu.Lock()
		m.claimLocked(sel.view)
		m.mu.Unlock()
	}
	claim()
	if err := s.flushAll(sel, w, true); err != nil {
		return err
	}
	done := make(chan struct{})
	defer close(done)
	go func() {
		t := time.NewTicker(s.srv.cfg.IdlePoll)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				m.scheduleRefresh()
			case <-done:
				return
			case <-s.ctx().Done():
				return
			}
		}
	}()
	for {
		select {
		case <-stop:
			return nil
		case <-sel.view.wake:
			claim()
			if err := s.flushAll(sel, w, true); err != nil {
				return err
			}
		case <-notifyWake:
			if err := s.flushNotify(w); err != nil {
				return err
			}
		}
	}
}

// target is one message a command addresses.
type target struct {
	idx    int    // index in mailbox.msgs at resolution time
	seq    uint32 // the client's sequence number
	msg    msgInfo
	flagsC bool // flags changed as a side effect (FETCH BODY[] sets \Seen)
	recent bool // \Recent in this session (RFC 3501 section 2.3.2)
}

// resolveLocked turns a sequence or UID set into messages, as the client
// numbers them (view.seqNum). Messages the client has not been told about
// yet are left out. "*" is the highest number the client knows (RFC 9051
// section 9, seq-number).
func (s *session) resolveLocked(numSet imap.NumSet) []target {
	numSet = s.savedSet(numSet)
	m := s.sel.mbox
	seqs := make([]uint32, len(m.msgs))
	var maxSeq uint32
	var maxUID imap.UID
	for i, mi := range m.msgs {
		seqs[i] = s.sel.view.seqNum(uint32(i + 1))
		if seqs[i] != 0 {
			maxSeq = max(maxSeq, seqs[i])
			maxUID = max(maxUID, imap.UID(mi.uid))
		}
	}
	var out []target
	switch set := numSet.(type) {
	case imap.SeqSet:
		static := make(imap.SeqSet, len(set))
		copy(static, set)
		for i := range static {
			staticRange(&static[i].Start, &static[i].Stop, maxSeq)
		}
		for i, mi := range m.msgs {
			if seqs[i] != 0 && static.Contains(seqs[i]) {
				out = append(out, target{idx: i, seq: seqs[i], msg: mi, recent: s.sel.view.recent[mi.uid]})
			}
		}
	case imap.UIDSet:
		static := make(imap.UIDSet, len(set))
		copy(static, set)
		for i := range static {
			staticRange((*uint32)(&static[i].Start), (*uint32)(&static[i].Stop), uint32(maxUID))
		}
		for i, mi := range m.msgs {
			if seqs[i] != 0 && static.Contains(imap.UID(mi.uid)) {
				out = append(out, target{idx: i, seq: seqs[i], msg: mi, recent: s.sel.view.recent[mi.uid]})
			}
		}
	}
	return out
}

// staticRange replaces "*" (0) by the highest number; "n:*" with n above
// it becomes "*:n" (RFC 9051 section 6.4.9: it still matches the last).
func staticRange(start, stop *uint32, max uint32) {
	if *start == 0 {
		*start = max
	}
	if *stop == 0 {
		*stop = max
	}
	if *start > *stop {
		*start, *stop = *stop, *start
	}
}

// Expunge removes \Deleted messages (RFC 9051 section 6.4.3; UID EXPUNGE,
// RFC 4315 section 2.1). The EXPUNGE responses reach every session of the
// folder, this one included, through their views. CLOSE on a read-only
// folder expunges nothing (section 6.4.2), which is why EXPUNGE is a no-op
// after EXAMINE rather than an error.
func (s *session) Expunge(w *imapserver.ExpungeWriter, uids *imap.UIDSet) error {
	if uids != nil && imap.IsSearchRes(*uids) {
		saved := s.sel.searchRes // UID EXPUNGE $ (RFC 5182)
		uids = &saved
	}
	if s.sel.readOnly {
		return nil
	}
	m := s.sel.mbox
	m.mu.Lock()
	defer m.mu.Unlock()
	var gone []uint32
	for _, mi := range m.msgs {
		if hasFlag(mi.flags, 'T') && (uids == nil || uids.Contains(imap.UID(mi.uid))) {
			gone = append(gone, mi.uid)
		}
	}
	if len(gone) == 0 {
		return nil
	}
	if err := s.srv.store.Expunge(s.ctx(), s.acct, m.folder, gone); err != nil {
		return err
	}
	return m.refreshLocked(s.ctx())
}

// Store changes flags (RFC 9051 section 6.4.6) in the file names, and
// answers with FETCH FLAGS unless .SILENT; other sessions get FETCH
// updates. With UNCHANGEDSINCE (RFC 7162 section 3.1.3) a message whose
// MODSEQ is above it is left alone and named in the tagged OK's
// [MODIFIED set]; once CONDSTORE is enabled the FETCH responses carry
// MODSEQ, and a message whose MODSEQ changed gets one even with .SILENT
// (section 3.1.3: the client's cache needs the new value).
func (s *session) Store(w *imapserver.FetchWriter, numSet imap.NumSet, flags *imap.StoreFlags, options *imap.StoreOptions) error {
	if s.sel.readOnly {
		return errReadOnly
	}
	unchangedSince := uint64(store.Unconditional)
	if options != nil && options.HasUnchangedSince {
		unchangedSince = options.UnchangedSince
	}
	_, isUID := numSet.(imap.UIDSet)
	var modSeqs imap.SeqSet
	var modUIDs imap.UIDSet
	m := s.sel.mbox
	m.mu.Lock()
	if flags.Op != imap.StoreFlagsDel {
		if err := m.addKeywordsLocked(s.ctx(), flags.Flags); err != nil {
			m.mu.Unlock()
			return err
		}
	}
	kw := m.kw
	targets := s.resolveLocked(numSet)
	skip := make([]bool, len(targets))
	changed := make([]bool, len(targets))
	for i := range targets {
		t := &targets[i]
		nf := applyStore(m.msgs[t.idx].flags, flags.Op, flags.Flags, &kw)
		before := m.msgs[t.idx].modseq
		err := m.setFlagsLocked(s.ctx(), t.idx, nf, s.sel.view, unchangedSince)
		if errors.Is(err, store.ErrNoSuchMessage) {
			skip[i] = true
			continue // expunged by another process; the next poll says so
		}
		if errors.Is(err, store.ErrModified) {
			skip[i] = true
			modSeqs.AddNum(t.seq)
			modUIDs.AddNum(imap.UID(t.msg.uid))
			continue
		}
		if err != nil {
			m.mu.Unlock()
			return err
		}
		t.msg = m.msgs[t.idx]
		changed[i] = t.msg.modseq != before
	}
	condStore := s.condStore.Load()
	answered := !flags.Silent || condStore
	if answered {
		// The FETCH responses below tell t.msg: queued updates not
		// older (views.go). Not without them: their FLAGS come after
		// announce's, which a .SILENT STORE does not send.
		m.supersedeLocked(s.sel.view, targets)
	}
	m.mu.Unlock()
	if answered {
		// New keywords: FLAGS first, here rather than after the command,
		// so that the FETCH responses show no flag the client was not
		// told of.
		if err := s.announce(s.sel.view, &kw); err != nil {
			return err
		}
		for i, t := range targets {
			if skip[i] || (flags.Silent && !changed[i]) {
				continue
			}
			rw := w.CreateMessage(t.seq)
			if isUID {
				rw.WriteUID(imap.UID(t.msg.uid))
			}
			if !flags.Silent {
				rw.WriteFlags(t.flags(&kw))
			}
			if condStore {
				rw.WriteModSeq(t.msg.modseq)
			}
			if err := rw.Close(); err != nil {
				return err
			}
		}
	}
	if len(modUIDs) == 0 {
		return nil
	}
	set := modSeqs.String()
	if isUID {
		set = modUIDs.String()
	}
	return &imap.Error{Type: imap.StatusResponseTypeOK, Code: imap.ResponseCode("MODIFIED " + set), Text: "Conditional STORE failed"}
}

// Copy copies messages (RFC 9051 section 6.4.7) and reports COPYUID
// (RFC 4315 section 3).
func (s *session) Copy(numSet imap.NumSet, dest string) (*imap.CopyData, error) {
	return s.transfer(numSet, dest, false)
}

// Move moves messages (RFC 6851): COPYUID first, then the EXPUNGE
// responses, which the session's view delivers after the command.
func (s *session) Move(w *imapserver.MoveWriter, numSet imap.NumSet, dest string) error {
	if s.sel.readOnly {
		return errReadOnly
	}
	data, err := s.transfer(numSet, dest, true)
	if err != nil || data == nil {
		return err
	}
	return w.WriteCopyData(data)
}

func (s *session) transfer(numSet imap.NumSet, destName string, move bool) (*imap.CopyData, error) {
	dest, err := folderName(destName)
	if err != nil {
		return nil, err
	}
	// MOVE into the selected mailbox itself is a COPY and an expunge of
	// the originals too (RFC 6851 section 3.1): the messages get new UIDs
	// (COPYUID) and the old ones are expunged (store.Store.Move).
	m := s.sel.mbox
	dl, err := s.srv.store.List(s.ctx(), s.acct, dest)
	if errors.Is(err, store.ErrNoSuchFolder) {
		return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeTryCreate, Text: "No such mailbox"}
	}
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	targets := s.resolveLocked(numSet)
	data := &imap.CopyData{UIDValidity: dl.UIDValidity}
	var src, dst imap.UIDSet
	for _, t := range targets {
		var uid uint32
		if move {
			uid, err = s.srv.store.Move(s.ctx(), s.acct, m.folder, dest, t.msg.uid)
		} else {
			uid, err = s.srv.store.Copy(s.ctx(), s.acct, m.folder, dest, t.msg.uid)
		}
		if errors.Is(err, store.ErrNoSuchMessage) {
			continue
		}
		if err != nil {
			// What was moved so far is gone from the source.
			m.refreshLocked(s.ctx())
			return nil, imapErr(err) // e.g. NO [LIMIT]: the destination has 26 keywords
		}
		src.AddNum(imap.UID(t.msg.uid))
		dst.AddNum(imap.UID(uid))
	}
	if len(src) > 0 {
		data.SourceUIDs, data.DestUIDs = src, dst
	} else {
		data = nil
	}
	if move {
		// Queue the EXPUNGEs for every session of the folder.
		if err := m.refreshLocked(s.ctx()); err != nil {
			return nil, err
		}
	}
	return data, nil
}
