// Package archive is mailvault's backup repository: content-defined
// chunking, keyed blob IDs, zstd compression, age encryption, packs,
// indexes and snapshot manifests over a small Backend interface. The
// on-disk format is specified in docs/FORMAT.md; keep the two in step.
package archive

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"filippo.io/age"
	"github.com/klauspost/compress/zstd"
	"github.com/restic/chunker"
	"github.com/zeebo/blake3"
)

// Config is the plaintext `config` file. It holds nothing secret.
type Config struct {
	Version  int       `json:"version"`
	ID       ID        `json:"id"`
	Created  time.Time `json:"created"`
	PackSize int64     `json:"pack_size"`
	// ChunkMin and ChunkMax bound content-defined chunks of large bodies.
	ChunkMin int `json:"chunk_min"`
	ChunkMax int `json:"chunk_max"`
	// ObjectLock, when set, locks every durable file for a period
	// (objectlock.go); absent for repositories without it.
	ObjectLock *ObjectLock `json:"object_lock,omitempty"`
}

// Defaults for a new repository.
const (
	DefaultPackSize = 16 << 20
	// Chunk bounds as restic's (average 1 MiB): most messages are far below
	// the minimum and are stored as one header blob plus one body blob.
	DefaultChunkMin = 512 << 10
	DefaultChunkMax = 8 << 20
	// maxFileSize bounds what a hostile index/snapshot/tree may make us
	// decompress into memory.
	maxMetaSize = 1 << 30
)

// ErrNoRepository means the location holds no repository config.
var ErrNoRepository = errors.New("no repository found")

// Options tune how a repository is written; they are not stored.
type Options struct {
	// Compression is the zstd level: 0 (off), 1 fastest … 4 best.
	Compression int
	// Uploaders is the number of packs encrypted and stored at once.
	Uploaders int
	// LockWait says how long Lock waits for a conflicting lock to be
	// released (lock.go); the zero value fails at once.
	LockWait LockWait
}

// parallelBackend is a backend that serves several requests at once
// better than one after the other (a remote one: S3).
type parallelBackend interface {
	// Connections is how many requests to keep in flight.
	Connections() int
}

// Connections is how many packs to upload or read at once from be: what
// it asks for, 1 for a backend that does not say (a local disk).
func Connections(be Backend) int {
	if p, ok := be.(parallelBackend); ok && p.Connections() > 0 {
		return p.Connections()
	}
	return 1
}

// Connections is Connections of the repository's backend, e.g. for a
// restore's number of pack readers.
func (r *Repository) Connections() int { return Connections(r.be) }

// Repository is an open repository.
type Repository struct {
	be    Backend
	cfg   Config
	keyID ID
	key   *KeyFileContent
	pol   chunker.Pol

	lockWait LockWait

	dataID    age.Identity // nil for a write-only key
	dataRcpt  age.Recipient
	indexID   age.Identity
	indexRcpt age.Recipient

	hashers  sync.Pool // keyed BLAKE3 hashers
	readBufs sync.Pool // *readBuffers for ReadBlobs
	zenc     *zstd.Encoder
	ztree    *zstd.Encoder // for tree blobs
	zform    *zstd.Encoder // for base64 forms (saver.go compressB64)
	zbufs    *bufferPool   // compress's output
	zdec     *zstd.Decoder
	level    int

	idx        *Index
	damagedIdx []error // index files LoadIndex had to skip
	// indexFromFiles makes LoadIndex decode the index files even where a
	// cached index table would serve (Check).
	indexFromFiles bool

	treeReads atomic.Int64 // see TreeBlobsRead
	snapReads atomic.Int64 // see SnapshotsDecoded

	// Pack writing state; see saver.go.
	saveMu    sync.Mutex
	pending   map[ID]struct{}
	packers   [2]*packerPool // open packs per blob type
	upload    chan *packBuilder
	uploaders int
	uploadWG  sync.WaitGroup
	uploadMu  sync.Mutex
	upErr     error
	written   []IndexPack
	// writtenBlobs counts the blobs of written: at indexFileBlobs an
	// index file is written for them (saver.go writePack).
	writtenBlobs int
	stats        SaveStats
	// bounds are the memory bounds of a backup, zero for the defaults;
	// tests set smaller ones (export_test.go) so that trees of seconds'
	// worth of files cross them.
	bounds memoryBounds
}

