package archive_test

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/mailvault/mailvault/archive"
	"github.com/mailvault/mailvault/restore"
)

// countingBackend counts the requests made of each pack file.
type countingBackend struct {
	archive.Backend
	mu    sync.Mutex
	reads map[string]int // pack name → Get and GetRange calls
	stats int            // Stat calls on packs
}

func (c *countingBackend) Get(ctx context.Context, t archive.FileType, name string) (io.ReadCloser, error) {
	c.count(t, name)
	return c.Backend.Get(ctx, t, name)
}

func (c *countingBackend) GetRange(ctx context.Context, t archive.FileType, name string, off, n int64) (io.ReadCloser, error) {
	c.count(t, name)
	return c.Backend.GetRange(ctx, t, name, off, n)
}

func (c *countingBackend) Stat(ctx context.Context, t archive.FileType, name string) (int64, error) {
	if t == archive.PackFile {
		c.mu.Lock()
		c.stats++
		c.mu.Unlock()
	}
	return c.Backend.Stat(ctx, t, name)
}

func (c *countingBackend) count(t archive.FileType, name string) {
	if t != archive.PackFile {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reads[name]++
}

// take returns the counts so far and starts again.
func (c *countingBackend) take() (map[string]int, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	reads, stats := c.reads, c.stats
	c.reads, c.stats = map[string]int{}, 0
	return reads, stats
}

// TestOneUserRestoreRequests: restoring one user reads each data pack it
// needs in one request (packs of 1 MiB: every span starts near enough to
// the pack's start to take the age header along), with no Stat, and gets
// every message right.
func TestOneUserRestoreRequests(t *testing.T) {
	src := genCorpus(t, 23, 30e6)
	tr := newTestRepo(t, 1<<20)
	// Uncompressed, so that the corpus fills several packs.
	snap := runBackup(t, tr.openOpt(t, archive.Options{Compression: 0}), src).Snapshot

	cb := &countingBackend{Backend: tr.be, reads: map[string]int{}}
	r, err := archive.Open(t.Context(), cb, tr.creds(), archive.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	if _, err := r.LoadIndex(t.Context()); err != nil {
		t.Fatal(err)
	}
	dataPacks := map[string]bool{}
	for p, blobs := range r.Index().PackBlobs() {
		if blobs[0].Type == archive.DataBlob {
			dataPacks[p.String()] = true
		}
	}
	if len(dataPacks) < 3 {
		t.Fatalf("%d data packs (%v), want several", len(dataPacks), tr.packFiles(t))
	}
	// The user with the most messages.
	msgs := map[string]int64{}
	var user string
	for _, f := range snap.Roots[0].Folders {
		msgs[f.User] += int64(f.Messages)
		if msgs[f.User] > msgs[user] {
			user = f.User
		}
	}

	// The trees are loaded blob by blob (LoadBlob, not counted here);
	// what restore reads of data packs is one request each.
	cb.take()
	got, res := restoreTo(t, r, snap, restore.Options{User: user})
	reads, _ := cb.take()
	touched := 0
	for p, n := range reads {
		if !dataPacks[p] {
			continue
		}
		touched++
		if n != 1 {
			t.Errorf("data pack %s: %d requests, want 1", p[:12], n)
		}
	}
	if touched == 0 || res.Messages == 0 {
		t.Fatalf("restored %d messages from %d data packs", res.Messages, touched)
	}
	t.Logf("%s: %d messages from %d of %d data packs", user, res.Messages, touched, len(dataPacks))

	files := mailFiles(t, got)
	if int64(len(files)) != res.Messages {
		t.Errorf("%d message files for %d messages", len(files), res.Messages)
	}
	for _, rel := range files {
		want, err := os.ReadFile(filepath.Join(src, filepath.FromSlash(rel)))
		if err != nil {
			t.Fatal(err)
		}
		have, err := os.ReadFile(filepath.Join(got, filepath.FromSlash(rel)))
		if err != nil || !bytes.Equal(have, want) {
			t.Errorf("%s differs from the source (%v)", rel, err)
		}
	}

	// ReadBlobs itself never asks a pack's size.
	var pack archive.ID
	var blobs []archive.PackedBlob
	for p, bs := range r.Index().PackBlobs() {
		if dataPacks[p.String()] && len(bs) > 2 {
			pack, blobs = p, bs[1:2]
			break
		}
	}
	cb.take()
	if err := r.ReadBlobs(t.Context(), pack, blobs, func(archive.PackedBlob, []byte) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if reads, stats := cb.take(); reads[pack.String()] != 1 || stats != 0 {
		t.Errorf("one blob: %d reads and %d Stats, want 1 and 0", reads[pack.String()], stats)
	}
}
