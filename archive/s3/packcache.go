package s3

import (
	"bytes"
	"container/list"
	"context"
	"fmt"
	"io"
	"sync"

	"github.com/minio/minio-go/v7"

	"github.com/mailvault/mailvault/archive"
)

// packCache serves small ranged reads of pack files from 1 MiB blocks kept
// in memory, and remembers packs' sizes.
//
// The archive reads single blobs through age.DecryptReaderAt, which asks
// for the header (4 KiB), the final chunk and then every 64 KiB chunk of
// the blob separately, after a Stat of the pack: loading one tree made
// one HEAD and three GETs, a 1 MiB blob seventeen. On a local disk those
// are cheap reads; over S3 each is a round trip and a request billed. A
// restore or an incremental backup loads hundreds of trees from the same
// few tree packs (bench/compare.sh --s3 counted 1,450 requests for a
// 20 MB corpus where restic made 16), so reads of up to a block are
// served from whole aligned blocks instead: one GET per block, shared by
// every read that falls in it.
//
// Nothing cached can be stale: a pack is named by the SHA-256 of its
// content and never overwritten (nooverwrite.go), and Remove forgets it.
// (Undelete copies a pack's first version back over a replaced one, but
// that version is the content the name stands for; a replaced version
// cached before would fail authentication, as it would uncached.) The
// cache lives as long as the Backend, one command. Whole-pack reads
// (restores stream packs with Get) bypass it.
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
	// cacheBlocks bounds the memory (16 MiB): two restore workers each
	// reading a pack's header, final chunk and current blocks, plus the
	// blocks of the tree packs.
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
// cache; size is the pack's size. Reading past the end gives what there
// is, as a ranged GET does.
func (b *Backend) cachedRange(ctx context.Context, t archive.FileType, name, key string, size, offset, length int64) (io.ReadCloser, error) {
	end := min(offset+length, size)
	if offset >= end {
		return io.NopCloser(bytes.NewReader(nil)), nil
	}
	out := make([]byte, 0, end-offset)
	for i := offset / cacheBlock; i*cacheBlock < end; i++ {
		data, err := b.cache.get(ctx, blockKey{key, i}, func() ([]byte, error) {
			return b.getBlock(ctx, key, i*cacheBlock, min(cacheBlock, size-i*cacheBlock))
		})
		if err != nil {
			return nil, wrapErr(t, name, err)
		}
		lo := max(offset-i*cacheBlock, 0)
		hi := min(end-i*cacheBlock, int64(len(data)))
		out = append(out, data[lo:hi]...)
	}
	return io.NopCloser(bytes.NewReader(out)), nil
}

// get returns a block, fetching it with fetch unless it is cached or
// already being fetched by another caller (who is then waited for).
func (c *packCache) get(ctx context.Context, k blockKey, fetch func() ([]byte, error)) ([]byte, error) {
	c.mu.Lock()
	if e, ok := c.blocks[k]; ok {
		c.lru.MoveToFront(e)
		bl := e.Value.(*block)
		c.mu.Unlock()
		select {
		case <-bl.ready:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if bl.err != nil {
			return nil, bl.err
		}
		return bl.data, nil
	}
	bl := &block{key: k, ready: make(chan struct{})}
	c.blocks[k] = c.lru.PushFront(bl)
	for c.lru.Len() > cacheBlocks {
		old := c.lru.Back()
		c.lru.Remove(old)
		delete(c.blocks, old.Value.(*block).key)
	}
	c.mu.Unlock()

	bl.data, bl.err = fetch()
	if bl.err != nil {
		// Not kept: the next read tries again.
		c.mu.Lock()
		if e, ok := c.blocks[k]; ok && e.Value == bl {
			c.lru.Remove(e)
			delete(c.blocks, k)
		}
		c.mu.Unlock()
	}
	close(bl.ready)
	return bl.data, bl.err
}

// getBlock reads n bytes at off of an object in one ranged GET, body
// included in the retried attempt (a reset mid-body is tried again).
func (b *Backend) getBlock(ctx context.Context, key string, off, n int64) ([]byte, error) {
	var opts minio.GetObjectOptions
	if err := opts.SetRange(off, off+n-1); err != nil {
		return nil, err
	}
	core := minio.Core{Client: b.client}
	buf := make([]byte, n)
	err := b.retry(ctx, func() error {
		rc, _, _, err := core.GetObject(ctx, b.cfg.Bucket, key, opts)
		if err != nil {
			return err
		}
		defer rc.Close()
		if _, err := io.ReadFull(rc, buf); err != nil {
			return fmt.Errorf("read %d bytes at %d: %w", n, off, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return buf, nil
}
