package imapd

// NOTIFY (RFC 5465): a session asks to hear of changes to mailboxes other
// than the selected one (STATUS and LIST responses) as well as of the
// selected one's (the view's EXISTS, EXPUNGE and FETCH, views.go).
//
// The store's callbacks (Watch, WatchFolders) and the subscription hooks
// run on the writer's goroutine, under the store's locks: they take
// Server.mu (a leaf) to find the account's notifiers and then each
// notifier's mu (a leaf as well, never held with another lock) to queue
// the folder's name, and wake the session. The session's goroutine that
// writes updates (after a command, in IDLE) takes the queue and asks the
// store for the folders' STATUS with no lock held.

import (
	"errors"
	"sort"
	"strings"
	"sync"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/mailvault/mailvault/mailserver/store"
)

// notifyEvents are the events offered (RFC 5465 section 5); the others,
// AnnotationChange and the METADATA ones (mailvault has neither
// ANNOTATE nor METADATA), are refused with BADEVENT as section 3.1 says.
var notifyEvents = []imapserver.NotifyEvent{
	imapserver.NotifyEventMessageNew,
	imapserver.NotifyEventMessageExpunge,
	imapserver.NotifyEventFlagChange,
	imapserver.NotifyEventMailboxName,
	imapserver.NotifyEventSubscriptionChange,
}

// notifier is a session's NOTIFY SET: its event groups and the events
// queued for it.
type notifier struct {
	acct   store.Account
	groups []imapserver.NotifyGroup // fixed once registered
	max    int                      // queued folders and LISTs before overflow

	mu       sync.Mutex // a leaf: guards everything below
	subs     map[string]bool
	pending  map[string]bool // folders whose STATUS may have changed
	lists    []imap.ListData // MailboxName and SubscriptionChange
	overflow bool
	// last is the STATUS last sent per folder, so that a change the
	// client did not ask for (a flag change when it asked for
	// MessageNew) sends nothing.
	last map[string]imap.StatusData
	wake chan struct{} // a token when something was queued
}

// groupForLocked is the first event group whose filter covers folder, nil if
// none does (RFC 5465 section 6's filters; the selected mailbox is the
// view's, see flushNotify). n.mu is held.
func (n *notifier) groupForLocked(folder, selected string) *imapserver.NotifyGroup {
	for i := range n.groups {
		g := &n.groups[i]
		switch g.Filter {
		case imapserver.NotifyFilterSelected, imapserver.NotifyFilterSelectedDelayed:
			if folder == selected && selected != "" {
				return g
			}
		case imapserver.NotifyFilterInboxes:
			// The mailboxes mail is delivered to (section 6): only
			// INBOX, the store has no delivery to other folders.
			if folder == store.Inbox {
				return g
			}
		case imapserver.NotifyFilterPersonal:
			return g // one personal namespace, all of the account
		case imapserver.NotifyFilterSubscribed:
			if n.subs[folder] {
				return g
			}
		case imapserver.NotifyFilterSubtree:
			for _, m := range g.Mailboxes {
				if folder == m || strings.HasPrefix(folder, m+string(store.Separator)) {
					return g
				}
			}
		case imapserver.NotifyFilterMailboxes:
			for _, m := range g.Mailboxes {
				if folder == m {
					return g
				}
			}
		}
	}
	return nil
}

// statusOptions are the STATUS items RFC 5465 section 5 gives g's events
// for a mailbox that is not selected: MESSAGES, UIDNEXT and UIDVALIDITY
// for MessageNew (5.2), MESSAGES for MessageExpunge (5.3), UIDVALIDITY
// and HIGHESTMODSEQ for FlagChange (5.1: the server offers CONDSTORE, so
// a flag change is told by its MODSEQ, whether or not the client enabled
// CONDSTORE; Dovecot does the same and imaptest's notify group expects
// it).
func statusOptions(g *imapserver.NotifyGroup) (imap.StatusOptions, bool) {
	var o imap.StatusOptions
	if g.Has(imapserver.NotifyEventMessageNew) {
		o.NumMessages, o.UIDNext, o.UIDValidity = true, true, true
	}
	if g.Has(imapserver.NotifyEventMessageExpunge) {
		o.NumMessages = true
	}
	if g.Has(imapserver.NotifyEventFlagChange) {
		o.UIDValidity = true
		o.HighestModSeq = true
	}
	return o, o.NumMessages || o.UIDValidity
}

