package imapserver

// mailvault: CONDSTORE and QRESYNC (RFC 7162). beta.8 has the option and
// data types but parses and writes none of them.

import (
	"fmt"
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/internal/imapwire"
)

// maxModSeq is the largest mod-sequence-value (RFC 7162 section 7:
// 1*DIGIT, at most 9,223,372,036,854,775,807, 2^63-1).
const maxModSeq = 1<<63 - 1

// SessionCondStore is an IMAP session which supports CONDSTORE and
// QRESYNC (RFC 7162): it keeps MODSEQs, answers FETCH MODSEQ and
// CHANGEDSINCE, STORE UNCHANGEDSINCE (a refused message makes Store
// return an *imap.Error of type OK with the MODIFIED code), SEARCH MODSEQ,
// STATUS HIGHESTMODSEQ and SELECT's QRESYNC parameter, and once enabled
// includes MODSEQ in its unsolicited FETCH responses and, with QRESYNC,
// writes VANISHED instead of EXPUNGE (UpdateWriter.WriteVanished).
type SessionCondStore interface {
	Session

	// EnableCondStore tells the session that the client has enabled
	// CONDSTORE, and QRESYNC too if qresync: by ENABLE or by the first
	// CONDSTORE-enabling command (section 3.1).
	EnableCondStore(qresync bool)
	// HighestModSeq is the selected mailbox's HIGHESTMODSEQ, 0 when none
	// is selected.
	HighestModSeq() uint64
}

func (c *Conn) condStoreSession() (SessionCondStore, bool) {
	s, ok := c.session.(SessionCondStore)
	return s, ok && c.server.options.caps().Has(imap.CapCondStore)
}

func (c *Conn) qresyncOffered() bool {
	_, ok := c.condStoreSession()
	return ok && c.server.options.caps().Has(imap.CapQResync)
}

func (c *Conn) isEnabled(cap imap.Cap) bool {
	c.mutex.Lock()
	defer c.mutex.Unlock()
	_, ok := c.enabled[cap]
	return ok
}

// enableCondStore enables CONDSTORE (and QRESYNC). announce is set for the
// CONDSTORE-enabling commands other than SELECT and ENABLE: the first of
// them while a mailbox is selected is answered with an untagged
// HIGHESTMODSEQ before its own responses (RFC 7162 section 3.1).
func (c *Conn) enableCondStore(qresync, announce bool) error {
	s, ok := c.condStoreSession()
	if !ok {
		return nil
	}
	c.mutex.Lock()
	_, had := c.enabled[imap.CapCondStore]
	_, hadQ := c.enabled[imap.CapQResync]
	c.enabled[imap.CapCondStore] = struct{}{}
	if qresync {
		c.enabled[imap.CapQResync] = struct{}{}
	}
	c.mutex.Unlock()
	if had && (hadQ || !qresync) {
		return nil
	}
	s.EnableCondStore(qresync || hadQ)
	if !announce || had || c.state != imap.ConnStateSelected {
		return nil
	}
	highest := s.HighestModSeq()
	if highest == 0 {
		return nil
	}
	return c.writeHighestModSeq(highest)
}

// expungeDone is EXPUNGE's and UID EXPUNGE's tagged OK once QRESYNC is
// enabled: with the HIGHESTMODSEQ after the expunge, as in RFC 7162
// section 3.2.7's example (Dovecot does the same), so that a client knows
// the state its VANISHED responses brought it to without asking. nil
// otherwise.
func (c *Conn) expungeDone() error {
	s, ok := c.condStoreSession()
	if !ok || !c.isEnabled(imap.CapQResync) {
		return nil
	}
	highest := s.HighestModSeq()
	if highest == 0 {
		return nil
	}
	return &imap.Error{Type: imap.StatusResponseTypeOK, Code: imap.ResponseCode(fmt.Sprintf("HIGHESTMODSEQ %d", highest)), Text: "EXPUNGE completed"}
}

