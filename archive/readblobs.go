package archive

import (
	"bytes"
	"context"
	"crypto/cipher"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sort"

	"filippo.io/age"
	"golang.org/x/crypto/chacha20poly1305"
	"golang.org/x/crypto/hkdf"
)

// An age file (https://age-encryption.org/v1, the "Payload" section) is a
// text header, a 16-byte nonce and the STREAM payload: the plaintext in
// chunks of 64 KiB, each sealed with ChaCha20-Poly1305 under a key derived
// from the file key and the nonce, with the chunk's index as the AEAD
// nonce and a flag marking the final chunk. Every chunk is authenticated
// on its own, so any run of chunks can be fetched and opened by itself.
const (
	ageChunk    = 64 << 10
	ageEncChunk = ageChunk + chacha20poly1305.Overhead
	ageNonce    = 16
	// ageHeaderWindow is how much of a pack's start is read for its age
	// header and nonce: 184 bytes for the one X25519 recipient packs are
	// sealed to; a header that does not fit is refused as corrupt.
	ageHeaderWindow = 16 << 10
)

// spanGap is the largest run of unneeded bytes ReadBlobs reads through
// rather than split a pack's read into two requests (and the largest
// distance from the pack's start at which the first span takes in the
// age header). Over S3 a request costs a round trip and a fetch of a few
// MiB about as long, and restic's restore reads whole ranges too; see
// docs/PERFORMANCE.md for the measurement behind the figure.
const spanGap = 4 << 20

// readBuffers are the buffers one ReadBlobs call reuses; data passed to
// its callback is only valid during the call.
type readBuffers struct {
	chunk, plain, stored, blob []byte
}

// keptBuffer is the largest blob buffer put back into the pool: a restore
// runs several ReadBlobs at once, and each keeping a buffer the size of
// the largest attachment it met would hold that much for the rest of the
// restore.
const keptBuffer = 1 << 20

func (r *Repository) putReadBuffers(bufs *readBuffers) {
	if cap(bufs.stored) > keptBuffer {
		bufs.stored = nil
	}
	if cap(bufs.blob) > keptBuffer {
		bufs.blob = nil
	}
	r.readBufs.Put(bufs)
}

// chunkSpan is a run of age chunks [first, last] fetched in one request.
type chunkSpan struct{ first, last int64 }

// planSpans groups the chunks holding blobs (sorted by offset) into
// spans, splitting where more than gap bytes lie between two blobs'
// chunks.
func planSpans(blobs []PackedBlob, gap int64) []chunkSpan {
	var spans []chunkSpan
	for _, b := range blobs {
		first := int64(b.Offset) / ageChunk
		// A blob of length 0 is "in" the chunk holding its offset (the
		// pack header follows the data area, so that chunk exists).
		last := (int64(b.Offset) + max(int64(b.Length), 1) - 1) / ageChunk
		if n := len(spans); n > 0 && (first-spans[n-1].last-1)*ageEncChunk <= gap {
			spans[n-1].last = max(spans[n-1].last, last)
			continue
		}
		spans = append(spans, chunkSpan{first, last})
	}
	return spans
}

// ReadBlobs reads the given blobs of one pack and calls fn for each with
// its verified plaintext, in pack order; the slice is only valid during
// the call. Every blob is checked against its keyed ID before fn sees it,
// and every age chunk it comes from is authenticated.
//
// The chunks holding the blobs are fetched in as few ranged reads as
// spanGap allows — one per pack unless the blobs lie far apart — and
// opened one at a time as they stream in, so memory holds one chunk and
// one blob. The age header comes with the first span when that starts
// near the pack's start, else in one small read before it.
//
// The STREAM payload is opened here rather than through
// age.DecryptReaderAt, which needs the pack's size (a HEAD over S3),
// reads and authenticates the final chunk before anything else and then
// reads chunk by chunk: four requests or more per pack where one does.
// age supplies the header parsing and the file key (DecryptHeader);
// what is left is the key derivation and the chunk nonces of the spec's
// "Payload" section. Not knowing the pack's size, a full-length chunk is
// opened as a middle chunk and else as the final one, as age's own
// streaming reader does; truncation cannot hide a blob's bytes, which
// must all be there and match its ID.
func (r *Repository) ReadBlobs(ctx context.Context, pack ID, blobs []PackedBlob, fn func(PackedBlob, []byte) error) error {
	return r.readBlobs(ctx, pack, blobs, spanGap, fn)
}

