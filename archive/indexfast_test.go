package archive

import (
	"encoding/json"
	"reflect"
	"testing"
)

func sampleIndex(packs, blobsPerPack int) IndexFileContent {
	ic := IndexFileContent{Version: 1}
	for p := 0; p < packs; p++ {
		ip := IndexPack{ID: seedID(byte(p))}
		for b := 0; b < blobsPerPack; b++ {
			var id ID
			id[0], id[1], id[2] = byte(p), byte(b), byte(b>>8)
			ip.Blobs = append(ip.Blobs, PackedBlob{ID: id, Type: BlobType(b % 2), Offset: uint32(b * 1000), Length: 1000, RawLength: uint32(3000 + b), Compression: Compression(b % 4)})
		}
		ic.Packs = append(ic.Packs, ip)
	}
	return ic
}

// TestDecodeIndexFastTakesWhatWeWrite: the fast path must accept every
// index file this package writes (else it is dead code) and agree with
// encoding/json.
func TestDecodeIndexFastTakesWhatWeWrite(t *testing.T) {
	for _, ic := range []IndexFileContent{sampleIndex(1, 1), sampleIndex(3, 50)} {
		raw, err := json.Marshal(ic)
		if err != nil {
			t.Fatal(err)
		}
		fast, ok := decodeIndexFast(raw)
		if !ok {
			t.Fatalf("fast path refused our own encoding: %.200s", raw)
		}
		if !reflect.DeepEqual(normalizeIndex(fast), normalizeIndex(&ic)) {
			t.Fatalf("fast path decoded %+v, want %+v", fast, ic)
		}
	}
}

func BenchmarkDecodeIndex(b *testing.B) {
	raw, _ := json.Marshal(sampleIndex(40, 1000))
	b.Run("fast", func(b *testing.B) {
		b.SetBytes(int64(len(raw)))
		for b.Loop() {
			if _, err := decodeIndex(raw); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.SetBytes(int64(len(raw)))
		for b.Loop() {
			var ic IndexFileContent
			if err := json.Unmarshal(raw, &ic); err != nil {
				b.Fatal(err)
			}
		}
	})
}
