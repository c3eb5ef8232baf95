package archive

import (
	"bufio"
	"cmp"
	"context"
	"fmt"
	"io"
	"os"
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

	comp, stored := r.compress(t, data)

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
	if comp != Uncompressed {
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

// compress returns how to store data: base64 text (an attachment) in the
// base64 form, itself compressed if that saves 1/32 (compressB64), else
// the zstd form of data where it saves at least 1/32 of the size, else
// the bytes as they are. Unless it is Uncompressed, the stored form is in
// a buffer of r.zbufs: once it is written, the caller gives it back with
// r.zbufs.put. Tree blobs go through r.ztree.
func (r *Repository) compress(t BlobType, data []byte) (Compression, []byte) {
	if r.level == 0 || len(data) < 64 {
		return Uncompressed, data
	}
	if t == DataBlob {
		if c, stored, ok := r.compressB64(data); ok {
			return c, stored
		}
	}
	// Room for the worst case up front: starting at half the size, the
	// output of poorly compressible data (base64 attachments) grew by
	// copying — 6 % of a backup's CPU in a profile.
	enc := r.zenc
	if t == TreeBlob {
		enc = r.ztree
	}
	z := enc.EncodeAll(data, r.zbufs.get(compressBound(len(data)))[:0])
	if len(z) > len(data)-len(data)/32 {
		r.zbufs.put(z)
		return Uncompressed, data
	}
	return Zstd, z
}

// compressB64 stores base64 text in the base64 form (b64form.go): raw
// where zstd does not save 1/32 of it (a photo's bytes), else as a zstd
// frame. ok is false for data that is not base64 in a layout the form
// keeps; a text blob is found out within its first bytes.
func (r *Repository) compressB64(data []byte) (Compression, []byte, bool) {
	form, ok := appendB64Form(r.zbufs.get(b64FormMaxHeader + len(data)/4*3)[:0], data)
	if !ok {
		r.zbufs.put(form)
		return Uncompressed, nil, false
	}
	z := r.zform.EncodeAll(form, r.zbufs.get(compressBound(len(form)))[:0])
	if len(z) > len(form)-len(form)/32 {
		r.zbufs.put(z)
		return Base64, form, true
	}
	r.zbufs.put(form)
	return Base64Zstd, z, true
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
	r.writtenBlobs += len(p.entries)
	var full []IndexPack
	if r.writtenBlobs >= cmp.Or(r.bounds.indexFileBlobs, indexFileBlobs) {
		full, r.written, r.writtenBlobs = r.written, nil, 0
	}
	r.stats.Packs++
	r.saveMu.Unlock()
	if full != nil {
		// The packs are stored, so their index file may be too. Held to
		// Flush, every new blob's entry stayed to the end of a backup,
		// and Flush encoded them all into one file's JSON at once: a
		// full backup's memory grew with every blob it stored.
		return r.writeIndex(ctx, full)
	}
	return nil
}

// indexFileBlobs is how many new blobs a backup lists in one index file
// before it writes the file, as restic writes full index files during a
// backup: about 13 MB of JSON, a few MB stored.
const indexFileBlobs = 1 << 16

// memoryBounds are the thresholds that keep a backup's memory from growing
// with the tree: zero fields take the constants.
type memoryBounds struct {
	listWindow     int // listWindow
	indexFileBlobs int // indexFileBlobs
	readAhead      int // directBudget
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
	r.written, r.writtenBlobs = nil, 0
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
