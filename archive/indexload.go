package archive

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"

	"filippo.io/age"
	"github.com/klauspost/compress/zstd"
)

// indexReader streams index files for LoadIndex: the stored bytes are
// hashed (the name check), decrypted and decompressed as they arrive and
// parsed through a window, so that no file is held whole — a file prune
// wrote lists up to 4096 packs, hundreds of MB of JSON.
type indexReader struct {
	r      *Repository
	window []byte
	// zdec is the load's own streaming decoder (zstd windows of 2 MiB,
	// as the repository's encoder writes them), closed after the load:
	// the repository's shared one would keep its buffers.
	zdec *zstd.Decoder
}

// close releases the decoder's buffers.
func (ir *indexReader) close() {
	if ir.zdec != nil {
		ir.zdec.Close()
	}
}

// indexWindow is the parser's window over an index file's JSON.
const indexWindow = 256 << 10

// add streams the index file f into b.
func (ir *indexReader) add(ctx context.Context, b *indexBuilder, f ID) ([]ID, error) {
	parse := func(v indexVisitor) (bool, error) { return ir.parse(ctx, f, v) }
	whole := func() ([]byte, error) { return ir.r.LoadFile(ctx, IndexFile, f) }
	return b.addFrom(f, parse, whole)
}

// parse reads f through the parser. Errors: reading the backend's (as
// they are), the rest ErrCorrupt. The stored bytes are checked against
// the name once all have been read; what was parsed before is discarded
// by addFrom if they do not match.
func (ir *indexReader) parse(ctx context.Context, f ID, v indexVisitor) (ok bool, err error) {
	r := ir.r
	ident, err := r.identityFor(IndexFile)
	if err != nil {
		return false, err
	}
	rc, err := r.be.Get(ctx, IndexFile, f.String())
	if err != nil {
		return false, err
	}
	defer rc.Close()
	h := sha256.New()
	src := &recordingReader{r: io.TeeReader(rc, h)}
	fail := func(err error) (bool, error) {
		if src.err != nil {
			return false, fmt.Errorf("read %s/%s: %w", IndexFile, f, src.err)
		}
		return false, fmt.Errorf("%s/%s: %w: %v", IndexFile, f, ErrCorrupt, err)
	}
	dr, err := age.Decrypt(src, ident)
	if err != nil {
		return fail(err)
	}
	if ir.zdec == nil {
		if ir.zdec, err = zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(maxMetaSize)); err != nil {
			return false, err
		}
	}
	if err := ir.zdec.Reset(dr); err != nil {
		return fail(err)
	}
	if ir.window == nil {
		ir.window = make([]byte, indexWindow)
	}
	p := fastParser{src: io.LimitReader(ir.zdec, maxMetaSize), buf: ir.window}
	ok = p.index(v)
	if p.err != nil {
		return fail(p.err)
	}
	// The rest of the stored bytes (age's last chunk, or what follows a
	// file that is not in the compact form), for the name check.
	if _, err := io.Copy(io.Discard, src); err != nil {
		return fail(err)
	}
	if [sha256.Size]byte(h.Sum(nil)) != f {
		return false, fmt.Errorf("%s/%s: %w: content does not match its name (SHA-256)", IndexFile, f, ErrCorrupt)
	}
	return ok, nil
}

// recordingReader remembers its reader's error other than EOF: a failure of
// the backend, told apart from damage found by decryption.
type recordingReader struct {
	r   io.Reader
	err error
}

func (e *recordingReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF {
		e.err = err
	}
	return n, err
}

// indexBuilder makes an index's first table from index files read one at
// a time: each file's blobs go straight into chunks of 48-byte entries
// (never a decoded IndexFileContent of every file, nor a map), and finish
// copies them into one table and sorts it once. A file's entries stay
// apart from the others' until then, so that the files another file
// supersedes can be dropped without reading anything twice.
//
// With runs set the table is built on disk instead (buildTable): the
// entries, tagged with the file they came from, are sorted into runs
// of runEntries in a scratch file and merged into a table file.
type indexBuilder struct {
	x     *Index
	fixed int // x's packs below this ordinal (a mapped table's) are kept whatever files are dropped
	// chunks hold the entries read, chunkSize each but the last: a table
	// grown by copying leaves its old arrays as garbage the heap grows by
	// until a collection; chunks are copied once, into the table finish
	// makes of exactly their size.
	chunks [][]indexEntry
	n      int
	files  []builtFile
	runs   *runSpill
	// tag is the current attempt at reading a file (runs): entries of
	// an attempt that failed keep a tag no built file has.
	tag, attempts uint32
}