// SaveStats counts what saving blobs did.
type SaveStats struct {
	BlobsNew       int64 // blobs stored
	BlobsDup       int64 // blobs already present (deduplicated)
	RawBytesNew    int64 // plaintext bytes of stored blobs
	StoredBytesNew int64 // bytes after compression
	RawBytesDup    int64 // plaintext bytes not stored thanks to dedup
	Packs          int64 // packs written
}

// Init creates a repository in an empty backend.
func Init(ctx context.Context, be Backend, kr KeyRecipients) (ID, error) {
	return initRepo(ctx, be, kr, nil)
}

// initRepo is Init; with src set, the new repository takes src's blob-ID
// key, chunker polynomial and chunk bounds (see InitCopyParams).
func initRepo(ctx context.Context, be Backend, kr KeyRecipients, src *Repository) (ID, error) {
	return initRepoLocked(ctx, be, kr, src, nil)
}

// initRepoLocked is initRepo; with lock set, every file it writes (and
// every durable file written later) is locked under that policy.
func initRepoLocked(ctx context.Context, be Backend, kr KeyRecipients, src *Repository, lock *ObjectLock) (ID, error) {
	if _, err := be.Stat(ctx, ConfigFile, "config"); err == nil {
		return ID{}, fmt.Errorf("%s: a repository already exists there", be.Location())
	}
	sec, err := newSecrets()
	if err != nil {
		return ID{}, err
	}
	var id ID
	if _, err := rand.Read(id[:]); err != nil {
		return ID{}, err
	}
	cfg := Config{Version: 1, ID: id, Created: time.Now().UTC(), PackSize: DefaultPackSize, ChunkMin: DefaultChunkMin, ChunkMax: DefaultChunkMax}
	if src != nil {
		sec.BlobIDKey = append([]byte(nil), src.key.Secrets.BlobIDKey...)
		sec.Polynomial = src.key.Secrets.Polynomial
		cfg.ChunkMin, cfg.ChunkMax = src.cfg.ChunkMin, src.cfg.ChunkMax
	}
	cfg.ObjectLock = lock
	if err := applyObjectLock(be, lock); err != nil {
		return ID{}, err
	}
	// Key files first: a config without a key would be a repository no
	// one can open.
	if _, err := writeKeyFiles(ctx, be, sec, FullKey, kr); err != nil {
		return ID{}, err
	}
	raw, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return ID{}, err
	}
	if err := be.Put(ctx, ConfigFile, "config", raw); err != nil {
		return ID{}, err
	}
	return id, nil
}

