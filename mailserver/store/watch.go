package store

import (
	"context"
	"strings"
	"sync"
)

// watchers are the change callbacks registered with Watch.
type watchers struct {
	mu   sync.Mutex
	next int
	fns  map[int]func(Account, string)
	dfns map[int]func(Account, Delivery)    // WatchDeliveries
	ffns map[int]func(Account, FolderEvent) // WatchFolders
}

// Watch registers fn to be called after every change made through this
// Store to a folder of an account: a delivery or append, a flag change,
// an expunge, a move or copy (for both folders), and a folder deletion or
// rename (for the old and new names). The folder is given as the callers
// name it, INBOX for the inbox. fn runs on the writer's goroutine after the
// change is durable; it must not block or call back into the Store (an IMAP
// server uses it to wake sessions that IDLE, RFC 2177). Changes made by
// other processes directly in the Maildir are not seen. The returned
// function unregisters fn.
func (s *Store) Watch(fn func(a Account, folder string)) (cancel func()) {
	w := &s.watch
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.fns == nil {
		w.fns = map[int]func(Account, string){}
	}
	id := w.next
	w.next++
	w.fns[id] = fn
	return func() {
		w.mu.Lock()
		delete(w.fns, id)
		w.mu.Unlock()
	}
}

// WatchDeliveries registers fn to be called after every Deliver and Append
// through this Store with the new message, once it is durable and before
// the Watch callbacks hear of the folder's change; fn runs on the writer's
// goroutine, must not block and must not call back into the Store. The
// IMAP server uses it to read the new message's header into its FETCH
// cache while the file is fresh, as Dovecot's delivery does with its
// index cache. The returned function unregisters fn.
func (s *Store) WatchDeliveries(fn func(a Account, d Delivery)) (cancel func()) {
	w := &s.watch
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.dfns == nil {
		w.dfns = map[int]func(Account, Delivery){}
	}
	id := w.next
	w.next++
	w.dfns[id] = fn
	return func() {
		w.mu.Lock()
		delete(w.dfns, id)
		w.mu.Unlock()
	}
}

// delivered tells the WatchDeliveries callbacks about a new message.
func (s *Store) delivered(a Account, d Delivery) {
	w := &s.watch
	w.mu.Lock()
	fns := make([]func(Account, Delivery), 0, len(w.dfns))
	for _, fn := range w.dfns {
		fns = append(fns, fn)
	}
	w.mu.Unlock()
	for _, fn := range fns {
		fn(a, d)
	}
}

// changed tells the watchers about a change to folder.
func (s *Store) changed(a Account, folder string) {
	if folder == "" || strings.EqualFold(folder, Inbox) {
		folder = Inbox
	}
	w := &s.watch
	w.mu.Lock()
	fns := make([]func(Account, string), 0, len(w.fns))
	for _, fn := range w.fns {
		fns = append(fns, fn)
	}
	w.mu.Unlock()
	for _, fn := range fns {
		fn(a, folder)
	}
}

// EnsureInbox creates the account's Maildir (its INBOX) if it does not
// exist yet, so that it has a UIDVALIDITY before any mail arrives (an IMAP
// client may SELECT INBOX of a new account, RFC 9051 section 5.1).
func (s *Store) EnsureInbox(ctx context.Context, a Account) error {
	if err := a.validate(); err != nil {
		return err
	}
	if err := s.gate.enter(ctx); err != nil {
		return err
	}
	defer s.gate.leave()
	return s.ensureMaildir(s.MaildirPath(a), false)
}
