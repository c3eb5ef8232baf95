package archive

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"

	"filippo.io/age"
)

// memBackend is an in-memory Backend that counts pack reads.
type memBackend struct {
	mu    sync.Mutex
	files map[string][]byte
	// reads counts pack requests (Get, GetRange, Stat); bytes the pack
	// bytes they returned.
	reads, bytes int
}

func newMemBackend() *memBackend { return &memBackend{files: map[string][]byte{}} }

func (m *memBackend) Location() string { return "mem" }

func (m *memBackend) Put(_ context.Context, t FileType, name string, data []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.files[string(t)+"/"+name] = slices.Clone(data)
	return nil
}

func (m *memBackend) Get(ctx context.Context, t FileType, name string) (io.ReadCloser, error) {
	return m.GetRange(ctx, t, name, 0, 0)
}

func (m *memBackend) GetRange(_ context.Context, t FileType, name string, offset, length int64) (io.ReadCloser, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	data, ok := m.files[string(t)+"/"+name]
	if !ok {
		return nil, fmt.Errorf("%s/%s: %w", t, name, ErrNotExist)
	}
	data = data[min(offset, int64(len(data))):]
	if length > 0 {
		data = data[:min(length, int64(len(data)))]
	}
	if t == PackFile {
		m.reads++
		m.bytes += len(data)
	}
	return io.NopCloser(bytes.NewReader(data)), nil
}

func (m *memBackend) Stat(_ context.Context, t FileType, name string) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	data, ok := m.files[string(t)+"/"+name]
	if !ok {
		return 0, fmt.Errorf("%s/%s: %w", t, name, ErrNotExist)
	}
	if t == PackFile {
		m.reads++
	}
	return int64(len(data)), nil
}

func (m *memBackend) List(_ context.Context, t FileType, fn func(string, int64) error) error {
	m.mu.Lock()
	var names []string
	sizes := map[string]int64{}
	for k, v := range m.files {
		if n, ok := strings.CutPrefix(k, string(t)+"/"); ok {
			names = append(names, n)
			sizes[n] = int64(len(v))
		}
	}
	m.mu.Unlock()
	slices.Sort(names)
	for _, n := range names {
		if err := fn(n, sizes[n]); err != nil {
			return err
		}
	}
	return nil
}

func (m *memBackend) Remove(_ context.Context, t FileType, name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.files, string(t)+"/"+name)
	return nil
}

// take returns the pack reads and bytes since the last call.
func (m *memBackend) take() (reads, bytes int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	reads, bytes = m.reads, m.bytes
	m.reads, m.bytes = 0, 0
	return reads, bytes
}

// memRepo opens a new repository in memory.
func memRepo(t *testing.T) (*Repository, *memBackend) {
	t.Helper()
	return memRepoOpt(t, Options{})
}

// memRepoOpt opens a new repository in memory with opt.
func memRepoOpt(t testing.TB, opt Options) (*Repository, *memBackend) {
	t.Helper()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	be := newMemBackend()
	if _, err := Init(t.Context(), be, KeyRecipients{Recipients: []string{id.Recipient().String()}}); err != nil {
		t.Fatal(err)
	}
	r, err := Open(t.Context(), be, Credentials{Identities: []age.Identity{id}}, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r, be
}

// writePack stores a pack of uncompressed blobs of the given lengths
// (random bytes) and returns its ID, its entries and the blobs' contents.
func writePack(t *testing.T, r *Repository, be *memBackend, seed uint64, lengths []int) (ID, []PackedBlob, map[ID][]byte) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 1))
	var sealed bytes.Buffer
	pb, err := newPackBuilder(&sealed, r.recipientFor(PackFile))
	if err != nil {
		t.Fatal(err)
	}
	content := map[ID][]byte{}
	for i, n := range lengths {
		data := make([]byte, n)
		for j := range data {
			data[j] = byte(rng.Uint32())
		}
		if n == 0 {
			// Distinct IDs for several empty blobs are not possible;
			// one empty blob is enough.
			if i > 0 && slices.Contains(lengths[:i], 0) {
				t.Fatal("one empty blob per pack")
			}
		}
		id := r.BlobID(data)
		content[id] = data
		if err := pb.add(id, DataBlob, Uncompressed, n, data); err != nil {
			t.Fatal(err)
		}
	}
	pack, err := pb.finish()
	if err != nil {
		t.Fatal(err)
	}
	if err := be.Put(t.Context(), PackFile, pack.String(), sealed.Bytes()); err != nil {
		t.Fatal(err)
	}
	return pack, slices.Clone(pb.entries), content
}

