package archive

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	"filippo.io/age"
)

// The read path of the repository: a pack's header, one blob, a whole pack,
// each fetched, authenticated, decrypted and decompressed. (Batched reads
// for restore and check are in readblobs.go; saver.go holds the write path.)

// decryptPackAt opens a pack for random access: only the 64 KiB age
// chunks covering what is read are fetched and authenticated.
func (r *Repository) decryptPackAt(ctx context.Context, id ID, size int64) (io.ReaderAt, int64, error) {
	ident, err := r.identityFor(PackFile)
	if err != nil {
		return nil, 0, err
	}
	if size <= 0 {
		if size, err = r.be.Stat(ctx, PackFile, id.String()); err != nil {
			return nil, 0, err
		}
	}
	ra, plainSize, err := age.DecryptReaderAt(readerAt{ctx, r.be, PackFile, id.String()}, size, ident)
	if err != nil {
		return nil, 0, fmt.Errorf("pack %s: %w: %v", id, ErrCorrupt, err)
	}
	return ra, plainSize, nil
}

// ReadPackHeader reads a pack's header through ranged reads.
func (r *Repository) ReadPackHeader(ctx context.Context, id ID, size int64) ([]PackedBlob, error) {
	ra, plainSize, err := r.decryptPackAt(ctx, id, size)
	if err != nil {
		return nil, err
	}
	if plainSize < int64(packTrailer) {
		return nil, fmt.Errorf("pack %s: %w: too short", id, ErrCorrupt)
	}
	trailer := make([]byte, packTrailer)
	if _, err := ra.ReadAt(trailer, plainSize-int64(packTrailer)); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("pack %s: %w: %v", id, ErrCorrupt, err)
	}
	format, hsize, err := packHeaderSize(trailer, plainSize)
	if err != nil {
		return nil, fmt.Errorf("pack %s: %w", id, err)
	}
	hdr := make([]byte, hsize-packTrailer)
	if _, err := ra.ReadAt(hdr, plainSize-hsize); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("pack %s: %w: %v", id, ErrCorrupt, err)
	}
	blobs, err := parsePackHeader(hdr, format, plainSize)
	if err != nil {
		return nil, fmt.Errorf("pack %s: %w", id, err)
	}
	return blobs, nil
}

// LoadBlob reads, decrypts, decompresses and authenticates one blob.
func (r *Repository) LoadBlob(ctx context.Context, id ID) ([]byte, error) {
	pack, b, ok := r.idx.Lookup(id)
	if !ok {
		return nil, fmt.Errorf("blob %s: %w: not in any index", id, ErrCorrupt)
	}
	ra, _, err := r.decryptPackAt(ctx, pack, 0)
	if err != nil {
		return nil, err
	}
	stored := make([]byte, b.Length)
	if _, err := ra.ReadAt(stored, int64(b.Offset)); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("pack %s blob %s: %w: %v", pack, id, ErrCorrupt, err)
	}
	return r.DecodeBlob(pack, b, stored)
}

// DecodeBlob turns a blob's stored bytes into its plaintext and verifies
// that it hashes to its ID.
func (r *Repository) DecodeBlob(pack ID, b PackedBlob, stored []byte) ([]byte, error) {
	return r.decodeBlobInto(nil, pack, b, stored)
}

// decodeBlobInto is DecodeBlob decoding into scratch (reused when it is
// large enough). The steps are those of the compression's bits: a zstd
// frame is decompressed, then a base64 form re-encoded (b64form.go).
func (r *Repository) decodeBlobInto(scratch []byte, pack ID, b PackedBlob, stored []byte) ([]byte, error) {
	if b.Compression != Uncompressed && cap(scratch) < int(b.RawLength) {
		scratch = make([]byte, 0, b.RawLength)
	}
	plain := stored
	var err error
	switch b.Compression {
	case Uncompressed:
	case Zstd:
		plain, err = r.zdec.DecodeAll(stored, scratch[:0])
	case Base64:
		plain, err = appendB64Text(scratch[:0], stored, int(b.RawLength))
	case Base64Zstd:
		// The form is some 3/4 of the text; its buffer goes back to the
		// pool the write path shares.
		form := r.zbufs.get(int(b.RawLength)/4*3 + b64FormMaxHeader)[:0]
		if form, err = r.zdec.DecodeAll(stored, form); err == nil {
			plain, err = appendB64Text(scratch[:0], form, int(b.RawLength))
		}
		r.zbufs.put(form)
	default:
		err = fmt.Errorf("unknown compression %v", b.Compression)
	}
	if err != nil {
		return nil, fmt.Errorf("pack %s blob %s: %w: %v", pack, b.ID, ErrCorrupt, err)
	}
	if uint32(len(plain)) != b.RawLength || r.BlobID(plain) != b.ID {
		return nil, fmt.Errorf("pack %s blob %s: %w: content does not match its ID", pack, b.ID, ErrCorrupt)
	}
	return plain, nil
}

