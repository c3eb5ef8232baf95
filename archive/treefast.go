package archive

import (
	"encoding/hex"
	"encoding/json"
	"strconv"
	"unicode/utf8"
)

// A hand-written reader for the column JSON of version 3 trees and pages.
//
// An incremental backup decodes the parent pages of every folder listed
// (a 1 % change lists most folders), and encoding/json's reflection was
// a quarter of its CPU (docs/PERFORMANCE.md, "incr2"). This reader takes
// only the form backups write — the known keys spelled exactly, once
// each; null only for a message's empty list; plain integers — and says
// "not mine" (ok false) for anything else, which then goes to
// encoding/json as before. So it never accepts what encoding/json
// refuses nor decodes anything differently (FuzzFastColumnsMatchJSON):
// it is a shortcut, not a second grammar. Strings with escapes or
// control bytes, and those not valid UTF-8, are handed to encoding/json
// one at a time, which keeps its exact rules (U+FFFD for invalid UTF-8,
// \u escapes, surrogates) without restating them.

type colReader struct {
	b []byte
	i int
	// hint is the number of messages once "unique" is read (backups
	// write it first): the other columns' length.
	hint int
	// Scratch reused from column to column.
	pool []byte
	refs []strRef
	flat []string
	ids  []ID
}

func (r *colReader) ws() {
	for r.i < len(r.b) {
		switch r.b[r.i] {
		case ' ', '\t', '\n', '\r':
			r.i++
		default:
			return
		}
	}
}

// eat skips white space and then c, reporting whether c was there.
func (r *colReader) eat(c byte) bool {
	r.ws()
	if r.i < len(r.b) && r.b[r.i] == c {
		r.i++
		return true
	}
	return false
}

// peek is the next byte after white space, 0 at the end.
func (r *colReader) peek() byte {
	r.ws()
	if r.i < len(r.b) {
		return r.b[r.i]
	}
	return 0
}

// rawString returns a string token's bytes between its quotes and
// whether they are plain (no escape, only printable ASCII).
func (r *colReader) rawString() (s []byte, plain, ok bool) {
	if !r.eat('"') {
		return nil, false, false
	}
	start := r.i
	plain = true
	for r.i < len(r.b) {
		c := r.b[r.i]
		switch {
		case c == '"':
			s = r.b[start:r.i]
			r.i++
			return s, plain, true
		case c == '\\':
			plain = false
			r.i += 2
			continue
		case c < 0x20 || c >= 0x80:
			plain = false
		}
		r.i++
	}
	return nil, false, false
}

// str reads one JSON string on its own.
func (r *colReader) str() (string, bool) {
	s, lo, hi, ok := r.strSpan()
	if lo >= 0 {
		s = string(r.pool[lo:hi])
		r.pool = r.pool[:lo]
	}
	return s, ok
}

func hasEscapeOrControl(s []byte) bool {
	for _, c := range s {
		if c == '\\' || c < 0x20 {
			return true
		}
	}
	return false
}

// key reads an object key and its colon; only plain keys are taken.
func (r *colReader) key() (string, bool) {
	s, plain, ok := r.rawString()
	if !ok || !plain || !r.eat(':') {
		return "", false
	}
	return string(s), true
}

// integer reads a JSON integer (a number without fraction or exponent,
// which an int64 field would refuse) and returns its bytes.
func (r *colReader) integer() ([]byte, bool) {
	r.ws()
	start, i := r.i, r.i
	if i < len(r.b) && r.b[i] == '-' {
		i++
	}
	d := i
	for i < len(r.b) && '0' <= r.b[i] && r.b[i] <= '9' {
		i++
	}
	if i == d || r.b[d] == '0' && i-d > 1 {
		return nil, false // no digits, or a leading zero JSON refuses
	}
	if i < len(r.b) {
		if c := r.b[i]; c == '.' || c == 'e' || c == 'E' {
			return nil, false
		}
	}
	r.i = i
	return r.b[start:i], true
}

func (r *colReader) int64() (int64, bool) {
	s, ok := r.integer()
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(string(s), 10, 64)
	return n, err == nil
}

// null skips a null literal, reporting whether there was one.
func (r *colReader) null() bool {
	if r.peek() == 'n' && len(r.b)-r.i >= 4 && string(r.b[r.i:r.i+4]) == "null" {
		r.i += 4
		return true
	}
	return false
}

// array calls elem for each element of a JSON array.
func (r *colReader) array(elem func() bool) bool {
	if !r.eat('[') {
		return false
	}
	if r.eat(']') {
		return true
	}
	for {
		if !elem() {
			return false
		}
		if r.eat(']') {
			return true
		}
		if !r.eat(',') {
			return false
		}
	}
}

// object calls field for each key of a JSON object. The callers refuse
// a key given twice: encoding/json's merging of repeats is left to it.
func (r *colReader) object(field func(k string) bool) bool {
	if !r.eat('{') {
		return false
	}
	if r.eat('}') {
		return true
	}
	for {
		k, ok := r.key()
		if !ok || !field(k) {
			return false
		}
		if r.eat('}') {
			return true
		}
		if !r.eat(',') {
			return false
		}
	}
}

