package imapd

import (
	"fmt"
	"slices"

	"github.com/emersion/go-imap/v2"
)

// CONDSTORE and QRESYNC (RFC 7162). The store keeps a MODSEQ per message
// and a HIGHESTMODSEQ per folder, and the expunges with theirs
// (store/uidlist.go); the mailbox's msgInfo carries each message's MODSEQ
// as last listed or changed. go-imap (third_party, imapserver/condstore.go)
// parses the commands and writes the responses; here are the answers.

// maxSeqMatch bounds the pairs of a QRESYNC seq-match (RFC 7162 section
// 3.2.5.2) a client may send: each is looked at, and the sets are
// expanded to be paired.
const maxSeqMatch = 1 << 16

// EnableCondStore implements imapserver.SessionCondStore: the client has
// enabled CONDSTORE (by ENABLE or a CONDSTORE-enabling command, RFC 7162
// section 3.1) or QRESYNC (section 3.2.3). From now on the session's
// unsolicited FETCHes carry MODSEQ and, with QRESYNC, its expunges are
// VANISHED (views.go, flush).
func (s *session) EnableCondStore(qresync bool) {
	s.condStore.Store(true)
	if qresync {
		s.qresync.Store(true)
	}
}

// HighestModSeq implements imapserver.SessionCondStore.
func (s *session) HighestModSeq() uint64 {
	s.mu.Lock()
	sel := s.sel
	s.mu.Unlock()
	if sel == nil {
		return 0
	}
	sel.mbox.mu.Lock()
	defer sel.mbox.mu.Unlock()
	return sel.mbox.highestModSeq
}

// qresyncAnswer is SELECT's answer to QRESYNC: the UIDs for VANISHED
// (EARLIER) and the indexes in mailbox.msgs of the messages to FETCH.
type qresyncAnswer struct {
	vanished imap.UIDSet
	changed  []int
}

// qresyncLocked answers SELECT's QRESYNC parameter (RFC 7162 section
// 3.2.5.1) for a client whose UIDVALIDITY matches: the messages of
// known-uids changed since its MODSEQ (FETCH UID FLAGS MODSEQ) and the
// UIDs expunged since (VANISHED (EARLIER)). Called with m.mu held, after
// the listing of SELECT and before the session's view is made.
func (s *session) qresyncLocked(m *mailbox, q *imap.SelectQResync) (*qresyncAnswer, error) {
	top := m.uidNext - 1
	known := imap.UIDSet{imap.UIDRange{Start: 1, Stop: imap.UID(max(top, 1))}}
	if q.KnownUIDs != nil {
		known = staticUIDs(q.KnownUIDs, top)
	}
	floor, err := seqMatchFloor(m, q)
	if err != nil {
		return nil, err
	}
	a := &qresyncAnswer{}
	live := make([]uint32, len(m.msgs))
	for i := range m.msgs {
		mi := &m.msgs[i]
		live[i] = mi.uid
		if mi.modseq > q.ModSeq && known.Contains(imap.UID(mi.uid)) {
			a.changed = append(a.changed, i)
		}
	}
	gone, complete, validity, err := s.srv.store.Expunged(s.ctx(), s.acct, m.folder, q.ModSeq)
	if err != nil {
		return nil, err
	}
	if validity != m.validity {
		return a, nil // rebuilt meanwhile: the next poll ends the session
	}
	a.vanished = vanishedUIDs(gone, complete, known, live, floor, top)
	return a, nil
}

// vanished is UID FETCH (CHANGEDSINCE n VANISHED)'s list (RFC 7162
// section 3.2.6): the UIDs of set expunged since n.
func (s *session) vanished(m *mailbox, set imap.UIDSet, since uint64) (imap.UIDSet, error) {
	if imap.IsSearchRes(set) {
		set = s.sel.searchRes
	}
	gone, complete, validity, err := s.srv.store.Expunged(s.ctx(), s.acct, m.folder, since)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if validity != m.validity {
		return nil, nil
	}
	top := m.uidNext - 1
	live := make([]uint32, len(m.msgs))
	for i := range m.msgs {
		live[i] = m.msgs[i].uid
	}
	return vanishedUIDs(gone, complete, staticUIDs(set, top), live, 0, top), nil
}

