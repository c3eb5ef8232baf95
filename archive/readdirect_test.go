package archive

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"unsafe"
)

// TestDirectBuffersRing: pieces come at the first gap that holds them,
// aligned, never overlapping one still out; a piece's room comes back when
// it is given back, whatever the order; a wait ends with a put or with its
// context.
func TestDirectBuffersRing(t *testing.T) {
	const a = directAlign
	d := newDirectBuffers(10 * a)
	out := map[int][]byte{} // by start
	start := func(b []byte) int {
		return int(uintptr(unsafe.Pointer(unsafe.SliceData(b))) - uintptr(unsafe.Pointer(unsafe.SliceData(d.buf))))
	}
	get := func(n int) (int, bool) {
		b := d.tryGet(n * a)
		if b == nil {
			return -1, false
		}
		if uintptr(unsafe.Pointer(unsafe.SliceData(b)))%a != 0 || len(b) != n*a || cap(b) != n*a {
			t.Fatalf("piece of %d blocks: len %d cap %d, not aligned or not its size", n, len(b), cap(b))
		}
		s := start(b)
		for o, ob := range out {
			if s < o+len(ob) && o < s+len(b) {
				t.Fatalf("piece at %d+%d overlaps the one at %d+%d", s, len(b), o, len(ob))
			}
		}
		out[s] = b
		return s / a, true
	}
	put := func(blk int) {
		d.put(out[blk*a])
		delete(out, blk*a)
	}
	steps := []struct {
		get, put int // blocks to get (0: none), block whose piece to give back (-1: none)
		want     int // block the piece starts at, -1 for none
	}{
		{get: 4, put: -1, want: 0},
		{get: 4, put: -1, want: 4},
		{get: 3, put: -1, want: -1}, // 8 + 3 > 10 and nothing free before
		{get: 2, put: -1, want: 8},
		{put: 4, want: -1},         // the second piece back, the first still out
		{get: 1, put: -1, want: 4}, // into its room at once
		{put: 0, want: -1},         // now 0–4 and 5–8 are free
		{get: 4, put: -1, want: 0},
		{get: 4, put: -1, want: -1}, // no gap of 4 left
		{get: 3, put: -1, want: 5},
		{get: 1, put: -1, want: -1}, // full
		{put: 8, want: -1},
		{get: 2, put: -1, want: 8},
		{get: 11, put: -1, want: -1}, // larger than the buffer
	}
	for i, s := range steps {
		if s.put >= 0 && s.get == 0 {
			put(s.put)
			continue
		}
		got, ok := get(s.get)
		if want := s.want >= 0; ok != want || ok && got != s.want {
			t.Fatalf("step %d: get %d blocks at block %d (%v), want %d", i, s.get, got, ok, s.want)
		}
	}

	// A wait for room ends when the piece before it comes back.
	got := make(chan []byte)
	go func() { got <- d.get(context.Background(), 3*a) }()
	put(0)
	if b := <-got; b == nil || start(b) != 0 {
		t.Fatalf("get after a put: %v", b != nil)
	}
	// And with its context.
	ctx, cancel := context.WithCancel(context.Background())
	go func() { got <- d.get(ctx, 5*a) }()
	cancel()
	if b := <-got; b != nil {
		t.Fatal("get returned a buffer after its context ended")
	}
}

// TestReadDirect reads files of sizes around the block size, cold and from
// the page cache, into buffers as the backup sizes them: the whole file
// byte for byte, and a file longer than the buffer fills it.
func TestReadDirect(t *testing.T) {
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(1, 2))
	for _, size := range []int{0, 1, directAlign - 1, directAlign, directAlign + 1, directMin, 200_000, 1<<20 + 3} {
		content := make([]byte, size)
		for i := range content {
			content[i] = byte(rng.Uint32())
		}
		path := filepath.Join(dir, fmt.Sprint(size))
		writeSynced(t, path, content)
		for _, cold := range []bool{true, false} {
			for _, listed := range []int{size, size / 2} {
				if cold {
					evict(t, path)
				}
				fd, err := openFile(path)
				if err != nil {
					t.Fatal(err)
				}
				buf := alignedBuffer(directLen(int64(listed)))
				n, err := readDirect(fd, buf)
				syscall.Close(fd)
				if err != nil {
					t.Fatalf("size %d, cold %v, listed %d: %v", size, cold, listed, err)
				}
				want := content[:min(size, len(buf))]
				if n != len(want) || !bytes.Equal(buf[:n], want) {
					t.Errorf("size %d, cold %v, listed %d: read %d bytes, want %d (the same)", size, cold, listed, n, len(want))
				}
				if n < len(buf) != (size < len(buf)) {
					t.Errorf("size %d, listed %d: read %d of a buffer of %d: whole is %v", size, listed, n, len(buf), n < len(buf))
				}
			}
		}
	}
}

func writeSynced(t *testing.T, path string, content []byte) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(content); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestProcessReadAhead: a file read ahead into a buffer of its own is
// stored whole, byte for byte, at the size it has when read, whether it
// grew or shrank since it was listed.
func TestProcessReadAhead(t *testing.T) {
	r, _ := memRepo(t)
	b := &backup{r: r, bufs: newBufferPool(smallFileLimit, 1, 1), bigFiles: make(chan struct{}, 1),
		direct: newDirectBuffers(directBudget), jobs: make(chan []job, 1)}
	var body bytes.Buffer
	for i := 0; body.Len() < directMin+5000; i++ {
		fmt.Fprintf(&body, "line %d of a large message body\r\n", i)
	}
	content := []byte("From: a@example.org\r\nSubject: size test\r\nMessage-ID: <size@test>\r\n\r\n" + body.String())
	path := filepath.Join(t.TempDir(), "msg")
	writeSynced(t, path, content)
	n := int64(len(content))
	for _, listed := range []int64{n, n - 1, n - 5000, n + 1, n + 5000, 3 * n} {
		if !b.wantsDirect(listed) {
			t.Fatalf("a file of %d bytes is not read ahead", listed)
		}
		evict(t, path)
		var m Message
		q := jobQueue{b: b}
		if err := q.add(t.Context(), job{abs: path, size: listed, isMail: true, meta: &m, blobs: &m.Blobs}); err != nil {
			t.Fatal(err)
		}
		if q.jobs[0].ahead == nil {
			t.Fatal("not read ahead")
		}
		processStored(t, b, q.jobs[0], content)
		if len(b.direct.pieces) != 0 {
			t.Fatalf("listed %d: %d buffers not given back", listed, len(b.direct.pieces))
		}
	}
}