// readChecked runs ReadBlobs and checks that every blob comes back, in pack
// order, with its content.
func readChecked(t *testing.T, r *Repository, pack ID, blobs []PackedBlob, content map[ID][]byte) error {
	t.Helper()
	want := slices.Clone(blobs)
	slices.SortFunc(want, func(a, b PackedBlob) int { return int(a.Offset) - int(b.Offset) })
	var got []ID
	err := r.ReadBlobs(t.Context(), pack, slices.Clone(blobs), func(b PackedBlob, data []byte) error {
		if !bytes.Equal(data, content[b.ID]) {
			return fmt.Errorf("blob at %d: wrong content", b.Offset)
		}
		got = append(got, b.ID)
		return nil
	})
	if err != nil {
		return err
	}
	if len(got) != len(want) {
		return fmt.Errorf("%d blobs read, want %d", len(got), len(want))
	}
	for i := range got {
		if got[i] != want[i].ID {
			return fmt.Errorf("blob %d out of order", i)
		}
	}
	return nil
}

// TestReadBlobsSpans reads subsets of crafted packs: every blob comes back
// whatever its place among the age chunks, and the reads are one per span
// (the first carrying the age header) — never a Stat, never a read per
// chunk.
func TestReadBlobsSpans(t *testing.T) {
	r, be := memRepo(t)
	const K = ageChunk
	// The header and trailer of a pack of two uncompressed blobs of 64 to
	// 512 KiB: the count, two entries (a 3-byte length, a 1-byte
	// difference, the ID), the trailer.
	const twoEntries = 1 + 2*(3+1+32) + packTrailer
	pick := func(idx ...int) func([]PackedBlob) []PackedBlob {
		return func(all []PackedBlob) []PackedBlob {
			var out []PackedBlob
			for _, i := range idx {
				out = append(out, all[i])
			}
			return out
		}
	}
	everything := func(all []PackedBlob) []PackedBlob { return all }
	// 24 blobs of 1 MiB: 24 MiB, chunks of 1 MiB apart.
	big := slices.Repeat([]int{1 << 20}, 24)
	for _, tc := range []struct {
		name    string
		lengths []int
		pick    func([]PackedBlob) []PackedBlob
		reads   int
	}{
		{"one small blob", []int{100, 200, 300}, pick(1), 1},
		{"whole pack", []int{100, 200, 300}, everything, 1},
		{"blob across chunks", []int{K - 10, 3*K + 20, 5}, pick(1), 1},
		{"blobs on chunk boundaries", []int{K, K, 2 * K, 7}, everything, 1},
		{"empty blob", []int{K - 3, 0, 40}, pick(1, 2), 1},
		{"empty blob on a chunk boundary", []int{K, 0, 40}, pick(1), 1},
		// The plaintext ends exactly at a chunk boundary: the final
		// chunk is full-length, and the last blob ends in it.
		{"full-length final chunk", []int{K, 2*K - twoEntries}, pick(1), 1},
		{"full-length final chunk, first blob", []int{K, 2*K - twoEntries}, pick(0), 1},
		{"short final chunk", []int{K, K/2 + 1}, pick(1), 1},
		{"all of a big pack", big, everything, 1},
		{"near the start", big, pick(3), 1},
		{"far from the start: header, then the span", big, pick(10), 2},
		{"two far clusters", big, pick(0, 1, 20, 21), 2},
		{"three clusters", big, pick(0, 9, 10, 23), 3},
		{"gaps within the limit", big, pick(5, 8, 11, 14), 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pack, entries, content := writePack(t, r, be, uint64(len(tc.lengths)), tc.lengths)
			be.take()
			if err := readChecked(t, r, pack, tc.pick(entries), content); err != nil {
				t.Fatal(err)
			}
			reads, _ := be.take()
			if reads != tc.reads {
				t.Errorf("%d pack reads, want %d", reads, tc.reads)
			}
		})
	}
}

