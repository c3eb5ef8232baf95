package archive

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"math"
	"os"

	"filippo.io/age"
)

// BlobType separates message/file content from the repository's own
// metadata (folder trees).
type BlobType uint8

const (
	DataBlob BlobType = 0
	TreeBlob BlobType = 1
)

func (t BlobType) String() string {
	switch t {
	case DataBlob:
		return "data"
	case TreeBlob:
		return "tree"
	}
	return fmt.Sprintf("type%d", uint8(t))
}

// MarshalText implements encoding.TextMarshaler.
func (t BlobType) MarshalText() ([]byte, error) { return []byte(t.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (t *BlobType) UnmarshalText(b []byte) error {
	switch string(b) {
	case "data":
		*t = DataBlob
	case "tree":
		*t = TreeBlob
	default:
		return fmt.Errorf("unknown blob type %q", b)
	}
	return nil
}

// Compression says how a blob is stored in its pack: two bits, one for
// each step a reader takes — bit 0 a zstd frame to decompress, bit 1 a
// base64 form (b64form.go) to re-encode — in that order.
type Compression uint8

const (
	// Uncompressed blobs are stored as they are: used where zstd does not
	// shrink the blob enough to pay for decompression (JPEGs, zip files).
	Uncompressed Compression = 0
	// Zstd blobs are one zstd frame each (RFC 8878), decodable by `zstd -d`.
	Zstd Compression = 1
	// Base64 blobs are base64 text stored in the base64 form, decoded:
	// a photo's bytes, which zstd would not shrink.
	Base64 Compression = 2
	// Base64Zstd blobs are one zstd frame of the base64 form: decoded
	// text or PDF, which compresses further.
	Base64Zstd = Base64 | Zstd
	// maxCompression is the highest kind format 3 packs and index files
	// can say; formats 1 and 2 say only Uncompressed and Zstd.
	maxCompression = Base64Zstd
)

func (c Compression) String() string {
	switch c {
	case Uncompressed:
		return "none"
	case Zstd:
		return "zstd"
	case Base64:
		return "base64"
	case Base64Zstd:
		return "base64+zstd"
	}
	return fmt.Sprintf("compression%d", uint8(c))
}

// MarshalText implements encoding.TextMarshaler.
func (c Compression) MarshalText() ([]byte, error) {
	if c > maxCompression {
		return nil, fmt.Errorf("unknown compression %d", uint8(c))
	}
	return []byte(c.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (c *Compression) UnmarshalText(b []byte) error {
	for k := Uncompressed; k <= maxCompression; k++ {
		if string(b) == k.String() {
			*c = k
			return nil
		}
	}
	return fmt.Errorf("unknown compression %q", b)
}

// PackedBlob is one blob's entry in a pack header or an index.
type PackedBlob struct {
	ID          ID          `json:"id"`
	Type        BlobType    `json:"type"`
	Offset      uint32      `json:"offset"`
	Length      uint32      `json:"length"`
	RawLength   uint32      `json:"raw_length"`
	Compression Compression `json:"compression"`
}

// Pack layout (plaintext, before age encryption; see docs/FORMAT.md):
//
//	blob 0 | blob 1 | ... | header | header length (uint32 LE) | "MVP3"
//
// where the header is the entry count and then, per entry, two uvarints —
// stored length<<3 | compression<<1 | type, and raw length minus stored
// length, zigzag — and the blob ID (32): 35 to 37 bytes an entry for the
// small blobs of mail, where the fixed 42 of format 1 made the headers 5 %
// of a repository of small messages. Offsets are implicit: blobs follow
// each other from offset 0 in entry order.
//
// Format 2 ("MVP2") is the same with one bit of compression (length<<2):
// a pack none of whose blobs is in the base64 form is still written so,
// which every earlier version reads; format 3 only where it is needed,
// which an earlier version refuses ("bad trailer") rather than misread.
// Format 1 packs ("MVP1": fixed 42-byte entries, then the count) are still
// read.
const (
	packMagic     = "MVP3"
	packMagicV2   = "MVP2"
	packMagicV1   = "MVP1"
	packEntrySize = 1 + 1 + 4 + 4 + 32 // format 1
	packTrailer   = 8                  // format 1: count (4), format 2: header length (4); magic (4)
	// packEntryMin is the least a format 2 entry takes.
	packEntryMin = 1 + 1 + 32
	// maxPackEntries bounds what a hostile header can make us allocate.
	maxPackEntries = 1 << 22
)

// packBuilder encrypts a pack as blobs are added and streams the sealed
// bytes to out (a temporary file during a backup), hashing them on the
// way: neither plaintext nor ciphertext of a pack is held in memory.
type packBuilder struct {
	enc     io.WriteCloser // age stream writing into out and hash
	hash    hash.Hash      // SHA-256 of the sealed bytes: the pack's name
	size    int64          // plaintext bytes written so far
	entries []PackedBlob

	// file and bw are the temporary file behind out, when there is one.
	file *os.File
	bw   *bufio.Writer
}

func newPackBuilder(out io.Writer, rcpt age.Recipient) (*packBuilder, error) {
	h := sha256.New()
	enc, err := age.Encrypt(io.MultiWriter(out, h), rcpt)
	if err != nil {
		return nil, err
	}
	return &packBuilder{enc: enc, hash: h}, nil
}

func (p *packBuilder) add(id ID, t BlobType, c Compression, rawLen int, stored []byte) error {
	if _, err := p.enc.Write(stored); err != nil {
		return err
	}
	p.entries = append(p.entries, PackedBlob{ID: id, Type: t, Offset: uint32(p.size), Length: uint32(len(stored)), RawLength: uint32(rawLen), Compression: c})
	p.size += int64(len(stored))
	return nil
}

// finish appends the header and trailer, closes the age stream and returns
// the pack's ID (the SHA-256 of everything written to out).
func (p *packBuilder) finish() (ID, error) {
	hdr := make([]byte, 0, len(p.entries)*(packEntryMin+4)+16)
	hdr = appendPackHeader(hdr, p.entries)
	if _, err := p.enc.Write(hdr); err != nil {
		return ID{}, err
	}
	if err := p.enc.Close(); err != nil {
		return ID{}, err
	}
	var id ID
	p.hash.Sum(id[:0])
	return id, nil
}

// appendPackHeader encodes the entries and the trailer: format 2 if no
// blob is in the base64 form, else format 3.
func appendPackHeader(dst []byte, entries []PackedBlob) []byte {
	format := 2
	for _, b := range entries {
		if b.Compression > Zstd {
			format = 3
			break
		}
	}
	return appendPackHeaderFormat(dst, entries, format)
}

// appendPackHeaderFormat encodes the entries and the trailer in format 2
// or 3.
func appendPackHeaderFormat(dst []byte, entries []PackedBlob, format int) []byte {
	start := len(dst)
	shift, magic := 3, packMagic
	if format == 2 {
		shift, magic = 2, packMagicV2
	}
	dst = binary.AppendUvarint(dst, uint64(len(entries)))
	for _, b := range entries {
		dst = binary.AppendUvarint(dst, uint64(b.Length)<<shift|uint64(b.Compression)<<1|uint64(b.Type))
		dst = binary.AppendVarint(dst, int64(b.RawLength)-int64(b.Length))
		dst = append(dst, b.ID[:]...)
	}
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(dst)-start))
	return append(dst, magic...)
}

// appendPackHeaderV1 encodes the entries and the trailer in format 1, as
// packs written before format 2 have them (for tests).
func appendPackHeaderV1(dst []byte, entries []PackedBlob) []byte {
	var e [packEntrySize]byte
	for _, b := range entries {
		e[0] = byte(b.Type)
		e[1] = byte(b.Compression)
		binary.LittleEndian.PutUint32(e[2:], b.Length)
		binary.LittleEndian.PutUint32(e[6:], b.RawLength)
		copy(e[10:], b.ID[:])
		dst = append(dst, e[:]...)
	}
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(entries)))
	return append(dst, packMagicV1...)
}