// readBlobs is ReadBlobs reading through at most gap unneeded bytes
// (spanGap for ReadBlobs).
func (r *Repository) readBlobs(ctx context.Context, pack ID, blobs []PackedBlob, gap int64, fn func(PackedBlob, []byte) error) error {
	if len(blobs) == 0 {
		return nil
	}
	ident, err := r.identityFor(PackFile)
	if err != nil {
		return err
	}
	sort.Slice(blobs, func(i, j int) bool { return blobs[i].Offset < blobs[j].Offset })
	for i := 1; i < len(blobs); i++ {
		if int64(blobs[i].Offset) < int64(blobs[i-1].Offset)+int64(blobs[i-1].Length) {
			return fmt.Errorf("pack %s blob %s: %w: overlaps the blob before it", pack, blobs[i].ID, ErrCorrupt)
		}
	}
	spans := planSpans(blobs, gap)
	bufs := r.readBufs.Get().(*readBuffers)
	defer r.putReadBuffers(bufs)
	if cap(bufs.chunk) < ageEncChunk {
		bufs.chunk = make([]byte, ageEncChunk)
	}
	if cap(bufs.plain) < ageChunk {
		bufs.plain = make([]byte, ageChunk)
	}
	pr := &packReader{r: r, ctx: ctx, pack: pack, blobs: blobs, fn: fn, bufs: bufs}

	// The first read starts at the pack's start: the header alone, or
	// the header and the first span.
	withHeader := spans[0].first*ageEncChunk <= gap
	n := int64(ageHeaderWindow)
	if withHeader {
		n += (spans[0].last + 1) * ageEncChunk
	}
	var payloadOff int64
	err = pr.fetch(0, n, func(rd io.Reader) error {
		prefix := make([]byte, ageHeaderWindow)
		m, err := io.ReadFull(rd, prefix)
		if err != nil && err != io.ErrUnexpectedEOF { // a short pack, not a broken body (readSpan)
			return fmt.Errorf("read pack %s: %w", pack, err)
		}
		if payloadOff, err = pr.openHeader(prefix[:m], ident); err != nil || !withHeader {
			return err
		}
		spans[0].first = 0
		return pr.readSpan(io.MultiReader(bytes.NewReader(prefix[payloadOff:m]), rd), spans[0])
	})
	if err != nil {
		return err
	}
	if withHeader {
		spans = spans[1:]
	}
	for _, sp := range spans {
		err := pr.fetch(payloadOff+sp.first*ageEncChunk, (sp.last-sp.first+1)*ageEncChunk, func(rd io.Reader) error {
			return pr.readSpan(rd, sp)
		})
		if err != nil {
			return err
		}
	}
	if pr.next < len(blobs) {
		// The spans cover every blob, and a pack that ends early fails
		// in readSpan; this is a last line of defence.
		return fmt.Errorf("pack %s blob %s: %w: not found in the pack", pack, blobs[pr.next].ID, ErrCorrupt)
	}
	return nil
}

// fetch reads n bytes at off of the pack in one request and hands them to
// read. What read leaves (at most the header window) is read through to
// the end, so that an HTTP connection goes back to the pool.
//
// A body that breaks midway is not re-requested here: the S3 backend
// resumes its bodies at the byte where they broke (archive/s3/resume.go,
// which says why there), for this and every other reader, and a local
// file does not break. What reaches readSpan is a body that ended or an
// error the backend gave up on.
func (pr *packReader) fetch(off, n int64, read func(io.Reader) error) error {
	rc, err := pr.r.be.GetRange(pr.ctx, PackFile, pr.pack.String(), off, n)
	if err != nil {
		return err
	}
	defer rc.Close()
	if err := read(rc); err != nil {
		return err
	}
	if _, err := io.Copy(io.Discard, rc); err != nil {
		return fmt.Errorf("read pack %s: %w", pr.pack, err)
	}
	return nil
}

// packReader is one ReadBlobs call's state: the payload key and the next
// blob to fill.
type packReader struct {
	r     *Repository
	ctx   context.Context
	pack  ID
	blobs []PackedBlob
	fn    func(PackedBlob, []byte) error
	bufs  *readBuffers
	aead  cipher.AEAD
	// next is the first blob not yet given to fn.
	next int
}

// openHeader parses and unwraps the age header at the start of prefix,
// derives the payload key and returns the offset of the first chunk.
func (pr *packReader) openHeader(prefix []byte, ident age.Identity) (int64, error) {
	hdr, err := age.ExtractHeader(bytes.NewReader(prefix))
	if err != nil {
		return 0, fmt.Errorf("pack %s: %w: age header: %v", pr.pack, ErrCorrupt, err)
	}
	fileKey, err := age.DecryptHeader(hdr, ident)
	if err != nil {
		return 0, fmt.Errorf("pack %s: %w: %v", pr.pack, ErrCorrupt, err)
	}
	payloadOff := len(hdr) + ageNonce
	if payloadOff > len(prefix) {
		return 0, fmt.Errorf("pack %s: %w: no payload after the age header", pr.pack, ErrCorrupt)
	}
	// The payload key, per the age spec: HKDF-SHA-256 of the file key,
	// salted with the nonce, with info "payload".
	key := make([]byte, chacha20poly1305.KeySize)
	if _, err := io.ReadFull(hkdf.New(sha256.New, fileKey, prefix[len(hdr):payloadOff], []byte("payload")), key); err != nil {
		return 0, err
	}
	if pr.aead, err = chacha20poly1305.New(key); err != nil {
		return 0, err
	}
	return int64(payloadOff), nil
}

