package store

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// indexName is the per-folder UID index file (Dovecot's dovecot-uidlist
// is the model).
const indexName = "mailvault-uidlist"

// The index is an append-only log, one record per line:
//
//	mailvault-uidlist 1 V<uidvalidity> N<uidnext> R<first recent>   header (first line)
//	A <uid> <unique>                                 UID given to a message
//	X <uid>                                          UID expunged
//	R <uid>                                          messages below uid claimed
//
// R records the IMAP \Recent state (RFC 3501 section 2.3.2) as Dovecot's
// index does with its first_recent_uid: messages with a UID at or above
// it have not been seen by any session yet (see Store.ClaimRecent). Older
// versions of this file lack it (a missing value is 1, everything recent)
// and readers that predate it skip the records.
//
// Every append is fsynced before the UID is handed out, so a UID a client
// saw is never reused (RFC 9051 section 2.3.1.1: UIDs are strictly
// ascending within a UIDVALIDITY). A torn last line (no newline: the
// process died mid-write, before the fsync) is cut off when the log is
// opened. A missing or unreadable log is rebuilt from the directory with a
// new, larger UIDVALIDITY. When the log holds many more records than live
// messages it is rewritten atomically (write temporary file, fsync, rename,
// fsync directory).
const indexMagic = "mailvault-uidlist 1"

type uidIndex struct {
	path     string
	log      *slog.Logger
	f        *os.File // append handle; nil when broken
	validity uint32
	next     uint32
	// firstRecent: UIDs from here on are \Recent (unclaimed); at least 1.
	firstRecent uint32
	byUID       map[uint32]string
	byUnique    map[string]uint32
	records     int
}

// openIndex opens (or creates) the index at path. newValidity gives the
// UIDVALIDITY of an index that has to be created, from the old header's
// value (0 if unreadable): see Store.nextValidity.
func openIndex(fsys fileSystem, path string, newValidity func(old uint32) (uint32, error), log *slog.Logger) (*uidIndex, error) {
	x := &uidIndex{path: path, log: log, byUID: map[uint32]string{}, byUnique: map[string]uint32{}}
	data, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("store: read uid index: %w", err)
	}
	good := x.parse(data)
	if !good {
		if len(data) > 0 {
			log.Warn("rebuilding unreadable uid index", "path", path)
		}
		// New UIDVALIDITY: larger than the old one if the old header
		// could be read, and than any the account's folders had.
		v, err := newValidity(x.validity)
		if err != nil {
			return nil, err
		}
		x.validity, x.next, x.firstRecent = v, 1, 1
		x.byUID, x.byUnique = map[uint32]string{}, map[string]uint32{}
		if err := x.rewrite(fsys); err != nil {
			return nil, err
		}
		return x, nil
	}
	if x.records > 2*len(x.byUID)+1000 {
		if err := x.rewrite(fsys); err != nil {
			return nil, err
		}
		return x, nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0o600)
	if err != nil {
		return nil, fmt.Errorf("store: open uid index: %w", err)
	}
	// Cut off a torn last line.
	if end := bytes.LastIndexByte(data, '\n') + 1; end != len(data) {
		if err := f.Truncate(int64(end)); err != nil {
			f.Close()
			return nil, fmt.Errorf("store: truncate uid index: %w", err)
		}
	}
	if _, err := f.Seek(0, 2); err != nil {
		f.Close()
		return nil, fmt.Errorf("store: seek uid index: %w", err)
	}
	x.f = f
	return x, nil
}