// vanishedUIDs is the VANISHED (EARLIER) set: of the UIDs in known
// (static, no "*"), those in gone when the store's expunge list is
// complete; otherwise every UID above floor and up to top that is not
// live (ascending), which RFC 7162 section 3.2.10 allows (a client may be
// told of UIDs it never knew).
func vanishedUIDs(gone []uint32, complete bool, known imap.UIDSet, live []uint32, floor, top uint32) imap.UIDSet {
	var out imap.UIDSet
	if complete {
		for _, u := range gone {
			if _, isLive := slices.BinarySearch(live, u); !isLive && known.Contains(imap.UID(u)) {
				out.AddNum(imap.UID(u))
			}
		}
		return out
	}
	for _, r := range known {
		a, b := max(uint32(r.Start), floor+1), min(uint32(r.Stop), top)
		if a == 0 {
			a = 1
		}
		i, _ := slices.BinarySearch(live, a)
		for a <= b {
			if i < len(live) && live[i] <= b {
				if live[i] > a {
					out.AddRange(imap.UID(a), imap.UID(live[i]-1))
				}
				a = live[i] + 1
				i++
				continue
			}
			out.AddRange(imap.UID(a), imap.UID(b))
			break
		}
	}
	return out
}

// staticUIDs is set with "*" replaced by top (RFC 9051 section 9).
func staticUIDs(set imap.UIDSet, top uint32) imap.UIDSet {
	out := make(imap.UIDSet, len(set))
	copy(out, set)
	for i := range out {
		staticRange((*uint32)(&out[i].Start), (*uint32)(&out[i].Stop), top)
	}
	return out
}

// seqMatchFloor reads QRESYNC's seq-match data (RFC 7162 section
// 3.2.5.2): pairs of a sequence number and the UID the client has at it.
// While the pairs agree with the mailbox, no message up to the pair's UID
// was expunged without the client knowing; the UID of the last pair of
// that agreeing run is returned, below which no VANISHED is needed when
// the expunges are not known one by one. Sets of different sizes are BAD.
func seqMatchFloor(m *mailbox, q *imap.SelectQResync) (uint32, error) {
	if q.SeqMatchSeqs == nil {
		return 0, nil
	}
	seqs, ok1 := expand(seqRanges(q.SeqMatchSeqs))
	uids, ok2 := expand(uidRanges(q.SeqMatchUIDs))
	if !ok1 || !ok2 || len(seqs) != len(uids) {
		return 0, &imap.Error{Type: imap.StatusResponseTypeBad,
			Text: fmt.Sprintf("QRESYNC seq-match: two sets of the same size, no \"*\", at most %d numbers", maxSeqMatch)}
	}
	floor := uint32(0)
	for i, seq := range seqs {
		if seq == 0 || int(seq) > len(m.msgs) || m.msgs[seq-1].uid != uids[i] {
			break
		}
		floor = uids[i]
	}
	return floor, nil
}

// expand lists a set's numbers (ranges as [start, stop]) in the order
// given; false for "*" or more than maxSeqMatch numbers.
func expand(ranges [][2]uint32) ([]uint32, bool) {
	var out []uint32
	for _, r := range ranges {
		a, b := r[0], r[1]
		if a == 0 || b == 0 {
			return nil, false
		}
		if a > b {
			a, b = b, a
		}
		if uint64(len(out))+uint64(b-a)+1 > maxSeqMatch {
			return nil, false
		}
		for n := a; ; n++ {
			out = append(out, n)
			if n == b {
				break
			}
		}
	}
	return out, true
}

func seqRanges(set imap.SeqSet) [][2]uint32 {
	out := make([][2]uint32, len(set))
	for i, r := range set {
		out[i] = [2]uint32{r.Start, r.Stop}
	}
	return out
}

func uidRanges(set imap.UIDSet) [][2]uint32 {
	out := make([][2]uint32, len(set))
	for i, r := range set {
		out[i] = [2]uint32{uint32(r.Start), uint32(r.Stop)}
	}
	return out
}