// ReadPack fetches a whole pack, verifies its name (SHA-256), decrypts it
// and returns the plaintext.
// The pack is streamed: its SHA-256 is computed on the way through age and
// checked before anything is returned, so only the plaintext is held in
// memory.
func (r *Repository) ReadPack(ctx context.Context, id ID) ([]byte, error) {
	return r.readPack(ctx, id, 0)
}

// readPack is ReadPack given the pack file's size, when known (0: not):
// the plaintext, a little shorter than the file, then fits the buffer as
// first allocated, where growing by doubling held up to twice the pack
// (check --read-data reads two packs at once).
func (r *Repository) readPack(ctx context.Context, id ID, size int64) ([]byte, error) {
	var buf bytes.Buffer
	if size > 0 && size < 1<<31 {
		buf.Grow(int(size) + bytes.MinRead)
	}
	ident, err := r.identityFor(PackFile)
	if err != nil {
		return nil, err
	}
	rc, err := r.be.Get(ctx, PackFile, id.String())
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	h := sha256.New()
	body := &transportReader{r: rc}
	tee := io.TeeReader(body, h)
	// age reports a body that breaks off as a chunk that does not
	// authenticate; a failed download is a read error, not damage (check
	// would name a sound pack as damaged).
	dr, err := age.Decrypt(tee, ident)
	if err == nil {
		_, err = buf.ReadFrom(dr)
	}
	if err != nil {
		if body.err != nil {
			return nil, fmt.Errorf("read pack %s: %w", id, body.err)
		}
		return nil, fmt.Errorf("pack %s: %w: %v", id, ErrCorrupt, err)
	}
	if _, err := io.Copy(io.Discard, tee); err != nil {
		return nil, fmt.Errorf("read pack %s: %w", id, err)
	}
	if ID(h.Sum(nil)) != id {
		return nil, fmt.Errorf("pack %s: %w: content does not match its name (SHA-256)", id, ErrCorrupt)
	}
	return buf.Bytes(), nil
}

// transportReader remembers the first error, other than io.EOF, of the
// reader it wraps, so that a decoder's complaint can be told apart from a
// download that failed under it.
type transportReader struct {
	r   io.Reader
	err error
}

func (t *transportReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if err != nil && err != io.EOF && t.err == nil {
		t.err = err
	}
	return n, err
}

// unwrapCache is an identity that remembers the file keys it unwrapped,
// by the header stanzas they were wrapped in. A pack's age header is the
// same every time the pack is read, and a read of one blob (a backup's
// parent trees, page by page) unwrapped it again: an X25519 for every
// blob, 7 % of the CPU of an incremental backup at 1 M messages. A key
// taken from here is checked against the header's MAC as a fresh one is.
type unwrapCache struct {
	id   age.Identity
	mu   sync.Mutex
	keys map[string][]byte // by stanzaKey
}

// unwrapCacheMax bounds the keys kept (some 150 bytes each); the cache
// starts over when it is full.
const unwrapCacheMax = 4096

func newUnwrapCache(id age.Identity) *unwrapCache {
	return &unwrapCache{id: id, keys: map[string][]byte{}}
}

func (c *unwrapCache) Unwrap(stanzas []*age.Stanza) ([]byte, error) {
	k := stanzaKey(stanzas)
	c.mu.Lock()
	fk, ok := c.keys[k]
	c.mu.Unlock()
	if ok {
		return bytes.Clone(fk), nil
	}
	fk, err := c.id.Unwrap(stanzas)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if len(c.keys) >= unwrapCacheMax {
		clear(c.keys)
	}
	c.keys[k] = bytes.Clone(fk)
	c.mu.Unlock()
	return fk, nil
}

// stanzaKey is the stanzas' fields, each prefixed by its length.
func stanzaKey(stanzas []*age.Stanza) string {
	var b []byte
	field := func(s []byte) {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	for _, s := range stanzas {
		b = binary.AppendUvarint(b, uint64(len(s.Args)))
		field([]byte(s.Type))
		for _, a := range s.Args {
			field([]byte(a))
		}
		field(s.Body)
	}
	return string(b)
}
