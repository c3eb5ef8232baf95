package archive

import (
	"bytes"

	"github.com/mailvault/mailvault/mailmeta"
)

// attachmentMin is the smallest MIME part content that gets a blob of its
// own; smaller parts (the text of a message) stay with their neighbours so
// that a typical message remains one header blob and one body blob.
const attachmentMin = 16 << 10

// splitBody cuts a message body into blobs: before and after the content of
// each top-level MIME part (RFC 2046 §5.1.1) of at least attachmentMin
// bytes, so that an attachment's encoded bytes are a blob of their own,
// whatever boundary string and part headers surround them in each message.
// A body without a usable boundary is one piece. Malformed structure never
// fails: cutting stops where the structure stops making sense.
func splitBody(body []byte, boundary string) [][]byte {
	if len(body) == 0 {
		return nil
	}
	if boundary == "" || len(body) < 2*attachmentMin {
		return [][]byte{body}
	}
	delim := []byte("--" + boundary)
	var cuts []int
	pos := delimiterAt(body, delim, 0)
	for pos >= 0 {
		lineEnd := bytes.IndexByte(body[pos:], '\n')
		if lineEnd < 0 {
			break
		}
		after := body[pos+len(delim):]
		if len(after) >= 2 && after[0] == '-' && after[1] == '-' {
			break // the close delimiter
		}
		partStart := pos + lineEnd + 1
		he := mailmeta.HeaderEnd(body[partStart:min(len(body), partStart+headerScanLimit)])
		if he < 0 {
			break
		}
		contentStart := partStart + he
		next := delimiterAt(body, delim, contentStart)
		contentEnd := next
		if next < 0 {
			contentEnd = len(body)
		} else {
			// The line break before a delimiter belongs to it.
			contentEnd--
			if contentEnd > contentStart && body[contentEnd-1] == '\r' {
				contentEnd--
			}
		}
		if contentEnd-contentStart >= attachmentMin {
			cuts = append(cuts, contentStart, contentEnd)
		}
		pos = next
	}
	pieces := make([][]byte, 0, len(cuts)+1)
	last := 0
	for _, c := range cuts {
		if c > last {
			pieces = append(pieces, body[last:c])
		}
		last = c
	}
	if last < len(body) {
		pieces = append(pieces, body[last:])
	}
	return pieces
}

// delimiterAt finds the next boundary delimiter line at or after from: the
// delimiter at the start of a line.
func delimiterAt(body, delim []byte, from int) int {
	for from <= len(body) {
		i := bytes.Index(body[from:], delim)
		if i < 0 {
			return -1
		}
		p := from + i
		if p == 0 || body[p-1] == '\n' {
			return p
		}
		from = p + 1
	}
	return -1
}
