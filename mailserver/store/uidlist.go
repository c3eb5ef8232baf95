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
//	mailvault-uidlist 1 V<uidvalidity> N<uidnext> R<first recent> H<highest modseq> E<expunge floor>
//	                                                 header (first line)
//	A <uid> <unique>                                 UID given to a message
//	M <uid> <modseq> [<flags>]                       message's MODSEQ, for these Maildir flags
//	X <uid> [<modseq>]                               UID expunged (at that MODSEQ)
//	H <modseq>                                       MODSEQs up to here may be handed out
//	R <uid>                                          messages below uid claimed
//
// M and the modseq of X are CONDSTORE and QRESYNC (RFC 7162): every
// message has a 63-bit modification sequence, raised (to the folder's
// highest plus one) by every change of its flags, and by its arrival
// (APPEND, delivery, COPY or MOVE in: an A record goes with its M in one
// write). An M record names the flags the MODSEQ was given for, so that
// a change no M record tells of (flags changed by another process
// renaming the file, or a crash between a rename and its record) is found
// when the folder is scanned: the file's flags differ from the record's,
// and the message gets a new MODSEQ then (syncLocked). An expunge takes a
// MODSEQ as well: QRESYNC's VANISHED (EARLIER) names the UIDs expunged
// after a given MODSEQ (RFC 7162 section 3.2.5.1). HIGHESTMODSEQ is the
// largest MODSEQ of any record or of the header's H, so it never goes
// down: a rewrite keeps it in H.
//
// The M records of flag changes are not fsynced: that doubled the cost
// of a STORE (a second fsync after cur/'s). A lost one is harmless for the
// message (its file's flags differ from its last M record's, so the next
// scan gives it a new MODSEQ), but HIGHESTMODSEQ must not go back below
// a value a client was told. So MODSEQs are handed out from reservations:
// before a MODSEQ above the last durable H record is given, an H record
// reserving the next modSeqReserve is written and fsynced (with the M
// records that need it, in one write), and a log is read with HIGHESTMODSEQ
// at its last H: after a restart the next change is above everything
// reserved, which is above everything handed out. Arrivals and expunges
// are fsynced anyway (their records are their durability) and count as
// reserved. HIGHESTMODSEQ jumps by up to modSeqReserve at a restart;
// RFC 7162 needs MODSEQs to grow, not to be dense.
//
// A rewrite drops the X records; E says that expunges up to that MODSEQ
// are no longer known one by one (RFC 7162 section 3.2.10 lets VANISHED
// (EARLIER) name UIDs the client does not know, so QRESYNC from before E
// reports every UID that is missing).
// A log without H, M or modseqs (written before mailvault had CONDSTORE)
// loads as it is; its messages get MODSEQs on the first scan. MODSEQs
// start at 2, so that the HIGHESTMODSEQ of a folder nothing happened to
// yet is 1 (RFC 7162 section 3.1.2.1 wants it non-zero) and lower than
// any MODSEQ a message will get.
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

	// mods holds each live UID's MODSEQ and the flags it was given for;
	// a UID without one gets one on the next scan (syncLocked).
	mods map[uint32]modRec
	// highest is HIGHESTMODSEQ; expunged the X records read or written
	// since the log was last rewritten, in MODSEQ order; expFloor the
	// MODSEQ up to which expunges are not known one by one (E).
	highest  uint64
	expunged []expRec
	expFloor uint64
	// reserved: MODSEQs up to here are durable (an H record, or records
	// fsynced with them); highest never passes it unfsynced.
	reserved uint64
}

// modSeqReserve is how many MODSEQs one fsynced H record reserves.
const modSeqReserve = 1024

// modRec is a message's MODSEQ and the Maildir flags it is for.
type modRec struct {
	modseq uint64
	flags  string
}

// expRec is an expunged UID and the MODSEQ of its expunge.
type expRec struct {
	uid    uint32
	modseq uint64
}

// MaxModSeq is the largest MODSEQ: RFC 7162 section 7, mod-sequence-value
// is at most 2^63-1 (some clients keep it in a signed 64-bit integer).
const MaxModSeq = 1<<63 - 1

// nextModSeq is the MODSEQ of the next change (see the format above:
// MODSEQs start at 2).
func (x *uidIndex) nextModSeq() uint64 { return max(x.highest, 1) + 1 }

// highestModSeq is the folder's HIGHESTMODSEQ, at least 1.
func (x *uidIndex) highestModSeq() uint64 { return max(x.highest, 1) }