// chunkSize is the entries of one chunk (3 MiB).
const chunkSize = 1 << 16

func (b *indexBuilder) push(e indexEntry) {
	b.n++
	if b.runs != nil {
		b.runs.add(taggedEntry{e: e, tag: b.tag})
		return
	}
	if (b.n-1)%chunkSize == 0 {
		b.chunks = append(b.chunks, make([]indexEntry, 0, chunkSize))
	}
	last := &b.chunks[len(b.chunks)-1]
	*last = append(*last, e)
}

// truncate forgets the entries from n on (with runs, those already in a
// run stay there, under a tag that is dropped).
func (b *indexBuilder) truncate(n int) {
	if b.runs != nil {
		b.runs.pending = b.runs.pending[:max(n-int(b.runs.flushed), 0)]
		b.n = int(b.runs.flushed) + len(b.runs.pending)
		return
	}
	b.chunks = b.chunks[:(n+chunkSize-1)/chunkSize]
	if n%chunkSize != 0 {
		b.chunks[len(b.chunks)-1] = b.chunks[len(b.chunks)-1][:n%chunkSize]
	}
	b.n = n
}

// builtFile is where one index file's blobs and packs are in the builder.
type builtFile struct {
	id         ID
	start, end int      // its entries
	tag        uint32   // its entries' tag (runs)
	packs      []uint32 // ordinals of the packs it lists
}

// add puts one index file's plaintext into the builder and returns the
// files it supersedes. On error nothing of the file is kept.
func (b *indexBuilder) add(f ID, plain []byte) (supersedes []ID, err error) {
	return b.addFrom(f, func(v indexVisitor) (bool, error) { return parseIndexFast(plain, v), nil },
		func() ([]byte, error) { return plain, nil })
}

// addFrom puts one index file into the builder: parse reads it in the
// compact form (parseIndexFast, parseIndexStream) into the visitor it is
// given; when the file is in another form, whole gives its plaintext for
// decodeIndex. An error of parse (reading, authenticating) is returned
// as it is. On error nothing of the file is kept.
func (b *indexBuilder) addFrom(f ID, parse func(indexVisitor) (bool, error), whole func() ([]byte, error)) (supersedes []ID, err error) {
	x := b.x
	start, npacks := b.n, len(x.packs)
	b.tag, b.attempts = b.attempts, b.attempts+1
	bf := builtFile{id: f, start: start, tag: b.tag}
	var (
		ord  uint32
		end  uint64 // the furthest blob end in the current pack
		over bool   // a blob extends past 4 GiB
	)
	pack := func(id ID) {
		ord = x.packOrdinal(id)
		bf.packs = append(bf.packs, ord)
		end = 0
	}
	blob := func(bl PackedBlob) {
		if e := uint64(bl.Offset) + uint64(bl.Length); e > end {
			end = e
			over = over || e > 1<<32
		}
		b.push(makeEntry(ord, bl))
	}
	ok, err := parse(indexVisitor{pack: pack, blob: blob, supersedes: func(id ID) { supersedes = append(supersedes, id) }})
	if err == nil && ok && over {
		ok, err = false, fmt.Errorf("%s/%s: %w: index: a blob extends past 4 GiB", IndexFile, f, ErrCorrupt)
	}
	if err != nil || !ok {
		// Not in the compact form this package writes, invalid, or
		// unreadable: forget what was read.
		b.truncate(start)
		start, bf.start = b.n, b.n
		b.tag, b.attempts = b.attempts, b.attempts+1
		bf.tag = b.tag
		for _, p := range x.packs[npacks:] {
			delete(x.packIdx, p)
		}
		x.packs = x.packs[:npacks]
		bf.packs, supersedes = bf.packs[:0], nil
		if err != nil {
			return nil, err
		}
		// Another writer's JSON: the general decoder's word.
		plain, err := whole()
		if err != nil {
			return nil, err
		}
		ic, err := decodeIndex(plain)
		if err != nil {
			return nil, fmt.Errorf("%s/%s: %w: %v", IndexFile, f, ErrCorrupt, err)
		}
		for _, p := range ic.Packs {
			pack(p.ID)
			for _, bl := range p.Blobs {
				blob(bl)
			}
		}
		supersedes = ic.Supersedes
	}
	bf.end = b.n
	x.stats.decoded.Add(int64(bf.end - bf.start))
	b.files = append(b.files, bf)
	return supersedes, nil
}

