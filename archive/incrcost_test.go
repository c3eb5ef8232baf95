package archive_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailvault/mailvault/archive"
)

// incrUsers, incrFolders and incrPerFolder shape incrTree: a small server
// like bench/scale.sh's, whose folders have a few pages each.
const (
	incrUsers     = 6
	incrPerFolder = 400
)

var incrFolders = []string{"", ".Sent", ".Archive", ".Archive.2024"}

// incrTree writes incrUsers users of four folders of incrPerFolder seen
// messages each and returns the root and every message's path.
func incrTree(t testing.TB) (root string, msgs []string) {
	t.Helper()
	root = filepath.Join(t.TempDir(), "mail")
	for u := range incrUsers {
		for f, folder := range incrFolders {
			dir := filepath.Join(root, "example.com", fmt.Sprintf("u%d", u), "Maildir", folder)
			for _, sub := range []string{"cur", "new", "tmp"} {
				if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
					t.Fatal(err)
				}
			}
			if folder != "" {
				if err := os.WriteFile(filepath.Join(dir, "maildirfolder"), nil, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			for i := range incrPerFolder {
				id := fmt.Sprintf("%d.%d.%d", u, f, i)
				body := fmt.Sprintf("From: Bob <bob@example.org>\nTo: u%d@example.com\nSubject: note %s\nMessage-ID: <%s@example.org>\nDate: Mon, 2 Mar 2026 10:00:00 +0000\n\nbody %s\n", u, id, id, id)
				p := filepath.Join(dir, "cur", fmt.Sprintf("1772445605.M%dP%d%d.host,S=%d:2,S", i, u, f, len(body)))
				if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
					t.Fatal(err)
				}
				msgs = append(msgs, p)
			}
		}
	}
	return root, msgs
}

// folderBlobs is the number of blobs of a folder's tree: the tree and its
// pages.
func folderBlobs(t testing.TB, r *archive.Repository, id archive.ID) int64 {
	t.Helper()
	_, pages := folderTreeBytes(t, r, id)
	return 1 + int64(pages)
}

// TestIncrementalCost: an incremental backup reads the parent's trees of
// the folders that changed only (not every folder of their users), stores
// one page and the page list for a flag change, and neither encodes nor
// deduplicates again the pages nothing changed in — for one change in
// each of two folders, and for 1 % of the messages changed (flag changes
// and deletions) across the tree. Counts, not times.
// incremental backs src up with parent as the parent and returns the
// snapshot's summary and the tree blobs the backup read.
func incremental(t *testing.T, r *archive.Repository, src string, parent archive.ID) (archive.Summary, int64) {
	t.Helper()
	reads0 := r.TreeBlobsRead()
	opt := backupOptions(src)
	opt.Parent = &parent
	inc, err := r.Backup(t.Context(), opt)
	if err != nil {
		t.Fatal(err)
	}
	return inc.Snapshot.Summary, r.TreeBlobsRead() - reads0
}

