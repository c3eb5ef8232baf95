package archive

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
)

// The base64 form of a blob (docs/FORMAT.md "Packs"): how a MIME part
// in base64 (RFC 2045 §6.8) is stored decoded. An attachment's base64
// text is a third larger than its bytes, and compressing the text spends
// zstd's Huffman pass on winning back that third; decoded, a photo is
// stored as it is and a CSV compresses further. The blob — its plaintext,
// ID and deduplication — stays the text; only its stored bytes change.
// As Dovecot's single-instance attachment storage does, only text that
// re-encodes to itself byte for byte is stored so: appendB64Form accepts
// only the one layout each form stands for, and FuzzB64Form checks that
// appendB64Text, which every reader uses, gives back what it accepted.
//
// A form is
//
//	flags (1 byte) | line length L (uvarint) | trailing line endings T (uvarint) | the decoded bytes
//
// and stands for the standard base64 with padding (RFC 4648 §4) of the
// decoded bytes, cut into lines of L characters (L a multiple of 4; the
// last line 4 to L), separated by line endings, followed by T more line
// endings; flags bit 0 says the line ending is CRLF (else LF), the other
// bits are zero. This is what `base64 -w L` writes, less or more line
// endings at the end.

const (
	b64FormCRLF = 1 << 0
	// b64FormMin is the smallest text tried: below it the header and a
	// failed attempt cost more than the third saved.
	b64FormMin = 256
	// b64FormMaxHeader bounds the layout header: a flags byte and two
	// uvarints below 2^32.
	b64FormMaxHeader = 1 + 2*binary.MaxVarintLen32
)

var errB64Form = errors.New("base64 form")

// appendB64Form appends the base64 form of text to dst and reports
// whether text is base64 in a layout the form gives back byte for byte;
// if not, dst is returned as it was.
//
// It decodes and checks in one pass rather than re-encoding to compare
// (which cost 40 % more time, docs/PERFORMANCE.md "b64"): every line but
// the last has exactly L characters of the alphabet, no padding, and the
// line ending; 4 such characters and 3 bytes map one to one. The last
// line has 4 to L characters, a multiple of 4, and its last quantum is
// decoded strictly (padding only at its end, and the unused bits of a
// padded quantum zero: RFC 4648 §3.5), so that only one text has these
// bytes. FuzzB64Form checks the round trip.
func appendB64Form(dst, text []byte) ([]byte, bool) {
	if len(text) < b64FormMin || int64(len(text)) > 1<<32-1 {
		return dst, false
	}
	// The layout comes from the first line and the end.
	var flags byte
	eol := "\n"
	line := bytes.IndexByte(text, '\n')
	switch {
	case line < 0:
		line = len(text)
	case line > 0 && text[line-1] == '\r':
		line--
		flags, eol = b64FormCRLF, "\r\n"
	}
	if line == 0 || line%4 != 0 {
		return dst, false
	}
	body := text
	trailing := 0
	for bytes.HasSuffix(body, []byte(eol)) {
		body = body[:len(body)-len(eol)]
		trailing++
	}
	start := len(dst)
	dst = append(dst, flags)
	dst = binary.AppendUvarint(dst, uint64(line))
	dst = binary.AppendUvarint(dst, uint64(trailing))
	dst = slices.Grow(dst, base64.StdEncoding.DecodedLen(len(body)))
	for len(body) > line {
		if string(body[line:min(len(body), line+len(eol))]) != eol {
			return dst[:start], false
		}
		var ok bool
		if dst, ok = appendQuanta(dst, body[:line]); !ok {
			return dst[:start], false
		}
		body = body[line+len(eol):]
	}
	if len(body) == 0 || len(body)%4 != 0 {
		return dst[:start], false
	}
	last := body[len(body)-4:]
	var ok bool
	if dst, ok = appendQuanta(dst, body[:len(body)-4]); !ok || bytes.ContainsAny(last, "\r\n") {
		return dst[:start], false
	}
	// The standard decoder skips CR and LF (excluded above) and, Strict,
	// refuses non-zero unused bits.
	var q [3]byte
	n, err := base64.StdEncoding.Strict().Decode(q[:], last)
	if err != nil {
		return dst[:start], false
	}
	return append(dst, q[:n]...), true
}

// b64Values maps each byte to its value in the standard base64 alphabet
// (RFC 4648 §4), and every other byte, "=" too, to 0xff.
var b64Values = func() (t [256]byte) {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	for i := range t {
		t[i] = 0xff
	}
	for i := range len(alphabet) {
		t[alphabet[i]] = byte(i)
	}
	return t
}()

