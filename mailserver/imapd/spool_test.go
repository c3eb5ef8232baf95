package imapd

import (
	"io"
	"os"
	"strings"
	"testing"
)

func TestSpoolLiteral(t *testing.T) {
	dir := t.TempDir()
	files := func() int {
		es, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		return len(es)
	}
	for _, tc := range []struct {
		size     int
		file     bool
		announce int64
	}{
		{100, false, 100},
		{maxMemorySpool, false, maxMemorySpool},
		{maxMemorySpool + 1, true, maxMemorySpool + 1},
		{50, false, 60}, // shorter than announced: n tells
	} {
		msg := strings.Repeat("x", tc.size)
		r, n, release, err := spoolLiteral(strings.NewReader(msg), tc.announce, 1<<20, dir)
		if err != nil {
			t.Fatal(err)
		}
		if n != int64(tc.size) {
			t.Fatalf("size %d: n = %d", tc.size, n)
		}
		if got := files(); (got == 1) != tc.file {
			t.Fatalf("size %d: %d spool files", tc.size, got)
		}
		b, err := io.ReadAll(r)
		if err != nil || string(b) != msg {
			t.Fatalf("size %d: read back %d bytes, %v", tc.size, len(b), err)
		}
		release()
		if got := files(); got != 0 {
			t.Fatalf("size %d: %d spool files after release", tc.size, got)
		}
	}
	// Over the limit: one byte more than the limit is read, no more.
	_, n, release, err := spoolLiteral(strings.NewReader(strings.Repeat("x", 500)), 500, 100, dir)
	if err != nil {
		t.Fatal(err)
	}
	release()
	if n != 101 {
		t.Fatalf("over the limit: n = %d, want 101", n)
	}
}