func TestIncrementalCost(t *testing.T) {
	src, msgs := incrTree(t)
	tr := newTestRepo(t, 0)
	r := tr.open(t)
	full, err := r.Backup(t.Context(), backupOptions(src))
	if err != nil {
		t.Fatal(err)
	}
	// A parent an hour later: the unchanged folders are not racy.
	parent := forgeLaterParent(t, r, full.Snapshot.ID)
	snap, err := r.LoadSnapshot(t.Context(), parent)
	if err != nil {
		t.Fatal(err)
	}
	folderTree := map[string]archive.ID{}
	var allBlobs int64
	for _, f := range snap.Roots[0].Folders {
		folderTree[f.Dir] = f.Tree
		allBlobs += folderBlobs(t, r, f.Tree)
	}
	dirOf := func(p string) string {
		rel, err := filepath.Rel(src, filepath.Dir(filepath.Dir(p)))
		if err != nil {
			t.Fatal(err)
		}
		return filepath.ToSlash(rel)
	}
	// touched are the folders changed since the parent, by Dir.
	touched := map[string]bool{}
	rename := func(p string) {
		if err := os.Rename(p, strings.TrimSuffix(p, ":2,S")+":2,RS"); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("two flag changes", func(t *testing.T) {
		// User 0's INBOX and user 3's .Archive: the old listing read all
		// eight folders of the two users.
		changed := []string{msgs[7], msgs[3*len(incrFolders)*incrPerFolder+2*incrPerFolder+100]}
		var want, wantStored int64
		for _, p := range changed {
			rename(p)
			touched[dirOf(p)] = true
			n := folderBlobs(t, r, folderTree[dirOf(p)])
			want += n
			wantStored += min(n, 2) // a page and the page list, or the one-page tree
		}
		s, reads := incremental(t, r, src, parent)
		t.Logf("%d messages in %d folders (%d tree blobs); incremental: %d tree blobs read (%d of the changed folders), %d blobs stored, %d deduplicated",
			s.Messages, s.Folders, allBlobs, reads, want, s.BlobsNew, s.BlobsDeduplicated)
		if s.MessagesChanged != 2 || s.MessagesNew != 0 || s.BytesRead != 0 {
			t.Errorf("%d changed, %d new messages, %d bytes read; want 2, 0, 0", s.MessagesChanged, s.MessagesNew, s.BytesRead)
		}
		// The changed folders' trees and pages, and the Message-ID
		// index's root (which the parent's runs are extended from).
		if reads < want || reads > want+2 {
			t.Errorf("read %d tree blobs, want the changed folders' %d (+ up to 2 of the Message-ID index)", reads, want)
		}
		if s.BlobsNew != wantStored {
			t.Errorf("stored %d blobs, want %d", s.BlobsNew, wantStored)
		}
		// The list of other files is stored again every time (here, a
		// duplicate); no page is.
		if s.BlobsDeduplicated > 1 {
			t.Errorf("%d blobs encoded and stored again that the parent had", s.BlobsDeduplicated)
		}
	})

	t.Run("one percent", func(t *testing.T) {
		rng := rand.New(rand.NewPCG(1, 2))
		n := len(msgs) / 100
		// The two folders changed before are compared with the parent
		// too.
		dirs := map[string]bool{}
		var want int64
		for d := range touched {
			dirs[d] = true
			want += folderBlobs(t, r, folderTree[d])
		}
		for k, i := range rng.Perm(len(msgs))[:n] {
			p := msgs[i]
			if _, err := os.Stat(p); err != nil {
				continue // renamed by the subtest before
			}
			if k%3 == 0 {
				if err := os.Remove(p); err != nil {
					t.Fatal(err)
				}
			} else {
				rename(p)
			}
			if d := dirOf(p); !dirs[d] {
				dirs[d] = true
				want += folderBlobs(t, r, folderTree[d])
			}
		}
		s, reads := incremental(t, r, src, parent)
		t.Logf("%d changes in %d of %d folders; incremental: %d tree blobs read (%d of the changed folders, %d of all), %d blobs stored, %d deduplicated",
			n, len(dirs), s.Folders, reads, want, allBlobs, s.BlobsNew, s.BlobsDeduplicated)
		if s.BytesRead != 0 {
			t.Errorf("%d bytes of mail read, want none", s.BytesRead)
		}
		// The Message-ID index adds the root, a few runs and what it
		// merges; the folders are what grows with the tree.
		if reads < want || reads > want+8 {
			t.Errorf("read %d tree blobs, want the changed folders' %d (+ up to 8 of the Message-ID index)", reads, want)
		}
		// At most two pages a change (its page, and the next one where a
		// deleted message ended its page), a page list a folder, and the
		// Message-ID index's new run and root.
		if max := int64(2*n + len(dirs) + 4); s.BlobsNew > max {
			t.Errorf("stored %d blobs for %d changes in %d folders, want at most %d", s.BlobsNew, n, len(dirs), max)
		}
		// The list of other files, and the page of each message the
		// subtest before renamed where that page holds no change of
		// this one: it is the page the subtest before stored (pages of
		// 32 messages on average often hold one change).
		if s.BlobsDeduplicated > 1+int64(len(touched)) {
			t.Errorf("%d blobs encoded and stored again that the parent had", s.BlobsDeduplicated)
		}
	})
}