// parse loads records from data; it reports false if the header is bad.
func (x *uidIndex) parse(data []byte) bool {
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 64*1024)
	first := true
	for sc.Scan() {
		line := sc.Text()
		if first {
			first = false
			rest, ok := strings.CutPrefix(line, indexMagic+" ")
			if !ok {
				return false
			}
			for _, f := range strings.Fields(rest) {
				n, err := strconv.ParseUint(f[1:], 10, 32)
				if err != nil {
					return false
				}
				switch f[0] {
				case 'V':
					x.validity = uint32(n)
				case 'N':
					x.next = uint32(n)
				case 'R':
					x.firstRecent = uint32(n)
				}
			}
			if x.validity == 0 || x.next == 0 {
				return false
			}
			continue
		}
		x.records++
		fields := strings.SplitN(line, " ", 3)
		if len(fields) < 2 {
			continue // torn or damaged record: ignore
		}
		uid64, err := strconv.ParseUint(fields[1], 10, 32)
		if err != nil || uid64 == 0 {
			continue
		}
		uid := uint32(uid64)
		switch {
		case fields[0] == "A" && len(fields) == 3 && fields[2] != "":
			if old, ok := x.byUnique[fields[2]]; ok {
				delete(x.byUID, old)
			}
			x.byUID[uid] = fields[2]
			x.byUnique[fields[2]] = uid
			if uid >= x.next {
				x.next = uid + 1
			}
		case fields[0] == "R":
			x.firstRecent = max(x.firstRecent, uid)
		case fields[0] == "X":
			if u, ok := x.byUID[uid]; ok {
				delete(x.byUnique, u)
				delete(x.byUID, uid)
			}
		}
	}
	// A partial last line without newline is skipped by the caller's
	// truncation; bufio.Scanner returns it, so undo its effect when the
	// data does not end in a newline.
	if len(data) > 0 && data[len(data)-1] != '\n' {
		return x.reparseWithoutTail(data)
	}
	return !first
}

func (x *uidIndex) reparseWithoutTail(data []byte) bool {
	end := bytes.LastIndexByte(data, '\n') + 1
	y := &uidIndex{byUID: map[uint32]string{}, byUnique: map[string]uint32{}}
	ok := y.parse(data[:end])
	x.validity, x.next, x.byUID, x.byUnique, x.records = y.validity, y.next, y.byUID, y.byUnique, y.records
	x.firstRecent = y.firstRecent
	return ok
}

func (x *uidIndex) sortedUIDs() []uint32 {
	uids := make([]uint32, 0, len(x.byUID))
	for u := range x.byUID {
		uids = append(uids, u)
	}
	sort.Slice(uids, func(i, j int) bool { return uids[i] < uids[j] })
	return uids
}

func (x *uidIndex) appendRecords(fsys fileSystem, b []byte) error {
	return x.appendRecordsSync(fsys, b, true)
}

// appendRecordsSync is appendRecords, without the fsync if !sync.
func (x *uidIndex) appendRecordsSync(fsys fileSystem, b []byte, sync bool) error {
	if x.f == nil {
		if err := x.rewrite(fsys); err != nil {
			return err
		}
	}
	if _, err := x.f.Write(b); err != nil {
		x.f.Close()
		x.f = nil // rewritten from memory next time
		return fmt.Errorf("store: append uid index: %w", err)
	}
	if !sync {
		return nil
	}
	if err := fsys.SyncFile(x.f); err != nil {
		x.f.Close()
		x.f = nil
		return fmt.Errorf("store: fsync uid index: %w", err)
	}
	return nil
}

// claimRecent records that the messages below uid are no longer \Recent.
// It is not fsynced: a crash that loses it makes them \Recent once more,
// which harms nobody, while an fsync per SELECT would cost every client.
func (x *uidIndex) claimRecent(fsys fileSystem, uid uint32) error {
	if uid <= x.firstRecent {
		return nil
	}
	if err := x.appendRecordsSync(fsys, fmt.Appendf(nil, "R %d\n", uid), false); err != nil {
		return err
	}
	x.firstRecent = uid
	x.records++
	return nil
}

