package archive

import (
	"context"
	"crypto/sha256"
	"fmt"
	"slices"
	"sort"
	"testing"
)

// TestPagedTreeRoundTrip: a version 2 or 3 tree gives back exactly the
// messages stored, names that are not UTF-8 included (as page entries'
// first names too), whether it is inline or paged; and a change to one
// message stores only the page it is in and the page list.
func TestPagedTreeRoundTrip(t *testing.T) {
	for _, tc := range []struct{ version, n int }{{2, 0}, {2, 1}, {2, 100}, {2, 3000}, {3, 0}, {3, 1}, {3, 100}, {3, 3000}} {
		version, n := tc.version, tc.n
		t.Run(fmt.Sprintf("v%d/%d", version, n), func(t *testing.T) {
			msgs := make([]Message, n)
			for i := range msgs {
				u := fmt.Sprintf("17000%05d.M%dP1Q1.host", i, i)
				if i%3 == 0 {
					u += "\xff\xfe" // not UTF-8
				}
				msgs[i] = Message{Unique: u, Flags: "S", Size: int64(i), Blobs: []ID{seedID(byte(i))}, MessageID: fmt.Sprint(i, "@x")}
			}
			sort.Slice(msgs, func(i, j int) bool { return msgs[i].Unique < msgs[j].Unique })
			stored := map[ID][]byte{}
			var fresh int
			save := func(_ context.Context, raw []byte) (ID, error) {
				id := ID(sha256.Sum256(raw))
				if _, ok := stored[id]; !ok {
					fresh++
				}
				stored[id] = raw
				return id, nil
			}
			load := func(_ context.Context, id ID) ([]byte, error) { return stored[id], nil }
			id, err := saveFolderTree(t.Context(), msgs, version, save)
			if err != nil {
				t.Fatal(err)
			}
			tree, err := loadFolderTree(t.Context(), id, load)
			if err != nil {
				t.Fatal(err)
			}
			if tree.Version != version || len(tree.Messages) != n || n <= 1 && len(tree.Pages) > 0 || n > pageMax && len(tree.Pages) < 2 {
				t.Fatalf("version %d, %d messages in %d pages", tree.Version, len(tree.Messages), len(tree.Pages))
			}
			for i := range msgs {
				if a, b := tree.Messages[i], msgs[i]; a.Unique != b.Unique || a.Size != b.Size || !slices.Equal(a.Blobs, b.Blobs) || a.UniqueRaw != nil {
					t.Fatalf("message %d: %+v, want %+v", i, a, b)
				}
			}
			for _, p := range tree.Pages {
				if p.FirstRaw != nil {
					t.Fatalf("page entry %+v keeps its twin", p)
				}
			}
			if n == 0 {
				return
			}
			fresh = 0
			msgs[n/2].Flags = "FS"
			if _, err := saveFolderTree(t.Context(), msgs, version, save); err != nil {
				t.Fatal(err)
			}
			if want := map[bool]int{true: 2, false: 1}[len(tree.Pages) > 1]; fresh != want {
				t.Errorf("a flag change stored %d blobs, want %d", fresh, want)
			}
		})
	}
}
