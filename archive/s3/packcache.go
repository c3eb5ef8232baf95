package s3

import (
	"bytes"
	"container/list"
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"

	"github.com/minio/minio-go/v7"

	"github.com/mailvault/mailvault/archive"
)

// packCache serves small ranged reads of pack files from 1 MiB blocks kept
// in memory, and remembers packs' sizes.
//
// Loading a tree goes through age.DecryptReaderAt, which asks for the
// header (4 KiB), the final chunk and then every 64 KiB chunk of the blob
// separately, after a Stat of the pack: loading one tree made one HEAD and
// three GETs, a 1 MiB blob seventeen. On a local disk those are cheap
// reads; over S3 each is a round trip and a request billed. A restore or
// an incremental backup loads hundreds of trees from the same few tree
// packs (bench/compare.sh --s3 counted 1,450 requests for a 20 MB corpus
// where restic made 16), so reads of up to one age chunk are served from
// whole aligned blocks instead: one GET per block (or per two blocks, for
// a read across a boundary), shared by every read that falls in them.
//
// Longer reads come from archive.ReadBlobs, which fetches the span of
// chunks it needs in one request: those go straight to the server (a
// block fetch would read up to 2 MiB for a span of 70 KiB, and copy it
// twice), unless the blocks they fall in are cached already.
//
// Nothing cached can be stale: a pack is named by the SHA-256 of its
// content and never overwritten (nooverwrite.go), and Remove forgets it.
// (Undelete copies a pack's first version back over a replaced one, but
// that version is the content the name stands for. A block of a replaced
// version is not kept when the pack's size is known and differs, and
// would fail authentication anyway.) The cache lives as long as the
// Backend, one command.
type packCache struct {
	mu     sync.Mutex
	blocks map[blockKey]*list.Element // of *block
	lru    list.List                  // most recently used at the front
	sizes  map[string]int64           // object key → size
}

const (
	// cacheBlock is the unit of a cached read: large enough that the
	// chunks of a blob and neighbouring small blobs share a GET, small
	// enough that a scattered read does not fetch much it does not need
	// (a GET of 1 MiB costs about as long as one of 64 KiB on any link
	// with more than a millisecond of latency).
	cacheBlock = 1 << 20
	// cacheFill is the longest read that fetches blocks when it misses:
	// one age chunk with its tag, what age.DecryptReaderAt reads at a
	// time.
	cacheFill = 64<<10 + 16
	// cacheBlocks bounds the memory (16 MiB): the blocks of the tree
	// packs a restore or backup walks, and of the packs whose headers
	// check or prune reads.
	cacheBlocks = 16
	// cacheSizes bounds the remembered sizes (about 100 bytes each).
	cacheSizes = 1 << 16
)

type blockKey struct {
	key   string
	index int64
}

type block struct {
	key   blockKey
	ready chan struct{} // closed when data or err is set
	data  []byte
	err   error
}

func newPackCache() *packCache {
	return &packCache{blocks: map[blockKey]*list.Element{}, sizes: map[string]int64{}}
}

// size returns a remembered object size.
func (c *packCache) size(key string) (int64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, ok := c.sizes[key]
	return n, ok
}

func (c *packCache) setSize(key string, n int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.sizes) >= cacheSizes {
		clear(c.sizes)
	}
	c.sizes[key] = n
}

// forget drops everything cached of an object.
func (c *packCache) forget(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.sizes, key)
	for k, e := range c.blocks {
		if k.key == key {
			c.lru.Remove(e)
			delete(c.blocks, k)
		}
	}
}

// cachedRange reads length bytes at offset of a pack through the block
// cache; ok is false when the read should go to the server instead (it is
// longer than cacheFill and not all cached). Reading past the end gives
// what there is, as a ranged GET does. The pack's size is not needed: a
// block's GET asks for the whole block and the server answers with what
// the object holds of it.
func (b *Backend) cachedRange(ctx context.Context, t archive.FileType, name, key string, offset, length int64) (rc io.ReadCloser, ok bool, err error) {
	if length <= 0 || length > cacheBlock {
		return nil, false, nil
	}
	first, last := offset/cacheBlock, (offset+length-1)/cacheBlock
	if length > cacheFill && !b.cache.has(key, first, last) {
		return nil, false, nil
	}
	blocks, err := b.cache.get(ctx, key, first, last, func(from, to int64) ([][]byte, error) {
		data, size, err := b.getBlocks(ctx, key, from, to)
		if err != nil || size < 0 {
			return data, err
		}
		// An object that is not the size it was is not the pack its
		// name stands for (overwritten behind our back); its bytes
		// are not kept, so the original is read once it is back.
		if known, ok := b.cache.size(key); ok && known != size {
			return nil, fmt.Errorf("read blocks: the object is %d bytes, was %d", size, known)
		}
		b.cache.setSize(key, size)
		return data, nil
	})
	if err != nil {
		return nil, true, wrapErr(t, name, err)
	}
	out := make([]byte, 0, length)
	end := offset + length
	for j, data := range blocks {
		base := (first + int64(j)) * cacheBlock
		lo := max(offset-base, 0)
		hi := min(end-base, int64(len(data)))
		if lo >= hi {
			break // past the end of the object
		}
		out = append(out, data[lo:hi]...)
	}
	return io.NopCloser(bytes.NewReader(out)), true, nil
}

