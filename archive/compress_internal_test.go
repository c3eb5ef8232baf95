package archive

import (
	"bytes"
	"encoding/base64"
	"math/rand/v2"
	"strings"
	"testing"
)

// TestCompressStoresBySize checks what compress keeps for the kinds of
// attachment bytes mail carries, by stored size: random bytes (a JPEG or
// zip sent as is) stay raw; their base64 text is stored decoded, raw;
// base64 of CSV decoded and compressed; base64 that the base64 form does
// not keep (a line of 77), which zstd's fastest level finds no matches
// in, is still Huffman-coded to about 6 bits a byte; text compresses.
func TestCompressStoresBySize(t *testing.T) {
	r, _ := memRepoOpt(t, Options{Compression: 1})

	random := make([]byte, 512<<10)
	rng := rand.NewChaCha8([32]byte{1})
	rng.Read(random)
	// Base64 in 76-column CRLF lines, as a MIME part carries it.
	enc := base64.StdEncoding.EncodeToString(random)
	var b64 bytes.Buffer
	for len(enc) > 76 {
		b64.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	b64.WriteString(enc + "\r\n")
	text := []byte(strings.Repeat("Quarterly figures attached, see the third column for the revised totals.\r\n", 4000))
	odd := bytes.Replace(b64.Bytes(), []byte("\r\n"), []byte("A\r\n"), 1)
	csv := attachmentText("csv", 400<<10)

	for _, tc := range []struct {
		name     string
		data     []byte
		want     Compression
		maxRatio float64 // stored/raw at most
	}{
		{"random", random, Uncompressed, 1},
		{"base64", b64.Bytes(), Base64, 0.74},
		{"base64 of CSV", csv, Base64Zstd, 0.11},
		{"base64 with a line of 77", odd, Zstd, 0.78},
		{"text", text, Zstd, 0.05},
	} {
		c, stored := r.compress(DataBlob, tc.data)
		ratio := float64(len(stored)) / float64(len(tc.data))
		if c != tc.want || ratio > tc.maxRatio {
			t.Errorf("%s: %d bytes stored as %v, %d bytes (%.3f); want %v at most %.2f", tc.name, len(tc.data), c, len(stored), ratio, tc.want, tc.maxRatio)
		}
		b := PackedBlob{ID: r.BlobID(tc.data), Length: uint32(len(stored)), RawLength: uint32(len(tc.data)), Compression: c}
		plain, err := r.DecodeBlob(ID{}, b, stored)
		if err != nil || !bytes.Equal(plain, tc.data) {
			t.Errorf("%s: round trip: %v, equal %v", tc.name, err, bytes.Equal(plain, tc.data))
		}
	}
}

// BenchmarkCompressAttachment compares, on corpus-like attachment text
// (b64form_test.go attachmentText), the stored form compress chooses —
// the base64 form — with the zstd frame of the text that was stored
// before it: CPU per text byte, and stored/text as "ratio".
func BenchmarkCompressAttachment(b *testing.B) {
	r, _ := memRepoOpt(b, Options{Compression: 1})
	for _, kind := range []string{"photo", "csv"} {
		text := attachmentText(kind, 400<<10)
		buf := make([]byte, 0, compressBound(len(text)))
		b.Run(kind+"/zstd-of-text", func(b *testing.B) {
			b.SetBytes(int64(len(text)))
			var n int
			for b.Loop() {
				n = len(r.zenc.EncodeAll(text, buf[:0]))
			}
			b.ReportMetric(float64(n)/float64(len(text)), "ratio")
		})
		b.Run(kind+"/compress", func(b *testing.B) {
			b.SetBytes(int64(len(text)))
			var n int
			for b.Loop() {
				c, stored := r.compress(DataBlob, text)
				n = len(stored)
				if c != Uncompressed {
					r.zbufs.put(stored)
				}
			}
			b.ReportMetric(float64(n)/float64(len(text)), "ratio")
		})
	}
}
