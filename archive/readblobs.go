package archive

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"sort"

	"filippo.io/age"
)

// readBuffers are the buffers one ReadBlobs call reuses; data passed to
// its callback is only valid during the call.
type readBuffers struct {
	stored, blob []byte
}

// ReadBlobs reads the given blobs of one pack and calls fn for each with
// its verified plaintext, in pack order; the slice is only valid during
// the call. Every blob is checked against its keyed ID before fn sees it.
//
// When the blobs cover a good part of the pack, the pack is streamed once
// through age, blobs are picked out on the way (only one is in memory at a
// time), and the SHA-256 of the whole file is checked at the end; otherwise
// only the age chunks that hold the blobs are fetched.
func (r *Repository) ReadBlobs(ctx context.Context, pack ID, blobs []PackedBlob, fn func(PackedBlob, []byte) error) error {
	if len(blobs) == 0 {
		return nil
	}
	sort.Slice(blobs, func(i, j int) bool { return blobs[i].Offset < blobs[j].Offset })
	var need int64
	for _, b := range blobs {
		need += int64(b.Length)
	}
	size, err := r.be.Stat(ctx, PackFile, pack.String())
	if err != nil {
		return err
	}
	if need*4 >= size {
		return r.streamBlobs(ctx, pack, blobs, fn)
	}
	ra, _, err := r.decryptPackAt(ctx, pack, size)
	if err != nil {
		return err
	}
	for _, b := range blobs {
		stored := make([]byte, b.Length)
		if _, err := ra.ReadAt(stored, int64(b.Offset)); err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("pack %s blob %s: %w: %v", pack, b.ID, ErrCorrupt, err)
		}
		data, err := r.DecodeBlob(pack, b, stored)
		if err != nil {
			return err
		}
		if err := fn(b, data); err != nil {
			return err
		}
	}
	return nil
}

// streamBlobs is ReadBlobs reading the whole pack sequentially.
func (r *Repository) streamBlobs(ctx context.Context, pack ID, blobs []PackedBlob, fn func(PackedBlob, []byte) error) error {
	ident, err := r.identityFor(PackFile)
	if err != nil {
		return err
	}
	rc, err := r.be.Get(ctx, PackFile, pack.String())
	if err != nil {
		return err
	}
	defer rc.Close()
	h := sha256.New()
	tee := io.TeeReader(rc, h)
	dr, err := age.Decrypt(tee, ident)
	if err != nil {
		return fmt.Errorf("pack %s: %w: %v", pack, ErrCorrupt, err)
	}
	bufs := r.readBufs.Get().(*readBuffers)
	defer r.readBufs.Put(bufs)
	var pos int64
	for _, b := range blobs {
		if int64(b.Offset) < pos {
			return fmt.Errorf("pack %s blob %s: %w: overlaps the blob before it", pack, b.ID, ErrCorrupt)
		}
		if _, err := io.CopyN(io.Discard, dr, int64(b.Offset)-pos); err != nil {
			return fmt.Errorf("pack %s: %w: %v", pack, ErrCorrupt, err)
		}
		if cap(bufs.stored) < int(b.Length) {
			bufs.stored = make([]byte, b.Length)
		}
		stored := bufs.stored[:b.Length]
		if _, err := io.ReadFull(dr, stored); err != nil {
			return fmt.Errorf("pack %s blob %s: %w: %v", pack, b.ID, ErrCorrupt, err)
		}
		pos = int64(b.Offset) + int64(b.Length)
		data, err := r.decodeBlobInto(bufs.blob, pack, b, stored)
		if err != nil {
			return err
		}
		if b.Compression == Zstd && cap(data) > cap(bufs.blob) {
			bufs.blob = data[:0]
		}
		if err := fn(b, data); err != nil {
			return err
		}
	}
	// The rest authenticates the pack as a whole and completes its hash.
	if _, err := io.Copy(io.Discard, dr); err != nil {
		return fmt.Errorf("pack %s: %w: %v", pack, ErrCorrupt, err)
	}
	if _, err := io.Copy(io.Discard, tee); err != nil {
		return fmt.Errorf("read pack %s: %w", pack, err)
	}
	if ID(h.Sum(nil)) != pack {
		return fmt.Errorf("pack %s: %w: content does not match its name (SHA-256)", pack, ErrCorrupt)
	}
	return nil
}
