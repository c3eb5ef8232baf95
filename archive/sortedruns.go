package archive

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"slices"
	"unsafe"
)

// sortedRuns sorts more records than the heap should hold — the entries
// of an index table being built (indexruns.go), the blob IDs check
// collects (checkrefs.go): perRun records on the heap, then sorted and
// written as one run of a scratch file, which is unlinked at once so that
// nothing outlives the process however it ends. The caller merges the
// runs (mergeSorted) with whatever else it reads in order. A run is
// written as T's memory and read back by the same process only, so T must
// hold no pointers.
type sortedRuns[T any] struct {
	perRun  int
	cmp     func(a, b T) int
	compact bool   // drop the records equal under cmp from a run
	dir     string // where the scratch file is made; "" is os.TempDir()
	pattern string // its name, for os.CreateTemp

	f       *os.File
	pending []T        // the records not yet in a run
	runs    [][2]int64 // first record and records of each run in f
	flushed int64      // records in f
	err     error      // the first create or write that failed: the runs are incomplete
}

func (s *sortedRuns[T]) add(v T) {
	if s.pending == nil {
		s.pending = make([]T, 0, s.perRun)
	}
	s.pending = append(s.pending, v)
	if len(s.pending) >= s.perRun {
		s.flush()
	}
}

// sorted sorts the records not yet in a run and returns them.
func (s *sortedRuns[T]) sorted() []T {
	slices.SortFunc(s.pending, s.cmp)
	if s.compact {
		s.pending = slices.CompactFunc(s.pending, func(a, b T) bool { return s.cmp(a, b) == 0 })
	}
	return s.pending
}

// flush writes the pending records, sorted, as a run.
func (s *sortedRuns[T]) flush() {
	if len(s.pending) == 0 {
		return
	}
	run := s.sorted()
	if s.f == nil && s.err == nil {
		f, err := os.CreateTemp(s.dir, s.pattern)
		if err != nil {
			s.err = err
		} else {
			_ = os.Remove(f.Name())
			s.f = f
		}
	}
	if s.err == nil {
		size := int64(unsafe.Sizeof(run[0]))
		raw := unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(run))), int64(len(run))*size)
		if _, err := s.f.WriteAt(raw, s.flushed*size); err != nil {
			s.err = err
		}
	}
	s.runs = append(s.runs, [2]int64{s.flushed, int64(len(run))})
	s.flushed += int64(len(run))
	s.pending = s.pending[:0]
}

// readers returns a reader of every run (a bufSize buffer each) and of
// the pending records, sorted: the inputs of mergeSorted.
func (s *sortedRuns[T]) readers(bufSize int) []func(*T) (bool, error) {
	var srcs []func(*T) (bool, error)
	for _, run := range s.runs {
		size := int64(unsafe.Sizeof(*new(T)))
		br := bufio.NewReaderSize(io.NewSectionReader(s.f, run[0]*size, run[1]*size), bufSize)
		left := run[1]
		srcs = append(srcs, func(v *T) (bool, error) {
			if left == 0 {
				return false, nil
			}
			left--
			if _, err := io.ReadFull(br, unsafe.Slice((*byte)(unsafe.Pointer(v)), size)); err != nil {
				return false, fmt.Errorf("reading a sorted run back: %w", err)
			}
			return true, nil
		})
	}
	return append(srcs, sliceReader(s.sorted()))
}

func (s *sortedRuns[T]) close() {
	if s.f != nil {
		s.f.Close()
		s.f = nil
	}
	s.pending = nil
}

// sliceReader reads the records of a sorted slice, an input of mergeSorted.
func sliceReader[T any](rest []T) func(*T) (bool, error) {
	return func(v *T) (bool, error) {
		if len(rest) == 0 {
			return false, nil
		}
		*v, rest = rest[0], rest[1:]
		return true, nil
	}
}

// mergeSorted calls emit with the records of the sorted inputs srcs, in
// order (a binary heap of the inputs by their current record). Records
// equal under cmp come in no particular order of their inputs; emit sees
// each of them.
func mergeSorted[T any](srcs []func(*T) (bool, error), cmp func(a, b T) int, emit func(*T) error) error {
	type input struct {
		cur  T
		next func(*T) (bool, error)
	}
	h := make([]*input, 0, len(srcs))
	for _, next := range srcs {
		in := &input{next: next}
		ok, err := next(&in.cur)
		if err != nil {
			return err
		}
		if ok {
			h = append(h, in)
		}
	}
	less := func(i, j int) bool { return cmp(h[i].cur, h[j].cur) < 0 }
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
	for len(h) > 0 {
		if err := emit(&h[0].cur); err != nil {
			return err
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
	return nil
}