// readSpan reads the chunks of sp from src, which starts at chunk
// sp.first, opens those that hold blobs and hands the blobs to fn.
func (pr *packReader) readSpan(src io.Reader, sp chunkSpan) error {
	buf := pr.bufs.chunk[:ageEncChunk]
	for c := sp.first; c <= sp.last; c++ {
		n, err := io.ReadFull(src, buf)
		switch {
		case errors.Is(err, io.EOF):
			if pr.next < len(pr.blobs) {
				return fmt.Errorf("pack %s blob %s: %w: pack ends at chunk %d", pr.pack, pr.blobs[pr.next].ID, ErrCorrupt, c)
			}
			return nil
		case err == io.ErrUnexpectedEOF:
			// A short chunk is the final one. Only ReadFull's own
			// short-read signal, compared exactly: a body that broke
			// (a backend that gave up resuming wraps the transport's
			// io.ErrUnexpectedEOF) is a read error, not a short pack
			// whose last chunk then fails to authenticate as ErrCorrupt.
		case err != nil:
			return fmt.Errorf("read pack %s: %w", pr.pack, err)
		}
		start := c * ageChunk
		if pr.next >= len(pr.blobs) || int64(pr.blobs[pr.next].Offset) >= start+ageChunk {
			continue // a gap chunk, read through
		}
		plain, err := pr.open(buf[:n], c, n < ageEncChunk)
		if err != nil {
			return err
		}
		if err := pr.take(plain, start); err != nil {
			return err
		}
		if len(plain) < ageChunk && pr.next < len(pr.blobs) {
			b := pr.blobs[pr.next]
			return fmt.Errorf("pack %s blob %s: %w: starts past the pack's end", pr.pack, b.ID, ErrCorrupt)
		}
	}
	return nil
}

// open authenticates and decrypts chunk c in place. A full-length chunk
// may still be the final one (when the plaintext fills its last chunk).
func (pr *packReader) open(ct []byte, c int64, final bool) ([]byte, error) {
	var nonce [chacha20poly1305.NonceSize]byte
	// An 11-byte big-endian chunk counter, then the final-chunk flag.
	binary.BigEndian.PutUint64(nonce[3:11], uint64(c))
	// Not in place: a failed Open clears its output.
	out := pr.bufs.plain[:0]
	if !final {
		if plain, err := pr.aead.Open(out, nonce[:], ct, nil); err == nil {
			return plain, nil
		}
	}
	nonce[11] = 1
	plain, err := pr.aead.Open(out, nonce[:], ct, nil)
	if err != nil {
		return nil, fmt.Errorf("pack %s: %w: age chunk %d does not authenticate", pr.pack, ErrCorrupt, c)
	}
	return plain, nil
}

// take copies the parts of blobs in plain (the plaintext at offset start)
// and hands each complete blob to fn.
func (pr *packReader) take(plain []byte, start int64) error {
	end := start + int64(len(plain))
	for pr.next < len(pr.blobs) {
		b := pr.blobs[pr.next]
		off, bend := int64(b.Offset), int64(b.Offset)+int64(b.Length)
		if off >= end {
			return nil
		}
		var stored []byte
		if off >= start && bend <= end {
			stored = plain[off-start : bend-start] // whole in this chunk
		} else {
			if cap(pr.bufs.stored) < int(b.Length) {
				pr.bufs.stored = make([]byte, b.Length)
			}
			stored = pr.bufs.stored[:b.Length]
			lo := max(off, start)
			copy(stored[lo-off:], plain[lo-start:min(bend, end)-start])
			if bend > end {
				if len(plain) < ageChunk {
					return fmt.Errorf("pack %s blob %s: %w: extends past the pack's end", pr.pack, b.ID, ErrCorrupt)
				}
				return nil // continues in the next chunk
			}
		}
		data, err := pr.r.decodeBlobInto(pr.bufs.blob, pr.pack, b, stored)
		if err != nil {
			return err
		}
		if b.Compression != Uncompressed && cap(data) > cap(pr.bufs.blob) {
			pr.bufs.blob = data[:0]
		}
		if err := pr.fn(b, data); err != nil {
			return err
		}
		pr.next++
	}
	return nil
}
