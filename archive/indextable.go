package archive

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"github.com/zeebo/blake3"
)

// IndexTableCache is implemented by a Backend that keeps a local
// directory for the repository (archive/cache): LoadIndex then keeps the
// index there as a table file (docs/FORMAT.md "Local cache"), mapped into
// memory by the next command instead of decoded from the index files.
type IndexTableCache interface {
	// IndexTablePath returns where the table file lives and a logger
	// for what goes wrong with it; ok is false when there is no
	// usable cache.
	IndexTablePath(ctx context.Context) (path string, log *slog.Logger, ok bool)
}

// The table file (docs/FORMAT.md "Local cache" has it byte by byte): the
// entries exactly as indexEntry lays them out in memory (little-endian),
// in pages of tablePageEntries; then the index files it was made from,
// the pack IDs, a MAC per page, the directory of the entries' buckets
// (layer.dir), a trailer of counts and one MAC over all of that tail.
//
// Opening a table checks the tail only; a page of entries is checked
// against its MAC when a lookup first touches it. A command that looks up
// a few blobs — restore of one message — so reads a few pages of a table
// of 10 M blobs (490 MB) instead of all of them.
const (
	tableMagic       = "MVIXTAB2"
	tableIDSize      = 32
	tableEntrySize   = 48
	tableMACSize     = 32
	tableTrailerSize = 40
	// tablePageEntries is the entries of a page (48 KiB, twelve 4 KiB
	// memory pages): small enough that a lookup checks little it does
	// not need, large enough that the MACs are 1/1536 of the table.
	tablePageEntries = 1024
)

// The entries are used in place, so indexEntry must be exactly the 48
// bytes the file holds, in the same order.
var (
	_ [tableEntrySize - unsafe.Sizeof(indexEntry{})]struct{}
	_ [unsafe.Sizeof(indexEntry{}) - tableEntrySize]struct{}
)

// littleEndian reports whether the machine's byte order is the file's:
// elsewhere there is no table cache (the index is decoded every time).
var littleEndian = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

// Page states of an indexTable.
const (
	pageUnchecked = iota
	pageGood
	pageBad
)

// indexTable is a table file mapped read-only into memory.
type indexTable struct {
	live       []ID // the index files in force it holds
	superseded []ID // every file named in a read file's supersedes
	packs      []ID
	entries    []indexEntry // points into mem: not on the Go heap
	dir        []uint32     // points into mem
	bits       uint
	pageMACs   []byte // points into mem
	mem        []byte
	// f is the file mapped, kept open so that a new table can be
	// written from this one with pread (the name may be another
	// table's by then, and mapped pages read would count as the
	// process's memory).
	f *os.File
	// inPlace: the table is small enough (tableInPlace) that lookups
	// read its entries through the mapping rather than with pread.
	inPlace bool
	mac     func() *blake3.Hasher
	done    func(*blake3.Hasher)
	state   []atomic.Uint32 // per page: pageUnchecked, pageGood, pageBad
	// bad, if set, is called once, for the first page that fails.
	bad     func(page int)
	badOnce atomic.Bool
	// checked counts the pages checked (the Index's counter).
	checked *atomic.Int64
}

// tableMAC is the keyed BLAKE3 (the blob-ID key) of a table's contents:
// only this repository's keys make a table that LoadIndex trusts, so a
// table changed by anything else — bit rot, a torn write, another
// repository's table, tampering — is never used.
func (r *Repository) tableMAC() *blake3.Hasher {
	h := r.hashers.Get().(*blake3.Hasher)
	h.Reset()
	return h
}

// openIndexTable maps the table file at path and checks its tail: size,
// counts, MAC and directory; its pages are checked as they are used
// (indexTable.verify). A missing file is (nil, nil); a file that fails a
// check is an error (the caller removes it).
func (r *Repository) openIndexTable(path string) (*indexTable, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	t, err := r.mapIndexTable(f)
	if err != nil {
		f.Close()
		return nil, err
	}
	return t, nil
}