// finish keeps the entries of the files in live (dropping the others' and
// the packs only they list), sorts them, keeps the first place of each
// blob and makes the result the index's only table. The pack list is
// renumbered when files were dropped, so that HasPack answers for the
// files in force only (a superseded file may list packs deleted since).
func (b *indexBuilder) finish(live map[ID]bool) {
	x := b.x
	t := make([]indexEntry, 0, b.n)
	for i, c := range b.chunks {
		t = append(t, c...)
		b.chunks[i] = nil // garbage from here on
	}
	b.chunks = nil
	if renum := b.dropPacks(live); renum != nil {
		n := 0
		for _, f := range b.files {
			if live[f.id] {
				n += copy(t[n:], t[f.start:f.end])
			}
		}
		t = t[:n]
		for i := range t {
			t[i].pack = t[i].pack&^entryOrdMask | renum[t[i].ord()]
		}
	}
	t = sortTable(t)
	if b.fixed > 0 || len(x.layers) > 0 {
		// Over what x already held (LoadIndex called again, as check
		// does): keep only what it does not hold.
		base := x.layers
		t = slices.DeleteFunc(t, func(e indexEntry) bool {
			for i := range base {
				if _, ok := x.search(&base[i], e.id); ok {
					return true
				}
			}
			return false
		})
	}
	// Give back the capacity duplicates and dropped files freed when it
	// is worth a copy, which holds the table twice for a moment.
	if cap(t)-len(t) > len(t)/8 {
		t = append([]indexEntry(nil), t...)
	}
	if len(t) > 0 || len(x.layers) == 0 {
		x.layers = append(x.layers, newLayer(t))
		x.inLayer += len(t)
	}
	b.n, b.files = 0, nil
}

// dropPacks renumbers x's packs to those the files in live (and a mapped
// table's, below b.fixed) list, when a file read is not in live, and
// returns the new ordinal of each old one; nil when every file is live.
// Renumbering keeps the order, so entries sort the same either way.
func (b *indexBuilder) dropPacks(live map[ID]bool) []uint32 {
	if len(b.files) == 0 || allLive(b.files, live) {
		return nil
	}
	x := b.x
	keep := make([]bool, len(x.packs))
	for i := range b.fixed {
		keep[i] = true
	}
	for _, f := range b.files {
		if live[f.id] {
			for _, p := range f.packs {
				keep[p] = true
			}
		}
	}
	renum := make([]uint32, len(x.packs))
	packs := x.packs[:0]
	clear(x.packIdx)
	for i, p := range x.packs {
		if keep[i] {
			renum[i] = uint32(len(packs))
			x.packIdx[p] = uint32(len(packs))
			packs = append(packs, p)
		}
	}
	x.packs = packs
	return renum
}

func allLive(files []builtFile, live map[ID]bool) bool {
	for _, f := range files {
		if !live[f.id] {
			return false
		}
	}
	return true
}

// LoadIndex reads every index file in force (see scanIndexFiles) and
// returns the packs that no such index file mentions, with their sizes:
// packs left by a backup killed before it wrote its index, being written
// by a backup running right now, or listed only in a damaged index file.
// A damaged index file does not stop the load: it is skipped and reported
// by DamagedIndexes (the index is only a cache of the packs' headers;
// IndexPacks and AdoptPacks recover from them). Call it once, on a newly
// opened repository.
func (r *Repository) LoadIndex(ctx context.Context) (unindexed map[ID]int64, err error) {
	all, err := r.List(ctx, IndexFile)
	if err != nil {
		return nil, err
	}
	live, damaged, err := r.loadIndex(ctx, all)
	if err != nil {
		return nil, err
	}
	r.idx.mu.Lock()
	for _, f := range live {
		r.idx.files[f] = struct{}{}
	}
	r.idx.mu.Unlock()
	r.damagedIdx = append(r.damagedIdx, damaged...)
	unindexed = map[ID]int64{}
	err = r.be.List(ctx, PackFile, func(name string, size int64) error {
		if id, err := ParseID(name); err == nil && !r.idx.HasPack(id) {
			unindexed[id] = size
		}
		return nil
	})
	return unindexed, err
}

