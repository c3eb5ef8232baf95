package archive_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mailvault/mailvault/archive"
)

// bigFolder writes a Maildir of one user with n small messages in INBOX
// (cur/, seen) and returns the source root and the INBOX cur/ directory.
func bigFolder(t testing.TB, n int) (root, cur string) {
	t.Helper()
	root = filepath.Join(t.TempDir(), "mail")
	md := filepath.Join(root, "example.com", "alice", "Maildir")
	for _, sub := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(md, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		body := fmt.Sprintf("From: Bob <bob@example.org>\nTo: alice@example.com\nSubject: note %d\nMessage-ID: <n%d@example.org>\nDate: Mon, 2 Mar 2026 10:00:00 +0000\n\nbody %d\n", i, i, i)
		name := fmt.Sprintf("1772445605.M%dP1.host,S=%d:2,S", i, len(body))
		if err := os.WriteFile(filepath.Join(md, "cur", name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return root, filepath.Join(md, "cur")
}

// folderTreeBytes is the plaintext of a folder's tree blob and its pages.
func folderTreeBytes(t testing.TB, r *archive.Repository, id archive.ID) (n int64, pages int) {
	t.Helper()
	tree, err := r.LoadFolderTree(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range append([]archive.ID{id}, pageIDs(tree)...) {
		plain, err := r.LoadBlob(t.Context(), b)
		if err != nil {
			t.Fatal(err)
		}
		n += int64(len(plain))
	}
	return n, len(tree.Pages)
}

func pageIDs(t *archive.FolderTree) []archive.ID {
	ids := make([]archive.ID, len(t.Pages))
	for i, p := range t.Pages {
		ids[i] = p.ID
	}
	return ids
}

// TestFlagChangeMetadata: a flag change on one message of a 20,000-message
// folder stores one page and the page list (2 blobs, under 5 % of the
// folder's tree), where a version 1 tree stored the whole list again.
func TestFlagChangeMetadata(t *testing.T) {
	const n = 20000
	src, cur := bigFolder(t, n)
	tests := []struct {
		version   int
		wantBlobs int64   // tree blobs the incremental stores
		maxShare  float64 // of the full tree's bytes; 0: not bounded
	}{
		{1, 1, 0},
		{2, 2, 0.05},
		{3, 2, 0.05},
	}
	for i, tc := range tests {
		t.Run(fmt.Sprintf("v%d", tc.version), func(t *testing.T) {
			tr := newTestRepo(t, 0)
			r := tr.open(t)
			backup := r.Backup
			switch tc.version {
			case 1:
				backup = r.BackupV1
			case 2:
				backup = r.BackupV2
			}
			full, err := backup(t.Context(), backupOptions(src))
			if err != nil {
				t.Fatal(err)
			}
			treeBytes, pages := folderTreeBytes(t, r, full.Snapshot.Roots[0].Folders[0].Tree)
			if idx := full.Snapshot.Roots[0].MessageIndex; idx != nil {
				plain, stored, blobs, err := r.MsgIndexSize(t.Context(), *idx)
				if err != nil {
					t.Fatal(err)
				}
				t.Logf("Message-ID index of %d messages: %d blobs, %d bytes, %d stored (%.1f bytes a message)", n, blobs, plain, stored, float64(stored)/n)
			}
			// A flag change: one rename in cur/ (the other subtest's
			// change stays, a second message changes here).
			old := filepath.Join(cur, fmt.Sprintf("1772445605.M%dP1.host,S=%d:2,S", 1000+i, len(fmt.Sprintf("From: Bob <bob@example.org>\nTo: alice@example.com\nSubject: note %d\nMessage-ID: <n%d@example.org>\nDate: Mon, 2 Mar 2026 10:00:00 +0000\n\nbody %d\n", 1000+i, 1000+i, 1000+i))))
			if err := os.Rename(old, old[:len(old)-1]+"FS"); err != nil {
				t.Fatal(err)
			}
			inc, err := backup(t.Context(), backupOptions(src))
			if err != nil {
				t.Fatal(err)
			}
			s := inc.Snapshot.Summary
			t.Logf("tree v%d: full folder tree %d bytes in %d pages; incremental after one flag change: %d blobs, %d bytes (%.2f %%), %d stored",
				tc.version, treeBytes, pages, s.BlobsNew, s.BytesNew, 100*float64(s.BytesNew)/float64(treeBytes), s.BytesStored)
			if s.MessagesNew != 0 || s.MessagesChanged != 1 {
				t.Errorf("incremental: %d new, %d changed messages, want 0 and 1", s.MessagesNew, s.MessagesChanged)
			}
			if s.BlobsNew != tc.wantBlobs {
				t.Errorf("incremental stored %d blobs, want %d", s.BlobsNew, tc.wantBlobs)
			}
			if tc.maxShare > 0 && float64(s.BytesNew) > tc.maxShare*float64(treeBytes) {
				t.Errorf("incremental stored %d bytes of metadata, more than %.0f %% of the %d-byte tree", s.BytesNew, 100*tc.maxShare, treeBytes)
			}
			tree, err := r.LoadFolderTree(t.Context(), inc.Snapshot.Roots[0].Folders[0].Tree)
			if err != nil {
				t.Fatal(err)
			}
			if len(tree.Messages) != n || tree.Version != tc.version {
				t.Fatalf("tree: version %d, %d messages, want %d and %d", tree.Version, len(tree.Messages), tc.version, n)
			}
			flagged := 0
			for _, m := range tree.Messages {
				if m.Flags == "FS" {
					flagged++
				}
			}
			if flagged != i+1 {
				t.Errorf("%d flagged messages in the tree, want %d", flagged, i+1)
			}
		})
	}
}

// flagMessage renames message i of bigFolder's cur/ from flags "S" to
// flags.
func flagMessage(t testing.TB, cur string, i int, flags string) {
	t.Helper()
	matches, err := filepath.Glob(filepath.Join(cur, fmt.Sprintf("1772445605.M%dP1.host,S=*:2,S", i)))
	if err != nil || len(matches) != 1 {
		t.Fatalf("message %d: %v %v", i, matches, err)
	}
	if err := os.Rename(matches[0], matches[0][:len(matches[0])-1]+flags); err != nil {
		t.Fatal(err)
	}
}

// TestTreeV1Repository: a repository whose snapshots have version 1
// trees, as releases before paged trees wrote them, restores and checks
// clean, serves as the parent of an incremental (which writes version 2
// trees and reads no message again), and prunes correctly once the
// version 1 snapshot is forgotten — with a full key and with a write-only
// key's parent cache.
func TestTreeV1Repository(t *testing.T) {
	for _, writeOnly := range []bool{false, true} {
		t.Run(fmt.Sprintf("writeOnly=%v", writeOnly), func(t *testing.T) {
			src, cur := bigFolder(t, 1500)
			tr := newTestRepo(t, 1<<20)
			var woCreds archive.Credentials
			if writeOnly {
				woCreds, _ = tr.writeOnly(t)
			}
			cache := filepath.Join(t.TempDir(), "cache")
			open := func() (*archive.Repository, archive.BackupOptions) {
				opt := backupOptions(src)
				if writeOnly {
					opt.ParentCache = cache
					return tr.openWith(t, woCreds), opt
				}
				return tr.open(t), opt
			}
			r, opt := open()
			old, err := r.BackupV1(t.Context(), opt)
			if err != nil {
				t.Fatal(err)
			}
			full := tr.open(t)
			if tree, err := full.LoadFolderTree(t.Context(), old.Snapshot.Roots[0].Folders[0].Tree); err != nil || tree.Version != 1 || len(tree.Pages) != 0 {
				t.Fatalf("BackupV1 wrote %+v, %v; want a version 1 tree", tree, err)
			}
			checkClean(t, tr, 1)
			restoreEqual(t, tr, old.Snapshot, src)

			flagMessage(t, cur, 7, "FS")
			r, opt = open()
			inc, err := r.Backup(t.Context(), opt)
			if err != nil {
				t.Fatal(err)
			}
			s := inc.Snapshot.Summary
			if inc.Snapshot.Parent == nil || *inc.Snapshot.Parent != old.Snapshot.ID || s.MessagesNew != 0 || s.MessagesChanged != 1 || s.BytesRead != 0 {
				t.Fatalf("incremental on the version 1 snapshot: parent %v, %+v; want parent %s, no message read, 1 changed", inc.Snapshot.Parent, s, old.Snapshot.ID.Short())
			}
			full = tr.open(t)
			tree, err := full.LoadFolderTree(t.Context(), inc.Snapshot.Roots[0].Folders[0].Tree)
			if err != nil || tree.Version != 3 || len(tree.Pages) < 2 || len(tree.Messages) != 1500 {
				t.Fatalf("incremental's tree: %v; want version 3 with pages and 1500 messages", err)
			}
			checkClean(t, tr, 2)
			if res := prune(t, tr, archive.PruneOptions{}); res.BlobsUnused != 0 {
				t.Fatalf("prune with both snapshots found %d unused blobs: %+v", res.BlobsUnused, res)
			}

			// A second change on the version 3 parent: one page and the
			// page list.
			flagMessage(t, cur, 900, "RS")
			r, opt = open()
			next, err := r.Backup(t.Context(), opt)
			if err != nil {
				t.Fatal(err)
			}
			if s := next.Snapshot.Summary; s.MessagesNew != 0 || s.BlobsNew != 2 {
				t.Errorf("incremental on a version 3 parent: %+v; want no message read, 2 blobs stored", s)
			}

			forget(t, tr, old.Snapshot.ID)
			if res := prune(t, tr, archive.PruneOptions{MaxUnused: 0}); res.BlobsUnused != 1 {
				t.Errorf("prune after forgetting the version 1 snapshot: %d unused blobs, want 1 (its tree): %+v", res.BlobsUnused, res)
			}
			checkClean(t, tr, 2)
			if got, _ := restoreTo(t, tr.open(t), inc.Snapshot, restoreOptions()); len(mailFiles(t, got)) != 1500 {
				t.Errorf("the first version 3 snapshot restores %d messages, want 1500", len(mailFiles(t, got)))
			}
			restoreEqual(t, tr, next.Snapshot, src)
		})
	}
}

// TestTreeV2Repository: a repository whose snapshots have version 2
// trees (JSON message objects, as releases before column-wise trees wrote
// them) restores and checks clean, and serves as the parent of an
// incremental that reads no message again and writes version 3 trees.
func TestTreeV2Repository(t *testing.T) {
	src, cur := bigFolder(t, 1500)
	tr := newTestRepo(t, 1<<20)
	r := tr.open(t)
	old, err := r.BackupV2(t.Context(), backupOptions(src))
	if err != nil {
		t.Fatal(err)
	}
	if tree, err := r.LoadFolderTree(t.Context(), old.Snapshot.Roots[0].Folders[0].Tree); err != nil || tree.Version != 2 || len(tree.Pages) < 2 {
		t.Fatalf("BackupV2 wrote %v; want a paged version 2 tree", err)
	}
	checkClean(t, tr, 1)
	restoreEqual(t, tr, old.Snapshot, src)

	flagMessage(t, cur, 7, "FS")
	inc, err := tr.open(t).Backup(t.Context(), backupOptions(src))
	if err != nil {
		t.Fatal(err)
	}
	if s := inc.Snapshot.Summary; s.MessagesNew != 0 || s.MessagesChanged != 1 || s.BytesRead != 0 {
		t.Fatalf("incremental on the version 2 snapshot: %+v; want no message read, 1 changed", s)
	}
	tree, err := tr.open(t).LoadFolderTree(t.Context(), inc.Snapshot.Roots[0].Folders[0].Tree)
	if err != nil || tree.Version != 3 || len(tree.Pages) < 2 || len(tree.Messages) != 1500 {
		t.Fatalf("incremental's tree: %v; want version 3 with pages and 1500 messages", err)
	}
	checkClean(t, tr, 2)
	restoreEqual(t, tr, inc.Snapshot, src)
	if got, _ := restoreTo(t, tr.open(t), old.Snapshot, restoreOptions()); len(mailFiles(t, got)) != 1500 {
		t.Errorf("the version 2 snapshot restores %d messages, want 1500", len(mailFiles(t, got)))
	}
}

// TestRacyByListingTime: an unchanged folder is reused without listing
// when its stamps are more than 2 s older than the parent's listing of it
// (FolderEntry.Listed), even when they are within 2 s of the parent's
// start — a live server's folders touched early in a long backup — and
// listed again when they are not, or when the parent does not say when it
// listed them (it is then judged by its start, as before).
func TestRacyByListingTime(t *testing.T) {
	src := filepath.Join(t.TempDir(), "mail")
	md := filepath.Join(src, "example.com", "alice", "Maildir")
	mailbox(t, md, 1, 2)
	mailbox(t, filepath.Join(md, ".A"), 3)
	mailbox(t, filepath.Join(md, ".B"), 4, 5)
	tr := newTestRepo(t, 0)
	r := tr.open(t)
	first := runBackup(t, r, src).Snapshot

	tests := []struct {
		name      string
		listedAt  time.Duration // after the folder's newest stamp; 0: not recorded
		unchanged int64
	}{
		{"listed long after the change", time.Hour, 3},
		{"listed right after the change", time.Second, 0},
		{"listing time not recorded", 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := r.LoadSnapshot(t.Context(), first.ID)
			if err != nil {
				t.Fatal(err)
			}
			// The parent started just after the folders' last change,
			// so by its start every folder is racy.
			var newest int64
			for i := range s.Roots[0].Folders {
				f := &s.Roots[0].Folders[i]
				m := max(f.Cur.MTime, f.Cur.CTime, f.New.MTime, f.New.CTime)
				newest = max(newest, m)
				f.Listed = 0
				if tc.listedAt != 0 {
					f.Listed = m + tc.listedAt.Nanoseconds()
				}
			}
			s.Time = time.Unix(0, newest).Add(time.Second)
			parent, err := r.SaveJSONFile(t.Context(), archive.SnapshotFile, s)
			if err != nil {
				t.Fatal(err)
			}
			res, err := tr.open(t).Backup(t.Context(), archive.BackupOptions{Paths: []string{src}, Host: "testhost", Parent: &parent})
			if err != nil {
				t.Fatal(err)
			}
			if got := res.Snapshot.Summary; got.FoldersUnchanged != tc.unchanged || got.MessagesNew != 0 || got.Messages != 5 {
				t.Errorf("%d folders unchanged, %d new of %d messages; want %d unchanged, none new of 5", got.FoldersUnchanged, got.MessagesNew, got.Messages, tc.unchanged)
			}
			for _, f := range res.Snapshot.Roots[0].Folders {
				if f.Listed == 0 {
					t.Errorf("folder %s: no listing time", f.Folder)
				}
			}
		})
	}
}
