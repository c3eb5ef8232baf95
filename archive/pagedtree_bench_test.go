package archive

import (
	"context"
	"fmt"
	"slices"
	"testing"
)

// BenchmarkFolderTree20k: encoding and decoding a 20,000-message folder as
// one version 1 tree blob and as a version 2 paged tree, and the metadata
// an incremental stores after a flag change on one message
// ("new-bytes/op": plaintext of the tree blobs not already stored).
func BenchmarkFolderTree20k(b *testing.B) {
	msgs := make([]Message, 20000)
	for i := range msgs {
		msgs[i] = Message{Unique: fmt.Sprintf("17000%05d.M%dP1Q1.mx.example.com,S=4096,W=4180", i, i), Flags: "S", MTime: int64(i), Size: 4096,
			Blobs: []ID{seedID(byte(i)), seedID(byte(i + 1))}, From: []string{"Alice <alice@example.com>"}, To: []string{"bob@example.com"},
			Subject: "Quarterly report", Date: "2024-01-02T03:04:05Z", MessageID: fmt.Sprintf("%d@example.com", i)}
	}
	stored := memBlobs{}
	save, load := stored.save, stored.load
	v1 := func() (ID, error) {
		raw, err := encodeTree(FolderTree{Version: 1, Messages: msgs})
		if err != nil {
			return ID{}, err
		}
		return save(b.Context(), raw)
	}
	v2 := func() (ID, error) { return saveFolderTree(b.Context(), msgs, 2, save) }
	v3 := func() (ID, error) { return saveFolderTree(b.Context(), msgs, 3, save) }
	for _, tc := range []struct {
		name  string
		store func() (ID, error)
	}{{"v1", v1}, {"v2", v2}, {"v3", v3}} {
		id, err := tc.store()
		if err != nil {
			b.Fatal(err)
		}
		b.Run("encode/"+tc.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := tc.store(); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("decode/"+tc.name, func(b *testing.B) {
			for b.Loop() {
				t, err := loadFolderTree(b.Context(), id, load)
				if err != nil || len(t.Messages) != len(msgs) {
					b.Fatal(err)
				}
			}
		})
		b.Run("flag-change/"+tc.name, func(b *testing.B) {
			var newBytes, newBlobs int64
			for i := 0; b.Loop(); i++ {
				m := &msgs[(i*7919)%len(msgs)]
				m.Flags = map[string]string{"S": "FS", "FS": "S"}[m.Flags]
				before := map[ID]bool{}
				for id := range stored {
					before[id] = true
				}
				b.StopTimer()
				b.StartTimer()
				if _, err := tc.store(); err != nil {
					b.Fatal(err)
				}
				for id, raw := range stored {
					if !before[id] {
						newBytes += int64(len(raw))
						newBlobs++
					}
				}
			}
			b.ReportMetric(float64(newBytes)/float64(b.N), "new-bytes/op")
			b.ReportMetric(float64(newBlobs)/float64(b.N), "new-blobs/op")
		})
	}
}

// BenchmarkMsgIndexLookup1M: a Message-ID lookup in an index of a million
// messages built by a full backup and then 30 daily incrementals of 1,000
// new messages each (blobs held in memory: the cost here is decoding; a
// repository adds a ranged read and decryption per blob).
func BenchmarkMsgIndexLookup1M(b *testing.B) {
	stored := memBlobs{}
	save := stored.save
	reads := 0
	load := func(ctx context.Context, id ID) ([]byte, error) { reads++; return stored.load(ctx, id) }
	entries := func(from, to int) []msgEntry {
		out := make([]msgEntry, 0, to-from)
		for i := from; i < to; i++ {
			out = append(out, msgEntry{key: msgKey(fmt.Sprint(i, "@example.com")), folder: msgFolder(fmt.Sprintf("example.com/u%d/Maildir/.F%d", i%1000, i%7)), msg: msgName(fmt.Sprintf("17000%07d.M%dP1.mx", i, i))})
		}
		slices.SortFunc(out, compareMsgEntries)
		return out
	}
	const full, days, daily = 1_000_000, 30, 1000
	id, err := extendMsgIndex(b.Context(), nil, entries(0, full), load, save)
	if err != nil {
		b.Fatal(err)
	}
	for d := range days {
		root, err := loadMsgIndexRoot(b.Context(), id, load)
		if err != nil {
			b.Fatal(err)
		}
		if id, err = extendMsgIndex(b.Context(), root.Runs, entries(full+d*daily, full+(d+1)*daily), load, save); err != nil {
			b.Fatal(err)
		}
	}
	root, _ := loadMsgIndexRoot(b.Context(), id, load)
	reads = 0
	for i := 0; b.Loop(); i++ {
		n := (i * 7919) % (full + days*daily)
		got, err := lookupMsgIndex(b.Context(), id, msgKey(fmt.Sprint(n, "@example.com")), load)
		if err != nil || len(got) != 1 {
			b.Fatalf("message %d: %v, %v", n, got, err)
		}
	}
	b.ReportMetric(float64(reads)/float64(b.N), "blobs/op")
	b.ReportMetric(float64(len(root.Runs)), "runs")
}
