package archive

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
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

// Compression says how a blob is stored in its pack.
type Compression uint8

const (
	// Uncompressed blobs are stored as they are: used where zstd does not
	// shrink the blob enough to pay for decompression (JPEGs, zip files).
	Uncompressed Compression = 0
	// Zstd blobs are one zstd frame each (RFC 8878), decodable by `zstd -d`.
	Zstd Compression = 1
)

func (c Compression) String() string {
	if c == Zstd {
		return "zstd"
	}
	return "none"
}

// MarshalText implements encoding.TextMarshaler.
func (c Compression) MarshalText() ([]byte, error) { return []byte(c.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (c *Compression) UnmarshalText(b []byte) error {
	switch string(b) {
	case "zstd":
		*c = Zstd
	case "none":
		*c = Uncompressed
	default:
		return fmt.Errorf("unknown compression %q", b)
	}
	return nil
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
//	blob 0 | blob 1 | ... | entry 0 | entry 1 | ... | count (uint32 LE) | "MVP1"
//
// where each entry is 42 bytes: type (1), compression (1), stored length
// (uint32 LE), raw length (uint32 LE), blob ID (32). Offsets are implicit:
// blobs follow each other from offset 0 in entry order.
const (
	packMagic     = "MVP1"
	packEntrySize = 1 + 1 + 4 + 4 + 32
	packTrailer   = 8 // count (4) + magic (4)
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
	hdr := make([]byte, 0, len(p.entries)*packEntrySize+packTrailer)
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

// appendPackHeader encodes the entries and the trailer.
func appendPackHeader(dst []byte, entries []PackedBlob) []byte {
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
	return append(dst, packMagic...)
}

// errCorruptPack is wrapped by every pack-parsing error.
var errCorruptPack = errors.New("corrupt pack")

// packHeaderSize returns the size of header+trailer given the trailer.
func packHeaderSize(trailer []byte, plainSize int64) (count int, size int64, err error) {
	if len(trailer) != packTrailer || string(trailer[4:]) != packMagic {
		return 0, 0, fmt.Errorf("%w: bad trailer", errCorruptPack)
	}
	n := binary.LittleEndian.Uint32(trailer)
	size = int64(n)*packEntrySize + packTrailer
	if n > maxPackEntries || size > plainSize {
		return 0, 0, fmt.Errorf("%w: header claims %d entries", errCorruptPack, n)
	}
	return int(n), size, nil
}

// parsePackHeader decodes the header entries (without trailer) of a pack
// whose plaintext is plainSize bytes long, and checks that the blobs tile
// the data area exactly.
func parsePackHeader(hdr []byte, count int, plainSize int64) ([]PackedBlob, error) {
	if len(hdr) != count*packEntrySize {
		return nil, fmt.Errorf("%w: header length %d for %d entries", errCorruptPack, len(hdr), count)
	}
	dataEnd := plainSize - int64(count*packEntrySize) - packTrailer
	out := make([]PackedBlob, count)
	var off int64
	for i := range out {
		e := hdr[i*packEntrySize : (i+1)*packEntrySize]
		b := PackedBlob{Type: BlobType(e[0]), Compression: Compression(e[1]), Offset: uint32(off),
			Length: binary.LittleEndian.Uint32(e[2:]), RawLength: binary.LittleEndian.Uint32(e[6:])}
		copy(b.ID[:], e[10:])
		if b.Type > TreeBlob || b.Compression > Zstd {
			return nil, fmt.Errorf("%w: entry %d has unknown type or compression", errCorruptPack, i)
		}
		off += int64(b.Length)
		if off > dataEnd {
			return nil, fmt.Errorf("%w: entry %d extends past the data area", errCorruptPack, i)
		}
		out[i] = b
	}
	if off != dataEnd {
		return nil, fmt.Errorf("%w: blobs cover %d of %d data bytes", errCorruptPack, off, dataEnd)
	}
	return out, nil
}

// ParsePack decodes a whole pack plaintext's header; used by check and
// by the fuzzer.
func ParsePack(plain []byte) ([]PackedBlob, error) {
	if len(plain) < packTrailer {
		return nil, fmt.Errorf("%w: too short", errCorruptPack)
	}
	count, size, err := packHeaderSize(plain[len(plain)-packTrailer:], int64(len(plain)))
	if err != nil {
		return nil, err
	}
	return parsePackHeader(plain[int64(len(plain))-size:len(plain)-packTrailer], count, int64(len(plain)))
}
