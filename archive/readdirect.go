package archive

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"syscall"
	"unsafe"
)

// Files from directMin bytes up to the chunker's maximum are read ahead
// of the workers whole, each into its piece of one buffer of directBudget
// bytes, by a goroutine each (readDirect: from the disk into the piece,
// past the page cache, where the file is not cached); smaller ones are
// read by the worker through the page cache after a posix_fadvise
// read-ahead (readAhead), where per-file system calls, not bytes, are the
// cost. The budget bounds the bytes read ahead and not yet stored: about
// as much as the queue of jobs had in the page cache before, some 25 ms
// of the workers' work at 600 MB/s, while a file of a few MB reads in a
// few ms. It replaces the read buffers of those files: the peak RSS of a
// full backup of the large-mail corpus grew by 16–20 MB (docs/
// PERFORMANCE.md, "fullpar").
const (
	directMin    = 128 << 10
	directBudget = 16 << 20
	// directAlign is the alignment O_DIRECT asks of buffer addresses,
	// file offsets and lengths: the logical block size, 512 or 4096.
	directAlign = 4096
)

// readingAhead is a file being read ahead of its worker: done is closed
// when n (the bytes of buf that hold the file's start) and err are set.
type readingAhead struct {
	done chan struct{}
	buf  []byte
	n    int
	err  error
}

// directBuffers is the memory files are read ahead into: one buffer of
// limit bytes, aligned for O_DIRECT, made when first needed, and handed
// out in pieces, each at the first gap between the pieces still out that
// holds it; a piece's room comes back as soon as it is given back. Nothing
// is wasted on sizes, nor reallocated: pieces of a pool of sized buffers
// came back in one size and were wanted in another, and the pool made new
// ones. (A ring, where room came back only with the oldest piece, held
// the queue while one worker compressed a large file and the others,
// done with the files after it, waited for work: the start of a full
// backup of large mail, docs/PERFORMANCE.md "overlap".)
type directBuffers struct {
	limit int

	mu     sync.Mutex
	cond   sync.Cond
	buf    []byte
	pieces []directPiece // handed out and not yet given back, by start
}

// directPiece is buf[start:end].
type directPiece struct {
	start, end int
}

func newDirectBuffers(limit int) *directBuffers {
	d := &directBuffers{limit: limit}
	d.cond.L = &d.mu
	return d
}

// tryGet returns a buffer of length n (a multiple of directAlign, at most
// the limit), or nil while the buffers handed out leave no room for it.
func (d *directBuffers) tryGet(n int) []byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.getLocked(n)
}

// get is tryGet waiting for room; nil if ctx ends first.
func (d *directBuffers) get(ctx context.Context, n int) []byte {
	stop := context.AfterFunc(ctx, func() {
		d.mu.Lock()
		d.cond.Broadcast()
		d.mu.Unlock()
	})
	defer stop()
	d.mu.Lock()
	defer d.mu.Unlock()
	for ctx.Err() == nil {
		if b := d.getLocked(n); b != nil {
			return b
		}
		d.cond.Wait()
	}
	return nil
}

func (d *directBuffers) getLocked(n int) []byte {
	if d.buf == nil {
		d.buf = hugeBuffer(d.limit)
	}
	if n > len(d.buf) {
		return nil
	}
	// The first gap that holds n: before each piece, then after the last.
	i, start := 0, 0
	for ; i < len(d.pieces); i++ {
		if start+n <= d.pieces[i].start {
			break
		}
		start = d.pieces[i].end
	}
	if start+n > len(d.buf) {
		return nil
	}
	d.pieces = slices.Insert(d.pieces, i, directPiece{start: start, end: start + n})
	return d.buf[start : start+n : start+n]
}

// put gives a buffer from get or tryGet back.
func (d *directBuffers) put(b []byte) {
	start := int(uintptr(unsafe.Pointer(unsafe.SliceData(b))) - uintptr(unsafe.Pointer(unsafe.SliceData(d.buf))))
	d.mu.Lock()
	if i, ok := slices.BinarySearchFunc(d.pieces, start, func(p directPiece, s int) int { return cmp.Compare(p.start, s) }); ok {
		d.pieces = slices.Delete(d.pieces, i, i+1)
		d.cond.Broadcast()
	}
	d.mu.Unlock()
}

// hugeBuffer returns a buffer of n bytes aligned to 2 MiB, which the
// kernel is asked to back with huge pages: a direct read pins the
// buffer's pages one by one and describes each to the device, and the
// hashing and compression that read it afterwards walk it a TLB entry a
// page.
func hugeBuffer(n int) []byte {
	const huge = 2 << 20
	b := make([]byte, n+huge)
	off := -int(uintptr(unsafe.Pointer(unsafe.SliceData(b)))) & (huge - 1)
	b = b[off : off+n : off+n]
	adviseHuge(b)
	return b
}

// alignedBuffer returns a buffer of n bytes whose address is a multiple
// of directAlign.
func alignedBuffer(n int) []byte {
	b := make([]byte, n+directAlign)
	off := -int(uintptr(unsafe.Pointer(unsafe.SliceData(b)))) & (directAlign - 1)
	return b[off : off+n : off+n]
}

// wantsDirect says whether a file of the listed size is read ahead into a
// buffer of its own (see directMin).
func (b *backup) wantsDirect(size int64) bool {
	return b.direct != nil && size >= directMin && size < int64(b.r.cfg.ChunkMax) && directLen(size) <= b.direct.limit
}

// startDirect starts reading j's file (open, of the listed size) into buf,
// whose length is the size rounded up past it: a file that fills buf grew
// since it was listed.
func (b *backup) startDirect(j *job, buf []byte) {
	ra := &readingAhead{done: make(chan struct{}), buf: buf}
	j.ahead = ra
	fd := j.fd
	go func() {
		ra.n, ra.err = readDirect(fd, ra.buf)
		close(ra.done)
	}()
}

// directLen is the length of the buffer a file of the listed size is read
// into: one byte more, so that a file that grew fills it, rounded up to
// whole blocks.
func directLen(size int64) int {
	return (int(size) + directAlign) &^ (directAlign - 1)
}

// finishAhead waits for j's read ahead, if any, to finish and gives its
// buffer back: after that j.fd is the worker's alone.
func (b *backup) finishAhead(j *job) {
	if j.ahead != nil {
		<-j.ahead.done
		b.direct.put(j.ahead.buf)
		j.ahead = nil
	}
}

// preadFrom reads fd into buf from offset off until buf is full, a read
// returns nothing (the end of the file) or, with stopShort, a read returns
// less than asked; it returns where its data ends in buf.
func preadFrom(fd int, buf []byte, off int, stopShort bool) (int, error) {
	for off < len(buf) {
		m, err := syscall.Pread(fd, buf[off:], int64(off))
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return off, err
		}
		if m == 0 {
			break
		}
		off += m
		if stopShort && off < len(buf) {
			break
		}
	}
	return off, nil
}
