package imapserver

// mailvault: CONTEXT=SEARCH (RFC 5267): SEARCH RETURN (UPDATE), PARTIAL,
// CANCELUPDATE and the ADDTO/REMOVEFROM updates. beta.8 had none.

import (
	"strconv"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/internal/imapwire"
)

// SessionSearchContext is a session that keeps SEARCH RETURN (UPDATE)
// contexts (SearchOptions.ReturnUpdate, named by SearchOptions.Tag) and
// reports their changes with UpdateWriter.WriteSearchUpdate.
type SessionSearchContext interface {
	Session
	// CancelUpdate ends the contexts of these tags.
	CancelUpdate(tags []string) error
}

// handleCancelUpdate reads CANCELUPDATE tag *(SP tag).
func (c *Conn) handleCancelUpdate(dec *imapwire.Decoder) error {
	var tags []string
	for dec.SP() {
		var tag string
		if !dec.ExpectString(&tag) {
			return dec.Err()
		}
		tags = append(tags, tag)
	}
	if !dec.ExpectCRLF() {
		return dec.Err()
	}
	if len(tags) == 0 {
		return newClientBugError("CANCELUPDATE takes tags")
	}
	if err := c.checkState(imap.ConnStateSelected); err != nil {
		return err
	}
	sess, ok := c.session.(SessionSearchContext)
	if !ok || !c.server.options.caps().Has(imap.CapContextSearch) {
		return &imap.Error{Type: imap.StatusResponseTypeBad, Text: "Unknown command"}
	}
	return sess.CancelUpdate(tags)
}

// writePartial writes " PARTIAL (first:last set)", set the numbers in
// those positions of nums (1-based), NIL when there are none.
func writePartial(enc *imapwire.Encoder, p *imap.SearchReturnPartial, nums []uint32) {
	enc.SP().Atom("PARTIAL").SP().Special('(')
	enc.Atom(strconv.FormatUint(uint64(p.First), 10) + ":" + strconv.FormatUint(uint64(p.Last), 10)).SP()
	first, last := int(p.First)-1, int(p.Last)
	if last > len(nums) {
		last = len(nums)
	}
	if first >= last {
		enc.NIL()
	} else {
		enc.Atom(orderedSet(nums[first:last]))
	}
	enc.Special(')')
}

// WriteSearchUpdate writes an ESEARCH update of a SEARCH RETURN (UPDATE)
// context: ADDTO (add) or REMOVEFROM (position set), nums in order.
func (w *UpdateWriter) WriteSearchUpdate(tag string, uid, add bool, position uint32, nums []uint32) error {
	if len(nums) == 0 {
		return nil
	}
	enc := newResponseEncoder(w.conn)
	defer enc.end()
	enc.Atom("*").SP().Atom("ESEARCH").SP().Special('(').Atom("TAG").SP().String(tag).Special(')')
	if uid {
		enc.SP().Atom("UID")
	}
	if add {
		enc.SP().Atom("ADDTO")
	} else {
		enc.SP().Atom("REMOVEFROM")
	}
	enc.SP().Special('(').Number(position).SP().Atom(orderedSet(nums)).Special(')')
	return enc.CRLF()
}
