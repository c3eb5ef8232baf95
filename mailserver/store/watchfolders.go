package store

// FolderEventKind says what happened to a folder's name.
type FolderEventKind int

const (
	FolderCreated FolderEventKind = iota + 1
	FolderDeleted
	FolderRenamed // OldName is now Folder
)

// FolderEvent is a folder created, deleted or renamed through this Store.
type FolderEvent struct {
	Kind    FolderEventKind
	Folder  string
	OldName string // FolderRenamed only
}

// WatchFolders registers fn to be called after every folder creation,
// deletion and rename through this Store, once it is durable (a rename of
// a folder with sub-folders is one event per folder moved). fn runs on the
// writer's goroutine, possibly under the store's locks: it must not block
// and must not call back into the Store. The IMAP server uses it for
// NOTIFY's MailboxName event (RFC 5465 section 5.4), which the Watch
// callbacks cannot tell from a change of messages. The returned function
// unregisters fn.
func (s *Store) WatchFolders(fn func(a Account, ev FolderEvent)) (cancel func()) {
	w := &s.watch
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ffns == nil {
		w.ffns = map[int]func(Account, FolderEvent){}
	}
	id := w.next
	w.next++
	w.ffns[id] = fn
	return func() {
		w.mu.Lock()
		delete(w.ffns, id)
		w.mu.Unlock()
	}
}

// folderEvent tells the WatchFolders callbacks about ev.
func (s *Store) folderEvent(a Account, ev FolderEvent) {
	w := &s.watch
	w.mu.Lock()
	fns := make([]func(Account, FolderEvent), 0, len(w.ffns))
	for _, fn := range w.ffns {
		fns = append(fns, fn)
	}
	w.mu.Unlock()
	for _, fn := range fns {
		fn(a, ev)
	}
}