// TestReadBlobsReadsLittle: a sparse read fetches the blob's chunks and
// the header window, not the pack.
func TestReadBlobsReadsLittle(t *testing.T) {
	r, be := memRepo(t)
	pack, entries, content := writePack(t, r, be, 1, slices.Repeat([]int{1 << 20}, 16))
	be.take()
	if err := readChecked(t, r, pack, entries[12:13], content); err != nil {
		t.Fatal(err)
	}
	reads, n := be.take()
	// The blob is 16 whole chunks.
	if want := ageHeaderWindow + 16*ageEncChunk; reads != 2 || n > want {
		t.Errorf("%d reads of %d bytes, want 2 of at most %d", reads, n, want)
	}
}

// TestReadBlobsDamage: damage in a chunk a blob comes from, in the age
// header or a cut-off pack fails with ErrCorrupt naming the pack; damage
// in a chunk the span only passes through does not matter.
func TestReadBlobsDamage(t *testing.T) {
	r, be := memRepo(t)
	pack, entries, content := writePack(t, r, be, 7, slices.Repeat([]int{100 << 10}, 8)) // 800 KiB: one span
	key := string(PackFile) + "/" + pack.String()
	sealed := slices.Clone(be.files[key])
	hdr, err := age.ExtractHeader(bytes.NewReader(sealed))
	if err != nil {
		t.Fatal(err)
	}
	payload := int64(len(hdr) + ageNonce)
	// cipherAt is the sealed offset of plaintext offset off.
	cipherAt := func(off int64) int64 { return payload + off/ageChunk*ageEncChunk + off%ageChunk }
	victim := entries[5]
	for _, tc := range []struct {
		name    string
		damage  func([]byte) []byte
		wantErr bool
	}{
		{"byte in the blob", func(b []byte) []byte { b[cipherAt(int64(victim.Offset)+50)] ^= 1; return b }, true},
		{"tag of the blob's chunk", func(b []byte) []byte {
			c := int64(victim.Offset) / ageChunk
			b[payload+(c+1)*ageEncChunk-1] ^= 1
			return b
		}, true},
		{"age header", func(b []byte) []byte { b[len(hdr)-5] ^= 1; return b }, true},
		{"nonce", func(b []byte) []byte { b[len(hdr)+3] ^= 1; return b }, true},
		{"cut in the blob", func(b []byte) []byte { return b[:cipherAt(int64(victim.Offset)+10)] }, true},
		{"cut before the blob", func(b []byte) []byte { return b[:cipherAt(int64(victim.Offset)-ageChunk)] }, true},
		{"passed-through chunk", func(b []byte) []byte { b[cipherAt(int64(entries[2].Offset)+10)] ^= 1; return b }, false},
		{"pack header", func(b []byte) []byte { b[len(b)-30] ^= 1; return b }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			be.files[key] = tc.damage(slices.Clone(sealed))
			err := readChecked(t, r, pack, []PackedBlob{entries[0], victim}, content)
			if !tc.wantErr {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), pack.String()) {
				t.Errorf("err = %v, want ErrCorrupt naming pack %s", err, pack)
			}
		})
	}
	be.files[key] = sealed

	// Entries that claim more than the pack holds.
	t.Run("blob past the end", func(t *testing.T) {
		b := entries[7]
		b.Length += 10 << 10
		err := r.ReadBlobs(t.Context(), pack, []PackedBlob{b}, func(PackedBlob, []byte) error { return nil })
		if !errors.Is(err, ErrCorrupt) {
			t.Errorf("err = %v, want ErrCorrupt", err)
		}
	})
	t.Run("blob after the end", func(t *testing.T) {
		last := entries[7]
		b := last
		b.Offset += last.Length + 8*packEntrySize + packTrailer + 100
		b.Length = 10
		err := r.ReadBlobs(t.Context(), pack, []PackedBlob{last, b}, func(PackedBlob, []byte) error { return nil })
		if !errors.Is(err, ErrCorrupt) {
			t.Errorf("err = %v, want ErrCorrupt", err)
		}
	})
	t.Run("overlapping entries", func(t *testing.T) {
		b := entries[3]
		b.Offset--
		err := r.ReadBlobs(t.Context(), pack, []PackedBlob{entries[2], b}, func(PackedBlob, []byte) error { return nil })
		if !errors.Is(err, ErrCorrupt) {
			t.Errorf("err = %v, want ErrCorrupt", err)
		}
	})
}

