package archive

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"slices"
	"unsafe"
)

// check asks of every blob a tree names whether the index holds it: some
// 20 M blobs at 10 M messages. Looked up one at a time, each is a search
// of a table too large to read through its mapping (tableInPlace): a
// pread of its bucket, anywhere in 490 MB — 20 M of them, most of
// check's 700 s. Instead the IDs are collected (refSet), sorted and made
// unique, and walked against each sorted layer of the index in one pass
// (Index.missingOf): a mapped table is read a page at a time, in order,
// once.

// refRunIDs is the IDs a refSet sorts in memory into one run (16 MiB); a
// variable for tests.
var refRunIDs = 1 << 19

// refSet collects blob IDs in bounded memory: sorted runs of refRunIDs,
// each without duplicates, in a scratch file (unlinked at once, like the
// index's spill file) once there is more than one.
type refSet struct {
	dir  string // where to make the scratch file; "" is os.TempDir()
	buf  []ID
	f    *os.File
	runs [][2]int64 // first ID and length of each run in f
	n    int64      // IDs in f
	err  error      // the first write that failed
}

func compareIDs(a, b ID) int { return bytes.Compare(a[:], b[:]) }

func (s *refSet) add(id ID) {
	if s.buf == nil {
		s.buf = make([]ID, 0, refRunIDs)
	}
	s.buf = append(s.buf, id)
	if len(s.buf) == cap(s.buf) {
		s.flush()
	}
}

// flush writes the IDs in memory as a run.
func (s *refSet) flush() {
	slices.SortFunc(s.buf, compareIDs)
	s.buf = slices.Compact(s.buf)
	if s.f == nil && s.err == nil {
		f, err := os.CreateTemp(s.dir, "mailvault-refs-*.tmp")
		if err != nil {
			s.err = err
			return
		}
		// Unlinked at once: nothing outlives the process.
		_ = os.Remove(f.Name())
		s.f = f
	}
	if s.err != nil {
		return
	}
	raw := unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(s.buf))), len(s.buf)*len(ID{}))
	if _, err := s.f.WriteAt(raw, s.n*int64(len(ID{}))); err != nil {
		s.err = err
		return
	}
	s.runs = append(s.runs, [2]int64{s.n, int64(len(s.buf))})
	s.n += int64(len(s.buf))
	s.buf = s.buf[:0]
}

func (s *refSet) close() {
	if s.f != nil {
		s.f.Close()
	}
}

// each calls fn for every ID added, in order, once each.
func (s *refSet) each(fn func(ID)) error {
	if s.err != nil {
		return fmt.Errorf("blob references: %w", s.err)
	}
	slices.SortFunc(s.buf, compareIDs)
	s.buf = slices.Compact(s.buf)
	type source struct {
		cur  ID
		next func(*ID) (bool, error)
	}
	var srcs []*source
	for _, run := range s.runs {
		br := bufio.NewReaderSize(io.NewSectionReader(s.f, run[0]*int64(len(ID{})), run[1]*int64(len(ID{}))), 64<<10)
		left := run[1]
		srcs = append(srcs, &source{next: func(id *ID) (bool, error) {
			if left == 0 {
				return false, nil
			}
			left--
			if _, err := io.ReadFull(br, id[:]); err != nil {
				return false, fmt.Errorf("blob references: reading a run back: %w", err)
			}
			return true, nil
		}})
	}
	rest := s.buf
	srcs = append(srcs, &source{next: func(id *ID) (bool, error) {
		if len(rest) == 0 {
			return false, nil
		}
		*id, rest = rest[0], rest[1:]
		return true, nil
	}})
	h := srcs[:0]
	for _, src := range srcs {
		ok, err := src.next(&src.cur)
		if err != nil {
			return err
		}
		if ok {
			h = append(h, src)
		}
	}
	// The runs are few (one per 16 MiB of IDs): the smallest current ID
	// by a scan rather than a heap.
	var last ID
	first := true
	for len(h) > 0 {
		m := 0
		for i := 1; i < len(h); i++ {
			if compareIDs(h[i].cur, h[m].cur) < 0 {
				m = i
			}
		}
		if id := h[m].cur; first || id != last {
			fn(id)
			last, first = id, false
		}
		ok, err := h[m].next(&h[m].cur)
		if err != nil {
			return err
		}
		if !ok {
			h = slices.Delete(h, m, m+1)
		}
	}
	return nil
}

// layerCursor reads a layer's entries in order: a mapped table read
// with pread (one page at a time, each checked against its MAC once),
// other tables in place. A damaged page is skipped: its blobs read as
// absent, as a lookup reads them.
type layerCursor struct {
	l    *layer
	buf  []indexEntry
	i    int // next in buf
	next int // the first entry not yet in buf
}

func (c *layerCursor) entry() (*indexEntry, bool) {
	for c.i == len(c.buf) {
		lo := c.next
		if lo >= len(c.l.t) {
			return nil, false
		}
		hi := min(lo+tablePageEntries, len(c.l.t))
		c.next, c.i = hi, 0
		switch t := c.l.tab; {
		case t == nil:
			c.buf = c.l.t[lo:hi]
		case !t.verify(lo, hi):
			c.buf = c.buf[:0]
		case t.inPlace:
			c.buf = c.l.t[lo:hi]
		default:
			if cap(c.buf) < tablePageEntries {
				c.buf = make([]indexEntry, tablePageEntries)
			}
			c.buf = c.buf[:hi-lo]
			if !t.readEntries(lo, hi, c.buf) {
				c.buf = c.buf[:0]
			}
		}
	}
	return &c.buf[c.i], true
}

// missingOf calls missing for every ID of s that x does not hold, in
// order, reading each layer once in order instead of searching it for
// every ID (see the top of this file).
func (x *Index) missingOf(s *refSet, missing func(ID)) error {
	x.mu.RLock()
	defer x.mu.RUnlock()
	cursors := make([]layerCursor, len(x.layers))
	for i := range x.layers {
		cursors[i] = layerCursor{l: &x.layers[i]}
	}
	return s.each(func(id ID) {
		for i := range cursors {
			c := &cursors[i]
			for {
				e, ok := c.entry()
				if !ok {
					break
				}
				if cmp := compareIDs(e.id, id); cmp == 0 {
					return
				} else if cmp > 0 {
					break
				}
				c.i++
			}
		}
		// Blobs added since the load (IndexPacks): few, and not in a
		// mapped table.
		for i := range x.spilled {
			if _, ok := x.searchSpilled(&x.spilled[i], id); ok {
				return
			}
		}
		if _, ok := x.overlay[id]; !ok {
			missing(id)
		}
	})
}
