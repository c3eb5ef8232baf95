package archive

import (
	"bytes"
	"fmt"
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
// each without duplicates.
type refSet = sortedRuns[ID]

func newRefSet(dir string) *refSet {
	return &refSet{perRun: refRunIDs, cmp: compareIDs, compact: true, dir: dir, pattern: "mailvault-refs-*.tmp"}
}

func compareIDs(a, b ID) int { return bytes.Compare(a[:], b[:]) }

// eachRef calls fn for every ID added to s, in order, once each.
func eachRef(s *refSet, fn func(ID)) error {
	if s.err != nil {
		return fmt.Errorf("blob references: %w", s.err)
	}
	var last ID
	first := true
	return mergeSorted(s.readers(64<<10), compareIDs, func(id *ID) error {
		if first || *id != last {
			fn(*id)
			last, first = *id, false
		}
		return nil
	})
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
	return eachRef(s, func(id ID) {
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