// loadIndex fills r.idx from the index files all. With a local cache
// (IndexTableCache) the index is the cached table (tableIndex);
// otherwise, or when no table can be written there, it is built on the
// heap.
func (r *Repository) loadIndex(ctx context.Context, all []ID) (live []ID, damaged []error, err error) {
	path, log, cached := r.indexTablePath(ctx)
	if cached && len(r.idx.packs) == 0 {
		x, res, err := r.tableIndex(ctx, all, path, log)
		if err == nil {
			// The blobs a backup adds spill beside the table (indexspill.go).
			x.spill.dir = filepath.Dir(path)
			r.idx = x
			return res.live, res.damaged, nil
		}
		if !errors.Is(err, errTableBuild) {
			return nil, nil, err
		}
		// No table can be written here (a full disk, say): the index
		// on the heap, as without a cache.
		log.Warn("index cache: cannot build the index table", "file", path, "err", err)
		r.idx = newIndex()
		r.idx.spill.dir = filepath.Dir(path)
	}
	// Without a cache, or loaded before (check loads again, to read
	// every file): on the heap, over what it holds.
	res, err := r.buildIndex(ctx, r.idx, all)
	if err != nil {
		return nil, nil, err
	}
	return res.live, res.damaged, nil
}

// indexTablePath is the cached table's path, if the repository has a
// local cache for one (IndexTableCache) and this machine can use it.
func (r *Repository) indexTablePath(ctx context.Context) (path string, log *slog.Logger, ok bool) {
	if tc, isCache := r.be.(IndexTableCache); isCache && littleEndian {
		return tc.IndexTablePath(ctx)
	}
	return "", nil, false
}

// tableIndex returns a new index over the cached table at path for the
// index files all. It starts from the table there when that is still
// true — every file it holds is still listed and none is superseded by a
// newer one — and reads only the files listed since, merging them with
// the table into a new one; otherwise it reads every file into a new
// table. Either way the table is built on disk (buildTable) and mapped.
// The cache only saves work: anything amiss with it and the index comes
// from the repository. An error of errTableBuild: no table can be
// written at path.
func (r *Repository) tableIndex(ctx context.Context, all []ID, path string, log *slog.Logger) (*Index, *builtIndex, error) {
	discard := func(err error) {
		log.Warn("index cache: discarding the cached index table; decoding the index files", "file", path, "err", err)
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			log.Warn("index cache: cannot remove the table", "file", path, "err", err)
		}
	}
	x := newIndex()
	var (
		tab *indexTable
		err error
	)
	if !r.indexFromFiles {
		if tab, err = r.openIndexTable(path); err != nil {
			discard(err)
			tab = nil
		}
	}
	if tab != nil {
		fresh, ok := tableFresh(tab, all)
		if ok && len(fresh) == 0 {
			tab.bad = r.tableBad(path, log)
			tab.install(x)
			return x, &builtIndex{live: tab.live}, nil
		}
		if ok {
			res, err := r.buildTable(ctx, x, fresh, tab, path, log)
			if err == nil && res != nil {
				tab.unmap()
				return x, res, nil
			}
			if err != nil && !errors.Is(err, errTableBuild) {
				tab.unmap()
				return nil, nil, err
			}
			if err != nil {
				discard(err)
			}
		}
		tab.unmap()
		x = newIndex()
	}
	res, err := r.buildTable(ctx, x, all, nil, path, log)
	if err != nil {
		return nil, nil, err
	}
	return x, res, nil
}

// RefreshIndexTable leaves the cached index table (IndexTableCache)
// valid for the index files the repository now lists, so that the next
// command maps it instead of building it: a backup calls it once it has
// written its index files, the nightly run paying for the table rather
// than the first command after it (with a million messages, the
// no-change backup after a full one read the full one's index files
// into a new table: 4.3 s instead of 1.3 s). The table is built as
// LoadIndex builds it — the table there merged with the files listed
// since, read back from the repository — so that it holds exactly what
// the files say, whatever this process added to its own index. Failures
// are only logged: the table is derived data, and the next command
// builds it.
func (r *Repository) RefreshIndexTable(ctx context.Context) {
	path, log, ok := r.indexTablePath(ctx)
	if !ok || r.indexFromFiles {
		return
	}
	all, err := r.List(ctx, IndexFile)
	if err == nil {
		var x *Index
		x, _, err = r.tableIndex(ctx, all, path, log)
		if err == nil {
			// x (its mapping unmapped once it is garbage) is not
			// this process's index, which stays as it is.
			r.idx.stats.built.Add(x.stats.built.Load())
		}
	}
	if err != nil {
		log.Warn("index cache: cannot bring the index table up to date; the next command does", "file", path, "err", err)
	}
}

