package archive

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
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

// The table file: a header, the index files it was made from, the pack
// IDs, the entries exactly as indexEntry lays them out in memory
// (little-endian), and a MAC. docs/FORMAT.md "Local cache" has it byte by
// byte.
const (
	tableMagic      = "MVIXTAB1"
	tableHeaderSize = 32
	tableIDSize     = 32
	tableEntrySize  = 48
	tableMACSize    = 32
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

// indexTable is a table file mapped read-only into memory.
type indexTable struct {
	live       []ID // the index files in force it holds
	superseded []ID // every file named in a read file's supersedes
	packs      []ID
	entries    []indexEntry // points into mem: not on the Go heap
	mem        []byte
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

// openIndexTable maps the table file at path and checks it whole: size,
// header, MAC and every entry's pack ordinal. A missing file is (nil,
// nil); a file that fails a check is an error (the caller removes it).
// The check reads every page once, which costs no decoding and no heap.
func (r *Repository) openIndexTable(path string) (*indexTable, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	size := fi.Size()
	if size < tableHeaderSize+tableMACSize || size > 1<<40 {
		return nil, fmt.Errorf("index table: size %d", size)
	}
	mem, err := syscall.Mmap(int(f.Fd()), 0, int(size), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("index table: mmap: %w", err)
	}
	t, err := r.parseIndexTable(mem)
	if err != nil {
		_ = syscall.Munmap(mem)
		return nil, err
	}
	return t, nil
}

// parseIndexTable checks a table's bytes and makes an indexTable over
// them (used in place).
func (r *Repository) parseIndexTable(mem []byte) (*indexTable, error) {
	if len(mem) < tableHeaderSize+tableMACSize || string(mem[:8]) != tableMagic {
		return nil, fmt.Errorf("index table: not a table file")
	}
	le := binary.LittleEndian
	nlive, nsup, npacks := uint64(le.Uint32(mem[8:])), uint64(le.Uint32(mem[12:])), uint64(le.Uint32(mem[16:]))
	n := le.Uint64(mem[24:])
	if le.Uint32(mem[20:]) != 0 || npacks > maxPacks || n > 1<<40 {
		return nil, fmt.Errorf("index table: bad header")
	}
	ids := nlive + nsup + npacks
	if want := tableHeaderSize + tableIDSize*ids + tableEntrySize*n + tableMACSize; want != uint64(len(mem)) {
		return nil, fmt.Errorf("index table: %d bytes, header says %d", len(mem), want)
	}
	body := mem[:len(mem)-tableMACSize]
	h := r.tableMAC()
	_, _ = h.Write(body)
	var mac [tableMACSize]byte
	h.Sum(mac[:0])
	r.hashers.Put(h)
	if !bytes.Equal(mac[:], mem[len(body):]) {
		return nil, fmt.Errorf("index table: MAC does not match")
	}
	readIDs := func(from, count uint64) []ID {
		out := make([]ID, count)
		for i := range out {
			off := tableHeaderSize + tableIDSize*(from+uint64(i))
			copy(out[i][:], mem[off:])
		}
		return out
	}
	t := &indexTable{
		live:       readIDs(0, nlive),
		superseded: readIDs(nlive, nsup),
		packs:      readIDs(nlive+nsup, npacks),
		mem:        mem,
	}
	if n > 0 {
		off := tableHeaderSize + tableIDSize*ids
		t.entries = unsafe.Slice((*indexEntry)(unsafe.Pointer(&mem[off])), n)
	}
	for i := range t.entries {
		if uint64(t.entries[i].ord()) >= npacks {
			return nil, fmt.Errorf("index table: entry %d: pack %d of %d", i, t.entries[i].ord(), npacks)
		}
	}
	return t, nil
}

// install makes the table x's first layer (x is new) and unmaps it when
// x is garbage.
func (t *indexTable) install(x *Index) {
	x.packs = append(x.packs[:0], t.packs...)
	for i, p := range t.packs {
		x.packIdx[p] = uint32(i)
	}
	x.layers = []layer{newLayer(t.entries)}
	x.inLayer = len(t.entries)
	x.mapped = true
	runtime.AddCleanup(x, func(mem []byte) { _ = syscall.Munmap(mem) }, t.mem)
}

func (t *indexTable) unmap() { _ = syscall.Munmap(t.mem) }

// writeIndexTable writes x's tables (its whole index as loaded: no
// overlay) to path, atomically: a temporary file renamed into place, so
// that concurrent commands see a whole table or none. No fsync: a torn
// table fails its MAC and is rebuilt.
func (r *Repository) writeIndexTable(x *Index, path string, live, superseded []ID) (err error) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	if len(x.overlay) > 0 || len(x.layers) > 2 || len(x.spilled) > 0 {
		return fmt.Errorf("index table: index is not as loaded")
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	h := r.tableMAC()
	defer r.hashers.Put(h)
	w := bufio.NewWriterSize(io.MultiWriter(f, h), 1<<20)
	var hdr [tableHeaderSize]byte
	copy(hdr[:], tableMagic)
	le := binary.LittleEndian
	le.PutUint32(hdr[8:], uint32(len(live)))
	le.PutUint32(hdr[12:], uint32(len(superseded)))
	le.PutUint32(hdr[16:], uint32(len(x.packs)))
	le.PutUint64(hdr[24:], uint64(x.inLayer))
	_, _ = w.Write(hdr[:])
	for _, list := range [][]ID{live, superseded, x.packs} {
		for _, id := range list {
			_, _ = w.Write(id[:])
		}
	}
	// The layers are sorted and disjoint: write them merged.
	var a, b []indexEntry
	if len(x.layers) > 0 {
		a = x.layers[0].t
	}
	if len(x.layers) > 1 {
		b = x.layers[1].t
	}
	put := func(e *indexEntry) {
		_, _ = w.Write(unsafe.Slice((*byte)(unsafe.Pointer(e)), tableEntrySize))
	}
	for len(a) > 0 || len(b) > 0 {
		if len(b) == 0 || (len(a) > 0 && bytes.Compare(a[0].id[:], b[0].id[:]) < 0) {
			put(&a[0])
			a = a[1:]
		} else {
			put(&b[0])
			b = b[1:]
		}
	}
	if err := w.Flush(); err != nil {
		return err
	}
	var mac [tableMACSize]byte
	h.Sum(mac[:0])
	if _, err := f.Write(mac[:]); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
