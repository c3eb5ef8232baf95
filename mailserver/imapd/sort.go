package imapd

import (
	"bufio"
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	gomessage "github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"

	"github.com/mailvault/mailvault/mailserver/store"
)

// sortMsg is what SORT and THREAD compare of a message.
type sortMsg struct {
	seq, uid uint32
	size     int64
	arrival  time.Time // INTERNALDATE
	date     time.Time // the Date header, or INTERNALDATE without one (RFC 5256 section 3)
	subject  string    // base subject (RFC 5256 section 2.1)
	reply    bool      // the subject had a reply or forward leader or trailer
	header   mail.Header
	env      *imap.Envelope
}

// num is the message's number as the command asks for it.
func (m *sortMsg) num(kind imapserver.NumKind) uint32 {
	if kind == imapserver.NumKindUID {
		return m.uid
	}
	return m.seq
}

// sortMsgs returns the messages matching criteria in sequence order, their
// headers read from the header cache or the files (a message expunged
// meanwhile is left out).
func (s *session) sortMsgs(criteria *imap.SearchCriteria) ([]*sortMsg, error) {
	data, err := s.Search(imapserver.NumKindSeq, criteria, &imap.SearchOptions{ReturnAll: true})
	if err != nil {
		return nil, err
	}
	set, _ := data.All.(imap.SeqSet)
	if len(set) == 0 {
		return nil, nil
	}
	m := s.sel.mbox
	m.mu.Lock()
	targets := s.resolveLocked(set)
	m.mu.Unlock()
	out := make([]*sortMsg, 0, len(targets))
	for _, t := range targets {
		sm, err := s.sortMsgOf(m, t)
		if err != nil {
			return nil, err
		}
		if sm != nil {
			out = append(out, sm)
		}
	}
	return out, nil
}

// sortMsgOf reads what SORT and THREAD compare of a message; nil if it
// is gone.
func (s *session) sortMsgOf(m *mailbox, t target) (*sortMsg, error) {
	meta, err := s.metaOf(m, t)
	if errors.Is(err, store.ErrNoSuchMessage) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	sm := &sortMsg{seq: t.seq, uid: t.msg.uid, size: meta.size, arrival: meta.modTime}
	var h textproto.Header
	if meta.big {
		f, err := s.srv.store.OpenMessage(s.ctx(), s.acct, m.folder, t.msg.uid)
		if err != nil {
			return nil, nil
		}
		h, _ = textproto.ReadHeader(bufio.NewReader(f))
		f.Close()
		sm.env = extractEnvelope(h)
	} else {
		h, _ = textproto.ReadHeader(bufio.NewReader(bytes.NewReader(meta.header)))
		sm.env = meta.envelope()
	}
	sm.header = mail.Header{Header: gomessage.Header{Header: h}}
	sm.date = sm.arrival
	if d, err := sm.header.Date(); err == nil && !d.IsZero() {
		sm.date = d
	}
	subj, err := sm.header.Subject()
	if err != nil {
		subj = sm.header.Get("Subject")
	}
	sm.subject, sm.reply = baseSubject(subj)
	return sm, nil
}

// metaOf returns a message's cached metadata, reading the file's header
// block into the cache when it is not there.
func (s *session) metaOf(m *mailbox, t target) (*msgMeta, error) {
	key := ""
	if t.msg.unique != "" {
		key = m.key + "\x00" + t.msg.unique
		if meta := s.srv.meta.get(key); meta != nil {
			return meta, nil
		}
	}
	f, err := s.srv.store.OpenMessage(s.ctx(), s.acct, m.folder, t.msg.uid)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("imapd: sort: %w", err)
	}
	meta, err := readMeta(key, f, fi.Size(), fi.ModTime())
	if err != nil {
		return nil, err
	}
	if key != "" {
		s.srv.meta.put(meta)
	}
	return meta, nil
}

