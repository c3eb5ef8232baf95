package archive

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"slices"

	"filippo.io/age"
)

// SaveBlob stores a blob unless the repository already has it, and returns
// its ID. It is safe for concurrent use; compression runs on the calling
// goroutine so that callers (the backup workers) spread it over the cores.
func (r *Repository) SaveBlob(ctx context.Context, t BlobType, data []byte) (ID, bool, error) {
	id := r.BlobID(data)
	stored, err := r.saveBlobWithID(ctx, t, id, data)
	return id, stored, err
}

func (r *Repository) saveBlobWithID(ctx context.Context, t BlobType, id ID, data []byte) (bool, error) {
	r.saveMu.Lock()
	_, pend := r.pending[id]
	if pend || r.idx.Has(id) {
		r.stats.BlobsDup++
		r.stats.RawBytesDup += int64(len(data))
		r.saveMu.Unlock()
		return false, nil
	}
	r.pending[id] = struct{}{}
	r.saveMu.Unlock()

	comp, stored := r.compress(data)

	pool := r.packers[t]
	p := pool.get()
	if p == nil {
		var err error
		if p, err = r.newPack(); err != nil {
			pool.retire()
			return false, err
		}
	}
	err := p.add(id, t, comp, len(data), stored)
	if comp == Zstd {
		r.zbufs.put(stored)
	}
	if err != nil {
		pool.retire()
		discardTemp(p.file)
		return false, err
	}
	full := p.size >= r.cfg.PackSize
	if full {
		pool.retire()
	} else {
		pool.put(p)
	}
	r.saveMu.Lock()
	r.stats.BlobsNew++
	r.stats.RawBytesNew += int64(len(data))
	r.stats.StoredBytesNew += int64(len(stored))
	r.saveMu.Unlock()
	if full {
		if err := r.queuePack(ctx, p); err != nil {
			return false, err
		}
	}
	return true, nil
}

// compressBound is the most room compress's output may need for n bytes.
func compressBound(n int) int { return n + n/64 + 64 }

// compress returns the zstd form of data where it saves at least 1/32 of
// the size; otherwise the bytes as they are. The zstd form is in a buffer
// of r.zbufs: once it is written, the caller gives it back with
// r.zbufs.put.
func (r *Repository) compress(data []byte) (Compression, []byte) {
	if r.level == 0 || len(data) < 64 {
		return Uncompressed, data
	}
	// Room for the worst case up front: starting at half the size, the
	// output of poorly compressible data (base64 attachments) grew by
	// copying — 6 % of a backup's CPU in a profile.
	z := r.zenc.EncodeAll(data, r.zbufs.get(compressBound(len(data)))[:0])
	if len(z) > len(data)-len(data)/32 {
		r.zbufs.put(z)
		return Uncompressed, data
	}
	return Zstd, z
}

// TempFiler is implemented by backends that provide temporary files next
// to where they store packs, so that a finished pack can be moved into
// place rather than copied.
type TempFiler interface {
	TempFile() (*os.File, error)
}

// FilePutter is implemented by backends that can store a finished file
// without reading it into memory (the local backend renames it). Put must
// leave f closed and gone on success.
type FilePutter interface {
	PutFile(ctx context.Context, t FileType, name string, f *os.File) error
}

// newPack starts a pack in a temporary file.
func (r *Repository) newPack() (*packBuilder, error) {
	var f *os.File
	var err error
	if tf, ok := r.be.(TempFiler); ok {
		f, err = tf.TempFile()
	} else {
		f, err = os.CreateTemp("", "mailvault-pack-*")
	}
	if err != nil {
		return nil, fmt.Errorf("pack temporary file: %w", err)
	}
	bw := bufio.NewWriterSize(f, 256<<10)
	p, err := newPackBuilder(bw, r.dataRcpt)
	if err != nil {
		discardTemp(f)
		return nil, err
	}
	p.file, p.bw = f, bw
	return p, nil
}

func discardTemp(f *os.File) {
	f.Close()
	os.Remove(f.Name())
}

// storePackFile hands a finished pack's temporary file to the backend.
func (r *Repository) storePackFile(ctx context.Context, id ID, f *os.File) error {
	if fp, ok := r.be.(FilePutter); ok {
		return fp.PutFile(ctx, PackFile, id.String(), f)
	}
	defer discardTemp(f)
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return err
	}
	return r.be.Put(ctx, PackFile, id.String(), data)
}

