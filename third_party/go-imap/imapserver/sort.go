package imapserver

// mailvault: SORT and THREAD (RFC 5256), SORT=DISPLAY (RFC 5957) and
// ESORT's RETURN options (RFC 5267). beta.8's imapserver had none of them.

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/internal/imapwire"
)

// SortKey is a SORT criterion's key.
type SortKey string

const (
	SortKeyArrival     SortKey = "ARRIVAL"
	SortKeyCc          SortKey = "CC"
	SortKeyDate        SortKey = "DATE"
	SortKeyFrom        SortKey = "FROM"
	SortKeySize        SortKey = "SIZE"
	SortKeySubject     SortKey = "SUBJECT"
	SortKeyTo          SortKey = "TO"
	SortKeyDisplayFrom SortKey = "DISPLAYFROM" // RFC 5957
	SortKeyDisplayTo   SortKey = "DISPLAYTO"   // RFC 5957
)

// SortCriterion is one SORT criterion.
type SortCriterion struct {
	Key     SortKey
	Reverse bool
}

// SessionSort is a session that answers SORT and UID SORT.
type SessionSort interface {
	Session
	// Sort returns the numbers (sequence numbers or UIDs, as numKind
	// says) of the messages matching search, in the order criteria give.
	// options are ESORT's RETURN options; with CONTEXT=SORT, ReturnUpdate
	// asks the session to keep the result as a context (see
	// SessionSearchContext), named by options.Tag.
	Sort(numKind NumKind, criteria []SortCriterion, search *imap.SearchCriteria, options *imap.SearchOptions) ([]uint32, error)
}

// Thread is a node of a THREAD response: Num is 0 for a message that is
// missing (a dummy parent of several threads).
type Thread struct {
	Num      uint32
	Children []Thread
}

// SessionThread is a session that answers THREAD and UID THREAD with the
// algorithms the server's capabilities name (THREAD=...).
type SessionThread interface {
	Session
	Thread(numKind NumKind, algorithm imap.ThreadAlgorithm, search *imap.SearchCriteria) ([]Thread, error)
}

// readCharsetAndSearch reads "SP charset SP search-key *(SP search-key)".
func readCharsetAndSearch(dec *imapwire.Decoder) (*imap.SearchCriteria, error) {
	var charset string
	if !dec.ExpectSP() || !dec.ExpectAString(&charset) || !dec.ExpectSP() {
		return nil, dec.Err()
	}
	switch strings.ToUpper(charset) {
	case "US-ASCII", "UTF-8":
	default:
		return nil, &imap.Error{
			Type: imap.StatusResponseTypeNo,
			Code: imap.ResponseCodeBadCharset,
			Text: "Only US-ASCII and UTF-8 are supported charsets",
		}
	}
	var criteria imap.SearchCriteria
	for {
		if err := readSearchKey(&criteria, dec); err != nil {
			return nil, fmt.Errorf("in search-key: %w", err)
		}
		if !dec.SP() {
			break
		}
	}
	if !dec.ExpectCRLF() {
		return nil, dec.Err()
	}
	return &criteria, nil
}

