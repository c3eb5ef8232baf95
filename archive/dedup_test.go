package archive_test

import (
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailvault/mailvault/archive"
)

// fanOutTree writes one message delivered to n mailboxes
// (example.com/userI/Maildir/new), each copy with its own prepended
// Delivered-To and Received lines, and returns the copies' sizes and the
// body (everything after the header block).
func fanOutTree(t *testing.T, n, bodySize int) (root string, sizes []int, body []byte) {
	t.Helper()
	root = filepath.Join(t.TempDir(), "mail")
	rnd := rand.New(rand.NewPCG(uint64(n), uint64(bodySize)))
	raw := make([]byte, bodySize*3/4+1)
	for i := range raw {
		raw[i] = byte(rnd.Uint32())
	}
	// An attachment-like body: base64 lines of random bytes, which zstd
	// barely compresses, so only deduplication can save space.
	enc := base64.StdEncoding.EncodeToString(raw)
	var b strings.Builder
	for len(enc) > 76 && b.Len() < bodySize {
		b.WriteString(enc[:76] + "\n")
		enc = enc[76:]
	}
	body = []byte(b.String())
	header := "From: Alice <alice@example.org>\nTo: team@example.com\nSubject: quarterly report\n" +
		"Message-ID: <report-1@example.org>\nDate: Mon, 2 Mar 2026 10:00:00 +0000\nMIME-Version: 1.0\n\n"
	mtime := time.Date(2026, 3, 2, 10, 0, 5, 0, time.UTC)
	for i := range n {
		dir := filepath.Join(root, "example.com", fmt.Sprintf("user%d", i), "Maildir")
		for _, sub := range []string{"cur", "new", "tmp"} {
			if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
				t.Fatal(err)
			}
		}
		prefix := fmt.Sprintf("Return-Path: <alice@example.org>\nDelivered-To: user%d@example.com\n"+
			"Received: from mx1.example.com by imap1 with LMTP id %x; Mon, 2 Mar 2026 10:00:%02d +0000\n", i, rnd.Uint64(), i%60)
		msg := append([]byte(prefix+header), body...)
		name := fmt.Sprintf("1772445605.M%dP100Q%d.imap1,S=%d", i, i, len(msg))
		p := filepath.Join(dir, "new", name)
		if err := os.WriteFile(p, msg, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
		sizes = append(sizes, len(msg))
	}
	return root, sizes, body
}

// dataBlobs counts the data blobs in the index and their plaintext size.
func dataBlobs(r *archive.Repository) (n int, raw int64) {
	for _, blobs := range r.Index().PackBlobs() {
		for _, b := range blobs {
			if b.Type == archive.DataBlob {
				n++
				raw += int64(b.RawLength)
			}
		}
	}
	return n, raw
}

// TestFanOutDedup delivers one message to many mailboxes with different
// delivery headers: the copies must share their body blobs, so the
// repository holds one body plus one small header blob per copy.
func TestFanOutDedup(t *testing.T) {
	tests := []struct {
		name     string
		copies   int
		bodySize int
	}{
		{"small body", 5, 4 << 10},
		{"one body blob", 20, 300 << 10},
		{"chunked body", 4, 3 << 20}, // above ChunkMin: content-defined chunks
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src, sizes, body := fanOutTree(t, tc.copies, tc.bodySize)
			tr := newTestRepo(t, 0)
			r := tr.open(t)
			res := runBackup(t, r, src)
			s := res.Snapshot.Summary

			var total int64
			for _, n := range sizes {
				total += int64(n)
			}
			// Stored: every copy's header block, and the body once.
			wantRaw := total - int64(tc.copies-1)*int64(len(body))
			blobs, raw := dataBlobs(r)
			if raw != wantRaw {
				t.Errorf("data blobs hold %d plaintext bytes, want %d (one body of %d + %d header blocks); copies total %d",
					raw, wantRaw, len(body), tc.copies, total)
			}
			bodyBlobs := blobs - tc.copies
			if tc.bodySize < 512<<10 && bodyBlobs != 1 {
				t.Errorf("%d body blobs, want 1", bodyBlobs)
			}
			// Chunk boundaries depend on the repository's random
			// polynomial: a 3 MiB body may even be one chunk.
			if tc.bodySize > 512<<10 && (bodyBlobs < 1 || bodyBlobs > tc.bodySize/(512<<10)+1) {
				t.Errorf("%d body chunks for a %d-byte body", bodyBlobs, tc.bodySize)
			}
			if s.BytesRead != total || s.MessagesNew != int64(tc.copies) {
				t.Errorf("read %d bytes of %d messages, want %d of %d", s.BytesRead, s.MessagesNew, total, tc.copies)
			}
			// What went to storage is well below the sum of the copies.
			if limit := int64(len(body)) + int64(len(body))/4 + int64(tc.copies)*4096; s.BytesStored > limit {
				t.Errorf("stored %d bytes for %d copies of a %d-byte body (limit %d)", s.BytesStored, tc.copies, len(body), limit)
			}
			if int(s.BlobsDeduplicated) < (tc.copies-1)*max(bodyBlobs, 1) {
				t.Errorf("BlobsDeduplicated = %d, want at least %d", s.BlobsDeduplicated, (tc.copies-1)*bodyBlobs)
			}
			got, _ := restoreTo(t, r, res.Snapshot, restoreOptions())
			compareTrees(t, src, got)
		})
	}
}

// TestCorpusFanOutSharesBodies checks the same on generated mail: every
// copy of a message (same Message-ID, whatever its delivery headers or
// folder) has the same body blobs.
func TestCorpusFanOutSharesBodies(t *testing.T) {
	src := genCorpus(t, 3, 2e6)
	tr := newTestRepo(t, 0)
	r := tr.open(t)
	snap := runBackup(t, r, src).Snapshot
	bodies := map[string]string{} // Message-ID → body blob IDs
	copies := 0
	for _, root := range snap.Roots {
		for _, f := range root.Folders {
			tree, err := r.LoadFolderTree(t.Context(), f.Tree)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range tree.Messages {
				if m.MessageID == "" || len(m.Blobs) < 2 {
					t.Errorf("%s/%s/%s: no Message-ID or not split into header and body (%d blobs)", f.User, f.Folder, m.Unique, len(m.Blobs))
					continue
				}
				key := fmt.Sprint(m.Blobs[1:])
				if prev, ok := bodies[m.MessageID]; ok {
					copies++
					if prev != key {
						t.Errorf("copies of %s do not share their body blobs", m.MessageID)
					}
				} else {
					bodies[m.MessageID] = key
				}
			}
		}
	}
	if copies == 0 {
		t.Fatal("corpus has no fanned-out message")
	}
	if s := snap.Summary; s.BytesNew >= s.BytesRead || int(s.BlobsDeduplicated) < copies {
		t.Errorf("BytesNew %d of %d read, %d blobs deduplicated for %d copies", s.BytesNew, s.BytesRead, s.BlobsDeduplicated, copies)
	}
}
