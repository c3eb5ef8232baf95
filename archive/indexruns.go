package archive

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"slices"
	"unsafe"
)

// A table built from the index files (buildTable) would need its
// entries in memory to sort them: 48 bytes a blob, 490 MB at 10 M blobs,
// and as much again for a moment while the chunks are copied into one
// table. Instead the entries are sorted runEntries at a time into runs of
// a scratch file (unlinked at once, like the index's spill file), and the
// runs — with the table the files are merged into, read back a page at a
// time — are merged straight into the new table file. The heap holds one
// run and a read buffer per run.

// runEntries is the entries sorted in memory into one run (26 MB); a
// variable for tests.
var runEntries = 1 << 19

// taggedEntry is an entry of a run and the attempt (indexBuilder.tag)
// that read it: entries of files that turn out superseded, or that
// failed half-way, are dropped by the merge.
type taggedEntry struct {
	e   indexEntry
	tag uint32
}

const taggedSize = int(unsafe.Sizeof(taggedEntry{}))

// baseTag tags the entries of the table the runs are merged with.
const baseTag = ^uint32(0)

// runSpill is the scratch file of a table build and the run being made.
type runSpill struct {
	f       *os.File
	pending []taggedEntry
	flushed int      // entries in the file
	runs    [][2]int // first entry and length of each run
	err     error    // the first write that failed; the build fails
}

func newRunSpill(dir string) (*runSpill, error) {
	f, err := os.CreateTemp(dir, ".tmp-runs-")
	if err != nil {
		return nil, err
	}
	// Unlinked at once: nothing outlives the process, however it ends.
	_ = os.Remove(f.Name())
	return &runSpill{f: f}, nil
}

func (s *runSpill) close() { s.f.Close() }

func (s *runSpill) push(e taggedEntry) {
	if s.pending == nil {
		s.pending = make([]taggedEntry, 0, runEntries)
	}
	s.pending = append(s.pending, e)
	if len(s.pending) == runEntries {
		s.flush()
	}
}

func compareTagged(a, b taggedEntry) int { return compareEntries(a.e, b.e) }

// flush sorts the pending entries and writes them as a run.
func (s *runSpill) flush() {
	if len(s.pending) == 0 {
		return
	}
	slices.SortFunc(s.pending, compareTagged)
	raw := unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(s.pending))), len(s.pending)*taggedSize)
	if _, err := s.f.WriteAt(raw, int64(s.flushed)*int64(taggedSize)); err != nil && s.err == nil {
		s.err = err
	}
	s.runs = append(s.runs, [2]int{s.flushed, len(s.pending)})
	s.flushed += len(s.pending)
	s.pending = s.pending[:0]
}

// mergeSource is one sorted input of the merge.
type mergeSource struct {
	cur  taggedEntry
	next func(*taggedEntry) (bool, error)
}

// mergeRuns writes to tw, in order and each blob once (its first place),
// the entries of base and of the files in live, their packs renumbered
// (dropPacks).
func (b *indexBuilder) mergeRuns(live map[ID]bool, base *indexTable, tw *tableWriter) error {
	s := b.runs
	liveTag := make([]bool, b.attempts)
	for _, f := range b.files {
		liveTag[f.tag] = live[f.id]
	}
	renum := b.dropPacks(live)
	var srcs []*mergeSource
	if base != nil {
		st := &tableStream{t: base}
		srcs = append(srcs, &mergeSource{next: func(te *taggedEntry) (bool, error) {
			e, ok := st.next()
			if !ok {
				return false, st.err
			}
			te.e, te.tag = *e, baseTag
			return true, nil
		}})
	}
	for _, run := range s.runs {
		br := bufio.NewReaderSize(io.NewSectionReader(s.f, int64(run[0])*int64(taggedSize), int64(run[1])*int64(taggedSize)), 128<<10)
		left := run[1]
		srcs = append(srcs, &mergeSource{next: func(te *taggedEntry) (bool, error) {
			if left == 0 {
				return false, nil
			}
			left--
			if _, err := io.ReadFull(br, unsafe.Slice((*byte)(unsafe.Pointer(te)), taggedSize)); err != nil {
				return false, fmt.Errorf("reading a run back: %w", err)
			}
			return true, nil
		}})
	}
	slices.SortFunc(s.pending, compareTagged)
	rest := s.pending
	srcs = append(srcs, &mergeSource{next: func(te *taggedEntry) (bool, error) {
		if len(rest) == 0 {
			return false, nil
		}
		*te, rest = rest[0], rest[1:]
		return true, nil
	}})

	// A binary heap of the sources by their current entry.
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
	less := func(i, j int) bool { return compareTagged(h[i].cur, h[j].cur) < 0 }
	down := func(i int) {
		for {
			l := 2*i + 1
			if l >= len(h) {
				return
			}
			if r := l + 1; r < len(h) && less(r, l) {
				l = r
			}
			if !less(l, i) {
				return
			}
			h[i], h[l] = h[l], h[i]
			i = l
		}
	}
	for i := len(h)/2 - 1; i >= 0; i-- {
		down(i)
	}
	var last ID
	first := true
	for len(h) > 0 {
		te := &h[0].cur
		if (te.tag == baseTag || liveTag[te.tag]) && (first || te.e.id != last) {
			e := te.e
			if renum != nil {
				e.pack = e.pack&^entryOrdMask | renum[e.ord()]
			}
			tw.add(&e)
			last, first = e.id, false
		}
		ok, err := h[0].next(&h[0].cur)
		if err != nil {
			return err
		}
		if !ok {
			h[0] = h[len(h)-1]
			h = h[:len(h)-1]
		}
		down(0)
	}
	s.pending = nil
	return nil
}