// Open opens a repository with the given credentials and loads its index.
func Open(ctx context.Context, be Backend, creds Credentials, opt Options) (*Repository, error) {
	rc, err := be.Get(ctx, ConfigFile, "config")
	if err != nil {
		if errors.Is(err, ErrNotExist) {
			return nil, fmt.Errorf("%s: %w", be.Location(), ErrNoRepository)
		}
		return nil, err
	}
	raw, err := io.ReadAll(io.LimitReader(rc, 1<<20))
	rc.Close()
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	var cfg Config
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if cfg.Version != 1 {
		return nil, fmt.Errorf("config: unsupported repository version %d", cfg.Version)
	}
	if cfg.PackSize < 1<<20 || cfg.PackSize > 1<<30 || cfg.ChunkMin < 64<<10 || cfg.ChunkMax < cfg.ChunkMin || cfg.ChunkMax > 64<<20 {
		return nil, errors.New("config: pack or chunk sizes out of range")
	}
	if err := applyObjectLock(be, cfg.ObjectLock); err != nil {
		return nil, err
	}
	keyID, key, err := openKey(ctx, be, creds)
	if err != nil {
		return nil, err
	}
	r := &Repository{be: be, cfg: cfg, keyID: keyID, key: key, lockWait: opt.LockWait, idx: newIndex(), pending: make(map[ID]struct{})}
	r.readBufs.New = func() any { return new(readBuffers) }
	// Compression output: blobs of files up to smallFileLimit in the
	// small class, chunks of larger files and large attachments in the
	// large one. A backup worker may hold two at once, an attachment's
	// base64 form and its zstd frame (compressB64): with room for one
	// each, a full backup of the large-mail corpus allocated fresh
	// buffers for most attachments (93 collections instead of 58;
	// docs/PERFORMANCE.md "b64").
	r.zbufs = newBufferPool(compressBound(smallFileLimit), 4*runtime.GOMAXPROCS(0), 4)
	// One open data pack per core; trees are few and small.
	r.packers = [2]*packerPool{DataBlob: newPackerPool(runtime.GOMAXPROCS(0)), TreeBlob: newPackerPool(1)}
	if err := r.loadSecrets(); err != nil {
		return nil, err
	}
	if opt.Compression < 0 || opt.Compression > 4 {
		return nil, fmt.Errorf("compression level %d out of range 0..4", opt.Compression)
	}
	r.level = opt.Compression
	conc := runtime.GOMAXPROCS(0)
	lvl := zstd.SpeedDefault
	if r.level > 0 {
		lvl = zstd.EncoderLevel(r.level)
	}
	// A 2 MiB window: blobs are at most ChunkMax (8 MiB) and matches
	// farther back than that are rare in mail, while the default 8 MiB
	// window costs ~16 MiB per concurrent encoder. Not WithLowerEncoderMem:
	// at level fastest without it EncodeAll of the corpus's blobs ran ~14 %
	// faster (zstd is half a full backup's CPU), and peak RSS stayed the
	// same at this window size (docs/PERFORMANCE.md, "Full-backup throughput").
	//
	// No zstd checksum (WithEncoderCRC(false)): a blob's ID is a keyed hash
	// of its plaintext and every reader verifies it, so the checksum's 4
	// bytes a blob (~3 % of a small header blob) bought nothing.
	//
	// WithAllLitEntropyCompression: at level fastest the encoder otherwise
	// stores a block in which it finds no match as raw bytes, Huffman
	// coding skipped. Base64 attachments of photos and archives are such
	// blocks, and their 64-letter alphabet codes to ~6 bits a byte: with
	// it they are stored at ~76 % instead of raw, the corpus's stored
	// data 14 % smaller for ~3 % more backup CPU (docs/PERFORMANCE.md,
	// "largespeed").
	if r.zenc, err = zstd.NewWriter(nil, zstd.WithEncoderLevel(lvl), zstd.WithEncoderConcurrency(conc), zstd.WithWindowSize(2<<20), zstd.WithEncoderCRC(false), zstd.WithAllLitEntropyCompression(true)); err != nil {
		return nil, err
	}
	// The base64 form of an attachment (b64form.go) is its decoded
	// bytes: where the encoder finds no match in a block they are a
	// photo's or an archive's, which Huffman coding does not shrink, so
	// this encoder stores such blocks raw, without the attempt
	// (WithAllLitEntropyCompression off) — a quarter of zstd's time on a
	// photo's bytes (docs/PERFORMANCE.md "b64").
	if r.zform, err = zstd.NewWriter(nil, zstd.WithEncoderLevel(lvl), zstd.WithEncoderConcurrency(conc), zstd.WithWindowSize(2<<20), zstd.WithEncoderCRC(false)); err != nil {
		return nil, err
	}
	// Tree blobs (folder trees, pages, the Message-ID index) get at least
	// zstd's default level whatever the data level: they are a tenth of
	// the bytes a backup compresses and read rarely, and at level fastest
	// the column-wise pages compressed ~15 % worse (docs/PERFORMANCE.md,
	// "reposize"). Pages are at most a few hundred KiB: a 1 MiB window.
	tlvl := max(lvl, zstd.SpeedDefault)
	if r.level == 0 {
		tlvl = lvl
	}
	if r.ztree, err = zstd.NewWriter(nil, zstd.WithEncoderLevel(tlvl), zstd.WithEncoderConcurrency(conc), zstd.WithWindowSize(1<<20), zstd.WithEncoderCRC(false)); err != nil {
		return nil, err
	}
	if r.zdec, err = zstd.NewReader(nil, zstd.WithDecoderConcurrency(conc), zstd.WithDecoderMaxMemory(maxMetaSize)); err != nil {
		return nil, err
	}
	// On a local disk one uploader keeps up: after dedup and compression
	// a backup writes far fewer bytes than it reads, and encrypting plus
	// hashing a pack runs at over 500 MB/s per core. A remote backend
	// says how many requests it wants in flight to hide its round trips.
	uploaders := opt.Uploaders
	if uploaders <= 0 {
		uploaders = Connections(be)
	}
	r.startUploaders(uploaders)
	return r, nil
}