func (r *Repository) startUploaders(n int) {
	// An unbuffered queue bounds memory: with n uploaders at most n packs
	// (plaintext and ciphertext) are being written while the workers fill
	// the open ones.
	r.upload = make(chan *packBuilder)
	r.uploaders = n
	for i := 0; i < n; i++ {
		r.uploadWG.Add(1)
		go func() {
			defer r.uploadWG.Done()
			for p := range r.upload {
				if err := r.writePack(context.Background(), p); err != nil {
					r.uploadMu.Lock()
					if r.upErr == nil {
						r.upErr = err
					}
					r.uploadMu.Unlock()
				}
			}
		}()
	}
}

func (r *Repository) stopUploaders() {
	if r.upload != nil {
		close(r.upload)
		r.uploadWG.Wait()
		r.upload = nil
	}
}

func (r *Repository) uploadError() error {
	r.uploadMu.Lock()
	defer r.uploadMu.Unlock()
	return r.upErr
}

func (r *Repository) queuePack(ctx context.Context, p *packBuilder) error {
	if err := r.uploadError(); err != nil {
		return err
	}
	select {
	case r.upload <- p:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// writePack finishes a pack, stores it under the SHA-256 of its
// ciphertext, and only then makes its blobs visible in the index.
func (r *Repository) writePack(ctx context.Context, p *packBuilder) error {
	id, err := p.finish()
	if err == nil {
		err = p.bw.Flush()
	}
	if err != nil {
		discardTemp(p.file)
		return fmt.Errorf("write pack: %w", err)
	}
	if err := r.storePackFile(ctx, id, p.file); err != nil {
		return fmt.Errorf("store pack: %w", err)
	}
	r.idx.addPack(id, p.entries)
	r.saveMu.Lock()
	for _, b := range p.entries {
		delete(r.pending, b.ID)
	}
	r.written = append(r.written, IndexPack{ID: id, Blobs: p.entries})
	r.stats.Packs++
	r.saveMu.Unlock()
	return nil
}

// Flush writes the open packs, waits for every upload, and then stores one
// index file for the packs written since the last Flush. Only after Flush
// returns may a snapshot refer to the saved blobs (write order: packs →
// index → snapshot).
func (r *Repository) Flush(ctx context.Context) error {
	var open []*packBuilder
	for _, pool := range r.packers {
		for _, p := range pool.drain() {
			if len(p.entries) > 0 {
				open = append(open, p)
			} else {
				discardTemp(p.file)
			}
		}
	}
	for _, p := range open {
		if err := r.queuePack(ctx, p); err != nil {
			return err
		}
	}
	// Drain the uploaders and start fresh ones, so Flush can be called
	// again (e.g. periodic index writes).
	n := r.uploaders
	r.stopUploaders()
	r.startUploaders(n)
	if err := r.uploadError(); err != nil {
		return err
	}
	r.saveMu.Lock()
	written := r.written
	r.written = nil
	r.saveMu.Unlock()
	if len(written) == 0 {
		return nil
	}
	return r.writeIndex(ctx, written)
}

func (r *Repository) writeIndex(ctx context.Context, packs []IndexPack) error {
	id, err := r.SaveJSONFile(ctx, IndexFile, IndexFileContent{Version: 1, Packs: packs})
	if err != nil {
		return fmt.Errorf("store index: %w", err)
	}
	r.idx.mu.Lock()
	r.idx.files[id] = struct{}{}
	r.idx.mu.Unlock()
	return nil
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
// (IndexTableCache) it starts from the cached table when that is still
// true — every file it holds is still listed and none is superseded by a
// newer one — and decodes only the files listed since; otherwise it
// decodes every file. Either way a changed index is written back as a
// table for the next command. The cache only saves work: anything amiss
// with it and the index comes from the repository.
func (r *Repository) loadIndex(ctx context.Context, all []ID) (live []ID, damaged []error, err error) {
	path, log, cached := "", (*slog.Logger)(nil), false
	if tc, ok := r.be.(IndexTableCache); ok && littleEndian {
		path, log, cached = tc.IndexTablePath(ctx)
	}
	if !cached {
		res, err := r.buildIndex(ctx, r.idx, all, nil)
		if err != nil {
			return nil, nil, err
		}
		return res.live, res.damaged, nil
	}
	var tab *indexTable
	if !r.indexFromFiles {
		tab, err = r.openIndexTable(path)
	}
	if err != nil {
		log.Warn("index cache: discarding the cached index table; decoding the index files", "file", path, "err", err)
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			log.Warn("index cache: cannot remove the table", "file", path, "err", err)
		}
		tab = nil
	}
	if tab != nil {
		if live, damaged, ok, err := r.loadOnTable(ctx, tab, all, path, log); err != nil || ok {
			return live, damaged, err
		}
		r.idx = newIndex() // the one with the table unmaps it when collected
	}
	res, err := r.buildIndex(ctx, r.idx, all, nil)
	if err != nil {
		return nil, nil, err
	}
	if err := r.writeIndexTable(r.idx, path, res.live, res.superseded); err != nil {
		log.Warn("index cache: cannot write the index table", "file", path, "err", err)
	}
	return res.live, res.damaged, nil
}

// loadOnTable makes the mapped table r.idx's first layer and decodes the
// files listed since it was written into a second. ok is false when the
// table no longer holds (a file it holds is gone or superseded): the
// caller unmaps it and decodes everything.
func (r *Repository) loadOnTable(ctx context.Context, tab *indexTable, all []ID, path string, log *slog.Logger) (live []ID, damaged []error, ok bool, err error) {
	listed := make(map[ID]bool, len(all))
	for _, f := range all {
		listed[f] = true
	}
	known := make(map[ID]bool, len(tab.live)+len(tab.superseded))
	for _, f := range tab.live {
		if !listed[f] {
			tab.unmap()
			return nil, nil, false, nil // removed by hand, or by a prune whose new files supersede it
		}
		known[f] = true
	}
	for _, f := range tab.superseded {
		known[f] = true
	}
	var fresh []ID
	for _, f := range all {
		if !known[f] {
			fresh = append(fresh, f)
		}
	}
	x := r.idx
	tab.install(x)
	if len(fresh) == 0 {
		return tab.live, nil, true, nil
	}
	res, err := r.buildIndex(ctx, x, fresh, tab)
	if err != nil {
		return nil, nil, false, err
	}
	for _, s := range res.superseded {
		if slices.Contains(tab.live, s) {
			return nil, nil, false, nil // a prune or repair index since: start again
		}
	}
	live = append(slices.Clone(tab.live), res.live...)
	if len(res.live) > 0 {
		if err := r.writeIndexTable(x, path, live, append(slices.Clone(tab.superseded), res.superseded...)); err != nil {
			log.Warn("index cache: cannot write the index table", "file", path, "err", err)
		}
	}
	return live, res.damaged, true, nil
}

// builtIndex is what buildIndex found.
type builtIndex struct {
	live       []ID    // the files read that no file read supersedes, in listing order
	superseded []ID    // every file a file read names in its supersedes
	damaged    []error // unreadable files that no file read supersedes
}

// buildIndex reads the index files all, in listing order, one at a time
// into x's table (indexBuilder) — the rules of scanIndexFiles, without
// holding any file's decoded content past its turn. With a table, x
// already holds it (install), and the files read go into a second layer
// without the blobs the table holds.
func (r *Repository) buildIndex(ctx context.Context, x *Index, all []ID, tab *indexTable) (*builtIndex, error) {
	type bad struct {
		id  ID
		err error
	}
	var (
		bads       []bad
		read       []ID
		superseded = map[ID]bool{}
		res        builtIndex
		b          = indexBuilder{x: x, fixed: len(x.packs)}
		ir         = indexReader{r: r}
	)
	defer ir.close()
	for _, f := range all {
		sup, err := ir.add(ctx, &b, f)
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
			return nil, err
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
	b.finish(inForce)
	return &res, nil
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

// decryptPackAt opens a pack for random access: only the 64 KiB age
// chunks covering what is read are fetched and authenticated.
func (r *Repository) decryptPackAt(ctx context.Context, id ID, size int64) (io.ReaderAt, int64, error) {
	ident, err := r.identityFor(PackFile)
	if err != nil {
		return nil, 0, err
	}
	if size <= 0 {
		if size, err = r.be.Stat(ctx, PackFile, id.String()); err != nil {
			return nil, 0, err
		}
	}
	ra, plainSize, err := age.DecryptReaderAt(readerAt{ctx, r.be, PackFile, id.String()}, size, ident)
	if err != nil {
		return nil, 0, fmt.Errorf("pack %s: %w: %v", id, ErrCorrupt, err)
	}
	return ra, plainSize, nil
}

// ReadPackHeader reads a pack's header through ranged reads.
func (r *Repository) ReadPackHeader(ctx context.Context, id ID, size int64) ([]PackedBlob, error) {
	ra, plainSize, err := r.decryptPackAt(ctx, id, size)
	if err != nil {
		return nil, err
	}
	if plainSize < int64(packTrailer) {
		return nil, fmt.Errorf("pack %s: %w: too short", id, ErrCorrupt)
	}
	trailer := make([]byte, packTrailer)
	if _, err := ra.ReadAt(trailer, plainSize-int64(packTrailer)); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("pack %s: %w: %v", id, ErrCorrupt, err)
	}
	count, hsize, err := packHeaderSize(trailer, plainSize)
	if err != nil {
		return nil, fmt.Errorf("pack %s: %w", id, err)
	}
	hdr := make([]byte, count*packEntrySize)
	if _, err := ra.ReadAt(hdr, plainSize-hsize); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("pack %s: %w: %v", id, ErrCorrupt, err)
	}
	blobs, err := parsePackHeader(hdr, count, plainSize)
	if err != nil {
		return nil, fmt.Errorf("pack %s: %w", id, err)
	}
	return blobs, nil
}

// LoadBlob reads, decrypts, decompresses and authenticates one blob.
func (r *Repository) LoadBlob(ctx context.Context, id ID) ([]byte, error) {
	pack, b, ok := r.idx.Lookup(id)
	if !ok {
		return nil, fmt.Errorf("blob %s: %w: not in any index", id, ErrCorrupt)
	}
	ra, _, err := r.decryptPackAt(ctx, pack, 0)
	if err != nil {
		return nil, err
	}
	stored := make([]byte, b.Length)
	if _, err := ra.ReadAt(stored, int64(b.Offset)); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("pack %s blob %s: %w: %v", pack, id, ErrCorrupt, err)
	}
	return r.DecodeBlob(pack, b, stored)
}

// DecodeBlob turns a blob's stored bytes into its plaintext and verifies
// that it hashes to its ID.
func (r *Repository) DecodeBlob(pack ID, b PackedBlob, stored []byte) ([]byte, error) {
	return r.decodeBlobInto(nil, pack, b, stored)
}

// decodeBlobInto is DecodeBlob decompressing into scratch (reused when it
// is large enough).
func (r *Repository) decodeBlobInto(scratch []byte, pack ID, b PackedBlob, stored []byte) ([]byte, error) {
	plain := stored
	if b.Compression == Zstd {
		if cap(scratch) < int(b.RawLength) {
			scratch = make([]byte, 0, b.RawLength)
		}
		var err error
		plain, err = r.zdec.DecodeAll(stored, scratch[:0])
		if err != nil {
			return nil, fmt.Errorf("pack %s blob %s: %w: %v", pack, b.ID, ErrCorrupt, err)
		}
	}
	if uint32(len(plain)) != b.RawLength || r.BlobID(plain) != b.ID {
		return nil, fmt.Errorf("pack %s blob %s: %w: content does not match its ID", pack, b.ID, ErrCorrupt)
	}
	return plain, nil
}

// ReadPack fetches a whole pack, verifies its name (SHA-256), decrypts it
// and returns the plaintext.
// The pack is streamed: its SHA-256 is computed on the way through age and
// checked before anything is returned, so only the plaintext is held in
// memory.
func (r *Repository) ReadPack(ctx context.Context, id ID) ([]byte, error) {
	var buf bytes.Buffer
	ident, err := r.identityFor(PackFile)
	if err != nil {
		return nil, err
	}
	rc, err := r.be.Get(ctx, PackFile, id.String())
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	h := sha256.New()
	body := &transportReader{r: rc}
	tee := io.TeeReader(body, h)
	// age reports a body that breaks off as a chunk that does not
	// authenticate; a failed download is a read error, not damage (check
	// would name a sound pack as damaged).
	dr, err := age.Decrypt(tee, ident)
	if err == nil {
		_, err = buf.ReadFrom(dr)
	}
	if err != nil {
		if body.err != nil {
			return nil, fmt.Errorf("read pack %s: %w", id, body.err)
		}
		return nil, fmt.Errorf("pack %s: %w: %v", id, ErrCorrupt, err)
	}
	if _, err := io.Copy(io.Discard, tee); err != nil {
		return nil, fmt.Errorf("read pack %s: %w", id, err)
	}
	if ID(h.Sum(nil)) != id {
		return nil, fmt.Errorf("pack %s: %w: content does not match its name (SHA-256)", id, ErrCorrupt)
	}
	return buf.Bytes(), nil
}

// transportReader remembers the first error, other than io.EOF, of the
// reader it wraps, so that a decoder's complaint can be told apart from a
// download that failed under it.
type transportReader struct {
	r   io.Reader
	err error
}

func (t *transportReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if err != nil && err != io.EOF && t.err == nil {
		t.err = err
	}
	return n, err
}
