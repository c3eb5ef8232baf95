package imapd

import (
	"bufio"
	"bytes"
	"io"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	gomessage "github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"

	"github.com/mailvault/mailvault/mailserver/store"
)

// Search answers SEARCH and UID SEARCH (RFC 9051 section 6.4.4): sequence
// and UID sets, flags (SEEN, UNSEEN, DELETED, FLAGGED, ANSWERED, DRAFT,
// KEYWORD $Forwarded ...), dates against INTERNALDATE (the file's mtime)
// and the Date header (SENTSINCE ...), LARGER/SMALLER, HEADER/FROM/TO/CC/
// BCC/SUBJECT, BODY and TEXT (case-insensitive substring), NOT and OR.
// Message files are read only when a key needs them.
func (s *session) Search(kind imapserver.NumKind, criteria *imap.SearchCriteria, options *imap.SearchOptions) (*imap.SearchData, error) {
	var keep map[uint32]uint32 // RETURN (UPDATE): the result, for context.go
	if options != nil && options.ReturnUpdate {
		if err := s.canKeepContext(); err != nil {
			return nil, err
		}
		keep = map[uint32]uint32{}
	}
	m := s.sel.mbox
	m.mu.Lock()
	kw := m.kw
	all := s.resolveLocked(imap.SeqSet{imap.SeqRange{Start: 1, Stop: 0}})
	var maxSeq uint32
	var maxUID uint32
	for _, t := range all {
		maxSeq, maxUID = max(maxSeq, t.seq), max(maxUID, t.msg.uid)
	}
	m.mu.Unlock()
	staticCriteria(criteria, maxSeq, maxUID, s.sel.searchRes)

	data := &imap.SearchData{}
	var seqs imap.SeqSet
	var uids imap.UIDSet
	var first, last imap.UID // the UIDs of the lowest and highest match
	// RFC 7162 section 3.1.5: with MODSEQ in the criteria the answer
	// carries the highest MODSEQ of the messages it returns: of all of
	// them, or with MIN and MAX alone (RFC 4731) of those two.
	var firstMod, lastMod, allMod uint64
	for _, t := range all {
		sm := &searchMsg{s: s, folder: m.folder, kw: &kw, t: t}
		ok := sm.match(criteria)
		sm.close()
		if !ok {
			continue
		}
		num := t.seq
		if kind == imapserver.NumKindUID {
			num = t.msg.uid
		}
		seqs.AddNum(t.seq)
		uids.AddNum(imap.UID(t.msg.uid))
		if first == 0 {
			first, firstMod = imap.UID(t.msg.uid), t.msg.modseq
		}
		if keep != nil {
			keep[t.msg.uid] = t.seq
		}
		last, lastMod = imap.UID(t.msg.uid), t.msg.modseq
		allMod = max(allMod, t.msg.modseq)
		if data.Min == 0 || num < data.Min {
			data.Min = num
		}
		data.Max = max(data.Max, num)
		data.Count++
	}
	if kind == imapserver.NumKindUID {
		data.All = uids
	} else {
		data.All = seqs
	}
	if imapserver.SearchHasModSeq(criteria) {
		data.ModSeq = allMod
		if options != nil && !options.ReturnAll && !options.ReturnCount && options.ReturnPartial == nil && (options.ReturnMin || options.ReturnMax) {
			data.ModSeq = 0
			if options.ReturnMin {
				data.ModSeq = firstMod
			}
			if options.ReturnMax {
				data.ModSeq = max(data.ModSeq, lastMod)
			}
		}
	}
	if options != nil && options.ReturnSave {
		s.saveResult(options, uids, first, last)
	}
	if keep != nil {
		seqUID := make(map[uint32]uint32, len(all))
		for _, t := range all {
			seqUID[t.seq] = t.msg.uid
		}
		seqsToUIDs(criteria, seqUID)
		s.keepContext(kind, criteria, options, keep)
	}
	return data, nil
}

// staticCriteria replaces "*" in the criteria's sets by the highest
// number, recursively, and "$" by the saved result (SEARCHRES, RFC 5182).
func staticCriteria(c *imap.SearchCriteria, maxSeq, maxUID uint32, saved imap.UIDSet) {
	for i, set := range c.SeqNum {
		if imap.IsSearchRes(set) {
			c.SeqNum[i] = imap.SeqSet{}
			continue
		}
		ns := make(imap.SeqSet, len(set))
		copy(ns, set)
		for j := range ns {
			staticRange(&ns[j].Start, &ns[j].Stop, maxSeq)
		}
		c.SeqNum[i] = ns
	}
	for i, set := range c.UID {
		if imap.IsSearchRes(set) {
			c.UID[i] = append(imap.UIDSet{}, saved...)
			continue
		}
		ns := make(imap.UIDSet, len(set))
		copy(ns, set)
		for j := range ns {
			staticRange((*uint32)(&ns[j].Start), (*uint32)(&ns[j].Stop), maxUID)
		}
		c.UID[i] = ns
	}
	for i := range c.Not {
		staticCriteria(&c.Not[i], maxSeq, maxUID, saved)
	}
	for i := range c.Or {
		staticCriteria(&c.Or[i][0], maxSeq, maxUID, saved)
		staticCriteria(&c.Or[i][1], maxSeq, maxUID, saved)
	}
}

// searchMsg loads a message's file, header and date lazily.
type searchMsg struct {
	s      *session
	folder string
	kw     *store.Keywords
	t      target

	loaded bool
	data   []byte
	mtime  time.Time
	header *mail.Header
}

