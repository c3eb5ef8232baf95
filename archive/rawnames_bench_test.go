package archive

import (
	"encoding/json"
	"fmt"
	"testing"
)

// BenchmarkEncodeFolderTree: what the wire twins (rawnames.go) cost a
// backup that stores a 20,000-message folder: "plain" is encoding/json
// alone, "stored" encodeTree, and "marshaler" the same through a
// MarshalJSON method, which encoding/json re-scans (why encodeTree is not
// one).
func BenchmarkEncodeFolderTree(b *testing.B) {
	msgs := make([]Message, 20000)
	for i := range msgs {
		msgs[i] = Message{Unique: fmt.Sprintf("17000%05d.M%dP1Q1.mx.example.com,S=4096,W=4180", i, i), Flags: "S", MTime: int64(i), Size: 4096,
			Blobs: []ID{seedID(byte(i)), seedID(byte(i + 1))}, From: []string{"Alice <alice@example.com>"}, To: []string{"bob@example.com"},
			Subject: "Quarterly report", Date: "2024-01-02T03:04:05Z", MessageID: fmt.Sprintf("%d@example.com", i)}
	}
	tree := FolderTree{Version: 1, Messages: msgs}
	type plain FolderTree
	b.Run("plain", func(b *testing.B) {
		for b.Loop() {
			if _, err := json.Marshal(plain(tree)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("stored", func(b *testing.B) {
		for b.Loop() {
			if _, err := encodeTree(tree); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("marshaler", func(b *testing.B) {
		for b.Loop() {
			if _, err := json.Marshal(treeMarshaler(tree)); err != nil {
				b.Fatal(err)
			}
		}
	})
}

type treeMarshaler FolderTree

func (t treeMarshaler) MarshalJSON() ([]byte, error) { return encodeTree(FolderTree(t)) }
