package s3

import (
	"path/filepath"
	"testing"

	"filippo.io/age"

	"github.com/mailvault/mailvault/archive"
	"github.com/mailvault/mailvault/bench/corpus"
	"github.com/mailvault/mailvault/internal/testutil"
	"github.com/mailvault/mailvault/restore"
)

// TestEndToEnd backs up a generated corpus into a repository in MinIO,
// restores it byte for byte from a freshly opened repository, and checks
// every pack's content.
func TestEndToEnd(t *testing.T) {
	ctx := t.Context()
	src := filepath.Join(t.TempDir(), "mail")
	if _, err := corpus.Generate(ctx, src, corpus.Options{Seed: 5, TargetBytes: 3e6, Domains: 2, UsersPerDomain: 3}); err != nil {
		t.Fatal(err)
	}
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	be := newBackend(t, "mailvault/e2e")
	if _, err := archive.Init(ctx, be, archive.KeyRecipients{Recipients: []string{id.Recipient().String()}}); err != nil {
		t.Fatal(err)
	}
	setPackSize(t, be, 1<<20) // several packs, so several PutFiles and ranged reads
	creds := archive.Credentials{Identities: []age.Identity{id}}
	open := func() *archive.Repository {
		t.Helper()
		r, err := archive.Open(ctx, be, creds, archive.Options{Compression: 1})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		if _, err := r.LoadIndex(ctx); err != nil {
			t.Fatal(err)
		}
		return r
	}

	r := open()
	res, err := r.Backup(ctx, archive.BackupOptions{Paths: []string{src}, Host: "testhost"})
	if err != nil {
		t.Fatalf("backup: %v", err)
	}
	if len(res.Warnings) != 0 || res.Snapshot.Partial {
		t.Fatalf("backup warnings: %v", res.Warnings)
	}
	packs := 0
	if err := be.List(ctx, archive.PackFile, func(string, int64) error { packs++; return nil }); err != nil {
		t.Fatal(err)
	}
	if packs < 2 {
		t.Errorf("%d packs stored, want several", packs)
	}

	// A second backup of the unchanged tree stores no new blobs.
	r = open()
	res2, err := r.Backup(ctx, archive.BackupOptions{Paths: []string{src}, Host: "testhost"})
	if err != nil {
		t.Fatalf("second backup: %v", err)
	}
	if n := res2.Snapshot.Summary.MessagesNew; n != 0 {
		t.Errorf("second backup: %d new messages, want 0", n)
	}

	r = open()
	target := filepath.Join(t.TempDir(), "restored")
	if _, err := restore.Restore(ctx, r, res.Snapshot, restore.Options{Target: target}); err != nil {
		t.Fatalf("restore: %v", err)
	}
	compareTrees(t, src, target)

	chk, err := r.Check(ctx, archive.CheckOptions{ReadData: true})
	if err != nil {
		t.Fatalf("check: %v", err)
	}
	if !chk.OK() || len(chk.Warnings) != 0 || chk.PacksRead != packs || chk.Snapshots != 2 {
		t.Errorf("check: %+v", chk)
	}
}

// setPackSize and compareTrees are shared with the archive and CLI tests
// (internal/testutil).
func setPackSize(t testing.TB, be archive.Backend, packSize int64) {
	t.Helper()
	testutil.SetPackSize(t, be, packSize)
}

// compareTrees also fails on an empty source tree, which would compare
// nothing.
func compareTrees(t testing.TB, want, got string) {
	t.Helper()
	if files, _ := testutil.ReadTree(t, want); len(files) == 0 {
		t.Fatal("empty source tree")
	}
	testutil.CompareTrees(t, want, got)
}
