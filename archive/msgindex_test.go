package archive_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"testing"

	"github.com/mailvault/mailvault/archive"
	"github.com/mailvault/mailvault/restore"
)

// mailbox writes messages into the folder dir (created as a Maildir), one
// per Message-ID, named by the Message-ID's number so that tests can find
// them again.
func mailbox(t testing.TB, dir string, mids ...int) {
	t.Helper()
	for _, sub := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range mids {
		body := fmt.Sprintf("From: bob@example.org\nSubject: m%d\nMessage-ID: <m%d@example.org>\n\nbody %d\n", n, n, n)
		name := mailName(n)
		if err := os.WriteFile(filepath.Join(dir, "cur", name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// mailName is the file name of message n of mailbox: delivered ten
// minutes after message n-1, as a Maildir delivery names it.
func mailName(n int) string { return fmt.Sprintf("%d.M%dP1.host:2,S", 1772445605+600*n, n) }

// scanMessageIDs is what reading every tree says: Message-ID → sorted
// "folder-index/unique" of the messages that have it.
func scanMessageIDs(t testing.TB, r *archive.Repository, root *archive.SourceRoot) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for i, f := range root.Folders {
		tree, err := r.LoadFolderTree(t.Context(), f.Tree)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range tree.Messages {
			out[m.MessageID] = append(out[m.MessageID], fmt.Sprintf("%d/%s", i, m.Unique))
		}
	}
	for _, v := range out {
		sort.Strings(v)
	}
	return out
}

// TestMessageIndex: through a series of incrementals — new mail, deletes,
// moves between folders, a folder removed, a copy of one message in
// several folders — every Message-ID is found through the index exactly
// where reading every tree finds it, and a Message-ID that is gone is not
// found; a restore by Message-ID reads a few tree blobs (index root, a
// run and a page per run, the folder's tree and page), not one per folder.
func TestMessageIndex(t *testing.T) {
	const folders, per = 40, 30
	src := filepath.Join(t.TempDir(), "mail")
	md := filepath.Join(src, "example.com", "alice", "Maildir")
	mailbox(t, md)
	next := 0
	for f := range folders {
		var mids []int
		for range per {
			mids = append(mids, next)
			next++
		}
		mailbox(t, filepath.Join(md, fmt.Sprintf(".F%d", f)), mids...)
	}
	big := filepath.Join(md, ".Big")
	var mids []int
	for range 1500 {
		mids = append(mids, next)
		next++
	}
	mailbox(t, big, mids...)
	tr := newTestRepo(t, 1<<20)

	steps := []struct {
		name   string
		change func()
	}{
		{"full", func() {}},
		{"new mail", func() {
			mailbox(t, filepath.Join(md, ".F3"), next, next+1)
			mailbox(t, big, next+2)
			next += 3
		}},
		{"deletes", func() {
			for _, n := range []int{0, 95, 2000} {
				ms, _ := filepath.Glob(filepath.Join(md, "*", "cur", mailName(n)))
				for _, m := range ms {
					os.Remove(m)
				}
			}
		}},
		{"move and copy", func() {
			from := filepath.Join(md, ".F5", "cur", mailName(5*per+1))
			data, err := os.ReadFile(from)
			if err != nil {
				t.Fatal(err)
			}
			os.WriteFile(filepath.Join(md, ".F6", "cur", filepath.Base(from)), data, 0o600)
			os.WriteFile(filepath.Join(md, ".F7", "cur", "copy:2,S"), data, 0o600)
			os.Remove(from)
		}},
		{"folder removed", func() { os.RemoveAll(filepath.Join(md, ".F9")) }},
		{"unchanged", func() {}},
		{"more new mail", func() {
			for f := 10; f < 20; f++ {
				mailbox(t, filepath.Join(md, fmt.Sprintf(".F%d", f)), next)
				next++
			}
		}},
	}
	var snaps []*archive.Snapshot
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			st.change()
			r := tr.open(t)
			snap := runBackup(t, r, src).Snapshot
			snaps = append(snaps, snap)
			root := &snap.Roots[0]
			if root.MessageIndex == nil {
				t.Fatal("no Message-ID index")
			}
			want := scanMessageIDs(t, r, root)
			for n := range next + 1 {
				// A sample (each lookup decrypts a few blobs), with
				// every message a step changes.
				if n%17 != 0 && n >= 3 && !slices.Contains([]int{95, 2000, 5*per + 1, 9 * per}, n) && n < next-12 {
					continue
				}
				mid := fmt.Sprintf("m%d@example.org", n)
				found, ok, err := r.FindMessage(t.Context(), root, mid)
				if err != nil || !ok {
					t.Fatalf("FindMessage(%s): %v, %v", mid, ok, err)
				}
				var got []string
				for _, f := range found {
					if f.Message.MessageID != mid {
						t.Fatalf("FindMessage(%s) gave %q", mid, f.Message.MessageID)
					}
					got = append(got, fmt.Sprintf("%d/%s", f.Folder, f.Message.Unique))
				}
				sort.Strings(got)
				if fmt.Sprint(got) != fmt.Sprint(want[mid]) {
					t.Errorf("FindMessage(%s) = %v, reading every tree: %v", mid, got, want[mid])
				}
			}
		})
	}
	checkClean(t, tr, len(snaps))

	// A restore by Message-ID: the blobs it reads, with the index and
	// (the same snapshot without it) reading every tree.
	r := tr.open(t)
	last := snaps[len(snaps)-1]
	noIndex := *last
	noIndex.Roots = []archive.SourceRoot{last.Roots[0]}
	noIndex.Roots[0].MessageIndex = nil
	for _, tc := range []struct {
		name    string
		snap    *archive.Snapshot
		maxRead int64
		minRead int64
	}{
		{"index", last, 12, 1},
		{"every tree", &noIndex, 1 << 30, folders},
	} {
		for _, mid := range []string{"m1600@example.org", fmt.Sprintf("<m%d@example.org>", 5*per+1)} {
			before := r.TreeBlobsRead()
			got, res := restoreTo(t, r, tc.snap, restore.Options{Message: mid})
			read := r.TreeBlobsRead() - before
			t.Logf("%s: restore --message %s read %d tree blobs, restored %d", tc.name, mid, read, res.Messages)
			if read > tc.maxRead || read < tc.minRead {
				t.Errorf("%s: restore --message %s read %d tree blobs, want %d to %d", tc.name, mid, read, tc.minRead, tc.maxRead)
			}
			if want := map[bool]int64{true: 2, false: 1}[mid[0] == '<']; res.Messages != want || len(mailFiles(t, got)) != int(want) {
				t.Errorf("%s: restore --message %s restored %d messages, want %d", tc.name, mid, res.Messages, want)
			}
		}
	}

	// Prune after forgetting all but the last: the index's blobs stay.
	for _, s := range snaps[:len(snaps)-1] {
		forget(t, tr, s.ID)
	}
	prune(t, tr, archive.PruneOptions{MaxUnused: 0})
	checkClean(t, tr, 1)
	r = tr.open(t)
	if found, ok, err := r.FindMessage(t.Context(), &last.Roots[0], "m1600@example.org"); err != nil || !ok || len(found) != 1 {
		t.Errorf("after prune: FindMessage = %v, %v, %v", found, ok, err)
	}

	// The same snapshot with its index in form 1, as backups before form
	// 2 wrote it: lookups and restores by Message-ID answer the same.
	form1 := *last
	form1.Roots = []archive.SourceRoot{last.Roots[0]}
	id1, err := r.WriteMsgIndexForm1(t.Context(), &form1.Roots[0])
	if err != nil {
		t.Fatal(err)
	}
	form1.Roots[0].MessageIndex = &id1
	want := scanMessageIDs(t, r, &last.Roots[0])
	for n := 0; n < next; n += 13 {
		mid := fmt.Sprintf("m%d@example.org", n)
		found, ok, err := r.FindMessage(t.Context(), &form1.Roots[0], mid)
		if err != nil || !ok {
			t.Fatalf("form 1: FindMessage(%s): %v, %v", mid, ok, err)
		}
		var got []string
		for _, f := range found {
			got = append(got, fmt.Sprintf("%d/%s", f.Folder, f.Message.Unique))
		}
		sort.Strings(got)
		if fmt.Sprint(got) != fmt.Sprint(want[mid]) {
			t.Errorf("form 1: FindMessage(%s) = %v, reading every tree: %v", mid, got, want[mid])
		}
	}
	for _, mid := range []string{"m1600@example.org", fmt.Sprintf("<m%d@example.org>", 5*per+1)} {
		got, res := restoreTo(t, r, &form1, restore.Options{Message: mid})
		if want := map[bool]int64{true: 2, false: 1}[mid[0] == '<']; res.Messages != want || len(mailFiles(t, got)) != int(want) {
			t.Errorf("form 1: restore --message %s restored %d messages, want %d", mid, res.Messages, want)
		}
	}
}