func (c *Conn) handleSort(tag string, dec *imapwire.Decoder, numKind NumKind) error {
	if !dec.ExpectSP() {
		return dec.Err()
	}
	var (
		options  imap.SearchOptions
		extended bool
		atom     string
	)
	if dec.Atom(&atom) {
		if !strings.EqualFold(atom, "RETURN") {
			return newClientBugError("expected RETURN or sort criteria")
		}
		if !c.server.options.caps().Has(imap.CapESort) {
			return newClientBugError("ESORT is not supported")
		}
		if err := readSearchReturnOpts(dec, &options); err != nil {
			return fmt.Errorf("in sort-return-opts: %w", err)
		}
		if options.ReturnSave {
			return newClientBugError("SAVE is not supported with SORT")
		}
		if options.ReturnUpdate {
			if _, ok := c.session.(SessionSearchContext); !ok || !c.server.options.caps().Has(imap.CapContextSort) {
				return newClientBugError("UPDATE is not supported with SORT")
			}
		}
		if !dec.ExpectSP() {
			return dec.Err()
		}
		extended = true
	}
	var criteria []SortCriterion
	err := dec.ExpectList(func() error {
		var crit SortCriterion
		var name string
		if !dec.ExpectAtom(&name) {
			return dec.Err()
		}
		if strings.EqualFold(name, "REVERSE") {
			crit.Reverse = true
			if !dec.ExpectSP() || !dec.ExpectAtom(&name) {
				return dec.Err()
			}
		}
		crit.Key = SortKey(strings.ToUpper(name))
		switch crit.Key {
		case SortKeyArrival, SortKeyCc, SortKeyDate, SortKeyFrom, SortKeySize, SortKeySubject, SortKeyTo:
		case SortKeyDisplayFrom, SortKeyDisplayTo:
			if !c.server.options.caps().Has(imap.CapSortDisplay) {
				return newClientBugError("unknown sort key")
			}
		default:
			return newClientBugError("unknown sort key")
		}
		criteria = append(criteria, crit)
		return nil
	})
	if err != nil {
		return err
	}
	if len(criteria) == 0 {
		return newClientBugError("empty sort criteria")
	}
	search, err := readCharsetAndSearch(dec)
	if err != nil {
		return err
	}
	if err := c.checkState(imap.ConnStateSelected); err != nil {
		return err
	}
	sess, ok := c.session.(SessionSort)
	if !ok || !c.server.options.caps().Has(imap.CapSort) {
		return &imap.Error{Type: imap.StatusResponseTypeBad, Text: "Unknown command"}
	}
	options.Tag = tag
	nums, err := sess.Sort(numKind, criteria, search, &options)
	if err != nil {
		return err
	}

	enc := newResponseEncoder(c)
	defer enc.end()
	if !extended {
		enc.Atom("*").SP().Atom("SORT")
		for _, n := range nums {
			enc.SP().Number(n)
		}
		return enc.CRLF()
	}
	if !options.ReturnMin && !options.ReturnMax && !options.ReturnAll && !options.ReturnCount && options.ReturnPartial == nil && !options.ReturnUpdate {
		options.ReturnAll = true
	}
	// RFC 5267 section 3.1: MIN and MAX are the first and the last in
	// the sort order, ALL keeps it.
	enc.Atom("*").SP().Atom("ESEARCH").SP().Special('(').Atom("TAG").SP().String(tag).Special(')')
	if numKind == NumKindUID {
		enc.SP().Atom("UID")
	}
	if len(nums) > 0 {
		if options.ReturnMin {
			enc.SP().Atom("MIN").SP().Number(nums[0])
		}
		if options.ReturnMax {
			enc.SP().Atom("MAX").SP().Number(nums[len(nums)-1])
		}
		if options.ReturnAll {
			enc.SP().Atom("ALL").SP().Atom(orderedSet(nums))
		}
	}
	if options.ReturnCount {
		enc.SP().Atom("COUNT").SP().Number(uint32(len(nums)))
	}
	if p := options.ReturnPartial; p != nil {
		writePartial(enc.Encoder, p, nums) // RFC 5267 section 4.4, in sort order
	}
	return enc.CRLF()
}

// orderedSet writes nums as a sequence-set in their order, ascending runs
// as ranges.
func orderedSet(nums []uint32) string {
	var b strings.Builder
	for i := 0; i < len(nums); {
		j := i
		for j+1 < len(nums) && nums[j+1] == nums[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatUint(uint64(nums[i]), 10))
		if j > i {
			b.WriteByte(':')
			b.WriteString(strconv.FormatUint(uint64(nums[j]), 10))
		}
		i = j + 1
	}
	return b.String()
}

func (c *Conn) handleThread(dec *imapwire.Decoder, numKind NumKind) error {
	var name string
	if !dec.ExpectSP() || !dec.ExpectAtom(&name) {
		return dec.Err()
	}
	algorithm := imap.ThreadAlgorithm(strings.ToUpper(name))
	known := false
	for _, a := range c.server.options.caps().ThreadAlgorithms() {
		known = known || a == algorithm
	}
	sess, ok := c.session.(SessionThread)
	if !known || !ok {
		return newClientBugError("unknown threading algorithm")
	}
	search, err := readCharsetAndSearch(dec)
	if err != nil {
		return err
	}
	if err := c.checkState(imap.ConnStateSelected); err != nil {
		return err
	}
	threads, err := sess.Thread(numKind, algorithm, search)
	if err != nil {
		return err
	}
	var b strings.Builder
	for _, t := range threads {
		b.WriteByte('(')
		writeThreadChain(&b, t)
		b.WriteByte(')')
	}
	enc := newResponseEncoder(c)
	defer enc.end()
	enc.Atom("*").SP().Atom("THREAD")
	if b.Len() > 0 {
		enc.SP().Atom(b.String())
	}
	return enc.CRLF()
}

// writeThreadChain writes a thread-list's content (RFC 5256 section 4):
// the node, then its only child's chain, or each child in parentheses.
func writeThreadChain(b *strings.Builder, t Thread) {
	if t.Num != 0 {
		b.WriteString(strconv.FormatUint(uint64(t.Num), 10))
	}
	switch len(t.Children) {
	case 0:
	case 1:
		if t.Num != 0 {
			b.WriteByte(' ')
			writeThreadChain(b, t.Children[0])
		} else {
			b.WriteByte('(')
			writeThreadChain(b, t.Children[0])
			b.WriteByte(')')
		}
	default:
		if t.Num != 0 {
			b.WriteByte(' ')
		}
		for _, k := range t.Children {
			b.WriteByte('(')
			writeThreadChain(b, k)
			b.WriteByte(')')
		}
	}
}