// tableFresh returns the files of all that the table does not hold; ok is
// false when the table no longer holds (a file it holds is gone:
// removed by hand, or by a prune whose new files supersede it).
func tableFresh(tab *indexTable, all []ID) (fresh []ID, ok bool) {
	listed := make(map[ID]bool, len(all))
	for _, f := range all {
		listed[f] = true
	}
	known := make(map[ID]bool, len(tab.live)+len(tab.superseded))
	for _, f := range tab.live {
		if !listed[f] {
			return nil, false
		}
		known[f] = true
	}
	for _, f := range tab.superseded {
		known[f] = true
	}
	for _, f := range all {
		if !known[f] {
			fresh = append(fresh, f)
		}
	}
	return fresh, true
}

// tableBad is a mapped table's bad hook: a page that fails its MAC is
// reported and the table removed, so that the next command decodes the
// index files; this one reads that page's blobs as absent.
func (r *Repository) tableBad(path string, log *slog.Logger) func(int) {
	return func(page int) {
		log.Warn("index cache: a page of the cached index table does not match its MAC; removing the table (the next command decodes the index files; blobs of that page read as absent in this one)", "file", path, "page", page)
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			log.Warn("index cache: cannot remove the table", "file", path, "err", err)
		}
	}
}

// errTableBuild marks an error of buildTable's own files (the scratch
// runs, the table, the old table read back), not the repository's.
var errTableBuild = errors.New("building the index table")

// buildTable reads the index files all, one at a time, into a new table
// file at path — the rules of scanIndexFiles — and makes it x's only
// layer, mapped. With base (a table that still holds), the files are
// those listed since it was written and the new table is base's entries
// merged with theirs. The entries go through sorted runs in a scratch
// file (runSpill), so that the heap holds one run, not the index: 48
// bytes a blob, 490 MB at 10 M blobs. res is nil when a file read
// supersedes one base holds (a prune or repair index since): the caller
// starts again without base.
func (r *Repository) buildTable(ctx context.Context, x *Index, all []ID, base *indexTable, path string, log *slog.Logger) (*builtIndex, error) {
	dir := filepath.Dir(path)
	spill := newRunSpill(dir)
	defer spill.close()
	b := indexBuilder{x: x, runs: spill}
	var baseN int
	if base != nil {
		for _, p := range base.packs {
			x.packOrdinal(p)
		}
		b.fixed, baseN = len(base.packs), len(base.entries)
	}
	res, inForce, err := r.readIndexFiles(ctx, &b, all)
	if err != nil {
		return nil, err
	}
	live, superseded := res.live, res.superseded
	if base != nil {
		for _, s := range res.superseded {
			if slices.Contains(base.live, s) {
				return nil, nil
			}
		}
		live = append(slices.Clone(base.live), live...)
		superseded = append(slices.Clone(base.superseded), superseded...)
	}
	if spill.err != nil {
		return nil, fmt.Errorf("%w: %v", errTableBuild, spill.err)
	}
	tw, err := r.newTableWriter(dir, baseN+b.n)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errTableBuild, err)
	}
	if err := b.mergeRuns(inForce, base, tw); err != nil {
		tw.abort()
		return nil, fmt.Errorf("%w: %v", errTableBuild, err)
	}
	tab, err := tw.finish(path, live, superseded, x.packs)
	if tab == nil {
		return nil, fmt.Errorf("%w: %v", errTableBuild, err)
	}
	if err != nil {
		log.Warn("index cache: cannot write the index table", "file", path, "err", err)
	}
	tab.bad = r.tableBad(path, log)
	tab.install(x)
	x.stats.built.Add(1)
	res.live = live
	return res, nil
}

// builtIndex is what readIndexFiles found.
type builtIndex struct {
	live       []ID    // the files read that no file read supersedes, in listing order
	superseded []ID    // every file a file read names in its supersedes
	damaged    []error // unreadable files that no file read supersedes
}

// buildIndex reads the index files all into x's table on the heap (a
// further one when x already holds some).
func (r *Repository) buildIndex(ctx context.Context, x *Index, all []ID) (*builtIndex, error) {
	b := indexBuilder{x: x, fixed: len(x.packs)}
	res, inForce, err := r.readIndexFiles(ctx, &b, all)
	if err != nil {
		return nil, err
	}
	b.finish(inForce)
	return res, nil
}