// TestMessageIndexBytesPerMessage: the Message-ID index of a full backup
// stores at most 20 bytes a message (form 2's binary pages; the JSON
// entries of form 1 took some 34 at a million messages), so that the
// compact form cannot grow back unseen.
func TestMessageIndexBytesPerMessage(t *testing.T) {
	const folders, per = 40, 500
	src := filepath.Join(t.TempDir(), "mail")
	n := 0
	for f := range folders {
		var mids []int
		for range per {
			mids = append(mids, n)
			n++
		}
		mailbox(t, filepath.Join(src, "example.com", fmt.Sprintf("u%02d", f/4), "Maildir", fmt.Sprintf(".F%d", f%4)), mids...)
	}
	tr := newTestRepo(t, 0)
	r := tr.open(t)
	snap := runBackup(t, r, src).Snapshot
	idx := snap.Roots[0].MessageIndex
	if idx == nil {
		t.Fatal("no Message-ID index")
	}
	plain, stored, blobs, err := r.MsgIndexSize(t.Context(), *idx)
	if err != nil {
		t.Fatal(err)
	}
	per1 := float64(stored) / float64(n)
	t.Logf("Message-ID index of %d messages: %d blobs, %d bytes, %d stored (%.1f bytes a message)", n, blobs, plain, stored, per1)
	if per1 > 20 {
		t.Errorf("Message-ID index stores %.1f bytes a message, want at most 20", per1)
	}
}