// errCorruptPack is wrapped by every pack-parsing error.
var errCorruptPack = errors.New("corrupt pack")

// packHeaderSize returns, given the trailer, the pack's format (1, 2 or
// 3) and the size of its header and trailer together.
func packHeaderSize(trailer []byte, plainSize int64) (format int, size int64, err error) {
	if len(trailer) != packTrailer {
		return 0, 0, fmt.Errorf("%w: bad trailer", errCorruptPack)
	}
	n := int64(binary.LittleEndian.Uint32(trailer))
	switch string(trailer[4:]) {
	case packMagicV1:
		if n > maxPackEntries {
			return 0, 0, fmt.Errorf("%w: header claims %d entries", errCorruptPack, n)
		}
		format, size = 1, n*packEntrySize+packTrailer
	case packMagicV2:
		format, size = 2, n+packTrailer
	case packMagic:
		format, size = 3, n+packTrailer
	default:
		return 0, 0, fmt.Errorf("%w: bad trailer", errCorruptPack)
	}
	if size > plainSize {
		return 0, 0, fmt.Errorf("%w: header of %d bytes in a pack of %d", errCorruptPack, size-packTrailer, plainSize)
	}
	return format, size, nil
}

// parsePackHeader decodes the header (without trailer) of a pack of the
// given format whose plaintext is plainSize bytes long, and checks that
// the blobs tile the data area exactly.
func parsePackHeader(hdr []byte, format int, plainSize int64) ([]PackedBlob, error) {
	dataEnd := plainSize - int64(len(hdr)) - packTrailer
	var out []PackedBlob
	if format == 1 {
		if len(hdr)%packEntrySize != 0 {
			return nil, fmt.Errorf("%w: header length %d", errCorruptPack, len(hdr))
		}
		out = make([]PackedBlob, len(hdr)/packEntrySize)
		for i := range out {
			e := hdr[i*packEntrySize : (i+1)*packEntrySize]
			out[i] = PackedBlob{Type: BlobType(e[0]), Compression: Compression(e[1]),
				Length: binary.LittleEndian.Uint32(e[2:]), RawLength: binary.LittleEndian.Uint32(e[6:])}
			copy(out[i].ID[:], e[10:])
		}
	} else {
		var err error
		if out, err = parsePackEntries(hdr, format); err != nil {
			return nil, err
		}
	}
	maxComp := maxCompression
	if format < 3 {
		maxComp = Zstd
	}
	var off int64
	for i := range out {
		b := &out[i]
		if b.Type > TreeBlob || b.Compression > maxComp {
			return nil, fmt.Errorf("%w: entry %d has unknown type or compression", errCorruptPack, i)
		}
		b.Offset = uint32(off)
		off += int64(b.Length)
		if off > dataEnd {
			return nil, fmt.Errorf("%w: entry %d extends past the data area", errCorruptPack, i)
		}
	}
	if off != dataEnd {
		return nil, fmt.Errorf("%w: blobs cover %d of %d data bytes", errCorruptPack, off, dataEnd)
	}
	return out, nil
}

