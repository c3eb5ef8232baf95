package imapd

import (
	"slices"
	"sort"
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
)

// Thread answers THREAD and UID THREAD (RFC 5256) with ORDEREDSUBJECT or
// REFERENCES over the messages matching the search criteria. Dates are
// sent dates (the Date header, INTERNALDATE without one); ties go by
// sequence number.
func (s *session) Thread(kind imapserver.NumKind, algorithm imap.ThreadAlgorithm, criteria *imap.SearchCriteria) ([]imapserver.Thread, error) {
	msgs, err := s.sortMsgs(criteria)
	if err != nil {
		return nil, err
	}
	var roots []*tnode
	if algorithm == imap.ThreadOrderedSubject {
		roots = orderedSubject(msgs)
	} else {
		roots = references(msgs)
	}
	out := make([]imapserver.Thread, len(roots))
	for i, r := range roots {
		out[i] = r.thread(kind)
	}
	return out, nil
}

// tnode is a message, or a dummy (msg nil) standing for one that is
// referred to but not there, in a thread tree.
type tnode struct {
	msg      *sortMsg
	parent   *tnode
	children []*tnode
}

func (n *tnode) thread(kind imapserver.NumKind) imapserver.Thread {
	t := imapserver.Thread{}
	if n.msg != nil {
		t.Num = n.msg.num(kind)
	}
	for _, c := range n.children {
		t.Children = append(t.Children, c.thread(kind))
	}
	return t
}

// first is the message a node is dated and named by: its own, or a
// dummy's first child's (RFC 5256 section 2.2, steps 4 and 5).
func (n *tnode) first() *sortMsg {
	for n.msg == nil {
		if len(n.children) == 0 {
			return nil
		}
		n = n.children[0]
	}
	return n.msg
}

func (n *tnode) unlink() {
	if p := n.parent; p != nil {
		p.children = slices.DeleteFunc(p.children, func(c *tnode) bool { return c == n })
		n.parent = nil
	}
}

// link makes child a child of parent unless that would make a loop.
func link(parent, child *tnode) {
	for a := parent; a != nil; a = a.parent {
		if a == child {
			return
		}
	}
	child.unlink()
	child.parent = parent
	parent.children = append(parent.children, child)
}

// sortSiblings sorts every set of siblings by date, children first so
// that a dummy is dated by its first child.
func sortSiblings(l []*tnode) {
	for _, n := range l {
		sortSiblings(n.children)
	}
	sort.SliceStable(l, func(i, j int) bool {
		a, b := l[i].first(), l[j].first()
		if a == nil || b == nil {
			return b == nil && a != nil
		}
		if c := a.date.Compare(b.date); c != 0 {
			return c < 0
		}
		return a.seq < b.seq
	})
}

// orderedSubject is ORDEREDSUBJECT (RFC 5256 section 2.1 and 3): messages
// with the same base subject form a thread, the first (by sent date) its
// parent and every other one a child of it; threads in the order of their
// first messages.
func orderedSubject(msgs []*sortMsg) []*tnode {
	bySubject := map[string]*tnode{}
	var roots []*tnode
	for _, m := range msgs {
		key := asciiUpper(m.subject)
		n := &tnode{msg: m}
		r := bySubject[key]
		if r == nil {
			bySubject[key] = n
			roots = append(roots, n)
			continue
		}
		r.children = append(r.children, n)
	}
	// The first by date of each group is its parent.
	for i, r := range roots {
		all := append([]*tnode{{msg: r.msg}}, r.children...)
		sortSiblings(all)
		head := all[0]
		head.children = all[1:]
		for _, c := range head.children {
			c.parent = head
		}
		roots[i] = head
	}
	sortSiblings(roots)
	return roots
}

