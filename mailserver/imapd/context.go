package imapd

import (
	"slices"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
)

// CONTEXT=SEARCH (RFC 5267): a SEARCH RETURN (UPDATE) stays active in its
// selection and every change to its result is told as ESEARCH ADDTO or
// REMOVEFROM (position 0: the result is a set, not an order) until
// CANCELUPDATE or the next SELECT. The result is evaluated again, over the
// whole mailbox, each time the session writes its updates (after every
// command, and in IDLE): a message leaving it is told before the
// updates, with the number the client knows it by (before an EXPUNGE of
// it), one joining after them, with its new number. Each context costs a
// search per command, so a session keeps at most maxSearchContexts.
const maxSearchContexts = 8

type searchContext struct {
	tag      string
	uid      bool
	criteria *imap.SearchCriteria // made static by the first search ("*", "$")
	// result: the matching messages, by UID, with the sequence number
	// the client knows each by.
	result map[uint32]uint32
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

// keepContext starts a context with the first search's result.
func (s *session) keepContext(kind imapserver.NumKind, criteria *imap.SearchCriteria, options *imap.SearchOptions, result map[uint32]uint32) {
	s.sel.contexts = append(s.sel.contexts, &searchContext{tag: options.Tag, uid: kind == imapserver.NumKindUID, criteria: criteria, result: result})
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
		for _, t := range targets {
			sm := &searchMsg{s: s, folder: m.folder, kw: &kw, t: t}
			if sm.match(c.criteria) {
				matched[i][t.msg.uid] = true
			}
			sm.close()
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
	for i, c := range sel.contexts {
		var added []uint32
		for uid := range matched[i] {
			if _, had := c.result[uid]; had {
				continue
			}
			if seq := seqs[uid]; seq != 0 { // else not told of yet: next time
				c.result[uid] = seq
				added = append(added, c.num(uid, seq))
			}
		}
		for uid := range c.result {
			if seq := seqs[uid]; seq != 0 {
				c.result[uid] = seq
			}
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
