package s3

import (
	"bytes"
	"encoding/json"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/mailvault/mailvault/archive"
	"github.com/mailvault/mailvault/bench/corpus"
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

func setPackSize(t testing.TB, be archive.Backend, packSize int64) {
	t.Helper()
	rc, err := be.Get(t.Context(), archive.ConfigFile, "config")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	var cfg archive.Config
	if err := json.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	cfg.PackSize = packSize
	if raw, err = json.Marshal(cfg); err != nil {
		t.Fatal(err)
	}
	if err := be.Put(t.Context(), archive.ConfigFile, "config", raw); err != nil {
		t.Fatal(err)
	}
}

// compareTrees checks that got has exactly want's files and directories,
// with equal contents and modification times.
func compareTrees(t testing.TB, want, got string) {
	t.Helper()
	wf, wd := readTree(t, want)
	gf, gd := readTree(t, got)
	if len(wf) == 0 {
		t.Fatal("empty source tree")
	}
	for rel, w := range wf {
		g, ok := gf[rel]
		switch {
		case !ok:
			t.Errorf("missing after restore: %s", rel)
		case !bytes.Equal(w.content, g.content):
			t.Errorf("%s: content differs (%d vs %d bytes)", rel, len(w.content), len(g.content))
		case !w.mtime.Equal(g.mtime):
			t.Errorf("%s: mtime %v, want %v", rel, g.mtime, w.mtime)
		}
	}
	for rel := range gf {
		if _, ok := wf[rel]; !ok {
			t.Errorf("unexpected file after restore: %s", rel)
		}
	}
	for d := range wd {
		if !gd[d] {
			t.Errorf("missing directory after restore: %s", d)
		}
	}
	for d := range gd {
		if !wd[d] {
			t.Errorf("unexpected directory after restore: %s", d)
		}
	}
}

type fileInfo struct {
	content []byte
	mtime   time.Time
}

func readTree(t testing.TB, root string) (map[string]fileInfo, map[string]bool) {
	t.Helper()
	files := map[string]fileInfo{}
	dirs := map[string]bool{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			dirs[rel] = true
			return nil
		}
		content, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		files[rel] = fileInfo{content, fi.ModTime()}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files, dirs
}