// mapIndexTable maps f and parses it; the table keeps f.
func (r *Repository) mapIndexTable(f *os.File) (*indexTable, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	size := fi.Size()
	if size < tableTrailerSize+tableMACSize || size > 1<<40 {
		return nil, fmt.Errorf("index table: size %d", size)
	}
	mem, err := syscall.Mmap(int(f.Fd()), 0, int(size), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("index table: mmap: %w", err)
	}
	// Lookups go anywhere in the entries: no read-ahead, no mapping of
	// neighbouring pages that would count as the process's memory.
	_ = syscall.Madvise(mem, syscall.MADV_RANDOM)
	t, err := r.parseIndexTable(mem)
	if err != nil {
		_ = syscall.Munmap(mem)
		return nil, err
	}
	t.f = f
	t.inPlace = len(t.entries)*tableEntrySize <= tableInPlace
	return t, nil
}

// tableLayout is where the parts of a table of the trailer's counts are.
type tableLayout struct {
	nlive, nsup, npacks, pageEntries, bits, n uint64
	pages, ids, dirOff, macsOff, size         uint64
}

func (l *tableLayout) compute() {
	l.pages = (l.n + l.pageEntries - 1) / l.pageEntries
	l.ids = tableEntrySize * l.n
	l.macsOff = l.ids + tableIDSize*(l.nlive+l.nsup+l.npacks)
	l.dirOff = l.macsOff + tableMACSize*l.pages
	l.size = l.dirOff + 4*(1<<l.bits+1) + tableTrailerSize + tableMACSize
}

// parseIndexTable checks a table's tail and makes an indexTable over its
// bytes (used in place).
func (r *Repository) parseIndexTable(mem []byte) (*indexTable, error) {
	size := uint64(len(mem))
	if size < tableTrailerSize+tableMACSize {
		return nil, fmt.Errorf("index table: not a table file")
	}
	tr := mem[size-tableTrailerSize-tableMACSize:]
	if string(tr[:8]) != tableMagic {
		return nil, fmt.Errorf("index table: not a table file of this version")
	}
	le := binary.LittleEndian
	l := tableLayout{
		nlive: uint64(le.Uint32(tr[8:])), nsup: uint64(le.Uint32(tr[12:])), npacks: uint64(le.Uint32(tr[16:])),
		pageEntries: uint64(le.Uint16(tr[20:])), bits: uint64(le.Uint16(tr[22:])), n: le.Uint64(tr[32:]),
	}
	if l.npacks > maxPacks || l.n > 1<<40 || l.pageEntries == 0 || l.bits > maxDirBits || le.Uint64(tr[24:]) != 0 || l.nlive+l.nsup > 1<<32 {
		return nil, fmt.Errorf("index table: bad trailer")
	}
	l.compute()
	if l.size != size {
		return nil, fmt.Errorf("index table: %d bytes, trailer says %d", size, l.size)
	}
	tail := mem[l.ids : size-tableMACSize]
	h := r.tableMAC()
	_, _ = h.Write(tail)
	var mac [tableMACSize]byte
	h.Sum(mac[:0])
	r.hashers.Put(h)
	if !bytes.Equal(mac[:], mem[size-tableMACSize:]) {
		return nil, fmt.Errorf("index table: MAC does not match")
	}
	readIDs := func(from, count uint64) []ID {
		out := make([]ID, count)
		for i := range out {
			copy(out[i][:], mem[l.ids+tableIDSize*(from+uint64(i)):])
		}
		return out
	}
	t := &indexTable{
		live:       readIDs(0, l.nlive),
		superseded: readIDs(l.nlive, l.nsup),
		packs:      readIDs(l.nlive+l.nsup, l.npacks),
		bits:       uint(l.bits),
		pageMACs:   mem[l.macsOff:l.dirOff],
		mem:        mem,
		mac:        r.tableMAC,
		done:       func(h *blake3.Hasher) { r.hashers.Put(h) },
		state:      make([]atomic.Uint32, l.pages),
	}
	if l.pageEntries != tablePageEntries {
		// Only the one size is written; any other would make verify's
		// page arithmetic wrong.
		return nil, fmt.Errorf("index table: pages of %d entries", l.pageEntries)
	}
	// The directory bounds every search: it must rise and end at n
	// (a MAC-valid table has one that does, but a slice out of range
	// must not be possible whatever the bytes).
	dirBytes := mem[l.dirOff : l.dirOff+4*(1<<l.bits+1)]
	t.dir = unsafe.Slice((*uint32)(unsafe.Pointer(unsafe.SliceData(dirBytes))), 1<<l.bits+1)
	prev := uint32(0)
	for _, d := range t.dir {
		if d < prev {
			return nil, fmt.Errorf("index table: bad directory")
		}
		prev = d
	}
	if uint64(prev) != l.n {
		return nil, fmt.Errorf("index table: directory ends at %d of %d", prev, l.n)
	}
	if l.n > 0 {
		t.entries = unsafe.Slice((*indexEntry)(unsafe.Pointer(&mem[0])), l.n)
	}
	return t, nil
}