// has reports whether blocks first..last of an object are all cached (or
// being fetched).
func (c *packCache) has(key string, first, last int64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := first; i <= last; i++ {
		if _, ok := c.blocks[blockKey{key, i}]; !ok {
			return false
		}
	}
	return true
}

// get returns blocks first..last of an object, fetching those that are
// neither cached nor being fetched by another caller (who is then waited
// for) with one call of fetch for the run from the first to the last of
// them.
func (c *packCache) get(ctx context.Context, key string, first, last int64, fetch func(from, to int64) ([][]byte, error)) ([][]byte, error) {
	all := make([]*block, 0, last-first+1)
	var mine []*block
	c.mu.Lock()
	for i := first; i <= last; i++ {
		k := blockKey{key, i}
		if e, ok := c.blocks[k]; ok {
			c.lru.MoveToFront(e)
			all = append(all, e.Value.(*block))
			continue
		}
		bl := &block{key: k, ready: make(chan struct{})}
		c.blocks[k] = c.lru.PushFront(bl)
		all = append(all, bl)
		mine = append(mine, bl)
	}
	for c.lru.Len() > cacheBlocks {
		old := c.lru.Back()
		c.lru.Remove(old)
		delete(c.blocks, old.Value.(*block).key)
	}
	c.mu.Unlock()

	if len(mine) > 0 {
		from, to := mine[0].key.index, mine[len(mine)-1].key.index
		data, err := fetch(from, to)
		for _, bl := range mine {
			if err != nil {
				bl.err = err
			} else {
				bl.data = data[bl.key.index-from]
			}
		}
		if err != nil {
			// Not kept: the next read tries again.
			c.mu.Lock()
			for _, bl := range mine {
				if e, ok := c.blocks[bl.key]; ok && e.Value == bl {
					c.lru.Remove(e)
					delete(c.blocks, bl.key)
				}
			}
			c.mu.Unlock()
		}
		for _, bl := range mine {
			close(bl.ready)
		}
	}
	out := make([][]byte, len(all))
	for i, bl := range all {
		select {
		case <-bl.ready:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if bl.err != nil {
			return nil, bl.err
		}
		out[i] = bl.data
	}
	return out, nil
}

// getBlocks reads blocks from..to of an object in one ranged GET, body
// included in the retried attempt (a reset mid-body is tried again), and
// returns them with the object's size (-1 when the answer does not say).
// A block at or past the object's end comes back short or empty.
func (b *Backend) getBlocks(ctx context.Context, key string, from, to int64) ([][]byte, int64, error) {
	var opts minio.GetObjectOptions
	off, end := from*cacheBlock, (to+1)*cacheBlock
	if err := opts.SetRange(off, end-1); err != nil {
		return nil, 0, err
	}
	core := minio.Core{Client: b.client}
	out := make([][]byte, to-from+1)
	size := int64(-1)
	err := b.retry(ctx, func() error {
		clear(out)
		rc, info, h, err := core.GetObject(ctx, b.cfg.Bucket, key, opts)
		if minio.ToErrorResponse(err).Code == "InvalidRange" {
			return nil // the object ends before off: empty blocks
		}
		if err != nil {
			return err
		}
		defer rc.Close()
		size = objectSize(h.Get("Content-Range"))
		// The server sends what the object holds of the range: its
		// Content-Length says how much, so a cut-off body is told
		// from a short object.
		n := info.Size
		if n < 0 {
			data, err := io.ReadAll(io.LimitReader(rc, end-off+1))
			if err != nil {
				return err
			}
			rc = io.NopCloser(bytes.NewReader(data))
			n = int64(len(data))
		}
		if n > end-off {
			return fmt.Errorf("read blocks at %d: %d bytes for a range of %d", off, n, end-off)
		}
		// Each block in its own array, so that evicting one frees it.
		for i := range out {
			out[i] = make([]byte, min(max(n-int64(i)*cacheBlock, 0), cacheBlock))
			if _, err := io.ReadFull(rc, out[i]); err != nil {
				return fmt.Errorf("read %d bytes at %d: %w", n, off, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	return out, size, nil
}

// objectSize is the complete length of a Content-Range header ("bytes
// 0-99/1234", RFC 9110 section 14.4), or -1.
func objectSize(contentRange string) int64 {
	_, total, ok := strings.Cut(contentRange, "/")
	if !ok {
		return -1
	}
	n, err := strconv.ParseInt(total, 10, 64)
	if err != nil || n < 0 {
		return -1
	}
	return n
}