// readIndexFiles reads the index files all, in listing order, one at a
// time into b — the rules of scanIndexFiles, without holding any file's
// decoded content past its turn — and returns the files in force.
func (r *Repository) readIndexFiles(ctx context.Context, b *indexBuilder, all []ID) (*builtIndex, map[ID]bool, error) {
	type bad struct {
		id  ID
		err error
	}
	var (
		bads       []bad
		read       []ID
		superseded = map[ID]bool{}
		res        builtIndex
		ir         = indexReader{r: r}
	)
	defer ir.close()
	for _, f := range all {
		sup, err := ir.add(ctx, b, f)
		if err == nil {
			read = append(read, f)
			for _, s := range sup {
				if !superseded[s] {
					superseded[s] = true
					res.superseded = append(res.superseded, s)
				}
			}
			continue
		}
		if !errors.Is(err, ErrCorrupt) {
			return nil, nil, err
		}
		bads = append(bads, bad{f, err})
	}
	inForce := make(map[ID]bool, len(read))
	for _, f := range read {
		if !superseded[f] {
			res.live = append(res.live, f)
			inForce[f] = true
		}
	}
	for _, b := range bads {
		if !superseded[b.id] {
			res.damaged = append(res.damaged, b.err)
		}
	}
	return &res, inForce, nil
}

// indexScan is what scanIndexFiles found.
type indexScan struct {
	all     []ID    // every index file present
	read    []ID    // the readable ones, in listing order
	live    []ID    // those of read that no readable file supersedes
	damaged []error // unreadable files that no readable file supersedes
}

// scanIndexFiles reads every index file in listing order, calls fn for
// each readable one, and sorts them into those in force and the rest: a
// file that another readable file names in its "supersedes" list is
// ignored (prune and repair index replace index files and cannot always
// delete the old ones at once — object-lock retention, or a crash — and
// an old one may list packs deleted since). Readers take a blob's first
// place in the files in force, in listing order.
func (r *Repository) scanIndexFiles(ctx context.Context, fn func(ID, *IndexFileContent)) (*indexScan, error) {
	all, err := r.List(ctx, IndexFile)
	if err != nil {
		return nil, err
	}
	sc := &indexScan{all: all}
	type bad struct {
		id  ID
		err error
	}
	var bads []bad
	superseded := map[ID]struct{}{}
	for _, f := range all {
		plain, err := r.LoadFile(ctx, IndexFile, f)
		if err == nil {
			var ic *IndexFileContent
			if ic, err = decodeIndex(plain); err == nil {
				sc.read = append(sc.read, f)
				for _, s := range ic.Supersedes {
					superseded[s] = struct{}{}
				}
				fn(f, ic)
				continue
			}
			err = fmt.Errorf("index/%s: %w: %v", f, ErrCorrupt, err)
		}
		if !errors.Is(err, ErrCorrupt) {
			return nil, err
		}
		bads = append(bads, bad{f, err})
	}
	for _, f := range sc.read {
		if _, ok := superseded[f]; !ok {
			sc.live = append(sc.live, f)
		}
	}
	for _, b := range bads {
		if _, ok := superseded[b.id]; !ok {
			sc.damaged = append(sc.damaged, b.err)
		}
	}
	return sc, nil
}

// DamagedIndexes returns the errors of the index files LoadIndex skipped.
func (r *Repository) DamagedIndexes() []error { return r.damagedIdx }

// IndexPacks reads the headers of unindexed packs into the in-memory index
// without writing anything (for commands that only read). A pack whose
// header cannot be read is left out; check names it.
func (r *Repository) IndexPacks(ctx context.Context, packs map[ID]int64) []IndexPack {
	var found []IndexPack
	for id, size := range packs {
		blobs, err := r.ReadPackHeader(ctx, id, size)
		if err != nil {
			continue
		}
		found = append(found, IndexPack{ID: id, Blobs: blobs})
		r.idx.addPack(id, blobs)
	}
	return found
}

// AdoptPacks is IndexPacks followed by writing an index file for the packs
// found, so the next backup reuses what an interrupted one stored.
func (r *Repository) AdoptPacks(ctx context.Context, packs map[ID]int64) (int, error) {
	adopted := r.IndexPacks(ctx, packs)
	if len(adopted) == 0 {
		return 0, nil
	}
	return len(adopted), r.writeIndex(ctx, adopted)
}
