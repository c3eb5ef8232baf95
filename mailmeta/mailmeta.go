// Package mailmeta extracts the few header fields of a mail message that the
// snapshot manifest records (From, To, Cc, Subject, Date, Message-ID).
//
// It runs on every message of every backup, so it is written to be fast on
// ordinary messages and bounded on hostile ones: Parse looks at no more than
// MaxHeaderBytes of header, decodes at most MaxAddresses addresses per field,
// caps every string it returns, and never fails or panics.
//
// Why the header is not read with go-message's textproto.ReadHeader: it
// stops at the first malformed line (a stray mbox "From " line, a key with a
// space in it, a line without a colon), losing every field after it, and it
// allocates every field of the header when the manifest needs six. Parse
// splits fields itself, skipping lines that are not fields, and only
// unfolds and decodes the ones it needs. Addresses are parsed with the
// standard net/mail parser, as go-message's mail package does, but with an
// explicitly wired mime.WordDecoder using go-message's charset.Reader, so
// that decoding does not depend on the charset package's init-time
// registration (message.CharsetReader).
package mailmeta

import (
	"bytes"
	"mime"
	"strings"
	"time"
	"unicode"
)

// Limits on what Parse looks at and returns. They bound its time and memory
// on hostile messages and are far above what real messages use.
const (
	// MaxHeaderBytes is how much of the header Parse reads; fields that
	// start after it are ignored.
	MaxHeaderBytes = 256 << 10
	// MaxAddresses is the most addresses Parse returns per field (To and
	// Cc add up over repeated fields).
	MaxAddresses = 100
	// MaxSubjectBytes caps Meta.Subject (at a UTF-8 boundary).
	MaxSubjectBytes = 1000
	// MaxAddressBytes caps each address string in Meta.
	MaxAddressBytes = 512
	// MaxMessageIDBytes caps Meta.MessageID: RFC 5322 §2.1.1 limits a
	// line to 998 characters, so no valid msg-id is longer.
	MaxMessageIDBytes = 998

	// maxSubjectInput is how much of a raw Subject is decoded: encoded
	// words are longer than the text they carry, so this is some
	// multiple of MaxSubjectBytes.
	maxSubjectInput = 16 << 10
	// maxAddressAttempts bounds the addresses Parse tries to parse in
	// all, counting those it gives up on: a header can hold a hundred
	// thousand junk addresses that each cost a failed parse.
	maxAddressAttempts = 4 * MaxAddresses
	// maxDateInput and maxMessageIDInput bound the raw values looked at.
	maxDateInput      = 256
	maxMessageIDInput = 4 << 10
	// maxContentTypeInput bounds the Content-Type value looked at.
	maxContentTypeInput = 4 << 10
)

// Meta is what the snapshot manifest records about a message.
type Meta struct {
	// From, To and Cc are addresses as "Display Name <addr@dom>" or
	// "addr@dom", display names RFC 2047-decoded to UTF-8. An entry that
	// is not an address at all is kept as its cleaned-up text.
	From, To, Cc []string
	// Subject is RFC 2047-decoded UTF-8 without control characters, at
	// most MaxSubjectBytes long.
	Subject string
	// Date is zero if the Date field is missing or unparseable. A date
	// without a zone is taken as UTC, as "-0000" would be (RFC 5322
	// §3.3).
	Date time.Time
	// MessageID is the msg-id without angle brackets.
	MessageID string
	// Boundary is the delimiter of a multipart message's top-level parts
	// (RFC 2046 §5.1.1), "" for a single-part message. The archive cuts
	// blobs at part boundaries so that an attachment is a blob of its own.
	Boundary string
}

// HeaderEnd returns the offset just past the empty line that ends the header
// block of an RFC 5322 message (RFC 5322 §2.1: the header fields are
// followed by an empty line, then the body), accepting CRLF and bare LF line
// endings, or -1 if b holds no complete header block. A line holding only
// white space does not end the header: it continues the field before it
// (RFC 5322 §4.2, obsolete folding white space).
func HeaderEnd(b []byte) int {
	// A message may have no header fields at all.
	if len(b) > 0 && b[0] == '\n' {
		return 1
	}
	if len(b) > 1 && b[0] == '\r' && b[1] == '\n' {
		return 2
	}
	for i := 0; ; {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return -1
		}
		i += j + 1
		if i < len(b) && b[i] == '\n' {
			return i + 1
		}
		if i+1 < len(b) && b[i] == '\r' && b[i+1] == '\n' {
			return i + 2
		}
	}
}