func (r *Repository) loadSecrets() error {
	s := r.key.Secrets
	if len(s.BlobIDKey) != 32 {
		return errors.New("key file: blob ID key must be 32 bytes")
	}
	pol, err := strconv.ParseUint(s.Polynomial, 16, 64)
	if err != nil || !chunker.Pol(pol).Irreducible() {
		return errors.New("key file: invalid chunker polynomial")
	}
	r.pol = chunker.Pol(pol)
	key := s.BlobIDKey
	r.hashers.New = func() any {
		h, _ := blake3.NewKeyed(key)
		return h
	}
	if s.DataIdentity != "" {
		id, err := age.ParseX25519Identity(s.DataIdentity)
		if err != nil {
			return fmt.Errorf("key file: data identity: %w", err)
		}
		r.dataID = newUnwrapCache(id)
	}
	if r.dataRcpt, err = age.ParseX25519Recipient(s.DataRecipient); err != nil {
		return fmt.Errorf("key file: data recipient: %w", err)
	}
	if r.indexID, err = age.ParseX25519Identity(s.IndexIdentity); err != nil {
		return fmt.Errorf("key file: index identity: %w", err)
	}
	if r.indexRcpt, err = age.ParseX25519Recipient(s.IndexRecipient); err != nil {
		return fmt.Errorf("key file: index recipient: %w", err)
	}
	return nil
}

// Config returns the repository's configuration.
func (r *Repository) Config() Config { return r.cfg }

// Backend returns the storage the repository lives in.
func (r *Repository) Backend() Backend { return r.be }

// Index returns the in-memory index (loaded by LoadIndex).
func (r *Repository) Index() *Index { return r.idx }

// KeyID returns the ID of the key file that opened the repository.
func (r *Repository) KeyID() ID { return r.keyID }

// Polynomial returns the chunker polynomial.
func (r *Repository) Polynomial() chunker.Pol { return r.pol }

// Stats returns what blob saving has done so far.
func (r *Repository) Stats() SaveStats {
	r.saveMu.Lock()
	defer r.saveMu.Unlock()
	return r.stats
}

// BlobID computes the keyed hash that names a blob with this content.
func (r *Repository) BlobID(data []byte) ID {
	h := r.hashers.Get().(*blake3.Hasher)
	h.Reset()
	_, _ = h.Write(data)
	var id ID
	h.Sum(id[:0])
	r.hashers.Put(h)
	return id
}

func (r *Repository) identityFor(t FileType) (age.Identity, error) {
	if t == IndexFile {
		return r.indexID, nil
	}
	if r.dataID == nil {
		return nil, fmt.Errorf("decrypt %s: %w", t, ErrWriteOnly)
	}
	return r.dataID, nil
}

func (r *Repository) recipientFor(t FileType) age.Recipient {
	if t == IndexFile {
		return r.indexRcpt
	}
	return r.dataRcpt
}

