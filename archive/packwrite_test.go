package archive

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// TestPackWriter: what goes through a pack writer, in pieces of every
// size around its buffer's and with writes after a Flush, is the file,
// whether the file system takes O_DIRECT (the test's directory on a disk)
// or not (forced, as on tmpfs).
func TestPackWriter(t *testing.T) {
	for _, direct := range []bool{true, false} {
		f, err := os.Create(filepath.Join(t.TempDir(), "pack"))
		if err != nil {
			t.Fatal(err)
		}
		w := newPackWriter(f)
		if !direct {
			w.stopDirect()
		}
		t.Logf("direct asked %v, on %v", direct, w.direct)
		r := rand.New(rand.NewPCG(1, 2))
		var want []byte
		for _, n := range []int{1, 4095, 4097, packWriteBuf - 1, packWriteBuf, 3*packWriteBuf + 17, 100, 0, 12345} {
			b := make([]byte, n)
			for i := range b {
				b[i] = byte(r.Uint32())
			}
			if k, err := w.Write(b); k != n || err != nil {
				t.Fatalf("Write(%d bytes) = %d, %v", n, k, err)
			}
			want = append(want, b...)
			if n == 100 {
				if err := w.Flush(); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		if w.direct {
			t.Errorf("direct %v: still direct after Flush", direct)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(f.Name())
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("direct %v: file of %d bytes differs from the %d written", direct, len(got), len(want))
		}
	}
}
