package archive_test

import (
	"os"
	"path/filepath"
	"testing"

	"filippo.io/age"

	"github.com/mailvault/mailvault/archive"
	"github.com/mailvault/mailvault/archive/local"
)

// TestRebuildIndex: with every index file destroyed, RebuildIndex recovers
// the index from the packs' headers, check is clean and the old index
// files are gone.
func TestRebuildIndex(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	src := filepath.Join(dir, "mail")
	writeMaildirMessage(t, src, "ex.com/a/Maildir", "1.a.h", "S", "Subject: one\r\n\r\nbody one\r\n")
	writeMaildirMessage(t, src, "ex.com/b/Maildir", "2.b.h", "", "Subject: two\r\n\r\nbody two\r\n")
	id, _ := age.GenerateX25519Identity()
	be := local.New(filepath.Join(dir, "repo"))
	if err := be.Create(); err != nil {
		t.Fatal(err)
	}
	if _, err := archive.Init(ctx, be, archive.KeyRecipients{Recipients: []string{id.Recipient().String()}}); err != nil {
		t.Fatal(err)
	}
	open := func() *archive.Repository {
		r, err := archive.Open(ctx, be, archive.Credentials{Identities: []age.Identity{id}}, archive.Options{Compression: 2})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		return r
	}
	r := open()
	if _, err := r.Backup(ctx, archive.BackupOptions{Paths: []string{src}, Host: "h"}); err != nil {
		t.Fatal(err)
	}
	// Damage every index file.
	idx, _ := filepath.Glob(filepath.Join(dir, "repo", "index", "*"))
	if len(idx) == 0 {
		t.Fatal("no index files")
	}
	for _, f := range idx {
		if err := os.WriteFile(f, []byte("garbage"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// Before any repair, the damaged index stops nothing: a backup
	// adopts the packs it listed, and check names only the index.
	r2 := open()
	unindexed, err := r2.LoadIndex(ctx)
	if err != nil || len(r2.DamagedIndexes()) != len(idx) || len(unindexed) == 0 {
		t.Fatalf("LoadIndex with damaged index files: %v, %d damaged, %d unindexed", err, len(r2.DamagedIndexes()), len(unindexed))
	}
	if _, err := r2.AdoptPacks(ctx, unindexed); err != nil {
		t.Fatal(err)
	}
	if res, err := r2.Backup(ctx, archive.BackupOptions{Paths: []string{src}, Host: "h"}); err != nil || res.Snapshot.Summary.BytesNew != 0 {
		t.Fatalf("backup over a damaged index: %v (new bytes %d)", err, res.Snapshot.Summary.BytesNew)
	}
	chk, err := open().Check(ctx, archive.CheckOptions{ReadData: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(chk.Errors) != len(idx) || chk.Errors[0].Object != "index" {
		t.Fatalf("check before repair: %+v", chk.Errors)
	}

	res, err := open().RebuildIndex(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Packs == 0 || res.IndexesWritten != 1 || res.IndexesRemoved != len(idx)+1 || len(res.Unreadable) != 0 {
		t.Fatalf("rebuild: %+v", res)
	}
	chk, err = open().Check(ctx, archive.CheckOptions{ReadData: true})
	if err != nil {
		t.Fatal(err)
	}
	if !chk.OK() || len(chk.Warnings) != 0 {
		t.Fatalf("check after rebuild: %+v", chk)
	}
}
