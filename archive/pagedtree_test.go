package archive_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

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
	}
	for i, tc := range tests {
		t.Run(fmt.Sprintf("v%d", tc.version), func(t *testing.T) {
			tr := newTestRepo(t, 0)
			r := tr.open(t)
			backup := r.Backup
			if tc.version == 1 {
				backup = r.BackupV1
			}
			full, err := backup(t.Context(), backupOptions(src))
			if err != nil {
				t.Fatal(err)
			}
			treeBytes, pages := folderTreeBytes(t, r, full.Snapshot.Roots[0].Folders[0].Tree)
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
