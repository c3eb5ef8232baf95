package archive

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
)

func entries(spec ...string) []msgEntry {
	var out []msgEntry
	for _, s := range spec {
		e := msgEntry{key: uint64(s[0]), folder: 1, msg: uint64(s[1])}
		e.gone = len(s) > 2 && s[2] == '-'
		out = append(out, e)
	}
	return out
}

// mergeRuns merges two sorted runs in memory, newer's entry winning where
// both have one; into the oldest run (bottom), gone entries have nothing
// left to hide and are dropped: what mergeSources does a page at a time.
func mergeRuns(older, newer []msgEntry, bottom bool) []msgEntry {
	out := make([]msgEntry, 0, len(older)+len(newer))
	add := func(e msgEntry) {
		if !(bottom && e.gone) {
			out = append(out, e)
		}
	}
	i, j := 0, 0
	for i < len(older) || j < len(newer) {
		switch {
		case j == len(newer) || i < len(older) && compareMsgEntries(older[i], newer[j]) < 0:
			add(older[i])
			i++
		case i == len(older) || compareMsgEntries(older[i], newer[j]) > 0:
			add(newer[j])
			j++
		default:
			add(newer[j])
			i++
			j++
		}
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
		stored := memBlobs{}
		w := newRunWriter(stored.save)
		if err := mergeSources(t.Context(), []*runSource{{entries: tc.older}, {entries: tc.newer}}, tc.bottom, w.add); err != nil {
			t.Fatal(err)
		}
		if got := w.page; fmt.Sprint(got) != fmt.Sprint(tc.want) && len(got)+len(tc.want) > 0 {
			t.Errorf("mergeSources(%v, %v, %v) = %v, want %v", tc.older, tc.newer, tc.bottom, got, tc.want)
		}
	}

	// A run per backup: sizes stay halving, so runs stay few.
	stored := memBlobs{}
	save, load := stored.save, stored.load
	var runs []msgRunRef
	n := 0
	for day := range 200 {
		var delta []msgEntry
		for range 10 + day%7 {
			delta = append(delta, msgEntry{key: uint64(n) * 0x9e3779b97f4a7c15, folder: 1, msg: msgName(fmt.Sprint(n))})
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

// TestAllMsgEntriesSameIndex: a full index built through sorted runs
// (allMsgEntries, as a backup keeps them) is blob for blob the one built
// from every folder's entries sorted whole: same order (names that are
// not UTF-8, a message in cur/ and new/ of one folder once, repeats that
// fall in different runs), same pages — whether the runs are in the
// scratch file, on the heap because it cannot be made, or there is one.
func TestAllMsgEntriesSameIndex(t *testing.T) {
	for _, tc := range []struct {
		name string
		run  int
		dir  string
	}{
		{"one run", 1 << 19, ""},
		{"scratch runs", 1000, t.TempDir()},
		{"heap runs", 1000, "/nonexistent/dir"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			old := msgSortRun
			msgSortRun = tc.run
			defer func() { msgSortRun = old }()
			all := allMsgEntries{dir: tc.dir}
			testAllMsgEntriesSameIndex(t, &all)
		})
	}
}

func testAllMsgEntriesSameIndex(t *testing.T, all *allMsgEntries) {
	dirs := []string{"user/INBOX", "user/.Sent", "user/.Odd\xff", "other/INBOX"}
	var want []msgEntry
	for d, dir := range dirs {
		var msgs []Message
		for i := range 3000 {
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
		if d == len(dirs)-1 {
			// An entry of the first run met again in the last: stored
			// once.
			all.add(dir, msgs[1:2])
		}
	}
	if runs := len(all.runs) + len(all.held); msgSortRun < 10000 && runs < 5 {
		t.Errorf("%d runs, want the entries in at least 5", runs)
	}
	slices.SortFunc(want, compareMsgEntries)
	stored := func() (memBlobs, blobSaver) {
		m := memBlobs{}
		return m, m.save
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

// saveIndexJSON stores entries (sorted as form 1 sorts them) as an index
// of form 1 with one run, as backups before form 2 wrote it: the old
// encoder, kept to test that such indexes stay readable.
func saveIndexJSON(ctx context.Context, entries []msgEntryJSON, save blobSaver) (ID, error) {
	run := msgRun{Run: msgRunJSON, Pages: []msgPageRef{}}
	for start := 0; start < len(entries); start += msgPageEntriesJSON {
		pg := entries[start:min(start+msgPageEntriesJSON, len(entries))]
		raw, err := encodeTree(msgPageJSON{Page: 1, Entries: pg})
		if err != nil {
			return ID{}, err
		}
		id, err := save(ctx, raw)
		if err != nil {
			return ID{}, err
		}
		run.Pages = append(run.Pages, msgPageRef{ID: id, First: pg[0].Key, Entries: len(pg)})
	}
	root := msgIndexRoot{Index: 1, Runs: []msgRunRef{}}
	if len(entries) > 0 {
		raw, err := json.Marshal(run)
		if err != nil {
			return ID{}, err
		}
		id, err := save(ctx, raw)
		if err != nil {
			return ID{}, err
		}
		root.Runs = append(root.Runs, msgRunRef{ID: id, Entries: len(entries)})
	}
	raw, err := json.Marshal(root)
	if err != nil {
		return ID{}, err
	}
	return save(ctx, raw)
}

// folderEntriesJSON are a folder's entries of form 1.
func folderEntriesJSON(dir string, msgs []Message) []msgEntryJSON {
	var out []msgEntryJSON
	for _, m := range msgs {
		if m.MessageID != "" {
			out = append(out, msgEntryJSON{Key: keyHex(msgKey(m.MessageID)), Dir: dir, Unique: m.Unique})
		}
	}
	return out
}

// TestMsgIndexForm1: an index of form 1 answers lookups as the same index
// of form 2 does, and a backup's run on top of it (a root of form 2 that
// keeps the old run, then one that merged it) too.
func TestMsgIndexForm1(t *testing.T) {
	stored := memBlobs{}
	save, load := stored.save, stored.load
	var old []msgEntryJSON
	var want []msgEntry
	dirs := []string{"a/Maildir", "a/Maildir/.Sent", "b/Maildir/.Odd\xff"}
	for d, dir := range dirs {
		var msgs []Message
		for i := range 600 {
			m := Message{Unique: fmt.Sprintf("%d.M%dP%d.host", 1700000000+i, i, d), MessageID: fmt.Sprintf("%d@x", i%400)}
			if i%77 == 0 {
				m.Unique += "\xfe"
			}
			msgs = append(msgs, m)
		}
		old = append(old, folderEntriesJSON(dir, msgs)...)
		want = append(want, folderEntries(dir, msgs)...)
	}
	slices.SortFunc(old, compareMsgEntriesJSON)
	slices.SortFunc(want, compareMsgEntries)
	id1, err := saveIndexJSON(t.Context(), old, save)
	if err != nil {
		t.Fatal(err)
	}
	id2, err := extendMsgIndex(t.Context(), nil, want, load, save)
	if err != nil {
		t.Fatal(err)
	}
	same := func(a, b ID, what string) {
		t.Helper()
		for i := range 400 {
			k := msgKey(fmt.Sprintf("%d@x", i))
			got1, err1 := lookupMsgIndex(t.Context(), a, k, load)
			got2, err2 := lookupMsgIndex(t.Context(), b, k, load)
			if err1 != nil || err2 != nil {
				t.Fatal(err1, err2)
			}
			slices.SortFunc(got1, compareMsgEntries)
			slices.SortFunc(got2, compareMsgEntries)
			if len(got1) == 0 || fmt.Sprint(got1) != fmt.Sprint(got2) {
				t.Fatalf("%s: key %d: %v, want %v", what, i, got1, got2)
			}
		}
	}
	same(id1, id2, "form 1")
	root1, err := loadMsgIndexRoot(t.Context(), id1, load)
	if err != nil {
		t.Fatal(err)
	}
	// A small delta keeps the old run; a large one merges it.
	for _, n := range []int{5, 2000} {
		var delta, all []msgEntry
		for i := range n {
			delta = append(delta, msgEntry{key: msgKey(fmt.Sprintf("%d@x", i%400)), folder: msgFolder("c/Maildir"), msg: msgName(fmt.Sprint(i))})
		}
		delta = append(delta, msgEntry{key: want[0].key, folder: want[0].folder, msg: want[0].msg, gone: true})
		slices.SortFunc(delta, compareMsgEntries)
		delta = slices.CompactFunc(delta, sameMsgEntry)
		all = mergeRuns(want, delta, true)
		ext, err := extendMsgIndex(t.Context(), root1.Runs, delta, load, save)
		if err != nil {
			t.Fatal(err)
		}
		ref, err := extendMsgIndex(t.Context(), nil, all, load, save)
		if err != nil {
			t.Fatal(err)
		}
		root, err := loadMsgIndexRoot(t.Context(), ext, load)
		if err != nil {
			t.Fatal(err)
		}
		run, err := loadMsgRun(t.Context(), root.Runs[0].ID, load)
		if err != nil {
			t.Fatal(err)
		}
		if root.Index != 2 || (n == 5) != (run.Run == msgRunJSON) {
			t.Fatalf("delta of %d: root form %d, oldest run form %d", n, root.Index, run.Run)
		}
		same(ext, ref, fmt.Sprintf("form 1 and a delta of %d", n))
	}
}

// TestFullMsgIndexHeldEntries: a full backup's Message-ID index holds at
// most msgSortRun entries on the heap however many messages it indexes —
// the others are in sorted runs of the scratch file — where it held 24
// bytes a message until stored (240 MB at 10 M messages, and as much
// again while the slices grew).
func TestFullMsgIndexHeldEntries(t *testing.T) {
	old := msgSortRun
	msgSortRun = 4096
	defer func() { msgSortRun = old }()
	const folders, per = 400, 500
	msgs := make([]Message, per)
	all := allMsgEntries{dir: t.TempDir()}
	most := 0
	for f := range folders {
		for i := range msgs {
			msgs[i] = Message{Unique: fmt.Sprintf("%d.M%dP%d.mx1,S=1463,W=1491", 1776778965+i*600, i, f), MessageID: fmt.Sprintf("%d.%d.2934019232@d005.scale.test", f, i)}
		}
		all.add(fmt.Sprintf("d%03d.scale.test/u%05d/Maildir/.F%d", f%7, f, f%4), msgs)
		most = max(most, all.heldEntries())
	}
	if most > msgSortRun || cap(all.pending) > 2*msgSortRun || len(all.held) > 0 {
		t.Errorf("held up to %d entries (%d runs on the heap, capacity %d) indexing %d messages, want at most %d", most, len(all.held), cap(all.pending), folders*per, msgSortRun)
	}
	if got := all.records + int64(len(all.pending)); got != folders*per {
		t.Errorf("%d entries in runs and pending, want %d", got, folders*per)
	}
	m := memBlobs{}
	id, err := all.save(t.Context(), m.save)
	if err != nil {
		t.Fatal(err)
	}
	root, err := loadMsgIndexRoot(t.Context(), id, m.load)
	if err != nil || len(root.Runs) != 1 || root.Runs[0].Entries != folders*per {
		t.Fatalf("stored index %+v, %v; want one run of %d entries", root, err, folders*per)
	}
}

// memBlobs is a tree-blob store in memory for the internal tests: blobs
// by the SHA-256 of their plaintext.
type memBlobs map[ID][]byte

func (m memBlobs) save(_ context.Context, raw []byte) (ID, error) {
	id := ID(sha256.Sum256(raw))
	m[id] = raw
	return id, nil
}

func (m memBlobs) load(_ context.Context, id ID) ([]byte, error) { return m[id], nil }