// Sort answers SORT and UID SORT (RFC 5256, with RFC 5957's DISPLAYFROM
// and DISPLAYTO): strings compare with i;ascii-casemap, ties go by
// sequence number whatever REVERSE says. RETURN (UPDATE) keeps the
// result as a context (context.go, CONTEXT=SORT).
func (s *session) Sort(kind imapserver.NumKind, criteria []imapserver.SortCriterion, search *imap.SearchCriteria, options *imap.SearchOptions) ([]uint32, error) {
	if options.ReturnUpdate {
		if err := s.canKeepContext(); err != nil {
			return nil, err
		}
	}
	msgs, err := s.sortMsgs(search)
	if err != nil {
		return nil, err
	}
	keys := make(map[uint32][]any, len(msgs))
	for _, sm := range msgs {
		keys[sm.uid] = sortKeys(sm, criteria)
	}
	sort.SliceStable(msgs, func(a, b int) bool {
		return compareKeys(criteria, keys[msgs[a].uid], keys[msgs[b].uid]) < 0
	})
	out := make([]uint32, len(msgs))
	for i, sm := range msgs {
		out[i] = sm.num(kind)
	}
	if options.ReturnUpdate {
		m := s.sel.mbox
		m.mu.Lock()
		all := s.resolveLocked(imap.SeqSet{imap.SeqRange{Start: 1, Stop: 0}})
		m.mu.Unlock()
		seqUID := make(map[uint32]uint32, len(all))
		for _, t := range all {
			seqUID[t.seq] = t.msg.uid
		}
		seqsToUIDs(search, seqUID)
		c := &searchContext{tag: options.Tag, uid: kind == imapserver.NumKindUID, criteria: search,
			result: make(map[uint32]uint32, len(msgs)), sort: criteria, keys: keys, volatile: volatileCriteria(search)}
		for _, sm := range msgs {
			c.result[sm.uid] = sm.seq
			c.order = append(c.order, sm.uid)
		}
		s.sel.contexts = append(s.sel.contexts, c)
	}
	return out, nil
}

func sortKeys(sm *sortMsg, criteria []imapserver.SortCriterion) []any {
	k := make([]any, 0, len(criteria))
	for _, c := range criteria {
		k = append(k, sortKey(sm, c.Key))
	}
	return k
}

// compareKeys orders two messages' keys by the criteria; 0 for a tie,
// which the callers leave in sequence (UID) order.
func compareKeys(criteria []imapserver.SortCriterion, a, b []any) int {
	for i, c := range criteria {
		r := compareKey(a[i], b[i])
		if c.Reverse {
			r = -r
		}
		if r != 0 {
			return r
		}
	}
	return 0
}

func sortKey(sm *sortMsg, key imapserver.SortKey) any {
	switch key {
	case imapserver.SortKeyArrival:
		return sm.arrival
	case imapserver.SortKeyDate:
		return sm.date
	case imapserver.SortKeySize:
		return sm.size
	case imapserver.SortKeySubject:
		return asciiUpper(sm.subject)
	case imapserver.SortKeyFrom:
		return addrMailbox(sm.env.From, sm.rawAddr("From"))
	case imapserver.SortKeyTo:
		return addrMailbox(sm.env.To, sm.rawAddr("To"))
	case imapserver.SortKeyCc:
		return addrMailbox(sm.env.Cc, sm.rawAddr("Cc"))
	case imapserver.SortKeyDisplayFrom:
		return displayAddr(sm.env.From, sm.rawAddr("From"))
	case imapserver.SortKeyDisplayTo:
		return displayAddr(sm.env.To, sm.rawAddr("To"))
	}
	return ""
}

func compareKey(a, b any) int {
	switch a := a.(type) {
	case time.Time:
		return a.Compare(b.(time.Time))
	case int64:
		return cmp.Compare(a, b.(int64))
	case string:
		return strings.Compare(a, b.(string))
	}
	return 0
}

// rawAddr is an address field's text, decoded and trimmed: what SORT
// compares when the field holds no address it can parse (From: d, a local
// part alone, is one as Dovecot sorts it).
func (sm *sortMsg) rawAddr(key string) string {
	v, err := sm.header.Text(key)
	if err != nil {
		v = sm.header.Get(key)
	}
	return strings.TrimSpace(v)
}

