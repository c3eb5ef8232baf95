package imapd

import (
	"cmp"
	"slices"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
)

// CONTEXT=SEARCH and CONTEXT=SORT (RFC 5267): a SEARCH or SORT RETURN
// (UPDATE) stays active in its selection and every change to its result
// is told as ESEARCH ADDTO or REMOVEFROM (position 0 for a SEARCH, whose
// result is a set; for a SORT the 1-based position in the sort order,
// one response per run of adjacent messages, each position counted after
// the responses before it) until
// CANCELUPDATE or the next SELECT. The result is evaluated again, over the
// whole mailbox, each time the session writes its updates (after every
// command, and in IDLE): a message leaving it is told before the
// updates, with the number the client knows it by (before an EXPUNGE of
// it), one joining after them, with its new number. The criteria's
// sequence numbers stand for the messages they named when the context
// started. Only messages whose
// flags changed, and new ones, are matched again (every message when the
// criteria name sequence numbers or WITHIN's OLDER/YOUNGER); a session
// keeps at most maxSearchContexts.
const maxSearchContexts = 8

type searchContext struct {
	tag      string
	uid      bool
	criteria *imap.SearchCriteria // made static by the first search ("*", "$")
	// result: the matching messages, by UID, with the sequence number
	// the client knows each by.
	result map[uint32]uint32

	// CONTEXT=SORT: the SORT's criteria, the result's UIDs in sort order
	// and each one's keys (a message's keys never change; ties go by
	// UID, which is sequence order).
	sort  []imapserver.SortCriterion
	order []uint32
	keys  map[uint32][]any

	// evaluated: each message's match at the last evaluation, with the
	// flags it was made on. A message's match changes only with its flags
	// (and \Recent), so only those messages are matched again, unless
	// the criteria are volatile: WITHIN's OLDER/YOUNGER, which time moves.
	// (Sequence numbers are made UIDs when the context starts.)
	evaluated map[uint32]evaluation
	volatile  bool
}

type evaluation struct {
	flags string
	match bool
}

// volatileCriteria reports whether criteria use WITHIN, whose answer for
// a message changes without the message.
func volatileCriteria(c *imap.SearchCriteria) bool {
	if c.Older != 0 || c.Younger != 0 {
		return true
	}
	for i := range c.Not {
		if volatileCriteria(&c.Not[i]) {
			return true
		}
	}
	for i := range c.Or {
		if volatileCriteria(&c.Or[i][0]) || volatileCriteria(&c.Or[i][1]) {
			return true
		}
	}
	return false
}

// CancelUpdate ends the contexts of these tags (RFC 5267 section 4.2).
func (s *session) CancelUpdate(tags []string) error {
	s.sel.contexts = slices.DeleteFunc(s.sel.contexts, func(c *searchContext) bool {
		return slices.Contains(tags, c.tag)
	})
	return nil
}

// canKeepContext refuses a context beyond maxSearchContexts.
func (s *session) canKeepContext() error {
	if len(s.sel.contexts) >= maxSearchContexts {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeLimit, Text: "Too many SEARCH RETURN (UPDATE) contexts; CANCELUPDATE one"}
	}
	return nil
}

// seqsToUIDs replaces the criteria's sequence sets by the UIDs of the
// messages they name now (seqUID, a client's sequence number's UID), so
// that a context keeps meaning the same messages when expunges shift the
// numbers.
func seqsToUIDs(c *imap.SearchCriteria, seqUID map[uint32]uint32) {
	for _, set := range c.SeqNum {
		var uids imap.UIDSet
		for seq, uid := range seqUID {
			if set.Contains(seq) {
				uids.AddNum(imap.UID(uid))
			}
		}
		c.UID = append(c.UID, uids)
	}
	c.SeqNum = nil
	for i := range c.Not {
		seqsToUIDs(&c.Not[i], seqUID)
	}
	for i := range c.Or {
		seqsToUIDs(&c.Or[i][0], seqUID)
		seqsToUIDs(&c.Or[i][1], seqUID)
	}
}

// keepContext starts a context with the first search's result.
func (s *session) keepContext(kind imapserver.NumKind, criteria *imap.SearchCriteria, options *imap.SearchOptions, result map[uint32]uint32) {
	s.sel.contexts = append(s.sel.contexts, &searchContext{tag: options.Tag, uid: kind == imapserver.NumKindUID, criteria: criteria, result: result, volatile: volatileCriteria(criteria)})
}