// encrypt seals plaintext as one age file to the recipient for t.
func (r *Repository) encrypt(t FileType, plain []byte) ([]byte, error) {
	var buf bytes.Buffer
	buf.Grow(len(plain) + len(plain)/(64<<10)*16 + 256)
	w, err := age.Encrypt(&buf, r.recipientFor(t))
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(plain); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// SaveJSONFile stores v as JSON → zstd → age under its content hash.
func (r *Repository) SaveJSONFile(ctx context.Context, t FileType, v any) (ID, error) {
	plain, err := json.Marshal(v)
	if err != nil {
		return ID{}, err
	}
	sealed, err := r.encrypt(t, r.zenc.EncodeAll(plain, nil))
	if err != nil {
		return ID{}, err
	}
	id := fileID(sealed)
	if err := r.be.Put(ctx, t, id.String(), sealed); err != nil {
		return ID{}, err
	}
	return id, nil
}

// ErrCorrupt is wrapped by every error about damaged repository content.
var ErrCorrupt = errors.New("repository data is damaged")

// LoadFile reads a metadata file, checks its name against its SHA-256,
// decrypts and decompresses it.
func (r *Repository) LoadFile(ctx context.Context, t FileType, id ID) ([]byte, error) {
	sealed, err := readAll(ctx, r.be, t, id.String())
	if err != nil {
		return nil, err
	}
	if sha256.Sum256(sealed) != id {
		return nil, fmt.Errorf("%s/%s: %w: content does not match its name (SHA-256)", t, id, ErrCorrupt)
	}
	ident, err := r.identityFor(t)
	if err != nil {
		return nil, err
	}
	plain, err := r.open(sealed, ident)
	if err != nil {
		return nil, fmt.Errorf("%s/%s: %w: %v", t, id, ErrCorrupt, err)
	}
	return plain, nil
}

// open decrypts an age file and decompresses the zstd frame inside.
func (r *Repository) open(sealed []byte, ident age.Identity) ([]byte, error) {
	dr, err := age.Decrypt(bytes.NewReader(sealed), ident)
	if err != nil {
		return nil, err
	}
	compressed, err := io.ReadAll(io.LimitReader(dr, maxMetaSize))
	if err != nil {
		return nil, err
	}
	return r.zdec.DecodeAll(compressed, nil)
}

// LoadJSONFile is LoadFile followed by json.Unmarshal into v.
func (r *Repository) LoadJSONFile(ctx context.Context, t FileType, id ID, v any) error {
	plain, err := r.LoadFile(ctx, t, id)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(plain, v); err != nil {
		return fmt.Errorf("%s/%s: %w: %v", t, id, ErrCorrupt, err)
	}
	return nil
}

func readAll(ctx context.Context, be Backend, t FileType, name string) ([]byte, error) {
	rc, err := be.Get(ctx, t, name)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return nil, fmt.Errorf("read %s/%s: %w", t, name, err)
	}
	return b, nil
}

// List returns the IDs of all files of a type (names that are not IDs are
// ignored).
func (r *Repository) List(ctx context.Context, t FileType) ([]ID, error) {
	var ids []ID
	err := r.be.List(ctx, t, func(name string, _ int64) error {
		if id, err := ParseID(name); err == nil {
			ids = append(ids, id)
		}
		return nil
	})
	return ids, err
}

// Close waits for uploads and releases resources; it does not flush.
func (r *Repository) Close() error {
	r.stopUploaders()
	r.zenc.Close()
	r.ztree.Close()
	r.zform.Close()
	r.zdec.Close()
	return nil
}

// packSizes lists the pack files in storage with their sizes (names that
// are not IDs are ignored).
func (r *Repository) packSizes(ctx context.Context) (map[ID]int64, error) {
	sizes := map[ID]int64{}
	err := r.be.List(ctx, PackFile, func(name string, size int64) error {
		if id, err := ParseID(name); err == nil {
			sizes[id] = size
		}
		return nil
	})
	return sizes, err
}