// b64Pairs maps two characters, read as a little-endian uint16, to their
// 12 bits of value, or to 0xffff where either is not in the alphabet: a
// 128 KiB table that halves the lookups of appendQuanta (which decoded
// at ~0.6 ns a character with b64Values alone, ~0.35 with this).
var b64Pairs = func() *[1 << 16]uint16 {
	var t [1 << 16]uint16
	for i := range t {
		first, second := b64Values[byte(i)], b64Values[byte(i>>8)]
		if first|second >= 64 {
			t[i] = 0xffff
		} else {
			t[i] = uint16(first)<<6 | uint16(second)
		}
	}
	return &t
}()

// appendQuanta appends the bytes of src, whole quanta of 4 alphabet
// characters without padding, to dst, which has room for them; ok is
// false if src holds any other byte. Eight characters at a time where
// dst has room for a 64-bit store: the 2 bytes past the 6 decoded are
// overwritten by what follows.
func appendQuanta(dst, src []byte) (_ []byte, ok bool) {
	n := len(dst)
	end := n + len(src)/4*3
	out := dst[n:cap(dst)]
	var bad uint16
	le := binary.LittleEndian
	for len(src) >= 8 && len(out) >= 8 {
		a, b := b64Pairs[le.Uint16(src[0:])], b64Pairs[le.Uint16(src[2:])]
		c, d := b64Pairs[le.Uint16(src[4:])], b64Pairs[le.Uint16(src[6:])]
		bad |= a | b | c | d
		binary.BigEndian.PutUint64(out, uint64(a)<<52|uint64(b)<<40|uint64(c)<<28|uint64(d)<<16)
		src, out = src[8:], out[6:]
	}
	for len(src) >= 4 && len(out) >= 3 {
		a, b := b64Pairs[le.Uint16(src[0:])], b64Pairs[le.Uint16(src[2:])]
		bad |= a | b
		v := uint32(a)<<12 | uint32(b)
		out[0], out[1], out[2] = byte(v>>16), byte(v>>8), byte(v)
		src, out = src[4:], out[3:]
	}
	return dst[:end], bad < 1<<12
}

// b64Layout is a parsed base64 form.
type b64Layout struct {
	eol            string
	line, trailing int
	data           []byte // the decoded bytes
	textLen        int    // the length of the text it stands for
}

// parseB64Form parses a form's header and works out its text's length.
func parseB64Form(form []byte) (b64Layout, error) {
	bad := func(what string) error { return fmt.Errorf("%w: %s", errB64Form, what) }
	if len(form) < 3 {
		return b64Layout{}, bad("too short")
	}
	flags := form[0]
	if flags&^b64FormCRLF != 0 {
		return b64Layout{}, bad(fmt.Sprintf("unknown flags %#x", flags))
	}
	eol := "\n"
	if flags&b64FormCRLF != 0 {
		eol = "\r\n"
	}
	rest := form[1:]
	line, n := binary.Uvarint(rest)
	if n <= 0 || line == 0 || line%4 != 0 || line > 1<<32-1 {
		return b64Layout{}, bad("line length")
	}
	rest = rest[n:]
	trailing, n := binary.Uvarint(rest)
	if n <= 0 || trailing > 1<<32-1 {
		return b64Layout{}, bad("trailing line endings")
	}
	data := rest[n:]
	if len(data) == 0 {
		return b64Layout{}, bad("no data")
	}
	enc := uint64(base64.StdEncoding.EncodedLen(len(data)))
	lines := (enc + line - 1) / line
	total := enc + (lines-1+trailing)*uint64(len(eol))
	if total > 1<<32-1 {
		return b64Layout{}, bad("text longer than a blob")
	}
	return b64Layout{eol: eol, line: int(line), trailing: int(trailing), data: data, textLen: int(total)}, nil
}

// appendB64Text appends the text a base64 form stands for to dst; want
// is the text's length as the blob's entry has it, checked before any
// work, so that a damaged header costs nothing.
func appendB64Text(dst, form []byte, want int) ([]byte, error) {
	f, err := parseB64Form(form)
	if err != nil {
		return dst, err
	}
	if f.textLen != want {
		return dst, fmt.Errorf("%w: text of %d bytes, want %d", errB64Form, f.textLen, want)
	}
	// Encode into the end of the room, then move each line forward to
	// its place: line i moves from i·L to i·(L+len(eol)) past where the
	// text begins, never past where it was, so one pass in order is safe.
	enc := base64.StdEncoding.EncodedLen(len(f.data))
	start := len(dst)
	dst = slices.Grow(dst, f.textLen)[:start+f.textLen]
	from := start + f.textLen - enc - f.trailing*len(f.eol)
	base64.StdEncoding.Encode(dst[from:], f.data)
	to := start
	for i := from; i < from+enc; i += f.line {
		end := min(i+f.line, from+enc)
		to += copy(dst[to:], dst[i:end])
		if end < from+enc {
			to += copy(dst[to:], f.eol)
		}
	}
	for range f.trailing {
		to += copy(dst[to:], f.eol)
	}
	return dst, nil
}
