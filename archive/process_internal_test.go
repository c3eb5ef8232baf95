package archive

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// TestProcessListedSizeWrong: a worker reads a small file at the size the
// listing saw, without a stat; a file that grew or shrank since it was
// listed is still stored whole, byte for byte, with its size as read.
func TestProcessListedSizeWrong(t *testing.T) {
	r, _ := memRepo(t)
	b := &backup{r: r, bufs: newBufferPool(smallFileLimit, 1, 1), bigFiles: make(chan struct{}, 1)}
	var body bytes.Buffer
	for i := range 200 {
		fmt.Fprintf(&body, "line %d of a message body\r\n", i)
	}
	content := []byte("From: a@example.org\r\nSubject: size test\r\nMessage-ID: <size@test>\r\n\r\n" + body.String())
	path := filepath.Join(t.TempDir(), "msg")
	if err := os.WriteFile(path, content, 0o600); err != nil {
		t.Fatal(err)
	}
	n := int64(len(content))
	for _, listed := range []int64{n, n - 1, n - 100, 0, n + 1, n + 5000} {
		for _, ahead := range []bool{true, false} {
			var m Message
			j := job{abs: path, size: listed, isMail: true, meta: &m, blobs: &m.Blobs}
			if ahead {
				b.openAhead(&j)
				if !j.open {
					t.Fatal("openAhead did not open the file")
				}
			}
			processStored(t, b, j, content)
		}
	}
}

// processStored has b's worker store the message file of j, listed at
// j.size, and checks what it stored: the file's size and Message-ID
// <size@test>, and blobs that read back as content.
func processStored(t *testing.T, b *backup, j job, content []byte) {
	t.Helper()
	m, n := j.meta, int64(len(content))
	if err := b.process(t.Context(), j); err != nil {
		t.Fatalf("listed %d: %v", j.size, err)
	}
	if m.Size != n || m.MessageID != "size@test" {
		t.Errorf("listed %d: size %d, Message-ID %q; want %d, size@test", j.size, m.Size, m.MessageID, n)
	}
	if err := b.r.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	var got []byte
	for _, id := range m.Blobs {
		data, err := b.r.LoadBlob(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, data...)
	}
	if !bytes.Equal(got, content) {
		t.Errorf("listed %d: stored %d bytes that differ from the file's %d", j.size, len(got), n)
	}
}