// addrMailbox is the addr-mailbox of the first address (RFC 5256 section
// 3, FROM/TO/CC), a group's name for a group.
func addrMailbox(l []imap.Address, raw string) string {
	if len(l) == 0 {
		return asciiUpper(raw)
	}
	return asciiUpper(l[0].Mailbox)
}

// displayAddr is RFC 5957's display name of the first address, or its
// addr-spec when it has none.
func displayAddr(l []imap.Address, raw string) string {
	if len(l) == 0 {
		return asciiUpper(raw)
	}
	a := l[0]
	if a.Name != "" {
		return asciiUpper(a.Name)
	}
	if a.Host == "" {
		return asciiUpper(a.Mailbox)
	}
	return asciiUpper(a.Mailbox + "@" + a.Host)
}

// asciiUpper is i;ascii-casemap (RFC 4790): ASCII letters upper-cased.
func asciiUpper(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' {
			return r - 'a' + 'A'
		}
		return r
	}, s)
}

// baseSubject extracts the base subject (RFC 5256 section 2.1) of a
// decoded Subject and says whether a reply or forward marker was removed
// (what ORDEREDSUBJECT and REFERENCES call a reply).
func baseSubject(s string) (string, bool) {
	// (1) whitespace runs become one space.
	s = strings.Join(strings.FieldsFunc(s, func(r rune) bool {
		return r == ' ' || r == '\t' || r == '\r' || r == '\n'
	}), " ")
	reply := false
	for {
		// (2) subj-trailer: "(fwd)" and whitespace at the end.
		for {
			t := strings.TrimRight(s, " ")
			if len(t) >= 5 && strings.EqualFold(t[len(t)-5:], "(fwd)") {
				t = t[:len(t)-5]
				reply = true
			}
			if t == s {
				break
			}
			s = t
		}
		for {
			prev := s
			// (3) subj-leader: blobs followed by re/fw/fwd, blob, ":".
			for {
				t := strings.TrimLeft(s, " ")
				if n := refwdLen(t); n > 0 {
					t = t[n:]
					reply = true
				}
				if t == s {
					break
				}
				s = t
			}
			// (4) a leading subj-blob, unless it is all there is.
			if n := blobLen(s); n > 0 && strings.TrimLeft(s[n:], " ") != "" {
				s = s[n:]
			}
			if s == prev {
				break
			}
		}
		// (5) "[fwd:" subject "]".
		if len(s) >= 6 && strings.EqualFold(s[:5], "[fwd:") && s[len(s)-1] == ']' {
			s = s[5 : len(s)-1]
			reply = true
			continue
		}
		return s, reply
	}
}

// blobLen is the length of a subj-blob at the start of s: "[" *BLOBCHAR
// "]" *WSP, or 0.
func blobLen(s string) int {
	if !strings.HasPrefix(s, "[") {
		return 0
	}
	i := strings.IndexAny(s[1:], "[]")
	if i < 0 || s[1+i] != ']' {
		return 0
	}
	n := i + 2
	for n < len(s) && s[n] == ' ' {
		n++
	}
	return n
}

// refwdLen is the length of *subj-blob subj-refwd at the start of s
// (subj-refwd = ("re" / ("fw" ["d"])) *WSP [subj-blob] ":"), or 0.
func refwdLen(s string) int {
	n := 0
	for {
		b := blobLen(s[n:])
		if b == 0 {
			break
		}
		n += b
	}
	u := strings.ToLower(s[n:])
	switch {
	case strings.HasPrefix(u, "re"):
		n += 2
	case strings.HasPrefix(u, "fwd"):
		n += 3
	case strings.HasPrefix(u, "fw"):
		n += 2
	default:
		return 0
	}
	for n < len(s) && s[n] == ' ' {
		n++
	}
	n += blobLen(s[n:])
	if n < len(s) && s[n] == ':' {
		return n + 1
	}
	return 0
}
