package archive

import (
	"errors"
	"os"
	"syscall"
)

// packWriteBuf is the size of a pack writer's buffer, and of its writes.
const packWriteBuf = 256 << 10

// packWriter buffers a pack's sealed bytes on their way to its temporary
// file and writes them past the page cache (O_DIRECT) where it can: a
// full backup writes its packs once, fsyncs them, and reads them again
// only on restore or check. Written through the page cache, each of a
// full backup's pack bytes cost the kernel a page to allocate, a copy
// into it and its writeback and reclaim later — on the reference machine
// (a virtual one), while the cache was full, 1.45 of a large-mail full
// backup's 7.5 CPU-s in write(2), ~0.1 s direct (docs/PERFORMANCE.md,
// "cpu2x") — and it evicted mail a server was using. O_DIRECT asks for
// aligned addresses, offsets and lengths: the buffer is aligned and every
// write but the last is a whole buffer; the last one writes its aligned
// part directly and the tail through the cache. Where the file system
// refuses O_DIRECT (tmpfs, some network file systems) it writes through
// the cache.
type packWriter struct {
	f      *os.File
	buf    []byte // aligned for O_DIRECT; buf[:n] is waiting
	n      int
	direct bool
}

func newPackWriter(f *os.File) *packWriter {
	return &packWriter{f: f, buf: alignedBuffer(packWriteBuf), direct: setDirect(f, true) == nil}
}

// Write buffers p, writing each buffer as it fills.
func (w *packWriter) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		k := copy(w.buf[w.n:], p)
		w.n += k
		written += k
		p = p[k:]
		if w.n == len(w.buf) {
			if err := w.write(w.buf); err != nil {
				return written, err
			}
			w.n = 0
		}
	}
	return written, nil
}

// write writes b, whose length is a multiple of directAlign while the
// writer is direct, at the file's offset.
func (w *packWriter) write(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	n, err := w.f.Write(b)
	if err != nil && w.direct && n == 0 && errors.Is(err, syscall.EINVAL) {
		// O_DIRECT was set but the file system refuses direct writes
		// after all: through the cache from here on.
		w.stopDirect()
		_, err = w.f.Write(b)
	}
	return err
}

func (w *packWriter) stopDirect() {
	if w.direct {
		w.direct = false
		_ = setDirect(w.f, false)
	}
}

// Flush writes what is waiting: the writes after it go through the cache.
func (w *packWriter) Flush() error {
	b := w.buf[:w.n]
	w.n = 0
	if w.direct {
		aligned := len(b) &^ (directAlign - 1)
		if err := w.write(b[:aligned]); err != nil {
			return err
		}
		b = b[aligned:]
		w.stopDirect()
	}
	return w.write(b)
}
