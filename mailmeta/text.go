package mailmeta

import (
	"io"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/emersion/go-message/charset"
)

// charsetReader converts text in the named MIME charset to UTF-8 for
// mime.WordDecoder, which handles UTF-8, US-ASCII and ISO-8859-1 itself.
//
// A charset nobody knows is passed through unconverted rather than
// reported: mime.WordDecoder.DecodeHeader would fail the whole Subject on
// the error, and net/mail the whole address. ASCII-compatible charsets
// (nearly all of them) then keep their ASCII text, and clean turns the
// rest into U+FFFD.
func charsetReader(name string, input io.Reader) (io.Reader, error) {
	// RFC 2231 §5: the charset of an encoded word may be followed by a
	// language, "utf-8*en".
	if i := strings.IndexByte(name, '*'); i >= 0 {
		name = name[:i]
	}
	if r, err := charset.Reader(name, input); err == nil {
		return r, nil
	}
	return input, nil
}

// clean makes s fit for the manifest: invalid UTF-8 becomes U+FFFD, tabs
// and line breaks become spaces, other control characters (C0, DEL, C1) are
// removed, surrounding white space is trimmed, and the result is cut to at
// most max bytes at a character boundary.
func clean(s string, max int) string {
	if isClean(s) {
		// Nothing to replace or remove: only cut and trim, without
		// copying, as for most subjects and display names.
		if len(s) > max {
			i := max
			for i > 0 && !utf8.RuneStart(s[i]) {
				i--
			}
			s = s[:i]
		}
		return strings.TrimSpace(s)
	}
	return cleanSlow(s, max)
}

// cleanSlow is clean for text that has something to replace or remove.
func cleanSlow(s string, max int) string {
	var b strings.Builder
	b.Grow(min(len(s), max))
	for _, r := range s { // invalid UTF-8 ranges as utf8.RuneError
		switch {
		case r == '\t' || r == '\n' || r == '\r':
			r = ' '
		case unicode.IsControl(r):
			continue
		}
		if b.Len()+utf8.RuneLen(r) > max {
			break
		}
		b.WriteRune(r)
	}
	return strings.TrimSpace(b.String())
}

// cleanToken is clean for a token such as an addr-spec or msg-id, which has
// no white space: it removes white space as well as control characters.
func cleanToken(s string, max int) string {
	if isPlain(s) && len(s) <= max && strings.IndexByte(s, ' ') < 0 {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if unicode.IsControl(r) || unicode.IsSpace(r) {
			continue
		}
		if b.Len()+utf8.RuneLen(r) > max {
			break
		}
		b.WriteRune(r)
	}
	return b.String()
}

// isClean reports whether s is valid UTF-8 without control characters (C0,
// DEL, C1), which clean leaves alone.
func isClean(s string) bool {
	for i := range len(s) {
		c := s[i]
		if c < 0x20 || c == 0x7f {
			return false
		}
		// The C1 controls, U+0080 to U+009F, are 0xC2 0x80 to 0xC2
		// 0x9F in UTF-8.
		if c == 0xc2 && i+1 < len(s) && s[i+1] < 0xa0 {
			return false
		}
	}
	return utf8.ValidString(s)
}

// isPlain reports whether s is printable ASCII only, which needs no
// cleaning but trimming.
func isPlain(s string) bool {
	for i := range len(s) {
		if c := s[i]; c < 0x20 || c > 0x7e {
			return false
		}
	}
	return true
}