// assign gives the next UIDs to uniques, durably.
func (x *uidIndex) assign(fsys fileSystem, uniques []string) ([]uint32, error) {
	if len(uniques) == 0 {
		return nil, nil
	}
	var b bytes.Buffer
	uids := make([]uint32, len(uniques))
	next := x.next
	for i, u := range uniques {
		uids[i] = next
		fmt.Fprintf(&b, "A %d %s\n", next, u)
		next++
	}
	if err := x.appendRecords(fsys, b.Bytes()); err != nil {
		return nil, err
	}
	x.records += len(uniques)
	x.assigned(uniques, uids)
	return uids, nil
}

// reserve writes the record giving unique the next UID without waiting
// for it to be durable, so that the caller can fsync the index (syncFile)
// while it fsyncs the message: an APPEND then waits for one fsync less
// (Store.deliver). Until assigned records it, the UID is taken on disk
// only: the next one is burnt either way, so that it is never given
// twice even if the record did reach the disk.
func (x *uidIndex) reserve(fsys fileSystem, unique string) (uint32, error) {
	uid := x.next
	if err := x.appendRecordsSync(fsys, fmt.Appendf(nil, "A %d %s\n", uid, unique), false); err != nil {
		return 0, err
	}
	x.next++
	x.records++
	return uid, nil
}

// syncFile fsyncs the index's append handle (after reserve).
func (x *uidIndex) syncFile(fsys fileSystem) error {
	if x.f == nil {
		return errors.New("store: uid index closed")
	}
	if err := fsys.SyncFile(x.f); err != nil {
		// Rewritten from memory next time, without the reserved record.
		x.f.Close()
		x.f = nil
		return fmt.Errorf("store: fsync uid index: %w", err)
	}
	return nil
}

// assigned records in memory UIDs given (durably) to uniques.
func (x *uidIndex) assigned(uniques []string, uids []uint32) {
	for i, u := range uniques {
		if old, ok := x.byUnique[u]; ok {
			delete(x.byUID, old)
		}
		x.byUID[uids[i]] = u
		x.byUnique[u] = uids[i]
		x.next = max(x.next, uids[i]+1)
	}
}

// remove forgets UIDs, durably.
func (x *uidIndex) remove(fsys fileSystem, uids []uint32) error {
	if len(uids) == 0 {
		return nil
	}
	var b bytes.Buffer
	for _, uid := range uids {
		fmt.Fprintf(&b, "X %d\n", uid)
	}
	if err := x.appendRecords(fsys, b.Bytes()); err != nil {
		return err
	}
	for _, uid := range uids {
		delete(x.byUnique, x.byUID[uid])
		delete(x.byUID, uid)
	}
	x.records += len(uids)
	return nil
}

// rewrite replaces the log atomically with the in-memory state.
func (x *uidIndex) rewrite(fsys fileSystem) error {
	if x.f != nil {
		x.f.Close()
		x.f = nil
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s V%d N%d R%d\n", indexMagic, x.validity, x.next, max(x.firstRecent, 1))
	for _, uid := range x.sortedUIDs() {
		fmt.Fprintf(&b, "A %d %s\n", uid, x.byUID[uid])
	}
	tmp := x.path + ".tmp"
	os.Remove(tmp)
	f, err := fsys.Create(tmp)
	if err != nil {
		return fmt.Errorf("store: write uid index: %w", err)
	}
	if _, err := f.Write(b.Bytes()); err != nil {
		f.Close()
		return fmt.Errorf("store: write uid index: %w", err)
	}
	if err := fsys.SyncFile(f); err != nil {
		f.Close()
		return fmt.Errorf("store: fsync uid index: %w", err)
	}
	if err := fsys.Rename(tmp, x.path); err != nil {
		f.Close()
		return fmt.Errorf("store: replace uid index: %w", err)
	}
	if err := fsys.SyncDir(filepath.Dir(x.path)); err != nil {
		f.Close()
		return err
	}
	// f was opened write-only at offset len(b): keep appending to it.
	x.f = f
	x.records = len(x.byUID)
	return nil
}