// openIndex opens (or creates) the index at path. newValidity gives the
// UIDVALIDITY of an index that has to be created, from the old header's
// value (0 if unreadable): see Store.nextValidity.
func openIndex(fsys fileSystem, path string, newValidity func(old uint32) (uint32, error), log *slog.Logger) (*uidIndex, error) {
	x := &uidIndex{path: path, log: log, byUID: map[uint32]string{}, byUnique: map[string]uint32{}, mods: map[uint32]modRec{}}
	data, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("store: read uid index: %w", err)
	}
	good := x.parse(data)
	// Whatever was handed out before is at most the last reservation,
	// which parse took into highest.
	x.reserved = x.highest
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
		x.byUID, x.byUnique, x.mods = map[uint32]string{}, map[string]uint32{}, map[uint32]modRec{}
		x.expunged, x.expFloor = nil, x.highest
		if err := x.rewrite(fsys); err != nil {
			return nil, err
		}
		return x, nil
	}
	if x.records > 4*len(x.byUID)+1000 { // an A and an M per message
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
				n, err := strconv.ParseUint(f[1:], 10, 64)
				if err != nil || n > MaxModSeq {
					return false
				}
				if f[0] != 'H' && f[0] != 'E' && n > 1<<32-1 {
					return false
				}
				switch f[0] {
				case 'V':
					x.validity = uint32(n)
				case 'N':
					x.next = uint32(n)
				case 'R':
					x.firstRecent = uint32(n)
				case 'H':
					x.highest = max(x.highest, n)
				case 'E':
					x.expFloor = n
				}
			}
			if x.validity == 0 || x.next == 0 {
				return false
			}
			continue
		}
		x.records++
		fields := strings.SplitN(line, " ", 4)
		if len(fields) < 2 {
			continue // torn or damaged record: ignore
		}
		if fields[0] == "H" {
			if ms, err := strconv.ParseUint(fields[1], 10, 64); err == nil && ms <= MaxModSeq {
				x.highest = max(x.highest, ms)
			}
			continue
		}
		uid64, err := strconv.ParseUint(fields[1], 10, 32)
		if err != nil || uid64 == 0 {
			continue
		}
		uid := uint32(uid64)
		switch {
		case fields[0] == "A" && len(fields) >= 3 && fields[2] != "":
			// A unique name has no space; SplitN cut it only if the
			// record is damaged, and then a rebuild would not help.
			unique := strings.Join(fields[2:], " ")
			if old, ok := x.byUnique[unique]; ok {
				delete(x.byUID, old)
				delete(x.mods, old)
			}
			x.byUID[uid] = unique
			x.byUnique[unique] = uid
			delete(x.mods, uid)
			if uid >= x.next {
				x.next = uid + 1
			}
		case fields[0] == "M" && len(fields) >= 3:
			ms, err := strconv.ParseUint(fields[2], 10, 64)
			if err != nil || ms == 0 || ms > MaxModSeq {
				continue
			}
			x.highest = max(x.highest, ms)
			if _, ok := x.byUID[uid]; ok {
				r := modRec{modseq: ms}
				if len(fields) == 4 {
					r.flags = fields[3]
				}
				x.mods[uid] = r
			}
		case fields[0] == "R":
			x.firstRecent = max(x.firstRecent, uid)
		case fields[0] == "X":
			if u, ok := x.byUID[uid]; ok {
				delete(x.byUnique, u)
				delete(x.byUID, uid)
				delete(x.mods, uid)
			}
			if len(fields) >= 3 {
				if ms, err := strconv.ParseUint(fields[2], 10, 64); err == nil && ms > 0 && ms <= MaxModSeq {
					x.highest = max(x.highest, ms)
					x.expunged = append(x.expunged, expRec{uid: uid, modseq: ms})
				}
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
	y := &uidIndex{byUID: map[uint32]string{}, byUnique: map[string]uint32{}, mods: map[uint32]modRec{}}
	ok := y.parse(data[:end])
	x.validity, x.next, x.byUID, x.byUnique, x.records = y.validity, y.next, y.byUID, y.byUnique, y.records
	x.firstRecent = y.firstRecent
	x.mods, x.highest, x.expunged, x.expFloor = y.mods, y.highest, y.expunged, y.expFloor
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

// assign gives the next UIDs to uniques, whose Maildir flags are flags,
// durably, with a new MODSEQ.
func (x *uidIndex) assign(fsys fileSystem, uniques, flags []string) ([]uint32, error) {
	if len(uniques) == 0 {
		return nil, nil
	}
	var b bytes.Buffer
	uids := make([]uint32, len(uniques))
	next := x.next
	ms := x.nextModSeq()
	for i, u := range uniques {
		uids[i] = next
		fmt.Fprintf(&b, "A %d %s\n", next, u)
		b.WriteString(modRecord(next, ms, flags[i]))
		next++
	}
	if err := x.appendRecords(fsys, b.Bytes()); err != nil {
		return nil, err
	}
	x.records += 2 * len(uniques)
	x.assigned(uniques, flags, uids, ms)
	return uids, nil
}

// reserve writes the records giving unique (with Maildir flags flags) the
// next UID and a new MODSEQ without waiting for them to be durable, so
// that the caller can fsync the index (syncFile) while it fsyncs the
// message: an APPEND then waits for one fsync less (Store.deliver). Until
// assigned records them, the UID and MODSEQ are taken on disk only: both
// are burnt either way, so that neither is given twice even if the
// records did reach the disk.
func (x *uidIndex) reserve(fsys fileSystem, unique, flags string) (uint32, uint64, error) {
	uid, ms := x.next, x.nextModSeq()
	rec := fmt.Sprintf("A %d %s\n", uid, unique) + modRecord(uid, ms, flags)
	if err := x.appendRecordsSync(fsys, []byte(rec), false); err != nil {
		return 0, 0, err
	}
	x.next++
	x.highest = ms
	x.records += 2
	return uid, ms, nil
}

// syncFile fsyncs the index's append handle (after reserve).
func (x *uidIndex) syncFile(fsys fileSystem) error {
	if x.f == nil {
		return errors.New("store: uid index closed")
	}
	if err := fsys.SyncFile(x.f); err != nil {
		// Rewritten from memory next time, without the reserved records.
		x.f.Close()
		x.f = nil
		return fmt.Errorf("store: fsync uid index: %w", err)
	}
	return nil
}

// assigned records in memory UIDs given (durably) to uniques with MODSEQ
// ms.
func (x *uidIndex) assigned(uniques, flags []string, uids []uint32, ms uint64) {
	for i, u := range uniques {
		if old, ok := x.byUnique[u]; ok {
			delete(x.byUID, old)
			delete(x.mods, old)
		}
		x.byUID[uids[i]] = u
		x.byUnique[u] = uids[i]
		x.mods[uids[i]] = modRec{modseq: ms, flags: flags[i]}
		x.next = max(x.next, uids[i]+1)
	}
	x.highest = max(x.highest, ms)
	x.reserved = max(x.reserved, ms) // fsynced
}

// modRecord is the M record of a message.
func modRecord(uid uint32, modseq uint64, flags string) string {
	if flags == "" {
		return fmt.Sprintf("M %d %d\n", uid, modseq)
	}
	return fmt.Sprintf("M %d %d %s\n", uid, modseq, flags)
}

// setModSeqs gives the messages of uids (live ones) a new MODSEQ for
// their flags and returns it. The records are fsynced only when the
// MODSEQ needs a new reservation (see the format above).
func (x *uidIndex) setModSeqs(fsys fileSystem, uids []uint32, flags []string) (uint64, error) {
	if len(uids) == 0 {
		return x.highest, nil
	}
	ms := x.nextModSeq()
	var b bytes.Buffer
	for i, uid := range uids {
		b.WriteString(modRecord(uid, ms, flags[i]))
	}
	reserve := ms > x.reserved
	if reserve {
		fmt.Fprintf(&b, "H %d\n", ms+modSeqReserve)
	}
	if err := x.appendRecordsSync(fsys, b.Bytes(), reserve); err != nil {
		return 0, err
	}
	if reserve {
		x.reserved = ms + modSeqReserve
		x.records++
	}
	for i, uid := range uids {
		x.mods[uid] = modRec{modseq: ms, flags: flags[i]}
	}
	x.highest = ms
	x.records += len(uids)
	return ms, nil
}

// remove forgets UIDs, durably.
func (x *uidIndex) remove(fsys fileSystem, uids []uint32) error {
	if len(uids) == 0 {
		return nil
	}
	var b bytes.Buffer
	ms := x.nextModSeq()
	for _, uid := range uids {
		fmt.Fprintf(&b, "X %d %d\n", uid, ms)
	}
	if err := x.appendRecords(fsys, b.Bytes()); err != nil {
		return err
	}
	for _, uid := range uids {
		delete(x.byUnique, x.byUID[uid])
		delete(x.byUID, uid)
		delete(x.mods, uid)
		x.expunged = append(x.expunged, expRec{uid: uid, modseq: ms})
	}
	x.highest = ms
	x.reserved = max(x.reserved, ms) // fsynced
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
	// The expunges are not kept: E says from where they are known.
	// H: the reservation, which the new log must keep (see above).
	h := max(x.highest, x.reserved)
	fmt.Fprintf(&b, "%s V%d N%d R%d H%d E%d\n", indexMagic, x.validity, x.next, max(x.firstRecent, 1), h, h)
	for _, uid := range x.sortedUIDs() {
		fmt.Fprintf(&b, "A %d %s\n", uid, x.byUID[uid])
		if r, ok := x.mods[uid]; ok {
			b.WriteString(modRecord(uid, r.modseq, r.flags))
		}
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
	x.records = len(x.byUID) + len(x.mods)
	x.expunged, x.expFloor = nil, h
	x.highest, x.reserved = h, h
	return nil
}

// expungedSince returns the UIDs expunged with a MODSEQ above since, in
// ascending MODSEQ order, and whether that list is complete: it is not
// when since is below the floor a rewrite left (expunges up to it are
// no longer known one by one).
func (x *uidIndex) expungedSince(since uint64) (uids []uint32, complete bool) {
	i := sort.Search(len(x.expunged), func(i int) bool { return x.expunged[i].modseq > since })
	for _, e := range x.expunged[i:] {
		uids = append(uids, e.uid)
	}
	return uids, since >= x.expFloor
}
