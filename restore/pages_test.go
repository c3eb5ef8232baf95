package restore_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/mailvault/mailvault/archive"
	"github.com/mailvault/mailvault/restore"
)

// TestRestorePastDamagedPage: a damaged page of a paged folder tree costs
// the messages that page lists, reported as a "folder page" failure with
// their number; the folder's other messages are restored.
func TestRestorePastDamagedPage(t *testing.T) {
	const n = 1500
	src := filepath.Join(t.TempDir(), "mail")
	cur := filepath.Join(src, "example.com", "alice", "Maildir", "cur")
	for _, d := range []string{cur, filepath.Join(cur, "..", "new"), filepath.Join(cur, "..", "tmp")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		body := fmt.Sprintf("From: bob@example.org\nMessage-ID: <p%d@example.org>\nSubject: %d\n\nbody %d\n", i, i, i)
		if err := os.WriteFile(filepath.Join(cur, fmt.Sprintf("1700000000.M%dP1.host:2,S", i)), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tr := createRepo(t, 1<<20)
	open := func() *archive.Repository {
		r := tr.open(t, archive.Options{Compression: 0})
		if _, err := r.LoadIndex(t.Context()); err != nil {
			t.Fatal(err)
		}
		return r
	}
	r := open()
	res, err := r.Backup(t.Context(), archive.BackupOptions{Paths: []string{src}, Host: "testhost"})
	if err != nil {
		t.Fatal(err)
	}
	r = open()
	snap := res.Snapshot
	treeID := snap.Roots[0].Folders[0].Tree
	tree, err := r.LoadFolderTree(t.Context(), treeID)
	if err != nil || len(tree.Pages) < 4 {
		t.Fatalf("want a paged tree: %v", err)
	}

	// Damage the age chunk of a page that does not also hold the tree
	// blob; every page in that chunk is lost.
	chunk := func(b archive.PackedBlob) (int64, int64) {
		return int64(b.Offset) / ageChunk, (int64(b.Offset) + int64(b.Length) - 1) / ageChunk
	}
	treePack, treeBlob, _ := r.Index().Lookup(treeID)
	tf, tl := chunk(treeBlob)
	var pack archive.ID
	var bad int64 = -1
	for _, p := range tree.Pages[1:] {
		pk, b, _ := r.Index().Lookup(p.ID)
		f, l := chunk(b)
		if pk == treePack && l >= tf && f <= tl {
			continue
		}
		pack, bad = pk, int64(b.Offset)+int64(b.Length)/2
		break
	}
	if bad < 0 {
		t.Fatal("no page lies apart from the tree blob")
	}
	lostMsgs, lostPages := 0, 0
	for _, p := range tree.Pages {
		pk, b, _ := r.Index().Lookup(p.ID)
		if f, l := chunk(b); pk == pack && f <= bad/ageChunk && bad/ageChunk <= l {
			lostMsgs += p.Messages
			lostPages++
		}
	}
	path := filepath.Join(tr.dir, "data", pack.String()[:2], pack.String())
	sealed, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sealed[cipherOffset(t, sealed, bad)] ^= 0x40
	if err := os.WriteFile(path, sealed, 0o600); err != nil {
		t.Fatal(err)
	}

	r = open()
	got, err := restore.Restore(t.Context(), r, snap, restore.Options{Target: filepath.Join(t.TempDir(), "out")})
	if !errors.Is(err, restore.ErrIncomplete) {
		t.Fatalf("restore: %v, want ErrIncomplete", err)
	}
	pages := 0
	for _, f := range got.Failed {
		if f.Kind == "files" {
			continue // the files tree may share the damaged chunk
		}
		if f.Kind != "folder page" || f.User != "alice@example.com" || f.Folder != "INBOX" {
			t.Errorf("failure %+v, want only damaged pages of alice's INBOX", f)
		}
		pages++
	}
	if pages != lostPages || got.Messages != int64(n-lostMsgs) {
		t.Errorf("%d pages reported lost, %d messages restored; want %d pages, %d messages (%d lost)", pages, got.Messages, lostPages, n-lostMsgs, lostMsgs)
	}
	t.Logf("%d of %d pages damaged: %d messages restored, %d lost", lostPages, len(tree.Pages), got.Messages, lostMsgs)
}