// checkPage reports whether raw, page p's bytes, match the page's MAC and
// name packs the table lists.
func (t *indexTable) checkPage(p int, raw []byte) bool {
	h := t.mac()
	_, _ = h.Write(raw)
	var mac [tableMACSize]byte
	h.Sum(mac[:0])
	t.done(h)
	if !bytes.Equal(mac[:], t.pageMACs[p*tableMACSize:][:tableMACSize]) {
		return false
	}
	for off := 32; off < len(raw); off += tableEntrySize {
		if binary.LittleEndian.Uint32(raw[off:])&entryOrdMask >= uint32(len(t.packs)) {
			return false
		}
	}
	return true
}

// tableInPlace is the largest table whose entries lookups read through
// the mapping, at no system call a lookup: 128 MiB, 2.8 M blobs (a
// million messages with bodies). All of it may count in the process's
// RSS once looked up enough (the kernel maps 64 KiB around a fault), as
// a table on the heap would; a larger one is read with pread
// (readEntries), so that its size does not count: 490 MB at 10 M blobs,
// where `check` looks every blob up.
const tableInPlace = 128 << 20

// pagePool holds page-sized buffers for reading a table's entries.
var pagePool = sync.Pool{New: func() any { return new([tablePageEntries]indexEntry) }}

// readEntries reads entries [lo, hi) into into (pread, not the mapping:
// mapped pages a lookup touched — and with them the neighbours the kernel
// maps on a fault, 64 KiB — would count in the process's resident
// memory until it exits, the whole table once a command has looked up
// enough blobs; read, they stay the page cache's).
func (t *indexTable) readEntries(lo, hi int, into []indexEntry) bool {
	raw := unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(into))), (hi-lo)*tableEntrySize)
	if _, err := t.f.ReadAt(raw, int64(lo)*tableEntrySize); err != nil {
		t.fail(lo / tablePageEntries)
		return false
	}
	return true
}

// fail marks page p bad and reports it (once for the table).
func (t *indexTable) fail(p int) {
	t.state[p].Store(pageBad)
	if t.bad != nil && !t.badOnce.Swap(true) {
		t.bad(p)
	}
}

// pageLen is the number of entries of page p.
func (t *indexTable) pageLen(p int) int {
	return min(tablePageEntries, len(t.entries)-p*tablePageEntries)
}

// verify checks the pages that hold entries [lo, hi) once each and
// reports whether all of them are good. Concurrent callers may check the
// same page twice; the answer is the same.
func (t *indexTable) verify(lo, hi int) bool {
	if lo >= hi {
		return true
	}
	ok := true
	for p := lo / tablePageEntries; p <= (hi-1)/tablePageEntries; p++ {
		switch t.state[p].Load() {
		case pageGood:
			continue
		case pageBad:
			ok = false
			continue
		}
		buf := pagePool.Get().(*[tablePageEntries]indexEntry)
		page := buf[:t.pageLen(p)]
		good := t.readEntries(p*tablePageEntries, p*tablePageEntries+len(page), page) && t.checkPage(p, unsafe.Slice((*byte)(unsafe.Pointer(&page[0])), len(page)*tableEntrySize))
		pagePool.Put(buf)
		if t.checked != nil {
			t.checked.Add(1)
		}
		if good {
			t.state[p].Store(pageGood)
			continue
		}
		t.fail(p)
		ok = false
	}
	return ok
}