// Parse extracts Meta from a header block: the bytes up to HeaderEnd, or a
// whole message, in which case it stops at the empty line. It never fails
// and never panics: broken or hostile headers give best-effort or empty
// fields.
//
// Of fields that should appear once (RFC 5322 §3.6), the first is used;
// repeated To and Cc fields are all used.
func Parse(header []byte) Meta {
	// The charset decoders of golang.org/x/text run on hostile input
	// here; should one of them have a bug, a panic would stop the whole
	// backup for the sake of one message's manifest entry. After a
	// recovered panic, Parse returns an empty Meta. (FuzzParse calls
	// parse, so that it still sees panics.)
	defer func() { recover() }()
	return parse(header)
}

// parse is Parse without its recover.
func parse(header []byte) Meta {
	var m Meta
	if len(header) > MaxHeaderBytes {
		header = header[:MaxHeaderBytes]
	}
	var (
		dec    = mime.WordDecoder{CharsetReader: charsetReader}
		seen   fieldSet
		budget = maxAddressAttempts
	)
	for rest := header; len(rest) > 0; {
		field, next, end := nextField(rest)
		if end {
			break
		}
		rest = next
		name, value, ok := splitField(field)
		if !ok {
			continue
		}
		f := fieldOf(name)
		if f == otherField || (f != toField && f != ccField && seen.has(f)) {
			continue
		}
		seen.add(f)
		switch f {
		case fromField:
			m.From = parseAddressList(&dec, value, m.From, &budget)
		case toField:
			m.To = parseAddressList(&dec, value, m.To, &budget)
		case ccField:
			m.Cc = parseAddressList(&dec, value, m.Cc, &budget)
		case subjectField:
			m.Subject = parseSubject(&dec, value)
		case dateField:
			m.Date, _ = parseDate(unfold(value, maxDateInput))
		case messageIDField:
			m.MessageID = parseMessageID(unfold(value, maxMessageIDInput))
		case contentTypeField:
			m.Boundary = parseBoundary(unfold(value, maxContentTypeInput))
		}
	}
	return m
}

// A field is one of the header fields Parse extracts.
type field uint8

const (
	otherField field = iota
	fromField
	toField
	ccField
	subjectField
	dateField
	messageIDField
	contentTypeField
)

// fieldSet is a set of fields.
type fieldSet uint8

func (s fieldSet) has(f field) bool { return s&(1<<f) != 0 }
func (s *fieldSet) add(f field)     { *s |= 1 << f }

// fieldOf returns the field named name, matched case-insensitively (RFC
// 5322 §1.2.2: field names are case-insensitive).
func fieldOf(name []byte) field {
	switch len(name) {
	case 2:
		if equalFold(name, "to") {
			return toField
		}
		if equalFold(name, "cc") {
			return ccField
		}
	case 4:
		if equalFold(name, "from") {
			return fromField
		}
		if equalFold(name, "date") {
			return dateField
		}
	case 7:
		if equalFold(name, "subject") {
			return subjectField
		}
	case 10:
		if equalFold(name, "message-id") {
			return messageIDField
		}
	case 12:
		if equalFold(name, "content-type") {
			return contentTypeField
		}
	}
	return otherField
}