// strSpan reads a JSON string. When its bytes are the string as they
// are (the usual case) they are appended to r.pool and lo, hi are where;
// else s is the decoded string and lo is -1.
func (r *colReader) strSpan() (s string, lo, hi int, ok bool) {
	start := r.i
	b, plain, ok := r.rawString()
	if !ok {
		return "", -1, 0, false
	}
	// A byte ≥ 0x80 is kept as it is when the bytes are valid UTF-8
	// and there is no escape or control byte; else encoding/json decides.
	if plain || !hasEscapeOrControl(b) && utf8.Valid(b) {
		lo = len(r.pool)
		r.pool = append(r.pool, b...)
		return "", lo, len(r.pool), true
	}
	if json.Unmarshal(r.b[start:r.i], &s) != nil {
		return "", -1, 0, false
	}
	return s, -1, 0, true
}

// A column's strings are copied into one allocation (r.pool, then one
// string of it) rather than one each: a page is a thousand messages of
// a few strings each, and the per-string allocations and the collector's
// work on them were most of what decoding cost once encoding/json was
// gone. The messages of a page live and die together, so the shared
// string keeps nothing alive longer than before.
type strRef struct{ i, lo, hi int }

// fill sets the pooled strings of v from one copy of r.pool.
func (r *colReader) fill(v []string, refs []strRef) {
	if len(refs) > 0 {
		big := string(r.pool)
		for _, f := range refs {
			v[f.i] = big[f.lo:f.hi]
		}
	}
	r.pool = r.pool[:0]
}

func (r *colReader) strings() ([]string, bool) {
	v := make([]string, 0, r.hint)
	refs := r.refs[:0]
	ok := r.array(func() bool {
		s, lo, hi, ok := r.strSpan()
		if lo >= 0 {
			refs = append(refs, strRef{len(v), lo, hi})
		}
		v = append(v, s)
		return ok
	})
	r.fill(v, refs)
	r.refs = refs[:0]
	return v, ok
}

func (r *colReader) int64s() ([]int64, bool) {
	v := make([]int64, 0, r.hint)
	ok := r.array(func() bool {
		n, ok := r.int64()
		v = append(v, n)
		return ok
	})
	return v, ok
}

// span is a message's list in a column's shared backing array: v[lo:hi],
// or nil when lo is -1.
type span struct{ lo, hi int }

// lists makes a column of lists from their shared backing array: each
// list capped at its end, so that appending to one never writes into the
// next.
func lists[T any](all []T, spans []span) [][]T {
	v := make([][]T, len(spans))
	for i, s := range spans {
		if s.lo >= 0 {
			v[i] = all[s.lo:s.hi:s.hi]
		}
	}
	return v
}

// stringLists reads a column of string lists (from, to, cc) into one
// backing array and one string.
func (r *colReader) stringLists() ([][]string, bool) {
	spans := make([]span, 0, r.hint)
	flat := r.flat[:0]
	refs := r.refs[:0]
	ok := r.array(func() bool {
		// A message without such addresses: its nil list is written
		// null, which encoding/json reads back as nil.
		if r.null() {
			spans = append(spans, span{-1, -1})
			return true
		}
		lo := len(flat)
		ok := r.array(func() bool {
			s, plo, phi, ok := r.strSpan()
			if plo >= 0 {
				refs = append(refs, strRef{len(flat), plo, phi})
			}
			flat = append(flat, s)
			return ok
		})
		spans = append(spans, span{lo, len(flat)})
		return ok
	})
	all := make([]string, len(flat))
	copy(all, flat)
	r.fill(all, refs)
	clear(flat)
	r.flat, r.refs = flat[:0], refs[:0]
	if !ok {
		return nil, false
	}
	return lists(all, spans), true
}

// idLists reads the "blobs" column into one backing array.
func (r *colReader) idLists() ([][]ID, bool) {
	spans := make([]span, 0, r.hint)
	flat := r.ids[:0]
	ok := r.array(func() bool {
		if r.null() {
			spans = append(spans, span{-1, -1})
			return true
		}
		lo := len(flat)
		ok := r.array(func() bool {
			start := r.i
			s, plain, ok := r.rawString()
			var id ID
			if ok && plain && len(s) == 2*len(id) {
				_, err := hex.Decode(id[:], s)
				ok = err == nil
			} else if ok {
				ok = json.Unmarshal(r.b[start:r.i], &id) == nil
			}
			flat = append(flat, id)
			return ok
		})
		spans = append(spans, span{lo, len(flat)})
		return ok
	})
	r.ids = flat[:0]
	if !ok {
		return nil, false
	}
	all := make([]ID, len(flat))
	copy(all, flat)
	return lists(all, spans), true
}

// dates reads the "date" column: integers and strings, as raw JSON. The
// values alias r.b, which outlives them (decodeColumns reads them at once).
func (r *colReader) dates() ([]json.RawMessage, bool) {
	v := []json.RawMessage{}
	ok := r.array(func() bool {
		if r.peek() == '"' {
			r.ws()
			start := r.i
			s, plain, ok := r.rawString()
			if !ok || !plain && (hasEscapeOrControl(s) || !utf8.Valid(s)) {
				// encoding/json keeps a RawMessage's bytes as they are but
				// still checks them; leave the odd ones to it.
				return false
			}
			v = append(v, json.RawMessage(r.b[start:r.i]))
			return true
		}
		s, ok := r.integer()
		v = append(v, json.RawMessage(s))
		return ok
	})
	return v, ok
}