func (c *Conn) writeHighestModSeq(highest uint64) error {
	enc := newResponseEncoder(c)
	defer enc.end()
	enc.Atom("*").SP().Atom("OK").SP()
	enc.Special('[').Atom("HIGHESTMODSEQ").SP().ModSeq(highest).Special(']')
	enc.SP().Text("Highest")
	return enc.CRLF()
}

func (c *Conn) writeNoModSeq() error {
	enc := newResponseEncoder(c)
	defer enc.end()
	enc.Atom("*").SP().Atom("OK").SP().Special('[').Atom("NOMODSEQ").Special(']')
	enc.SP().Text("No permanent modsequences")
	return enc.CRLF()
}

// readModSeq reads a mod-sequence-value, or a mod-sequence-valzer if
// zero is allowed; a value above 2^63-1 is a syntax error.
func readModSeq(dec *imapwire.Decoder, zero bool) (uint64, error) {
	var v uint64
	if !dec.ExpectModSeq(&v) {
		return 0, dec.Err()
	}
	if v > maxModSeq {
		return 0, newClientBugError("mod-sequence-value above 2^63-1")
	}
	if v == 0 && !zero {
		return 0, newClientBugError("mod-sequence-value must not be 0")
	}
	return v, nil
}

// readSelectParams reads SELECT's and EXAMINE's optional parameter list
// (RFC 4466 section 2.1): CONDSTORE (RFC 7162 section 3.1.8) and
// QRESYNC (uidvalidity modseq [known-uids] [(seqs uids)]) (section
// 3.2.5). The caller has read the SP before the list.
func (c *Conn) readSelectParams(dec *imapwire.Decoder, options *imap.SelectOptions) error {
	return dec.ExpectList(func() error {
		var name string
		if !dec.ExpectAtom(&name) {
			return dec.Err()
		}
		switch strings.ToUpper(name) {
		case "CONDSTORE":
			if _, ok := c.condStoreSession(); !ok {
				return newClientBugError("CONDSTORE is not supported")
			}
			options.CondStore = true
		case "QRESYNC":
			// RFC 7162 section 3.2.5: BAD unless enabled.
			if !c.qresyncOffered() || !c.isEnabled(imap.CapQResync) {
				return newClientBugError("QRESYNC must be enabled first (ENABLE QRESYNC)")
			}
			q, err := readQResyncParam(dec)
			if err != nil {
				return err
			}
			options.QResync = q
		default:
			return newClientBugError("unknown SELECT parameter")
		}
		return nil
	})
}

func readQResyncParam(dec *imapwire.Decoder) (*imap.SelectQResync, error) {
	q := &imap.SelectQResync{}
	if !dec.ExpectSP() {
		return nil, dec.Err()
	}
	if lerr := dec.ExpectList(func() error {
		if q.UIDValidity != 0 {
			return newClientBugError("QRESYNC takes one list")
		}
		if !dec.ExpectNumber(&q.UIDValidity) || !dec.ExpectSP() {
			return dec.Err()
		}
		if q.UIDValidity == 0 {
			return newClientBugError("UIDVALIDITY must not be 0")
		}
		ms, err := readModSeq(dec, false)
		if err != nil {
			return err
		}
		q.ModSeq = ms
		if !dec.SP() {
			return nil
		}
		if !dec.Special('(') {
			if !dec.ExpectUIDSet(&q.KnownUIDs) {
				return dec.Err()
			}
			if !dec.SP() {
				return nil
			}
			if !dec.ExpectSpecial('(') {
				return dec.Err()
			}
		}
		var seqs imap.NumSet
		if !dec.ExpectNumSet(imapwire.NumKindSeq, &seqs) || !dec.ExpectSP() || !dec.ExpectUIDSet(&q.SeqMatchUIDs) || !dec.ExpectSpecial(')') {
			return dec.Err()
		}
		q.SeqMatchSeqs = seqs.(imap.SeqSet)
		return nil
	}); lerr != nil {
		return nil, lerr
	}
	if q.UIDValidity == 0 {
		return nil, newClientBugError("QRESYNC needs UIDVALIDITY and MODSEQ")
	}
	return q, nil
}

