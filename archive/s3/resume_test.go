package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/mailvault/mailvault/archive"
	"github.com/mailvault/mailvault/archive/local"
	"github.com/mailvault/mailvault/bench/corpus"
	"github.com/mailvault/mailvault/restore"
)

// cutBody delivers at most cut bytes of rc, then fails with err; a body
// that ends first ends as it would.
func cutBody(rc io.ReadCloser, cut int64, err error) io.ReadCloser {
	return &cutReader{ReadCloser: rc, left: cut, err: err}
}

type cutReader struct {
	io.ReadCloser
	left int64
	err  error
}

func (c *cutReader) Read(p []byte) (int, error) {
	if c.left <= 0 {
		// The cut comes at a byte that exists: only a body with more
		// to give breaks.
		var one [1]byte
		if n, err := c.ReadCloser.Read(one[:]); n == 0 && err == io.EOF {
			return 0, io.EOF
		}
		return 0, c.err
	}
	n, err := c.ReadCloser.Read(p[:min(int64(len(p)), c.left)])
	c.left -= int64(n)
	return n, err
}

// TestResumingBody reads an object through bodies cut as each case says:
// the bytes come out whole and in order, with one re-request per break,
// while the breaks are transient and the budget lasts.
func TestResumingBody(t *testing.T) {
	obj := make([]byte, 300_000)
	for i := range obj {
		obj[i] = byte(i * 7)
	}
	reset := fmt.Errorf("read tcp: %w", syscall.ECONNRESET)
	tests := []struct {
		name     string
		off, end int64
		// cuts[i] is where the i-th body breaks (bytes into it); -1 or
		// past the cuts: it does not.
		cuts     []int64
		err      error
		lenDelta int64 // added to the length a resumed body reports
		want     []byte
		wantErr  error
		resumes  int64
	}{
		{name: "no break", end: -1, want: obj},
		// Each break after 64 KiB or more starts the count of tries
		// again.
		{name: "resets", end: -1, cuts: []int64{70_000, 0, 80_000, 1}, err: reset, want: obj, resumes: 4},
		{name: "truncations in a range", off: 10_000, end: 290_000, cuts: []int64{100_000, 100_000}, err: io.ErrUnexpectedEOF, want: obj[10_000:290_000], resumes: 2},
		{name: "stalls", off: 299_000, end: -1, cuts: []int64{10}, err: os.ErrDeadlineExceeded, want: obj[299_000:], resumes: 1},
		{name: "three tries at one byte", end: -1, cuts: []int64{500, 0, 0}, err: reset, wantErr: syscall.ECONNRESET, resumes: 2},
		{name: "two tries at one byte", end: -1, cuts: []int64{500, 0}, err: reset, want: obj, resumes: 2},
		{name: "a few bytes a try", end: -1, cuts: []int64{10, 10, 10, 10}, err: reset, wantErr: syscall.ECONNRESET, resumes: 2},
		{name: "progress on every try", end: -1, cuts: []int64{70_000, 70_000, 70_000, 70_000}, err: reset, want: obj, resumes: 4},
		{name: "not transient", end: -1, cuts: []int64{500}, err: errors.New("certificate expired"), wantErr: errReaderSentinel, resumes: 0},
		{name: "a resumed body of another length", end: -1, cuts: []int64{500}, err: reset, lenDelta: 1, wantErr: errWrongLength, resumes: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A backoff, so that its timer runs; the counts, not the
			// waiting, are under test.
			b := &Backend{attempts: 3, backoff: time.Nanosecond}
			var opened int
			open := func(_ context.Context, off, end int64, resume bool) (io.ReadCloser, int64, error) {
				if resume != (opened > 0) {
					t.Errorf("request %d: resume %v", opened, resume)
				}
				if end < 0 {
					end = int64(len(obj))
				}
				n := end - off
				var rc io.ReadCloser = io.NopCloser(bytes.NewReader(obj[off:end]))
				if opened < len(tt.cuts) && tt.cuts[opened] >= 0 {
					rc = cutBody(rc, tt.cuts[opened], tt.err)
				}
				if opened > 0 {
					n += tt.lenDelta
				}
				opened++
				return rc, n, nil
			}
			rc, err := b.openResuming(t.Context(), open, tt.off, tt.end)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(rc)
			rc.Close()
			switch {
			case tt.wantErr == errReaderSentinel:
				if err == nil || !errors.Is(err, tt.err) {
					t.Errorf("read: %v, want %v", err, tt.err)
				}
			case tt.wantErr == errWrongLength:
				if err == nil {
					t.Error("read: no error for a resumed body of the wrong length")
				}
			case tt.wantErr != nil:
				if !errors.Is(err, tt.wantErr) {
					t.Errorf("read: %v, want %v", err, tt.wantErr)
				}
			case err != nil || !bytes.Equal(got, tt.want):
				t.Errorf("read %d bytes (want %d), %v", len(got), len(tt.want), err)
			}
			if n := b.resumes.Load(); n != tt.resumes {
				t.Errorf("%d re-requests, want %d", n, tt.resumes)
			}
		})
	}
}

// Markers for TestResumingBody's cases whose error is checked otherwise.
var (
	errReaderSentinel = errors.New("the case's own error")
	errWrongLength    = errors.New("a wrong length")
)

// TestResumingBodyStopsWithContext: a read whose context has ended is
// not resumed.
func TestResumingBodyStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	b := &Backend{attempts: 3}
	open := func(context.Context, int64, int64, bool) (io.ReadCloser, int64, error) {
		return cutBody(io.NopCloser(bytes.NewReader(make([]byte, 1000))), 10, syscall.ECONNRESET), 1000, nil
	}
	rc, err := b.openResuming(ctx, open, 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	if _, err := io.ReadAll(rc); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("read: %v, want the reset", err)
	}
	if n := b.resumes.Load(); n != 0 {
		t.Errorf("%d re-requests after the context ended", n)
	}
}