// each calls fn for every entry, in order, but those of damaged pages,
// a page at a time read with pread (readEntries).
func (t *indexTable) each(fn func(*indexEntry)) {
	buf := pagePool.Get().(*[tablePageEntries]indexEntry)
	defer pagePool.Put(buf)
	for p := range t.state {
		lo := p * tablePageEntries
		page := buf[:t.pageLen(p)]
		if !t.verify(lo, lo+len(page)) || !t.readEntries(lo, lo+len(page), page) {
			continue
		}
		for i := range page {
			fn(&page[i])
		}
	}
}

// install makes the table x's only layer, in place of what x holds, and
// unmaps it when x is garbage.
func (t *indexTable) install(x *Index) {
	x.packs = append(x.packs[:0], t.packs...)
	clear(x.packIdx)
	for i, p := range t.packs {
		x.packIdx[p] = uint32(i)
	}
	x.layers = []layer{{t: t.entries, dir: t.dir, bits: t.bits, tab: t}}
	t.checked = &x.stats.checked
	x.inLayer = len(t.entries)
	x.mapped = true
	// The cleanup's argument must not reach x (t does: t.checked), or
	// x would never be collected.
	runtime.AddCleanup(x, func(m mapping) { m.unmap() }, mapping{t.mem, t.f})
}

// mapping is a table's mapped bytes and file.
type mapping struct {
	mem []byte
	f   *os.File
}

func (m mapping) unmap() {
	_ = syscall.Munmap(m.mem)
	m.f.Close()
}

func (t *indexTable) unmap() { mapping{t.mem, t.f}.unmap() }

// tableWriter writes a table file from entries given in order: a page at
// a time, with its MAC, then the tail once the count is known.
type tableWriter struct {
	r        *Repository
	f        *os.File
	w        *bufio.Writer
	page     []byte
	n        uint64
	pageMACs []byte
	dir      []uint32
	bits     uint
	next     int // the next bucket whose start is not yet known
}

// newTableWriter starts a table in dir for at most maxN entries (which
// fixes the size of the directory).
func (r *Repository) newTableWriter(dir string, maxN int) (*tableWriter, error) {
	f, err := os.CreateTemp(dir, ".tmp-")
	if err != nil {
		return nil, err
	}
	tw := &tableWriter{r: r, f: f, w: bufio.NewWriterSize(f, 1<<20), page: make([]byte, 0, tablePageEntries*tableEntrySize), bits: dirBits(maxN)}
	tw.dir = make([]uint32, 1<<tw.bits+1)
	return tw, nil
}

// add appends e, which must sort after the entries added before.
func (tw *tableWriter) add(e *indexEntry) {
	l := layer{bits: tw.bits}
	for top := l.top(&e.id); tw.next <= top; tw.next++ {
		tw.dir[tw.next] = uint32(tw.n)
	}
	tw.page = append(tw.page, unsafe.Slice((*byte)(unsafe.Pointer(e)), tableEntrySize)...)
	tw.n++
	if len(tw.page) == cap(tw.page) {
		tw.flushPage()
	}
}

func (tw *tableWriter) flushPage() {
	if len(tw.page) == 0 {
		return
	}
	h := tw.r.tableMAC()
	_, _ = h.Write(tw.page)
	tw.pageMACs = h.Sum(tw.pageMACs)
	tw.r.hashers.Put(h)
	_, _ = tw.w.Write(tw.page)
	tw.page = tw.page[:0]
}