// flushContexts writes the view's queued updates (flush) with the
// changes to the selection's search contexts around them.
func (s *session) flushContexts(sel *selection, w *imapserver.UpdateWriter, allowExpunge bool) error {
	if len(sel.contexts) == 0 {
		return s.flush(sel.view, w, allowExpunge)
	}
	m := sel.mbox
	m.mu.Lock()
	kw := m.kw
	targets := make([]target, len(m.msgs))
	for i, mi := range m.msgs {
		targets[i] = target{idx: i, seq: sel.view.seqNum(uint32(i + 1)), msg: mi, recent: sel.view.recent[mi.uid]}
	}
	m.mu.Unlock()

	matched := make([]map[uint32]bool, len(sel.contexts))
	for i, c := range sel.contexts {
		matched[i] = map[uint32]bool{}
		evaluated := make(map[uint32]evaluation, len(targets))
		for _, t := range targets {
			fp := t.msg.flags
			if t.recent {
				fp += "\x00recent"
			}
			e, ok := c.evaluated[t.msg.uid]
			if !ok || e.flags != fp || c.volatile {
				sm := &searchMsg{s: s, folder: m.folder, kw: &kw, t: t}
				e = evaluation{flags: fp, match: sm.match(c.criteria)}
				sm.close()
			}
			evaluated[t.msg.uid] = e
			if e.match {
				matched[i][t.msg.uid] = true
			}
		}
		c.evaluated = evaluated
		if c.sort != nil {
			if err := c.removeSorted(w, matched[i]); err != nil {
				return err
			}
			continue
		}
		var gone []uint32
		for uid, seq := range c.result {
			if !matched[i][uid] {
				gone = append(gone, c.num(uid, seq))
				delete(c.result, uid)
			}
		}
		slices.Sort(gone)
		if err := w.WriteSearchUpdate(c.tag, c.uid, false, 0, gone); err != nil {
			return err
		}
	}

	if err := s.flush(sel.view, w, allowExpunge); err != nil {
		return err
	}

	// The client's numbers after the updates.
	m.mu.Lock()
	seqs := make(map[uint32]uint32, len(m.msgs))
	for i, mi := range m.msgs {
		if seq := sel.view.seqNum(uint32(i + 1)); seq != 0 {
			seqs[mi.uid] = seq
		}
	}
	m.mu.Unlock()
	byUID := make(map[uint32]target, len(targets))
	for _, t := range targets {
		byUID[t.msg.uid] = t
	}
	for i, c := range sel.contexts {
		var added []uint32
		for uid := range matched[i] {
			if _, had := c.result[uid]; had {
				continue
			}
			seq := seqs[uid]
			if seq == 0 {
				continue // not told of yet: next time
			}
			if c.sort != nil {
				sm, err := s.sortMsgOf(m, byUID[uid])
				if err != nil {
					return err
				}
				if sm == nil {
					continue // gone
				}
				c.keys[uid] = sortKeys(sm, c.sort)
			}
			c.result[uid] = seq
			added = append(added, uid)
		}
		for uid := range c.result {
			if seq := seqs[uid]; seq != 0 {
				c.result[uid] = seq
			}
		}
		if c.sort != nil {
			if err := c.addSorted(w, added); err != nil {
				return err
			}
			continue
		}
		for j, uid := range added {
			added[j] = c.num(uid, c.result[uid])
		}
		slices.Sort(added)
		if err := w.WriteSearchUpdate(c.tag, c.uid, true, 0, added); err != nil {
			return err
		}
	}
	return nil
}

func (c *searchContext) num(uid, seq uint32) uint32 {
	if c.uid {
		return uid
	}
	return seq
}

// removeSorted drops from a SORT context the messages no longer matched,
// telling each run of adjacent ones at its position.
func (c *searchContext) removeSorted(w *imapserver.UpdateWriter, matched map[uint32]bool) error {
	kept := c.order[:0:0]
	var run []uint32
	pos := uint32(0)
	flushRun := func() error {
		err := w.WriteSearchUpdate(c.tag, c.uid, false, pos, run)
		run = nil
		return err
	}
	for _, uid := range c.order {
		if matched[uid] {
			if err := flushRun(); err != nil {
				return err
			}
			kept = append(kept, uid)
			continue
		}
		if len(run) == 0 {
			pos = uint32(len(kept)) + 1
		}
		run = append(run, c.num(uid, c.result[uid]))
		delete(c.result, uid)
		delete(c.keys, uid)
	}
	if err := flushRun(); err != nil {
		return err
	}
	c.order = kept
	return nil
}

// addSorted puts new messages of a SORT context in their places, telling
// each run of adjacent ones at its position.
func (c *searchContext) addSorted(w *imapserver.UpdateWriter, added []uint32) error {
	if len(added) == 0 {
		return nil
	}
	isNew := make(map[uint32]bool, len(added))
	for _, uid := range added {
		isNew[uid] = true
	}
	c.order = append(c.order, added...)
	slices.SortStableFunc(c.order, func(a, b uint32) int {
		return cmp.Or(compareKeys(c.sort, c.keys[a], c.keys[b]), cmp.Compare(a, b))
	})
	var run []uint32
	pos := uint32(0)
	for i, uid := range c.order {
		if isNew[uid] {
			if len(run) == 0 {
				pos = uint32(i) + 1
			}
			run = append(run, c.num(uid, c.result[uid]))
			continue
		}
		if err := w.WriteSearchUpdate(c.tag, c.uid, true, pos, run); err != nil {
			return err
		}
		run = nil
	}
	return w.WriteSearchUpdate(c.tag, c.uid, true, pos, run)
}
