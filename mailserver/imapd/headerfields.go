package imapd

import (
	"bufio"
	"bytes"
	"net/textproto"
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	gotextproto "github.com/emersion/go-message/textproto"
)

// headerField is one field of a cached header block as go-message reads
// it: its key (canonical form), that key in lower case and the field's
// raw bytes, which is what go-message writes back.
type headerField struct {
	key, lower string
	raw        []byte
}

// parsedFields is a header block split into fields once; ok is false when
// go-message could not read it (the answer is then empty, as go-imap's).
type parsedFields struct {
	fields []headerField
	ok     bool
}

// headerFields answers BODY[HEADER.FIELDS (…)] and
// BODY[HEADER.FIELDS.NOT (…)] of the top-level message from the cached
// header block, byte for byte as imapserver.ExtractBodySection would (the
// fields kept, in their order and raw form, then an empty line, then the
// partial range), without parsing the header again each time: imaptest
// asks for random field lists of random messages, and parsing was 40% of
// the server's time in its read-mostly profile (issue 10).
func (e *msgMeta) headerFields(bs *imap.FetchItemBodySection) []byte {
	p := e.fields.Load()
	if p == nil {
		p = parseFields(e.header)
		e.fields.Store(p)
	}
	if !p.ok {
		return imapserver.ExtractBodySection(bytes.NewReader(e.header), bs)
	}
	var keep map[string]bool
	if len(bs.HeaderFields) > 0 {
		keep = make(map[string]bool, len(bs.HeaderFields))
		for _, k := range bs.HeaderFields {
			keep[strings.ToLower(k)] = true
		}
	}
	var drop map[string]bool
	if len(bs.HeaderFieldsNot) > 0 {
		drop = make(map[string]bool, len(bs.HeaderFieldsNot))
		for _, k := range bs.HeaderFieldsNot {
			drop[textproto.CanonicalMIMEHeaderKey(k)] = true
		}
	}
	var buf bytes.Buffer
	for _, f := range p.fields {
		if keep != nil && !keep[f.lower] || drop[f.key] {
			continue
		}
		buf.Write(f.raw)
	}
	buf.WriteString("\r\n")
	return sectionPartial(buf.Bytes(), bs.Partial)
}

func parseFields(header []byte) *parsedFields {
	h, err := gotextproto.ReadHeader(bufio.NewReader(bytes.NewReader(header)))
	if err != nil {
		return &parsedFields{}
	}
	p := &parsedFields{ok: true}
	for f := h.Fields(); f.Next(); {
		raw, err := f.Raw()
		if err != nil {
			return &parsedFields{}
		}
		p.fields = append(p.fields, headerField{key: f.Key(), lower: strings.ToLower(f.Key()), raw: raw})
	}
	return p
}

// sectionPartial is go-imap's extractPartial: the <offset.size> range of
// b, nil when it starts past the end.
func sectionPartial(b []byte, partial *imap.SectionPartial) []byte {
	if partial == nil {
		return b
	}
	if partial.Offset > int64(len(b)) {
		return nil
	}
	end := min(partial.Offset+partial.Size, int64(len(b)))
	return b[partial.Offset:end]
}