// TestPlanSpans: chunks are grouped while the gaps stay within the limit.
func TestPlanSpans(t *testing.T) {
	const K = ageChunk
	blob := func(off, n int) PackedBlob { return PackedBlob{Offset: uint32(off), Length: uint32(n)} }
	for _, tc := range []struct {
		name  string
		blobs []PackedBlob
		gap   int64
		want  []chunkSpan
	}{
		{"one chunk", []PackedBlob{blob(10, 20)}, 0, []chunkSpan{{0, 0}}},
		{"ends on a boundary", []PackedBlob{blob(K, K)}, 0, []chunkSpan{{1, 1}}},
		{"empty blob", []PackedBlob{blob(2*K, 0)}, 0, []chunkSpan{{2, 2}}},
		{"neighbours", []PackedBlob{blob(0, K+1), blob(K+1, 10)}, 0, []chunkSpan{{0, 1}}},
		{"adjacent chunks", []PackedBlob{blob(0, 10), blob(K, 10)}, 0, []chunkSpan{{0, 1}}},
		{"one chunk apart, no gap allowed", []PackedBlob{blob(0, 10), blob(2*K, 10)}, 0, []chunkSpan{{0, 0}, {2, 2}}},
		{"one chunk apart, one allowed", []PackedBlob{blob(0, 10), blob(2*K, 10)}, ageEncChunk, []chunkSpan{{0, 2}}},
		{"two chunks apart, one allowed", []PackedBlob{blob(0, 10), blob(3*K, 10), blob(4*K, 10)}, ageEncChunk, []chunkSpan{{0, 0}, {3, 4}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := planSpans(tc.blobs, tc.gap); !slices.Equal(got, tc.want) {
				t.Errorf("planSpans = %v, want %v", got, tc.want)
			}
		})
	}
}

// breakingBackend is a memBackend whose pack bodies fail with err once
// they have delivered cut bytes, as an S3 body does when the backend has
// given up resuming it.
type breakingBackend struct {
	*memBackend
	cut int64
	err error
}

func (b breakingBackend) GetRange(ctx context.Context, t FileType, name string, offset, length int64) (io.ReadCloser, error) {
	rc, err := b.memBackend.GetRange(ctx, t, name, offset, length)
	if err != nil || t != PackFile {
		return rc, err
	}
	return io.NopCloser(io.MultiReader(io.LimitReader(rc, b.cut), errReader{b.err})), nil
}

func (b breakingBackend) Get(ctx context.Context, t FileType, name string) (io.ReadCloser, error) {
	return b.GetRange(ctx, t, name, 0, 0)
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// TestReadBlobsBrokenBody: a body that breaks in the middle of a span is
// a read error carrying the transport's error, never ErrCorrupt — even a
// wrapped io.ErrUnexpectedEOF, which readSpan must not take for ReadFull's
// short final chunk and then fail to authenticate — and the blobs handed
// to fn before the break are each handed once.
func TestReadBlobsBrokenBody(t *testing.T) {
	r, be := memRepo(t)
	pack, entries, content := writePack(t, r, be, 11, slices.Repeat([]int{100 << 10}, 8)) // one span
	for _, tc := range []struct {
		name string
		err  error
	}{
		{"unexpected EOF, wrapped", fmt.Errorf("read at byte 300000 (3 re-requests): %w", io.ErrUnexpectedEOF)},
		{"connection reset", fmt.Errorf("read: %w", errors.New("connection reset by peer"))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r.be = breakingBackend{be, 300 << 10, tc.err}
			defer func() { r.be = be }()
			seen := map[ID]int{}
			err := r.ReadBlobs(t.Context(), pack, slices.Clone(entries), func(b PackedBlob, data []byte) error {
				if !bytes.Equal(data, content[b.ID]) {
					return fmt.Errorf("blob at %d: wrong content", b.Offset)
				}
				seen[b.ID]++
				return nil
			})
			if err == nil || errors.Is(err, ErrCorrupt) || !errors.Is(err, tc.err) {
				t.Fatalf("ReadBlobs through a body cut at 300 KiB: %v, want %v and not ErrCorrupt", err, tc.err)
			}
			// 300 KiB of the sealed pack hold two whole 100 KiB blobs.
			if len(seen) != 2 {
				t.Errorf("%d blobs handed before the break, want 2", len(seen))
			}
			for id, n := range seen {
				if n != 1 {
					t.Errorf("blob %s handed %d times", id.Short(), n)
				}
			}
		})
	}
}