func (sm *searchMsg) load() bool {
	if !sm.loaded {
		sm.loaded = true
		f, err := sm.s.srv.store.OpenMessage(sm.s.ctx(), sm.s.acct, sm.folder, sm.t.msg.uid)
		if err != nil {
			return false
		}
		defer f.Close()
		if fi, err := f.Stat(); err == nil {
			sm.mtime = fi.ModTime()
		}
		sm.data, _ = io.ReadAll(io.LimitReader(f, sm.s.srv.limits.Load().MaxMessageBytes+(1<<20)))
		h, _ := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(sm.data)))
		sm.header = &mail.Header{Header: gomessage.Header{Header: h}}
	}
	return sm.data != nil || sm.header != nil
}

func (sm *searchMsg) close() { sm.data, sm.header = nil, nil }

func (sm *searchMsg) entity() *gomessage.Entity {
	e, err := gomessage.Read(bytes.NewReader(sm.data))
	if e == nil || (err != nil && !gomessage.IsUnknownCharset(err) && !gomessage.IsUnknownEncoding(err)) {
		e, _ = gomessage.New(gomessage.Header{}, bytes.NewReader(nil))
	}
	return e
}

func (sm *searchMsg) match(c *imap.SearchCriteria) bool {
	t := sm.t
	// RFC 7162 section 3.1.5: MODSEQ n matches a MODSEQ of n or more. A
	// flag's own MODSEQ ("/flags/\\Seen") is the message's: that is all
	// the store keeps, and it is never lower than the flag's.
	if c.ModSeq != nil && t.msg.modseq < c.ModSeq.ModSeq {
		return false
	}
	for _, set := range c.SeqNum {
		if !set.Contains(t.seq) {
			return false
		}
	}
	for _, set := range c.UID {
		if !set.Contains(imap.UID(t.msg.uid)) {
			return false
		}
	}
	for _, f := range c.Flag {
		if !hasTargetFlag(&t, f, sm.kw) {
			return false
		}
	}
	for _, f := range c.NotFlag {
		if hasTargetFlag(&t, f, sm.kw) {
			return false
		}
	}
	if c.Larger != 0 || c.Smaller != 0 {
		size := t.msg.size
		if size < 0 {
			if !sm.load() {
				return false
			}
			size = int64(len(sm.data))
		}
		if c.Larger != 0 && size <= c.Larger {
			return false
		}
		if c.Smaller != 0 && size >= c.Smaller {
			return false
		}
	}
	if !c.Since.IsZero() || !c.Before.IsZero() {
		if !sm.load() || !matchDate(sm.mtime, c.Since, c.Before) {
			return false
		}
	}
	if c.Older != 0 || c.Younger != 0 {
		if !sm.load() || !matchWithin(sm.mtime, c.Older, c.Younger) {
			return false
		}
	}
	if !c.SentSince.IsZero() || !c.SentBefore.IsZero() {
		if !sm.load() {
			return false
		}
		d, err := sm.header.Date()
		if err != nil || !matchDate(d, c.SentSince, c.SentBefore) {
			return false
		}
	}
	for _, hf := range c.Header {
		if !sm.load() || !matchHeaderField(sm.header.Header, hf.Key, hf.Value) {
			return false
		}
	}
	for _, text := range c.Body {
		if !sm.load() || !matchEntity(sm.entity(), text, false) {
			return false
		}
	}
	for _, text := range c.Text {
		if !sm.load() || !matchEntity(sm.entity(), text, true) {
			return false
		}
	}
	for i := range c.Not {
		if sm.match(&c.Not[i]) {
			return false
		}
	}
	for i := range c.Or {
		if !sm.match(&c.Or[i][0]) && !sm.match(&c.Or[i][1]) {
			return false
		}
	}
	return true
}

// hasIMAPFlag reports whether Maildir flags include an IMAP flag (SEARCH
// KEYWORD and UNKEYWORD too); \Recent is never set (it is obsolete in RFC
// 9051), nor is a keyword the folder does not have.
func hasIMAPFlag(md string, f imap.Flag, kw *store.Keywords) bool {
	l := maildirLetter(f, kw)
	return l != 0 && hasFlag(md, l)
}

// matchDate compares dates without time and zone (RFC 9051 section 6.4.4).
func matchDate(t, since, before time.Time) bool {
	d := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	if !since.IsZero() && d.Before(since) {
		return false
	}
	if !before.IsZero() && !d.Before(before) {
		return false
	}
	return true
}

func matchFields(fields gomessage.HeaderFields, pattern string) bool {
	if pattern == "" {
		return fields.Len() > 0
	}
	pattern = strings.ToLower(pattern)
	for fields.Next() {
		v, err := fields.Text()
		if err != nil {
			v = fields.Value()
		}
		if strings.Contains(strings.ToLower(v), pattern) {
			return true
		}
	}
	return false
}

func matchEntity(e *gomessage.Entity, pattern string, withHeader bool) bool {
	if pattern == "" {
		return true
	}
	if withHeader && matchFields(e.Header.Fields(), pattern) {
		return true
	}
	if mr := e.MultipartReader(); mr != nil {
		for {
			p, err := mr.NextPart()
			if err != nil {
				return false
			}
			if matchEntity(p, pattern, withHeader) {
				return true
			}
		}
	}
	t, _, _ := e.Header.ContentType()
	if t != "" && !strings.HasPrefix(t, "text/") && !strings.HasPrefix(t, "message/") {
		return false
	}
	b, _ := io.ReadAll(e.Body)
	return bytes.Contains(bytes.ToLower(b), bytes.ToLower([]byte(pattern)))
}