// equalFold reports whether b equals lower, which is lower-case ASCII,
// ignoring ASCII case.
func equalFold(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i := range len(b) {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// nextField splits the first field, with its continuation lines, off b. A
// field ends at a line break not followed by white space (RFC 5322 §2.2.3:
// a folded field continues on lines starting with WSP). end reports that b
// starts with the empty line ending the header.
func nextField(b []byte) (field, rest []byte, end bool) {
	if b[0] == '\n' || (b[0] == '\r' && len(b) > 1 && b[1] == '\n') {
		return nil, nil, true
	}
	for i := 0; ; {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return b, nil, false
		}
		i += j + 1
		if i == len(b) || (b[i] != ' ' && b[i] != '\t') {
			return b[:i], b[i:], false
		}
	}
}

// splitField splits a field into its name and raw (still folded) value. It
// reports false for a line that is not a field, which Parse skips rather
// than giving up on the rest of the header.
func splitField(f []byte) (name, value []byte, ok bool) {
	colon := bytes.IndexByte(f, ':')
	if colon <= 0 {
		return nil, nil, false
	}
	// RFC 5322 §4.5: the obsolete syntax allows white space between the
	// field name and the colon.
	name = f[:colon]
	for len(name) > 0 && (name[len(name)-1] == ' ' || name[len(name)-1] == '\t') {
		name = name[:len(name)-1]
	}
	if len(name) == 0 {
		return nil, nil, false
	}
	// RFC 5322 §3.6.8: ftext is printable US-ASCII except ':'.
	for _, c := range name {
		if c < 33 || c > 126 {
			return nil, nil, false
		}
	}
	return name, f[colon+1:], true
}

// unfold returns the value of a field unfolded (RFC 5322 §2.2.3: the CRLF
// before each continuation line's white space is removed), without leading
// and trailing white space, and cut to at most max bytes. Bare LF line
// breaks are unfolded the same way.
func unfold(v []byte, max int) string {
	for len(v) > 0 && isWSP(v[0]) {
		v = v[1:]
	}
	for len(v) > 0 && (isWSP(v[len(v)-1]) || v[len(v)-1] == '\r' || v[len(v)-1] == '\n') {
		v = v[:len(v)-1]
	}
	if len(v) > max {
		v = v[:max]
	}
	if bytes.IndexByte(v, '\n') < 0 {
		return string(v)
	}
	out := make([]byte, 0, len(v))
	for {
		i := bytes.IndexByte(v, '\n')
		if i < 0 {
			out = append(out, v...)
			break
		}
		line := v[:i]
		if len(line) > 0 && line[len(line)-1] == '\r' {
			line = line[:len(line)-1]
		}
		out = append(out, line...)
		v = v[i+1:]
	}
	return string(out)
}

// isWSP reports whether c is white space as RFC 5322 §2.2.2 means it.
func isWSP(c byte) bool { return c == ' ' || c == '\t' }

// parseSubject decodes an unstructured Subject (RFC 5322 §3.6.5) with its
// RFC 2047 encoded words.
func parseSubject(dec *mime.WordDecoder, value []byte) string {
	s := unfold(value, maxSubjectInput)
	if d, err := dec.DecodeHeader(s); err == nil {
		s = d
	}
	return clean(s, MaxSubjectBytes)
}

// parseBoundary returns the boundary parameter of a multipart Content-Type
// (RFC 2045 §5.1, RFC 2046 §5.1.1: 1 to 70 characters), or "".
func parseBoundary(v string) string {
	// Most messages are single-part: only a multipart type is worth
	// ParseMediaType's map and parameter decoding (a tenth of Parse's
	// time on a backup of small messages). The same test as its own:
	// the type before any ';', space-trimmed, case-insensitively.
	t := strings.TrimLeftFunc(v, unicode.IsSpace)
	if len(t) < len("multipart/") || !strings.EqualFold(t[:len("multipart/")], "multipart/") {
		return ""
	}
	mt, params, err := mime.ParseMediaType(v)
	if err != nil || !strings.HasPrefix(mt, "multipart/") {
		return ""
	}
	b := params["boundary"]
	if len(b) == 0 || len(b) > 70 {
		return ""
	}
	return b
}

// MessageID is a Message-ID value as Parse records it: the msg-id without
// its angle brackets, spaces and control characters. A Message-ID a user
// types (to restore or erase one message) is compared in this form.
func MessageID(v string) string { return parseMessageID(v) }

// parseMessageID returns the msg-id (RFC 5322 §3.6.4) of a Message-ID
// value without its angle brackets. It is lenient, unlike go-message's
// mail.Header.MessageID: real Message-IDs without '@', with several '@' or
// without angle brackets are common and still identify the message.
func parseMessageID(v string) string {
	if i := strings.IndexByte(v, '<'); i >= 0 {
		v = v[i+1:]
		if j := strings.IndexByte(v, '>'); j >= 0 {
			v = v[:j]
		}
	} else if j := strings.IndexAny(v, " \t"); j >= 0 {
		v = v[:j]
	}
	return cleanToken(v, MaxMessageIDBytes)
}
