package archive_test

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/mailvault/mailvault/archive"
	"github.com/mailvault/mailvault/bench/corpus"
	"github.com/mailvault/mailvault/maildir"
)

// sourceState records what incremental backups compare: every non-message
// file's size and mtime, and every folder's cur/ and new/ stamps.
type sourceState struct {
	meta    map[string][4]int64 // rel → size, mtime, ctime, inode
	folders map[string][2]dirID // dir → cur, new
	mails   int
}

type dirID struct {
	ino          uint64
	mtime, ctime int64
}

func stateOf(t *testing.T, root string) sourceState {
	t.Helper()
	st := sourceState{meta: map[string][4]int64{}, folders: map[string][2]dirID{}}
	files, _ := readTree(t, root)
	for rel, f := range files {
		if f.IsMail {
			st.mails++
			continue
		}
		fi, err := os.Lstat(filepath.Join(root, rel))
		if err != nil {
			t.Fatal(err)
		}
		sys := fi.Sys().(*syscall.Stat_t)
		st.meta[rel] = [4]int64{fi.Size(), fi.ModTime().UnixNano(), sys.Ctim.Nano(), int64(sys.Ino)}
	}
	tree, err := maildir.Scan(root)
	if err != nil {
		t.Fatal(err)
	}
	stamp := func(p string) dirID {
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		s := fi.Sys().(*syscall.Stat_t)
		return dirID{s.Ino, fi.ModTime().UnixNano(), s.Ctim.Nano()}
	}
	for _, mb := range tree.Mailboxes {
		d := filepath.Join(root, filepath.FromSlash(mb.Dir))
		st.folders[mb.Dir] = [2]dirID{stamp(filepath.Join(d, "cur")), stamp(filepath.Join(d, "new"))}
	}
	return st
}

// changedMetaBytes is what a backup must read of the non-message files:
// those that are new or whose size, mtime, ctime or inode changed.
func changedMetaBytes(before, after sourceState) (n int64) {
	for rel, a := range after.meta {
		if b, ok := before.meta[rel]; !ok || b != a {
			n += a[0]
		}
	}
	return n
}

func changedFolders(before, after sourceState) (n int64) {
	for dir, a := range after.folders {
		if before.folders[dir] != a {
			n++
		}
	}
	return n
}

// forgeLaterParent stores a copy of snapshot id whose time is an hour
// later, so that no folder of the source looks "racy" (changed within the
// timestamp granularity of the parent) and unchanged folders are skipped
// without listing them; tests cannot wait for the clock instead.
func forgeLaterParent(t *testing.T, r *archive.Repository, id archive.ID) archive.ID {
	t.Helper()
	s, err := r.LoadSnapshot(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	s.Time = s.Time.Add(time.Hour)
	s.EndTime = s.EndTime.Add(time.Hour)
	nid, err := r.SaveJSONFile(t.Context(), archive.SnapshotFile, s)
	if err != nil {
		t.Fatal(err)
	}
	return nid
}

// TestIncrementalBytesRead asserts what incremental backups read: nothing
// of an unchanged tree, only the rewritten non-message files after flag
// changes, moves and deletes, and exactly the new messages' bytes after
// deliveries. With a parent whose time is later than every change, the
// folders whose cur/ and new/ did not change are not even listed.
func TestIncrementalBytesRead(t *testing.T) {
	src := genCorpus(t, 7, 3e6)
	tr := newTestRepo(t, 0)
	r := tr.open(t)
	first := runBackup(t, r, src).Snapshot
	if first.Summary.BytesRead != first.Summary.BytesTotal+func() int64 {
		var n int64
		for _, m := range stateOf(t, src).meta {
			n += m[0]
		}
		return n
	}() {
		t.Errorf("first backup read %d bytes, want every message and file (%d in messages)", first.Summary.BytesRead, first.Summary.BytesTotal)
	}

	tests := []struct {
		name   string
		mutate *corpus.MutateOptions
		forge  bool // parent with a later time: unchanged folders skipped
	}{
		{"unchanged", nil, false},
		{"unchanged, later parent", nil, true},
		{"flags", &corpus.MutateOptions{Seed: 2, FlagChanges: 40}, false},
		{"moves", &corpus.MutateOptions{Seed: 3, Moves: 15}, true},
		{"flags, moves and deletes", &corpus.MutateOptions{Seed: 4, FlagChanges: 20, Moves: 10, Deletes: 10}, true},
		{"new mail", &corpus.MutateOptions{Seed: 5, NewMessages: 12}, false},
		{"new mail, later parent", &corpus.MutateOptions{Seed: 6, NewMessages: 5}, true},
		{"day of traffic", &corpus.MutateOptions{Seed: 8, NewMessages: 10, FlagChanges: 20, Moves: 5, Deletes: 5}, true},
	}
	parent := first.ID
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := stateOf(t, src)
			var ms corpus.MutateStats
			if tc.mutate != nil {
				var err error
				if ms, err = corpus.Mutate(t.Context(), src, *tc.mutate); err != nil {
					t.Fatal(err)
				}
				if ms.NewToCur+ms.FlagChanges != tc.mutate.FlagChanges || ms.Moves != tc.mutate.Moves || ms.Deletes != tc.mutate.Deletes {
					t.Fatalf("corpus too small for the mutation: %+v", ms)
				}
			}
			after := stateOf(t, src)
			p := parent
			if tc.forge {
				p = forgeLaterParent(t, r, parent)
			}
			r := tr.open(t) // a fresh process, as the CLI would be
			res, err := r.Backup(t.Context(), archive.BackupOptions{Paths: []string{src}, Host: "testhost", Parent: &p})
			if err != nil {
				t.Fatal(err)
			}
			s := res.Snapshot.Summary
			metaRead := changedMetaBytes(before, after)
			if s.MessagesNew != int64(ms.NewFiles) {
				t.Errorf("MessagesNew = %d, want %d", s.MessagesNew, ms.NewFiles)
			}
			if msgRead := s.BytesRead - metaRead; msgRead != ms.NewBytes {
				t.Errorf("message bytes read = %d (BytesRead %d - %d of changed other files), want %d", msgRead, s.BytesRead, metaRead, ms.NewBytes)
			}
			if want := int64(ms.FlagChanges + ms.NewToCur + ms.Moves); s.MessagesChanged != want {
				t.Errorf("MessagesChanged = %d, want %d (flag changes, new→cur, moves)", s.MessagesChanged, want)
			}
			if s.Messages != int64(after.mails) {
				t.Errorf("Messages = %d, want %d", s.Messages, after.mails)
			}
			if tc.forge {
				if want := s.Folders - changedFolders(before, after); s.FoldersUnchanged != want {
					t.Errorf("FoldersUnchanged = %d of %d, want %d", s.FoldersUnchanged, s.Folders, want)
				}
			}
			if len(res.Warnings) != 0 {
				t.Errorf("warnings: %v", res.Warnings)
			}
			// Whatever was skipped or reused, the snapshot restores to
			// the current tree.
			got, _ := restoreTo(t, r, res.Snapshot, restoreOptions())
			compareTrees(t, src, got)
			parent = res.Snapshot.ID
		})
	}
}