// cuttingBackend is a local backend whose bodies break: each one it opens
// fails with the next of errs after every bytes, taking turns.
type cuttingBackend struct {
	archive.Backend
	every int64
	errs  []error
	mu    sync.Mutex
	cuts  int
}

func (c *cuttingBackend) GetRange(ctx context.Context, t archive.FileType, name string, offset, length int64) (io.ReadCloser, error) {
	rc, err := c.Backend.GetRange(ctx, t, name, offset, length)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	err = c.errs[c.cuts%len(c.errs)]
	return &countedCut{ReadCloser: cutBody(rc, c.every, err), c: c}, nil
}

// countedCut counts a cut when it happens, not when its body opens.
type countedCut struct {
	io.ReadCloser
	c    *cuttingBackend
	done bool
}

func (cc *countedCut) Read(p []byte) (int, error) {
	n, err := cc.ReadCloser.Read(p)
	if err != nil && err != io.EOF && !cc.done {
		cc.done = true
		cc.c.mu.Lock()
		cc.c.cuts++
		cc.c.mu.Unlock()
	}
	return n, err
}

// resumingLocal serves cb's bodies through the S3 backend's resuming
// reader: the resume logic over a local repository, without a server.
type resumingLocal struct {
	*cuttingBackend
	b *Backend
}

func (r resumingLocal) Get(ctx context.Context, t archive.FileType, name string) (io.ReadCloser, error) {
	return r.GetRange(ctx, t, name, 0, 0)
}

func (r resumingLocal) GetRange(ctx context.Context, t archive.FileType, name string, offset, length int64) (io.ReadCloser, error) {
	size, err := r.Stat(ctx, t, name)
	if err != nil {
		return nil, err
	}
	end := int64(-1)
	if length > 0 {
		end = offset + length
	}
	open := func(ctx context.Context, off, end int64, _ bool) (io.ReadCloser, int64, error) {
		if end < 0 || end > size {
			end = size
		}
		rc, err := r.cuttingBackend.GetRange(ctx, t, name, off, end-off)
		return rc, max(end-off, 0), err
	}
	return r.b.openResuming(ctx, open, offset, end)
}

// TestResumeLocalRepository restores a local repository and runs check
// --read-data through bodies that all break (resets, truncations, stalls)
// every 100 kB: everything is re-requested where it broke, the restore is
// identical, the check clean, and ReadBlobs hands every blob once.
func TestResumeLocalRepository(t *testing.T) {
	src := filepath.Join(t.TempDir(), "mail")
	if _, err := corpus.Generate(t.Context(), src, corpus.Options{Seed: 3, TargetBytes: 2e6, Domains: 1, UsersPerDomain: 2}); err != nil {
		t.Fatal(err)
	}
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	creds := archive.Credentials{Identities: []age.Identity{id}}
	lb := local.New(filepath.Join(t.TempDir(), "repo"))
	if err := lb.Create(); err != nil {
		t.Fatal(err)
	}
	if _, err := archive.Init(t.Context(), lb, archive.KeyRecipients{Recipients: []string{id.Recipient().String()}}); err != nil {
		t.Fatal(err)
	}
	setPackSize(t, lb, 1<<20)
	open := func(be archive.Backend) *archive.Repository {
		r, err := archive.Open(t.Context(), be, creds, archive.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		if _, err := r.LoadIndex(t.Context()); err != nil {
			t.Fatal(err)
		}
		return r
	}
	res, err := open(lb).Backup(t.Context(), archive.BackupOptions{Paths: []string{src}, Host: "cut"})
	if err != nil {
		t.Fatal(err)
	}

	cb := &cuttingBackend{Backend: lb, every: 100_000, errs: []error{
		fmt.Errorf("read tcp: %w", syscall.ECONNRESET), io.ErrUnexpectedEOF, os.ErrDeadlineExceeded,
	}}
	b := &Backend{attempts: 3}
	r := open(resumingLocal{cb, b})
	target := filepath.Join(t.TempDir(), "restored")
	if _, err := restore.Restore(t.Context(), r, res.Snapshot, restore.Options{Target: target}); err != nil {
		t.Fatalf("restore through cut bodies: %v", err)
	}
	compareTrees(t, src, target)
	chk, err := r.Check(t.Context(), archive.CheckOptions{ReadData: true})
	if err != nil || !chk.OK() || chk.PacksRead == 0 {
		t.Fatalf("check --read-data through cut bodies: %v, %d packs read, errors %v", err, chk.PacksRead, chk.Errors)
	}
	handed := map[archive.ID]int{}
	for pack, blobs := range r.Index().PackBlobs() {
		err := r.ReadBlobs(t.Context(), pack, slices.Clone(blobs), func(pb archive.PackedBlob, _ []byte) error {
			handed[pb.ID]++
			return nil
		})
		if err != nil {
			t.Fatalf("ReadBlobs through cut bodies: %v", err)
		}
	}
	for id, n := range handed {
		if n != 1 {
			t.Errorf("blob %s handed %d times", id.Short(), n)
		}
	}
	t.Logf("%d bodies cut, %d re-requests, %d blobs read", cb.cuts, b.resumes.Load(), len(handed))
	if cb.cuts == 0 || b.resumes.Load() != int64(cb.cuts) {
		t.Errorf("%d bodies cut, %d re-requests: want one per cut, and some", cb.cuts, b.resumes.Load())
	}
}