// writeSelectCondStore writes what CONDSTORE and QRESYNC add to SELECT's
// answer: HIGHESTMODSEQ (or NOMODSEQ) on every SELECT and EXAMINE
// (section 3.1.2.1), then QRESYNC's VANISHED (EARLIER) and FETCHes
// (section 3.2.5.1).
func (c *Conn) writeSelectCondStore(data *imap.SelectData, options *imap.SelectOptions) error {
	if _, ok := c.condStoreSession(); !ok {
		return nil
	}
	if data.HighestModSeq > 0 {
		if err := c.writeHighestModSeq(data.HighestModSeq); err != nil {
			return err
		}
	} else if err := c.writeNoModSeq(); err != nil {
		return err
	}
	if options.QResync == nil {
		return nil
	}
	if len(data.Vanished) > 0 {
		if err := c.writeVanished(data.Vanished, true); err != nil {
			return err
		}
	}
	w := &FetchWriter{conn: c}
	for _, m := range data.Changed {
		rw := w.CreateMessage(m.SeqNum)
		rw.WriteUID(m.UID)
		rw.WriteFlags(m.Flags)
		rw.WriteModSeq(m.ModSeq)
		if err := rw.Close(); err != nil {
			return err
		}
	}
	return nil
}

func (c *Conn) writeVanished(uids imap.UIDSet, earlier bool) error {
	enc := newResponseEncoder(c)
	defer enc.end()
	enc.Atom("*").SP().Atom("VANISHED").SP()
	if earlier {
		enc.Atom("(EARLIER)").SP()
	}
	enc.NumSet(uids)
	return enc.CRLF()
}

// readFetchModifiers reads FETCH's modifier list (RFC 4466 section 2.4):
// CHANGEDSINCE n (RFC 7162 section 3.1.4.1) and VANISHED (section
// 3.2.6). The caller has read the SP before it.
func (c *Conn) readFetchModifiers(dec *imapwire.Decoder, options *imap.FetchOptions, numKind NumKind) error {
	if _, ok := c.condStoreSession(); !ok {
		return newClientBugError("FETCH modifiers are not supported")
	}
	err := dec.ExpectList(func() error {
		var name string
		if !dec.ExpectAtom(&name) {
			return dec.Err()
		}
		switch strings.ToUpper(name) {
		case "CHANGEDSINCE":
			if !dec.ExpectSP() {
				return dec.Err()
			}
			ms, err := readModSeq(dec, false)
			if err != nil {
				return err
			}
			options.ChangedSince = ms
		case "VANISHED":
			options.Vanished = true
		default:
			return newClientBugError("unknown FETCH modifier")
		}
		return nil
	})
	if err != nil {
		return err
	}
	if options.Vanished {
		// Section 3.2.6: BAD without UID FETCH, CHANGEDSINCE or QRESYNC.
		if numKind != NumKindUID || options.ChangedSince == 0 || !c.qresyncOffered() || !c.isEnabled(imap.CapQResync) {
			return newClientBugError("VANISHED needs UID FETCH, CHANGEDSINCE and QRESYNC enabled")
		}
	}
	return nil
}

// readStoreModifiers reads STORE's modifier list: UNCHANGEDSINCE n (RFC
// 7162 section 3.1.3). The caller has read the '('.
func (c *Conn) readStoreModifiers(dec *imapwire.Decoder, options *imap.StoreOptions) error {
	if _, ok := c.condStoreSession(); !ok {
		return newClientBugError("STORE modifiers are not supported")
	}
	for {
		var name string
		if !dec.ExpectAtom(&name) {
			return dec.Err()
		}
		if !strings.EqualFold(name, "UNCHANGEDSINCE") {
			return newClientBugError("unknown STORE modifier")
		}
		if !dec.ExpectSP() {
			return dec.Err()
		}
		ms, err := readModSeq(dec, true)
		if err != nil {
			return err
		}
		options.UnchangedSince, options.HasUnchangedSince = ms, true
		if !dec.SP() {
			break
		}
	}
	if !dec.ExpectSpecial(')') {
		return dec.Err()
	}
	return nil
}