// TestReadPackBrokenBody: a whole-pack read (check --read-data, copy)
// whose body breaks is a read error, not ErrCorrupt: age would take the
// cut for a chunk that does not authenticate, and check would name a
// sound pack as damaged.
func TestReadPackBrokenBody(t *testing.T) {
	r, be := memRepo(t)
	pack, _, _ := writePack(t, r, be, 12, slices.Repeat([]int{100 << 10}, 8))
	if _, err := r.ReadPack(t.Context(), pack); err != nil {
		t.Fatalf("ReadPack of a sound pack: %v", err)
	}
	for _, cut := range []int64{10, 300 << 10} { // in the age header, in a chunk
		broken := fmt.Errorf("read: %w", errors.New("connection reset by peer"))
		r.be = breakingBackend{be, cut, broken}
		_, err := r.ReadPack(t.Context(), pack)
		r.be = be
		if err == nil || errors.Is(err, ErrCorrupt) || !errors.Is(err, broken) {
			t.Errorf("ReadPack through a body cut at %d: %v, want the read error and not ErrCorrupt", cut, err)
		}
	}
}

// TestPackFormat1: packs written before format 2, with fixed 42-byte
// entries and "MVP1", still give their header and blobs; format 2 spends
// at most 37 bytes an entry on blobs under 16 KiB.
func TestPackFormat1(t *testing.T) {
	r, be := memRepo(t)
	rng := rand.New(rand.NewPCG(3, 1))
	var sealed bytes.Buffer
	pb, err := newPackBuilder(&sealed, r.recipientFor(PackFile))
	if err != nil {
		t.Fatal(err)
	}
	content := map[ID][]byte{}
	for i := range 1000 {
		data := make([]byte, 1+rng.IntN(16<<10-1))
		for j := range data {
			data[j] = byte(rng.Uint32())
		}
		id := r.BlobID(data)
		content[id] = data
		// Claimed raw lengths and types as a mix of compressed blobs.
		c, rawLen := Compression(i%3%2), len(data)
		if c == Zstd {
			rawLen += rng.IntN(1 << 14)
		}
		if err := pb.add(id, BlobType(i%2), c, rawLen, data); err != nil {
			t.Fatal(err)
		}
	}
	v2 := appendPackHeader(nil, pb.entries)
	if per := float64(len(v2)-packTrailer) / float64(len(pb.entries)); per > 37 {
		t.Errorf("format 2 header: %.1f bytes an entry, want at most 37", per)
	}
	// finish, with the format 1 header.
	if _, err := pb.enc.Write(appendPackHeaderV1(nil, pb.entries)); err != nil {
		t.Fatal(err)
	}
	if err := pb.enc.Close(); err != nil {
		t.Fatal(err)
	}
	var pack ID
	pb.hash.Sum(pack[:0])
	if err := be.Put(t.Context(), PackFile, pack.String(), sealed.Bytes()); err != nil {
		t.Fatal(err)
	}
	got, err := r.ReadPackHeader(t.Context(), pack, int64(sealed.Len()))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, pb.entries) {
		t.Fatalf("format 1 header read back differs")
	}
	var raw []PackedBlob
	for _, b := range got {
		if b.Compression == Uncompressed {
			raw = append(raw, b) // the others are not zstd: not readable
		}
	}
	if err := readChecked(t, r, pack, raw, content); err != nil {
		t.Fatal(err)
	}
}
