package archive

import (
	"crypto/hmac"
	"crypto/sha256"
	"fmt"
	"testing"

	"github.com/zeebo/blake3"
)

// BenchmarkBlobIDHash compares the candidates for the keyed blob-ID hash on
// the sizes that matter: a typical message header or small body (4 KiB) and
// a large attachment chunk (1 MiB). The choice of keyed BLAKE3 and the
// figures are in docs/PERFORMANCE.md.
func BenchmarkBlobIDHash(b *testing.B) {
	key := make([]byte, 32)
	for _, size := range []int{4 << 10, 1 << 20} {
		data := make([]byte, size)
		b.Run(fmt.Sprintf("BLAKE3-keyed/%dKiB", size>>10), func(b *testing.B) {
			h, _ := blake3.NewKeyed(key)
			var out [32]byte
			b.SetBytes(int64(size))
			for b.Loop() {
				h.Reset()
				h.Write(data)
				h.Sum(out[:0])
			}
		})
		b.Run(fmt.Sprintf("HMAC-SHA256/%dKiB", size>>10), func(b *testing.B) {
			h := hmac.New(sha256.New, key)
			var out [32]byte
			b.SetBytes(int64(size))
			for b.Loop() {
				h.Reset()
				h.Write(data)
				h.Sum(out[:0])
			}
		})
	}
}