// readSearchModSeq reads the rest of SEARCH MODSEQ [entry-name
// entry-type-req] n (RFC 7162 section 3.1.5).
func readSearchModSeq(criteria *imap.SearchCriteria, dec *imapwire.Decoder) error {
	if !dec.ExpectSP() {
		return dec.Err()
	}
	m := &imap.SearchCriteriaModSeq{}
	var v uint64
	if !dec.ModSeq(&v) {
		if !dec.ExpectString(&m.MetadataName) || !dec.ExpectSP() {
			return dec.Err()
		}
		var typ string
		if !dec.ExpectAtom(&typ) || !dec.ExpectSP() {
			return dec.Err()
		}
		m.MetadataType = imap.SearchCriteriaMetadataType(strings.ToLower(typ))
		switch m.MetadataType {
		case imap.SearchCriteriaMetadataAll, imap.SearchCriteriaMetadataPrivate, imap.SearchCriteriaMetadataShared:
		default:
			return newClientBugError("MODSEQ entry type must be priv, shared or all")
		}
		if !dec.ExpectModSeq(&v) {
			return dec.Err()
		}
	}
	if v > maxModSeq {
		return newClientBugError("mod-sequence-value above 2^63-1")
	}
	m.ModSeq = v
	if criteria.ModSeq != nil {
		// Two MODSEQ keys ANDed: the larger bound is the stricter.
		if criteria.ModSeq.ModSeq > v {
			m.ModSeq = criteria.ModSeq.ModSeq
		}
	}
	criteria.ModSeq = m
	return nil
}

// SearchHasModSeq reports whether a SEARCH uses MODSEQ anywhere, which
// makes it a CONDSTORE-enabling command and has its answer carry the
// highest MODSEQ of the messages it returns (RFC 7162 section 3.1.5).
func SearchHasModSeq(c *imap.SearchCriteria) bool {
	if c.ModSeq != nil {
		return true
	}
	for i := range c.Not {
		if SearchHasModSeq(&c.Not[i]) {
			return true
		}
	}
	for i := range c.Or {
		if SearchHasModSeq(&c.Or[i][0]) || SearchHasModSeq(&c.Or[i][1]) {
			return true
		}
	}
	return false
}

// WriteModSeq writes the message's MODSEQ (RFC 7162 section 3.1.4).
func (w *FetchResponseWriter) WriteModSeq(modseq uint64) {
	w.writeItemSep()
	w.enc.Atom("MODSEQ").SP().Special('(').ModSeq(modseq).Special(')')
}

// WriteVanishedEarlier writes VANISHED (EARLIER) for UID FETCH
// (CHANGEDSINCE n VANISHED) (RFC 7162 section 3.2.6), before the FETCH
// responses.
func (cmd *FetchWriter) WriteVanishedEarlier(uids imap.UIDSet) error {
	if len(uids) == 0 {
		return nil
	}
	return cmd.conn.writeVanished(uids, true)
}

// WriteVanished writes a VANISHED response, which takes the place of
// EXPUNGE once QRESYNC is enabled (RFC 7162 section 3.2.10).
func (w *UpdateWriter) WriteVanished(uids imap.UIDSet) error {
	if !w.allowExpunge {
		return fmt.Errorf("imapserver: VANISHED updates are not allowed in this context")
	}
	return w.conn.writeVanished(uids, false)
}

// WriteMessageFlagsModSeq writes a FETCH response with UID, FLAGS and
// MODSEQ: a flag change once CONDSTORE is enabled (RFC 7162 section
// 3.1.4: unsolicited FETCHes carry MODSEQ; section 3.2.10, with QRESYNC
// they carry UID).
func (w *UpdateWriter) WriteMessageFlagsModSeq(seqNum uint32, uid imap.UID, flags []imap.Flag, modseq uint64) error {
	fetchWriter := &FetchWriter{conn: w.conn}
	respWriter := fetchWriter.CreateMessage(seqNum)
	if uid != 0 {
		respWriter.WriteUID(uid)
	}
	respWriter.WriteFlags(flags)
	respWriter.WriteModSeq(modseq)
	return respWriter.Close()
}
