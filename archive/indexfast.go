package archive

import (
	"bytes"
	"encoding/hex"
)

// decodeIndexFast parses an index file in exactly the compact form this
// package writes (json.Marshal of IndexFileContent) without reflection:
// loading the index is the fixed cost of every command, and
// encoding/json spends about 4 µs per blob on it. Anything else — other
// spacing, field order, escapes, another writer's JSON — returns ok ==
// false, and decodeIndex falls back to encoding/json. FuzzDecodeIndex
// checks that both agree wherever this accepts.
func decodeIndexFast(b []byte) (ic *IndexFileContent, ok bool) {
	p := fastParser{b: b}
	if !p.lit(`{"version":1,"packs":[`) {
		return nil, false
	}
	ic = &IndexFileContent{Version: 1, Packs: []IndexPack{}}
	if p.lit(`]}`) {
		return ic, p.done()
	}
	for {
		var pack IndexPack
		if !p.lit(`{"id":"`) || !p.id(&pack.ID) || !p.lit(`","blobs":[`) {
			return nil, false
		}
		pack.Blobs = []PackedBlob{}
		if !p.lit(`]`) {
			for {
				var bl PackedBlob
				if !p.lit(`{"id":"`) || !p.id(&bl.ID) || !p.lit(`","type":"`) {
					return nil, false
				}
				switch {
				case p.lit(`data"`):
					bl.Type = DataBlob
				case p.lit(`tree"`):
					bl.Type = TreeBlob
				default:
					return nil, false
				}
				if !p.lit(`,"offset":`) || !p.u32(&bl.Offset) ||
					!p.lit(`,"length":`) || !p.u32(&bl.Length) ||
					!p.lit(`,"raw_length":`) || !p.u32(&bl.RawLength) ||
					!p.lit(`,"compression":"`) {
					return nil, false
				}
				switch {
				case p.lit(`zstd"}`):
					bl.Compression = Zstd
				case p.lit(`none"}`):
					bl.Compression = Uncompressed
				default:
					return nil, false
				}
				pack.Blobs = append(pack.Blobs, bl)
				if p.lit(`,`) {
					continue
				}
				if p.lit(`]`) {
					break
				}
				return nil, false
			}
		}
		if !p.lit(`}`) {
			return nil, false
		}
		ic.Packs = append(ic.Packs, pack)
		if p.lit(`,`) {
			continue
		}
		if p.lit(`]}`) {
			return ic, p.done()
		}
		return nil, false
	}
}

type fastParser struct {
	b   []byte
	pos int
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

func (p *fastParser) done() bool { return p.pos == len(p.b) }