// queueLocked adds a folder or a LIST to the queue; past n.max the
// session overflows (section 5.8). n.mu is held.
func (n *notifier) queueLocked(folder string, list *imap.ListData) {
	if n.overflow {
		return
	}
	if len(n.pending)+len(n.lists) >= n.max && (list != nil || !n.pending[folder]) {
		n.overflow, n.pending, n.lists = true, nil, nil
	} else if list != nil {
		n.lists = append(n.lists, *list)
	} else {
		n.pending[folder] = true
	}
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// notifiersOf returns the account's notifiers; Server.mu is a leaf.
func (s *Server) notifiersOf(a store.Account) []*notifier {
	s.mu.Lock()
	defer s.mu.Unlock()
	set := s.notifiers[a.String()]
	out := make([]*notifier, 0, len(set))
	for n := range set {
		out = append(out, n)
	}
	return out
}

// notifyChanged queues a folder whose messages changed (store.Watch).
func (s *Server) notifyChanged(a store.Account, folder string) {
	for _, n := range s.notifiersOf(a) {
		n.mu.Lock()
		// The selected folder (whose view tells the changes) is not
		// known here; flushNotify leaves it out.
		if g := n.groupForLocked(folder, ""); g != nil {
			if _, ok := statusOptions(g); ok {
				n.queueLocked(folder, nil)
			}
		}
		n.mu.Unlock()
	}
}

// notifyFolder is the store's WatchFolders callback: MailboxName (RFC 5465
// section 5.4) as LIST responses, `\NonExistent` for a deleted mailbox and
// OLDNAME for a renamed one (RFC 5258 section 3.1, RFC 5465 section 5.4).
func (s *Server) notifyFolder(a store.Account, ev store.FolderEvent) {
	l := imap.ListData{Delim: store.Separator, Mailbox: ev.Folder}
	switch ev.Kind {
	case store.FolderDeleted:
		l.Attrs = []imap.MailboxAttr{imap.MailboxAttrNonExistent}
	case store.FolderRenamed:
		l.OldName = ev.OldName
	}
	for _, n := range s.notifiersOf(a) {
		n.mu.Lock()
		g := n.groupForLocked(ev.Folder, "")
		if g == nil && ev.OldName != "" {
			g = n.groupForLocked(ev.OldName, "")
		}
		if g != nil && g.Has(imapserver.NotifyEventMailboxName) {
			n.queueLocked("", &l)
		}
		n.mu.Unlock()
	}
}

// notifySubscription tells SubscriptionChange (RFC 5465 section 5.5) as a
// LIST with or without \Subscribed, and keeps the SUBSCRIBED filter's
// list up to date.
func (s *Server) notifySubscription(a store.Account, folder string, subscribed bool) {
	l := imap.ListData{Delim: store.Separator, Mailbox: folder}
	if subscribed {
		l.Attrs = []imap.MailboxAttr{imap.MailboxAttrSubscribed}
	}
	for _, n := range s.notifiersOf(a) {
		n.mu.Lock()
		// The filter is matched with the folder subscribed: before an
		// unsubscription, after a subscription.
		if subscribed {
			n.subs[folder] = true
		}
		g := n.groupForLocked(folder, "")
		if !subscribed {
			delete(n.subs, folder)
		}
		if g != nil && g.Has(imapserver.NotifyEventSubscriptionChange) {
			n.queueLocked("", &l)
		}
		n.mu.Unlock()
	}
}

// setNotifier replaces the session's notifier (nil: NOTIFY NONE).
func (s *session) setNotifier(n *notifier) {
	s.srv.mu.Lock()
	defer s.srv.mu.Unlock()
	if old := s.notify.Swap(n); old != nil {
		delete(s.srv.notifiers[old.acct.String()], old)
	}
	if n != nil {
		if s.srv.notifiers == nil {
			s.srv.notifiers = map[string]map[*notifier]struct{}{}
		}
		key := n.acct.String()
		if s.srv.notifiers[key] == nil {
			s.srv.notifiers[key] = map[*notifier]struct{}{}
		}
		s.srv.notifiers[key][n] = struct{}{}
	}
}

// Notify is NOTIFY SET and NOTIFY NONE (RFC 5465 section 3.1).
func (s *session) Notify(w *imapserver.UpdateWriter, options *imapserver.NotifyOptions) error {
	if options.None {
		s.setNotifier(nil)
		return nil
	}
	for _, g := range options.Groups {
		for _, ev := range g.Events {
			offered := false
			for _, o := range notifyEvents {
				offered = offered || ev == o
			}
			if !offered {
				return imapserver.NotifyBadEvent(notifyEvents)
			}
		}
	}
	groups := make([]imapserver.NotifyGroup, len(options.Groups))
	for i, g := range options.Groups {
		for j, m := range g.Mailboxes {
			f, err := folderName(m)
			if err != nil {
				return err
			}
			g.Mailboxes[j] = f
		}
		groups[i] = g
	}
	subs, err := s.srv.subscriptions(s.acct)
	if err != nil {
		return imapErr(err)
	}
	n := &notifier{
		acct: s.acct, groups: groups, max: s.srv.cfg.NotifyQueue,
		subs: subs, pending: map[string]bool{}, last: map[string]imap.StatusData{},
		wake: make(chan struct{}, 1),
	}
	// Registered first, so that no change between the initial STATUS
	// and the registration is missed.
	s.setNotifier(n)
	if !options.Status {
		return nil
	}
	// SET STATUS: a STATUS for every mailbox the message events name,
	// except the selected one, before the tagged OK (section 3.1).
	folders, err := s.srv.store.Folders(s.ctx(), s.acct)
	if err != nil {
		return imapErr(err)
	}
	for _, f := range folders {
		n.mu.Lock()
		n.pending[f] = true
		n.mu.Unlock()
	}
	return s.flushNotify(w)
}

// selection is the session's selection, read under its mu.
func (s *session) selection() *selection {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sel
}

// selectedFolder is the selected folder's name, "" if none.
func (s *session) selectedFolder() string {
	if sel := s.selection(); sel != nil {
		return sel.mbox.folder
	}
	return ""
}

// notifyWake is the channel that has a token when NOTIFY events are
// queued; nil (never ready) without NOTIFY.
func (s *session) notifyWake() chan struct{} {
	if n := s.notify.Load(); n != nil {
		return n.wake
	}
	return nil
}

// flushNotify writes the queued events: LISTs, then a STATUS for each
// folder whose asked-for items changed. After an overflow it writes
// NOTIFICATIONOVERFLOW and turns NOTIFY off (section 5.8).
func (s *session) flushNotify(w *imapserver.UpdateWriter) error {
	n := s.notify.Load()
	if n == nil {
		return nil
	}
	n.mu.Lock()
	if n.overflow {
		n.mu.Unlock()
		s.setNotifier(nil)
		return w.WriteNotificationOverflow()
	}
	lists := n.lists
	folders := make([]string, 0, len(n.pending))
	for f := range n.pending {
		folders = append(folders, f)
	}
	n.lists, n.pending = nil, map[string]bool{}
	n.mu.Unlock()
	sort.Strings(folders)
	for i := range lists {
		if err := w.WriteList(&lists[i]); err != nil {
			return err
		}
	}
	selected := s.selectedFolder()
	for _, f := range folders {
		if f == selected {
			continue // the view tells of it (section 5: no STATUS for it)
		}
		n.mu.Lock()
		g := n.groupForLocked(f, selected)
		n.mu.Unlock()
		if g == nil {
			continue
		}
		opts, ok := statusOptions(g)
		if !ok {
			continue
		}
		data, err := s.status(f, &opts)
		if errors.Is(err, store.ErrNoSuchFolder) {
			n.mu.Lock()
			delete(n.last, f)
			n.mu.Unlock()
			continue
		}
		if err != nil {
			return imapErr(err)
		}
		n.mu.Lock()
		prev, had := n.last[f]
		n.last[f] = *data
		n.mu.Unlock()
		if had && sameStatus(&prev, data, &opts) {
			continue
		}
		if err := w.WriteStatus(data, &opts); err != nil {
			return err
		}
	}
	return nil
}

func sameStatus(a, b *imap.StatusData, o *imap.StatusOptions) bool {
	if o.NumMessages && (a.NumMessages == nil || *a.NumMessages != *b.NumMessages) {
		return false
	}
	return (!o.UIDNext || a.UIDNext == b.UIDNext) &&
		(!o.UIDValidity || a.UIDValidity == b.UIDValidity) &&
		(!o.HighestModSeq || a.HighestModSeq == b.HighestModSeq)
}

// flushAll writes the selected mailbox's updates, MessageNew's FETCH for
// the messages they announced (RFC 5465 section 5.2, when the SELECTED
// group has fetch attributes), then the other mailboxes' events.
func (s *session) flushAll(sel *selection, w *imapserver.UpdateWriter, allowExpunge bool) error {
	if sel != nil {
		if err := s.flushContexts(sel, w, allowExpunge); err != nil {
			return err
		}
		from, to := sel.view.newFrom, sel.view.newTo
		sel.view.newFrom, sel.view.newTo = 0, 0
		if n := s.notify.Load(); n != nil && from != 0 {
			n.mu.Lock()
			g := n.groupForLocked(sel.mbox.folder, sel.mbox.folder)
			n.mu.Unlock()
			// Fetch works on s.sel: in IDLE, whose goroutine may outlive
			// a broken connection's UNSELECT, only while it is still sel.
			if g != nil && g.Fetch != nil && s.selection() == sel {
				var seqs imap.SeqSet
				seqs.AddRange(from, to)
				if err := s.Fetch(w.NotifyFetchWriter(g), seqs, g.Fetch); err != nil {
					return err
				}
			}
		}
	}
	return s.flushNotify(w)
}