// parsePackEntries decodes a format 2 or 3 header. It takes only the
// shortest encoding of each number, so that a header re-encodes to its
// own bytes.
func parsePackEntries(hdr []byte, format int) ([]PackedBlob, error) {
	shift, compMask := uint(3), uint64(3)
	if format == 2 {
		shift, compMask = 2, 1
	}
	bad := func(what string) error { return fmt.Errorf("%w: header: %s", errCorruptPack, what) }
	uvarint := func() (uint64, bool) {
		v, n := binary.Uvarint(hdr)
		if n <= 0 || n != len(binary.AppendUvarint(nil, v)) {
			return 0, false
		}
		hdr = hdr[n:]
		return v, true
	}
	count, ok := uvarint()
	if !ok || count > uint64(len(hdr)/packEntryMin) {
		return nil, bad("entry count")
	}
	out := make([]PackedBlob, count)
	for i := range out {
		a, ok := uvarint()
		if !ok || a>>shift > math.MaxUint32 {
			return nil, bad(fmt.Sprintf("entry %d length", i))
		}
		u, ok := uvarint()
		d := int64(u>>1) ^ -int64(u&1) // zigzag, as binary.Varint
		raw := int64(a>>shift) + d
		if !ok || raw < 0 || raw > math.MaxUint32 || len(hdr) < len(ID{}) {
			return nil, bad(fmt.Sprintf("entry %d raw length", i))
		}
		b := &out[i]
		b.Type, b.Compression = BlobType(a&1), Compression(a>>1&compMask)
		b.Length, b.RawLength = uint32(a>>shift), uint32(raw)
		hdr = hdr[copy(b.ID[:], hdr):]
	}
	if len(hdr) != 0 {
		return nil, bad("bytes after the last entry")
	}
	return out, nil
}

// ParsePack decodes a whole pack plaintext's header; used by check and
// by the fuzzer.
func ParsePack(plain []byte) ([]PackedBlob, error) {
	if len(plain) < packTrailer {
		return nil, fmt.Errorf("%w: too short", errCorruptPack)
	}
	format, size, err := packHeaderSize(plain[len(plain)-packTrailer:], int64(len(plain)))
	if err != nil {
		return nil, err
	}
	return parsePackHeader(plain[int64(len(plain))-size:len(plain)-packTrailer], format, int64(len(plain)))
}