// references is REFERENCES (RFC 5256 section 2.2 and 3).
func references(msgs []*sortMsg) []*tnode {
	byID := map[string]*tnode{}
	node := func(id string) *tnode {
		n := byID[id]
		if n == nil {
			n = &tnode{}
			byID[id] = n
		}
		return n
	}
	var all []*tnode
	for _, m := range msgs {
		// (1)(A) the message's own container: a missing or duplicate
		// Message-ID gets one of its own.
		var n *tnode
		if ids := msgIDs(m.header.Get("Message-Id")); len(ids) > 0 {
			if c := byID[ids[0]]; c == nil || c.msg == nil {
				n = node(ids[0])
			}
		}
		if n == nil {
			n = &tnode{}
		}
		n.msg = m
		all = append(all, n)
		// (1)(B) link the references in order, leaving existing links.
		refs := msgIDs(m.header.Get("References"))
		if len(refs) == 0 {
			if irt := msgIDs(m.header.Get("In-Reply-To")); len(irt) > 0 {
				refs = irt[:1]
			}
		}
		for i := 0; i+1 < len(refs); i++ {
			p, c := node(refs[i]), node(refs[i+1])
			if c.parent == nil && p != c {
				link(p, c)
			}
		}
		// (1)(C) the last reference is the parent: the link a truncated
		// References header left is broken first.
		n.unlink()
		if len(refs) > 0 {
			if p := node(refs[len(refs)-1]); p != n {
				link(p, n)
			}
		}
	}
	// (2) the root set.
	var roots []*tnode
	seen := map[*tnode]bool{}
	add := func(n *tnode) {
		if n.parent == nil && !seen[n] {
			seen[n] = true
			roots = append(roots, n)
		}
	}
	for _, n := range all {
		for n.parent != nil {
			n = n.parent
		}
		add(n)
	}
	// (3) prune dummies.
	roots = prune(roots, true)
	// (4) sort.
	sortSiblings(roots)
	// (5) gather the root set by base subject.
	table := map[string]*tnode{}
	for _, r := range roots {
		m := r.first()
		if m == nil || m.subject == "" {
			continue
		}
		key := asciiUpper(m.subject)
		old := table[key]
		switch {
		case old == nil,
			r.msg == nil && old.msg != nil,
			old.msg != nil && r.msg != nil && old.msg.reply && !r.msg.reply:
			table[key] = r
		}
	}
	var merged []*tnode
	gone := map[*tnode]bool{}
	for _, r := range roots {
		m := r.first()
		if m == nil || m.subject == "" {
			continue
		}
		key := asciiUpper(m.subject)
		t := table[key]
		if t == nil || t == r {
			continue
		}
		switch {
		case t.msg == nil && r.msg == nil:
			for _, c := range slices.Clone(r.children) {
				link(t, c)
			}
		case t.msg == nil || r.msg == nil:
			if t.msg == nil {
				link(t, r)
			} else {
				link(r, t)
				gone[t] = true
				table[key] = r
				continue
			}
		case !t.msg.reply && r.msg.reply:
			link(t, r)
		default:
			d := &tnode{}
			merged = append(merged, d)
			gone[t] = true
			link(d, t)
			link(d, r)
			table[key] = d
		}
		gone[r] = true
	}
	roots = slices.DeleteFunc(append(roots, merged...), func(n *tnode) bool { return gone[n] || n.parent != nil })
	// (6) sort every set of siblings.
	sortSiblings(roots)
	return roots
}

// prune removes dummies without children and puts a dummy's children in
// its place, except at the root where a dummy with more than one child
// stays (RFC 5256 section 2.2 step 3).
func prune(l []*tnode, root bool) []*tnode {
	var out []*tnode
	for _, n := range l {
		n.children = prune(n.children, false)
		if n.msg != nil || (root && len(n.children) > 1) {
			out = append(out, n)
			continue
		}
		for _, c := range n.children {
			c.parent = n.parent
		}
		out = append(out, n.children...)
		n.children = nil
	}
	return out
}

// msgIDs returns the msg-ids ("<...>" with an "@") of a Message-ID,
// References or In-Reply-To field, without the angle brackets.
func msgIDs(v string) []string {
	var out []string
	for {
		i := strings.IndexByte(v, '<')
		if i < 0 {
			return out
		}
		v = v[i+1:]
		j := strings.IndexAny(v, "<>")
		if j < 0 {
			return out
		}
		if v[j] == '>' {
			id := strings.TrimSpace(v[:j])
			if id != "" && !strings.ContainsAny(id, " \t\r\n") && strings.Contains(id, "@") {
				out = append(out, id)
			}
			v = v[j+1:]
		} else {
			v = v[j:]
		}
	}
}
