package archive

import (
	"bytes"
	"encoding/hex"
	"io"
)

// decodeIndexFast parses an index file in exactly the compact form this
// package writes (json.Marshal of IndexFileContent) without reflection:
// loading the index is the fixed cost of every command, and
// encoding/json spends about 4 µs per blob on it. Anything else — other
// spacing, field order, escapes, another writer's JSON — returns ok ==
// false, and decodeIndex falls back to encoding/json. FuzzDecodeIndex
// checks that both agree wherever this accepts.
func decodeIndexFast(b []byte) (ic *IndexFileContent, ok bool) {
	ic = &IndexFileContent{Version: 1, Packs: []IndexPack{}}
	ok = parseIndexFast(b, indexVisitor{
		pack: func(id ID) { ic.Packs = append(ic.Packs, IndexPack{ID: id, Blobs: []PackedBlob{}}) },
		blob: func(bl PackedBlob) {
			p := &ic.Packs[len(ic.Packs)-1]
			p.Blobs = append(p.Blobs, bl)
		},
		supersedes: func(id ID) { ic.Supersedes = append(ic.Supersedes, id) },
	})
	if !ok {
		return nil, false
	}
	return ic, true
}

// indexVisitor receives what parseIndexFast reads, in file order: each
// pack, then its blobs.
type indexVisitor struct {
	pack       func(ID)
	blob       func(PackedBlob)
	supersedes func(ID)
}

// parseIndexFast reads the compact form decodeIndexFast describes and
// hands each pack and blob to v as it is read, so that LoadIndex puts
// them straight into its table without an IndexFileContent. On false, v
// may have seen part of the file: the caller discards what it got.
func parseIndexFast(b []byte, v indexVisitor) bool {
	p := fastParser{b: b}
	return p.index(v)
}

// parseIndexStream is parseIndexFast over a reader, through a window of
// bufSize bytes (at least minWindow): an index file's JSON is never held
// whole. err is the reader's error (ok is then false).
func parseIndexStream(r io.Reader, bufSize int, v indexVisitor) (ok bool, err error) {
	p := fastParser{src: r, buf: make([]byte, max(bufSize, minWindow))}
	ok = p.index(v)
	return ok && p.err == nil, p.err
}

// lookahead is how many bytes the parser makes sure it has before each
// pack, blob and superseded file, which are all shorter (a blob's object
// is at most ~190 bytes), so that no token is cut at the window's end.
const (
	lookahead = 512
	minWindow = 2 * lookahead
)

func (p *fastParser) index(v indexVisitor) bool {
	p.more(lookahead)
	if !p.lit(`{"version":1,"packs":[`) {
		return false
	}
	blob := func() bool {
		var bl PackedBlob
		if !p.lit(`{"id":"`) || !p.id(&bl.ID) || !p.lit(`","type":"`) {
			return false
		}
		switch {
		case p.lit(`data"`):
			bl.Type = DataBlob
		case p.lit(`tree"`):
			bl.Type = TreeBlob
		default:
			return false
		}
		if !p.lit(`,"offset":`) || !p.u32(&bl.Offset) ||
			!p.lit(`,"length":`) || !p.u32(&bl.Length) ||
			!p.lit(`,"raw_length":`) || !p.u32(&bl.RawLength) ||
			!p.lit(`,"compression":"`) {
			return false
		}
		switch {
		case p.lit(`zstd"}`):
			bl.Compression = Zstd
		case p.lit(`none"}`):
			bl.Compression = Uncompressed
		case p.lit(`base64+zstd"}`):
			bl.Compression = Base64Zstd
		case p.lit(`base64"}`):
			bl.Compression = Base64
		default:
			return false
		}
		v.blob(bl)
		return true
	}
	pack := func() bool {
		var pack ID
		if !p.lit(`{"id":"`) || !p.id(&pack) || !p.lit(`","blobs":[`) {
			return false
		}
		v.pack(pack)
		return p.list(blob) && p.lit(`}`)
	}
	superseded := func() bool {
		var id ID
		if !p.lit(`"`) || !p.id(&id) || !p.lit(`"`) {
			return false
		}
		v.supersedes(id)
		return true
	}
	if !p.list(pack) {
		return false
	}
	p.more(lookahead)
	if p.lit(`,"supersedes":[`) && !p.list(superseded) {
		return false
	}
	p.more(lookahead)
	return p.lit(`}`) && p.done()
}

// list parses the rest of a JSON array whose `[` has been read: nothing,
// or items separated by commas, then `]`. Each item gets lookahead bytes
// first, so that no token is cut at the window's end.
func (p *fastParser) list(item func() bool) bool {
	if p.lit(`]`) {
		return true
	}
	for {
		p.more(lookahead)
		if !item() {
			return false
		}
		if !p.lit(`,`) {
			return p.lit(`]`)
		}
	}
}

type fastParser struct {
	b   []byte
	pos int
	// Streaming (parseIndexStream): b is a window of buf, refilled from
	// src; src is nil once it has ended (or failed, with err).
	src io.Reader
	buf []byte
	err error
}

// more makes at least n bytes available past pos, unless the input ends
// first; when streaming, it moves what is left to the front of the window
// and fills the rest.
func (p *fastParser) more(n int) {
	if p.src == nil || len(p.b)-p.pos >= n {
		return
	}
	m := copy(p.buf, p.b[p.pos:])
	p.pos = 0
	k, err := io.ReadFull(p.src, p.buf[m:])
	m += k
	if err != nil {
		if err != io.EOF && err != io.ErrUnexpectedEOF {
			p.err = err
		}
		p.src = nil
	}
	p.b = p.buf[:m]
}

func (p *fastParser) lit(s string) bool {
	if len(p.b)-p.pos < len(s) || string(p.b[p.pos:p.pos+len(s)]) != s {
		return false
	}
	p.pos += len(s)
	return true
}

// id reads 64 lower-case hex digits (as ID.MarshalText writes them).
func (p *fastParser) id(dst *ID) bool {
	if len(p.b)-p.pos < 64 {
		return false
	}
	src := p.b[p.pos : p.pos+64]
	if bytes.ContainsAny(src, "ABCDEF") {
		return false // ParseID accepts upper case; let encoding/json decide
	}
	if _, err := hex.Decode(dst[:], src); err != nil {
		return false
	}
	p.pos += 64
	return true
}

// u32 reads a decimal uint32 without leading zeros (JSON numbers).
func (p *fastParser) u32(dst *uint32) bool {
	start := p.pos
	var v uint64
	for p.pos < len(p.b) && p.b[p.pos] >= '0' && p.b[p.pos] <= '9' {
		v = v*10 + uint64(p.b[p.pos]-'0')
		p.pos++
		if v > 1<<32-1 {
			return false
		}
	}
	n := p.pos - start
	if n == 0 || (n > 1 && p.b[start] == '0') {
		return false
	}
	*dst = uint32(v)
	return true
}

func (p *fastParser) done() bool {
	p.more(1)
	return p.pos == len(p.b) && p.src == nil && p.err == nil
}
