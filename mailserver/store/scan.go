package store

import (
	"cmp"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/mailvault/mailvault/maildir"
)

// Rescans: List used to read new/ and cur/ and parse every name on every
// call, and an IMAP session lists its selected folder after every command
// that follows a change (RFC 9051 section 5.2 polling), so a client
// APPENDing into a folder of n messages paid O(n) per message: 2,000
// APPENDs ran at 15/s (issue 10). Changes made through this Store update
// the folder's in-memory state (files, inCur) as they are made, so what a
// listing needs to find are only the changes other processes made.
//
// A folder's directories (the folder itself, new/ and cur/) get a new
// modification time with every entry created, renamed or removed. The
// times taken before a full scan (stamp) describe the state the scan saw;
// while they stay the same, nothing changed and the scan is not repeated.
// After a change of our own (under the folder's lock) the times are taken
// again, if they were still those of the stamp just before the change:
// then only our change happened in between, as far as the times can tell.
//
// What they cannot tell is a change made in the same clock tick (a few
// milliseconds; whole seconds on some filesystems) as the stamp: the time
// stays the same. So a stamp younger than settleWindow leaves the folder
// marked recheck, and the first listing after the window did pass scans
// in full once more; a change by another process made in the same tick as
// ours is then seen at most settleWindow late, never missed. (Dovecot's
// maildir sync trusts new/ and cur/ mtimes on the same terms.)
const settleWindow = 2 * time.Second

// scanClock is the clock compared with the directories' times; tests
// move it.
var scanClock = time.Now

// dirTimes returns the modification times of dir, dir/new and dir/cur.
func dirTimes(dir string) (t [3]time.Time, ok bool) {
	for i, d := range [...]string{dir, filepath.Join(dir, "new"), filepath.Join(dir, "cur")} {
		fi, err := os.Stat(d)
		if err != nil {
			return t, false
		}
		t[i] = fi.ModTime()
	}
	return t, true
}

func sameDirTimes(a, b [3]time.Time) bool {
	for i := range a {
		if !a[i].Equal(b[i]) {
			return false
		}
	}
	return true
}

func settled(t [3]time.Time, now time.Time) bool {
	for _, x := range t {
		if !x.Before(now.Add(-settleWindow)) {
			return false
		}
	}
	return true
}

// scanLocked brings files and inCur up to date with the directories:
// a full scan (syncLocked) unless the stamp shows that nothing but this
// Store's own changes, already applied, happened since the last one.
func (st *folderState) scanLocked(s *Store) error {
	if st.idx != nil && st.trusted {
		if cur, ok := dirTimes(st.dir); ok && sameDirTimes(cur, st.stamp) && !(st.recheck && settled(cur, scanClock())) {
			s.scansSkipped.Add(1)
			return nil
		}
	}
	// An index made now (a new folder, a lost one) is written into the
	// folder's directory: before the stamp, not after it.
	if err := st.openIndexLocked(s); err != nil {
		return err
	}
	pre, ok := dirTimes(st.dir)
	st.trusted = false
	if err := st.syncLocked(s); err != nil {
		return err
	}
	st.stamp, st.trusted, st.recheck = pre, ok, !settled(pre, scanClock())
	return nil
}

// changing is called, under the folder's lock, before this Store changes
// the folder's directories; the function it returns after, with whether
// the change went through and files and inCur show it. The stamp moves
// on with the change only if the directories were as stamped before it.
func (st *folderState) changing() (done func(ok bool)) {
	if !st.trusted || st.idx == nil {
		return func(bool) {}
	}
	before, ok := dirTimes(st.dir)
	if !ok || !sameDirTimes(before, st.stamp) {
		st.trusted = false
		return func(bool) {}
	}
	return func(ok bool) {
		after, statOK := dirTimes(st.dir)
		if !ok || !statOK {
			st.trusted = false
			return
		}
		st.stamp, st.recheck = after, true
	}
}

// The listing itself is kept too (folderState.list, valid if listOK):
// building it parsed every file name and joined every path, and an IMAP
// session lists after each command while a folder is changing. Changes of
// this Store's own update it in place (appendListedLocked,
// setListedLocked, dropListedLocked); a scan, or any change these do not
// cover, drops it to be built again.
//
// List hands the kept slice out rather than a copy (a copy per APPEND
// into a selected folder of n messages was O(n), twice: the session's
// poll and the background refresh each listed it), capped at its length
// so that appends beyond it are not seen through it. Once handed out
// (listShared) the elements are never written again: a change to one
// copies the slice first (copy on write).

// listedLocked returns the folder's messages in UID order, from the kept
// listing if it is valid. The slice is the folder's own: callers do not
// change it (see shareListLocked).
func (st *folderState) listedLocked() []Message {
	if st.listOK {
		return st.list
	}
	if st.listShared {
		st.list, st.listShared = nil, false
	}
	st.list = st.list[:0]
	for _, uid := range st.idx.sortedUIDs() {
		unique := st.idx.byUID[uid]
		st.list = append(st.list, st.messageLocked(uid, unique))
	}
	st.listOK = true
	st.listVersion = st.versions.Add(1)
	return st.list
}

// shareListLocked returns the listing to hand out and its version.
func (st *folderState) shareListLocked() ([]Message, uint64) {
	list := st.listedLocked()
	st.listShared = true
	return list[:len(list):len(list)], st.listVersion
}

// messageLocked is the listing entry of a message from files and inCur.
func (st *folderState) messageLocked(uid uint32, unique string) Message {
	name := st.files[unique]
	sub := "/cur/"
	if !st.inCur[unique] {
		sub = "/new/"
	}
	p := maildir.ParseName(name)
	m := Message{UID: uid, Unique: unique, Flags: p.Flags, Recent: sub == "/new/", Size: p.Size, Path: st.dir + sub + name,
		ModSeq: st.idx.mods[uid].modseq}
	if m.Size < 0 {
		if fi, err := os.Stat(m.Path); err == nil {
			m.Size = fi.Size()
		}
	}
	return m
}

// appendListedLocked adds a message just given the folder's highest UID.
func (st *folderState) appendListedLocked(uid uint32, unique string) {
	if !st.listOK {
		return
	}
	if n := len(st.list); n > 0 && st.list[n-1].UID >= uid {
		st.listOK = false
		return
	}
	st.list = append(st.list, st.messageLocked(uid, unique))
	st.listVersion = st.versions.Add(1)
}

// setListedLocked refreshes a message whose file was renamed.
func (st *folderState) setListedLocked(uid uint32, unique string) {
	if !st.listOK {
		return
	}
	i, found := slices.BinarySearchFunc(st.list, uid, func(m Message, uid uint32) int { return cmp.Compare(m.UID, uid) })
	if !found {
		st.listOK = false
		return
	}
	if st.listShared {
		st.list, st.listShared = slices.Clone(st.list), false
	}
	st.list[i] = st.messageLocked(uid, unique)
	st.listVersion = st.versions.Add(1)
}

// dropListedLocked removes expunged UIDs.
func (st *folderState) dropListedLocked(uids []uint32) {
	if !st.listOK || len(uids) == 0 {
		return
	}
	gone := make(map[uint32]bool, len(uids))
	for _, u := range uids {
		gone[u] = true
	}
	// A new slice: listings handed out before share no array with it.
	st.list = slices.DeleteFunc(slices.Clone(st.list), func(m Message) bool { return gone[m.UID] })
	st.listShared = false
	st.listVersion = st.versions.Add(1)
}