// abort removes the unfinished file.
func (tw *tableWriter) abort() {
	tw.f.Close()
	os.Remove(tw.f.Name())
}

// finish writes the tail, maps the file (so that what the caller uses is
// what it wrote, whatever another command renames into place meanwhile)
// and renames it to path. No fsync: a torn table fails its MAC and is
// rebuilt. A failed rename is logged by the caller; the table serves
// this command all the same.
func (tw *tableWriter) finish(path string, live, superseded, packs []ID) (*indexTable, error) {
	tw.flushPage()
	for ; tw.next < len(tw.dir); tw.next++ {
		tw.dir[tw.next] = uint32(tw.n)
	}
	h := tw.r.tableMAC()
	defer tw.r.hashers.Put(h)
	tail := bufio.NewWriterSize(multiWriter{tw.w, h}, 64<<10)
	for _, list := range [][]ID{live, superseded, packs} {
		for _, id := range list {
			_, _ = tail.Write(id[:])
		}
	}
	_, _ = tail.Write(tw.pageMACs)
	_, _ = tail.Write(unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(tw.dir))), 4*len(tw.dir)))
	var tr [tableTrailerSize]byte
	copy(tr[:], tableMagic)
	le := binary.LittleEndian
	le.PutUint32(tr[8:], uint32(len(live)))
	le.PutUint32(tr[12:], uint32(len(superseded)))
	le.PutUint32(tr[16:], uint32(len(packs)))
	le.PutUint16(tr[20:], tablePageEntries)
	le.PutUint16(tr[22:], uint16(tw.bits))
	le.PutUint64(tr[32:], tw.n)
	_, _ = tail.Write(tr[:])
	if err := tail.Flush(); err != nil {
		tw.abort()
		return nil, err
	}
	var mac [tableMACSize]byte
	h.Sum(mac[:0])
	_, _ = tw.w.Write(mac[:])
	if err := tw.w.Flush(); err != nil {
		tw.abort()
		return nil, err
	}
	t, err := tw.r.mapIndexTable(tw.f)
	if err != nil {
		tw.abort()
		return nil, err
	}
	// Every page was just made here: nothing to check.
	for i := range t.state {
		t.state[i].Store(pageGood)
	}
	if err := os.Rename(tw.f.Name(), path); err != nil {
		os.Remove(tw.f.Name())
		return t, fmt.Errorf("index table: %w", err)
	}
	return t, nil
}

// multiWriter writes to a file's buffer and a hash; neither fails but
// the buffer, whose error its Flush reports.
type multiWriter struct {
	w *bufio.Writer
	h *blake3.Hasher
}

func (m multiWriter) Write(p []byte) (int, error) {
	_, _ = m.h.Write(p)
	return m.w.Write(p)
}

// tableStream reads a table's entries in order with pread, checking each
// page against its MAC (a page already checked through the mapping is
// read again all the same: a new table must not copy what it has not
// checked).
type tableStream struct {
	t   *indexTable
	buf []indexEntry
	i   int // next in buf
	p   int // next page
	err error
}

func (s *tableStream) next() (*indexEntry, bool) {
	if s.i == len(s.buf) {
		if s.err != nil || s.p*tablePageEntries >= len(s.t.entries) {
			return nil, false
		}
		n := min(tablePageEntries, len(s.t.entries)-s.p*tablePageEntries)
		if s.buf == nil {
			s.buf = make([]indexEntry, tablePageEntries)
		}
		s.buf = s.buf[:n]
		raw := unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(s.buf))), n*tableEntrySize)
		if _, err := s.t.f.ReadAt(raw, int64(s.p)*tablePageEntries*tableEntrySize); err != nil {
			s.err = fmt.Errorf("index table: %w", err)
			return nil, false
		}
		if !s.t.checkPage(s.p, raw) {
			s.err = fmt.Errorf("index table: page %d does not match its MAC", s.p)
			return nil, false
		}
		s.p++
		s.i = 0
	}
	s.i++
	return &s.buf[s.i-1], true
}
