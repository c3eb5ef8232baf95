package archive

import (
	"context"
	"crypto/sha256"
	"fmt"
	"slices"
	"testing"
)

func entries(spec ...string) []msgEntry {
	var out []msgEntry
	for _, s := range spec {
		e := msgEntry{Key: s[:1], Dir: "d", Unique: s[1:2]}
		e.Gone = len(s) > 2 && s[2] == '-'
		out = append(out, e)
	}
	return out
}

// TestMsgIndexRuns: what a run records for a folder's change, what a merge
// keeps (the newer entry of a pair; gone entries only above the bottom),
// and that runs shrink by half at least from the oldest on.
func TestMsgIndexRuns(t *testing.T) {
	diffs := []struct {
		old, cur, want []msgEntry
	}{
		{nil, entries("a1", "b2"), entries("a1", "b2")},
		{entries("a1", "b2"), entries("b2", "c3"), entries("a1-", "c3")},
		{entries("a1"), nil, entries("a1-")},
		{entries("a1", "b2"), entries("a1", "b2"), nil},
	}
	for _, tc := range diffs {
		if got := diffEntries(tc.old, tc.cur); fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("diffEntries(%v, %v) = %v, want %v", tc.old, tc.cur, got, tc.want)
		}
	}
	merges := []struct {
		older, newer []msgEntry
		bottom       bool
		want         []msgEntry
	}{
		{entries("a1", "b2"), entries("a1-", "c3"), false, entries("a1-", "b2", "c3")},
		{entries("a1", "b2"), entries("a1-", "c3"), true, entries("b2", "c3")},
		{entries("a1-"), entries("a1"), false, entries("a1")},
		{entries("b2-"), entries("a1"), true, entries("a1")},
	}
	for _, tc := range merges {
		if got := mergeRuns(tc.older, tc.newer, tc.bottom); fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("mergeRuns(%v, %v, %v) = %v, want %v", tc.older, tc.newer, tc.bottom, got, tc.want)
		}
	}

	// A run per backup: sizes stay halving, so runs stay few.
	stored := map[ID][]byte{}
	save := func(_ context.Context, raw []byte) (ID, error) {
		id := ID(sha256.Sum256(raw))
		stored[id] = raw
		return id, nil
	}
	load := func(_ context.Context, id ID) ([]byte, error) { return stored[id], nil }
	var runs []msgRunRef
	n := 0
	for day := range 200 {
		var delta []msgEntry
		for range 10 + day%7 {
			delta = append(delta, msgEntry{Key: fmt.Sprintf("%016x", uint64(n)*0x9e3779b97f4a7c15), Dir: "d", Unique: fmt.Sprint(n)})
			n++
		}
		slices.SortFunc(delta, compareMsgEntries)
		id, err := extendMsgIndex(t.Context(), runs, delta, load, save)
		if err != nil {
			t.Fatal(err)
		}
		root, err := loadMsgIndexRoot(t.Context(), id, load)
		if err != nil {
			t.Fatal(err)
		}
		runs = root.Runs
		total := 0
		for i, r := range runs {
			total += r.Entries
			if i > 0 && 2*r.Entries >= runs[i-1].Entries {
				t.Fatalf("day %d: runs %+v do not halve", day, runs)
			}
		}
		if total != n || len(runs) > 12 {
			t.Fatalf("day %d: %d runs of %d entries, want %d entries in at most 12", day, len(runs), total, n)
		}
	}
	t.Logf("%d entries in %d runs after 200 backups", n, len(runs))
}

// TestAllMsgEntriesSameIndex: a full index built from the compact entries
// (allMsgEntries, as a backup now keeps them) is blob for blob the one
// built from every folder's msgEntry values, as before: same order (the
// key as a number against its hex, names that are not UTF-8, a message
// in cur/ and new/ of one folder once), same pages.
func TestAllMsgEntriesSameIndex(t *testing.T) {
	dirs := []string{"user/INBOX", "user/.Sent", "user/.Odd\xff", "other/INBOX"}
	var all allMsgEntries
	var want []msgEntry
	for d, dir := range dirs {
		var msgs []Message
		for i := range 700 {
			m := Message{Unique: fmt.Sprintf("%d.M%dP%d.host", 1700000000+i, i, d), MessageID: fmt.Sprintf("<%d@x>", i%450)}
			switch {
			case i%50 == 0:
				m.MessageID = "" // no index entry
			case i%77 == 0:
				m.Unique += "\xfe" // not UTF-8
			}
			msgs = append(msgs, m)
			if i%90 == 0 {
				msgs = append(msgs, m) // the same in new/ and cur/
			}
		}
		all.add(dir, msgs)
		want = append(want, folderEntries(dir, msgs)...)
	}
	slices.SortFunc(want, compareMsgEntries)
	stored := func() (map[ID][]byte, blobSaver) {
		m := map[ID][]byte{}
		return m, func(_ context.Context, raw []byte) (ID, error) {
			id := ID(sha256.Sum256(raw))
			m[id] = raw
			return id, nil
		}
	}
	m1, save1 := stored()
	id1, err := extendMsgIndex(t.Context(), nil, want, nil, save1)
	if err != nil {
		t.Fatal(err)
	}
	m2, save2 := stored()
	id2, err := all.save(t.Context(), save2)
	if err != nil {
		t.Fatal(err)
	}
	if id1 != id2 || len(m1) != len(m2) {
		t.Fatalf("compact entries stored index %s in %d blobs, msgEntry values %s in %d", id2.Short(), len(m2), id1.Short(), len(m1))
	}
	for id := range m1 {
		if _, ok := m2[id]; !ok {
			t.Errorf("blob %s missing from the compact build", id.Short())
		}
	}
	if len(m1) < 10 {
		t.Errorf("%d blobs: the test should span several pages", len(m1))
	}
}
