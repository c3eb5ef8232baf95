package archive

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
)

// readBuffers are the buffers one ReadBlobs call reuses; data passed to
// its callback is only valid during the call.
type readBuffers struct {
	plain bytes.Buffer
	blob  []byte
}

// ReadBlobs reads the given blobs of one pack and calls fn for each with
// its verified plaintext, in pack order; the slice is only valid during
// the call. When the blobs cover a good part
// of the pack, the whole pack is fetched and its SHA-256 name checked;
// otherwise only the age chunks that hold them are fetched.
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
		bufs := r.readBufs.Get().(*readBuffers)
		defer r.readBufs.Put(bufs)
		plain, err := r.readPackInto(ctx, pack, &bufs.plain)
		if err != nil {
			return err
		}
		for _, b := range blobs {
			end := int64(b.Offset) + int64(b.Length)
			if end > int64(len(plain)) {
				return fmt.Errorf("pack %s blob %s: %w: beyond the end of the pack", pack, b.ID, ErrCorrupt)
			}
			data, err := r.decodeBlobInto(bufs.blob, pack, b, plain[b.Offset:end])
			if cap(data) > cap(bufs.blob) && b.Compression == Zstd {
				bufs.blob = data[:0]
			}
			if err != nil {
				return err
			}
			if err := fn(b, data); err != nil {
				return err
			}
		}
		return nil
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