// intKey parses an int-keyed map's key as backups write it (canonical
// decimal); other spellings encoding/json also takes ("+1", "01") are left
// to it, as two of them may name one index.
func intKey(k string) (int, bool) {
	if k == "" || len(k) > 1 && k[0] == '0' || len(k) > 18 {
		return 0, false
	}
	n := 0
	for i := 0; i < len(k); i++ {
		if k[i] < '0' || k[i] > '9' {
			return 0, false
		}
		n = n*10 + int(k[i]-'0')
	}
	return n, true
}

func (r *colReader) stringMap() (map[int]string, bool) {
	m := map[int]string{}
	ok := r.object(func(k string) bool {
		i, ok := intKey(k)
		if _, dup := m[i]; !ok || dup {
			return false
		}
		m[i], ok = r.str()
		return ok
	})
	return m, ok
}

func (r *colReader) bytesMap() (map[int][]byte, bool) {
	m := map[int][]byte{}
	ok := r.object(func(k string) bool {
		i, ok := intKey(k)
		if _, dup := m[i]; !ok || dup {
			return false
		}
		r.ws()
		start := r.i
		if _, _, ok := r.rawString(); !ok {
			return false
		}
		var b []byte
		if json.Unmarshal(r.b[start:r.i], &b) != nil {
			return false
		}
		m[i] = b
		return true
	})
	return m, ok
}

// columns reads a "messages" object of columns.
func (r *colReader) columns(c *messageColumns) bool {
	seen := map[string]bool{}
	return r.object(func(k string) bool {
		if seen[k] {
			return false
		}
		seen[k] = true
		var ok bool
		switch k {
		case "unique":
			c.Unique, ok = r.strings()
			r.hint = len(c.Unique)
		case "unique_raw":
			c.UniqueRaw, ok = r.bytesMap()
		case "flags":
			c.Flags, ok = r.strings()
		case "new":
			c.New = []int{}
			ok = r.array(func() bool {
				n, ok := r.int64()
				c.New = append(c.New, int(n))
				return ok
			})
		case "mtime":
			c.MTime, ok = r.int64s()
		case "size":
			c.Size, ok = r.int64s()
		case "blobs":
			c.Blobs, ok = r.idLists()
		case "from":
			c.From, ok = r.stringLists()
		case "to":
			c.To, ok = r.stringLists()
		case "cc":
			c.Cc, ok = r.stringLists()
		case "subject":
			c.Subject, ok = r.strings()
		case "date":
			c.Date, ok = r.dates()
		case "message_id":
			c.MessageID, ok = r.strings()
		case "name":
			c.Name, ok = r.stringMap()
		case "name_raw":
			c.NameRaw, ok = r.bytesMap()
		}
		return ok
	})
}

// end reports whether only white space is left.
func (r *colReader) end() bool {
	r.ws()
	return r.i == len(r.b)
}

// fastColumns decodes a "messages" object of columns as
// json.Unmarshal(raw, c) would, if raw is in the form backups write;
// ok false leaves c to be decoded by encoding/json.
func fastColumns(raw []byte) (c messageColumns, ok bool) {
	r := colReader{b: raw}
	if !r.columns(&c) || !r.end() {
		return messageColumns{}, false
	}
	return c, true
}

// decodeColumnsJSON unmarshals raw into columns, by the fast path when
// it can.
func decodeColumnsJSON(raw []byte, c *messageColumns) error {
	if f, ok := fastColumns(raw); ok {
		*c = f
		return nil
	}
	return json.Unmarshal(raw, c)
}

// fastPageV3 reads a page blob {"page":2,"messages":{...}} as backups
// write it, keys once each in either order; ok false leaves it to
// encoding/json.
func fastPageV3(plain []byte) (messageColumns, bool) {
	return fastColumnsBlob(plain, "page", 2)
}

// fastTreeV3 reads a version 3 tree blob that holds its messages inline,
// {"version":3,"messages":{...}}, the small folders' form; a tree that
// lists pages (or anything else) is left to encoding/json.
func fastTreeV3(plain []byte) (messageColumns, bool) {
	return fastColumnsBlob(plain, "version", 3)
}

// fastColumnsBlob reads {key: want, "messages": {...}}.
func fastColumnsBlob(plain []byte, key string, want int64) (c messageColumns, ok bool) {
	r := colReader{b: plain}
	var seenKey, msgs bool
	ok = r.object(func(k string) bool {
		switch {
		case k == key && !seenKey:
			seenKey = true
			n, ok := r.int64()
			return ok && n == want
		case k == "messages" && !msgs:
			msgs = true
			return r.columns(&c)
		}
		return false
	})
	if !ok || !seenKey || !msgs || !r.end() {
		return messageColumns{}, false
	}
	return c, true
}
