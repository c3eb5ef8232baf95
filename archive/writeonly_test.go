package archive_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"filippo.io/age"

	"github.com/mailvault/mailvault/archive"
	"github.com/mailvault/mailvault/archive/local"
	"github.com/mailvault/mailvault/bench/corpus"
	"github.com/mailvault/mailvault/restore"
)

// writeOnly adds a write-only key file for a new X25519 identity and
// returns credentials for it and the key file's ID.
func (tr *testRepo) writeOnly(t testing.TB) (archive.Credentials, archive.ID) {
	t.Helper()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	ids, err := tr.open(t).AddWriteOnlyKey(t.Context(), archive.KeyRecipients{Recipients: []string{id.Recipient().String()}})
	if err != nil || len(ids) != 1 {
		t.Fatalf("AddWriteOnlyKey: %v, %v", ids, err)
	}
	return archive.Credentials{Identities: []age.Identity{id}}, ids[0]
}

// openWith opens the repository with creds and loads its index.
func (tr *testRepo) openWith(t testing.TB, creds archive.Credentials) *archive.Repository {
	t.Helper()
	r, err := archive.Open(t.Context(), tr.be, creds, archive.Options{Compression: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	if _, err := r.LoadIndex(t.Context()); err != nil {
		t.Fatal(err)
	}
	return r
}

// TestWriteOnlyKeyFile decrypts a write-only key file with the age
// library alone and checks that the data identity is not in it, while
// everything a backup needs is.
func TestWriteOnlyKeyFile(t *testing.T) {
	tr := newTestRepo(t, 0)
	full := tr.open(t).KeyContent()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	ids, err := tr.open(t).AddWriteOnlyKey(t.Context(), archive.KeyRecipients{Recipients: []string{id.Recipient().String()}, Passphrase: "write only"})
	if err != nil || len(ids) != 2 {
		t.Fatalf("AddWriteOnlyKey: %v, %v", ids, err)
	}
	for i, ident := range []age.Identity{mustScrypt(t, "write only"), id} {
		raw, err := os.ReadFile(filepath.Join(tr.dir, "keys", ids[i].String()))
		if err != nil {
			t.Fatal(err)
		}
		dr, err := age.Decrypt(bytes.NewReader(raw), ident)
		if err != nil {
			t.Fatalf("key file %d: %v", i, err)
		}
		plain, err := io.ReadAll(dr)
		if err != nil {
			t.Fatal(err)
		}
		var kf struct {
			Kind    string         `json:"kind"`
			Secrets map[string]any `json:"secrets"`
		}
		if err := json.Unmarshal(plain, &kf); err != nil {
			t.Fatal(err)
		}
		if kf.Kind != "write-only" {
			t.Errorf("key file %d: kind %q", i, kf.Kind)
		}
		// The index identity is the one age secret key in it.
		if _, ok := kf.Secrets["data_identity"]; ok || bytes.Count(plain, []byte("AGE-SECRET-KEY-1")) != 1 {
			t.Errorf("key file %d holds the data identity: %s", i, plain)
		}
		if bytes.Contains(plain, []byte(full.Secrets.DataIdentity)) {
			t.Errorf("key file %d contains the data identity's text", i)
		}
		want := map[string]string{
			"data_recipient":     full.Secrets.DataRecipient,
			"index_identity":     full.Secrets.IndexIdentity,
			"index_recipient":    full.Secrets.IndexRecipient,
			"chunker_polynomial": full.Secrets.Polynomial,
		}
		for k, v := range want {
			if kf.Secrets[k] != v {
				t.Errorf("key file %d: %s = %v, want the repository's", i, k, kf.Secrets[k])
			}
		}
		if kf.Secrets["blob_id_key"] == nil {
			t.Errorf("key file %d: no blob_id_key", i)
		}
	}

	// Opened with it, the repository knows it is write-only, and so does
	// key list; a key added through it is write-only too, and it removes
	// no key.
	wo := tr.openWith(t, archive.Credentials{Identities: []age.Identity{id}})
	if !wo.WriteOnly() {
		t.Fatal("WriteOnly() = false")
	}
	keys, err := wo.Keys(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if k.Current && k.Kind != archive.WriteOnlyKey {
			t.Errorf("key list: current key kind %q", k.Kind)
		}
	}
	id2, _ := age.GenerateX25519Identity()
	more, err := wo.AddKey(t.Context(), archive.KeyRecipients{Recipients: []string{id2.Recipient().String()}})
	if err != nil {
		t.Fatal(err)
	}
	if !tr.openWith(t, archive.Credentials{Identities: []age.Identity{id2}}).WriteOnly() {
		t.Error("a key added with a write-only key is not write-only")
	}
	if err := wo.RemoveKey(t.Context(), more[0]); !errors.Is(err, archive.ErrWriteOnly) {
		t.Errorf("RemoveKey with a write-only key: %v", err)
	}
}

func mustScrypt(t testing.TB, pass string) age.Identity {
	t.Helper()
	s, err := age.NewScryptIdentity(pass)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestWriteOnlyRefusesReads backs up with a write-only key, then tries
// every way of reading the backup back with it: each is refused with
// ErrWriteOnly (exit code 12 in the CLI). A full key restores the same
// snapshot byte for byte and finds the repository sound.
func TestWriteOnlyRefusesReads(t *testing.T) {
	ctx := t.Context()
	src := genCorpus(t, 21, 2e6)
	tr := newTestRepo(t, 1<<20)
	creds, _ := tr.writeOnly(t)
	wo := tr.openWith(t, creds)
	res, err := wo.Backup(ctx, archive.BackupOptions{Paths: []string{src}, Host: "wohost", ParentCache: t.TempDir()})
	if err != nil {
		t.Fatalf("write-only backup: %v", err)
	}
	if len(res.Warnings) != 0 || res.Snapshot.Summary.BlobsNew == 0 || res.Snapshot.Summary.PacksWritten == 0 {
		t.Fatalf("write-only backup: %+v, warnings %v", res.Snapshot.Summary, res.Warnings)
	}

	full := tr.open(t)
	snap, err := full.LoadSnapshot(ctx, res.Snapshot.ID)
	if err != nil {
		t.Fatalf("full key reading the write-only host's snapshot: %v", err)
	}
	var someBlob archive.ID
	var somePack archive.ID
	for p, blobs := range full.Index().PackBlobs() {
		somePack, someBlob = p, blobs[0].ID
		break
	}

	wo = tr.openWith(t, creds) // a fresh process
	refusals := []struct {
		what string
		err  error
	}{
		{"snapshots", func() error { _, _, err := wo.Snapshots(ctx); return err }()},
		{"find latest", func() error { _, err := wo.FindSnapshot(ctx, "latest"); return err }()},
		{"load snapshot", func() error { _, err := wo.LoadSnapshot(ctx, snap.ID); return err }()},
		{"ls folder", func() error { _, err := wo.LoadFolderTree(ctx, snap.Roots[0].Folders[0].Tree); return err }()},
		{"cat blob", func() error { _, err := wo.LoadBlob(ctx, someBlob); return err }()},
		{"cat pack", func() error { _, err := wo.ReadPackHeader(ctx, somePack, 0); return err }()},
		{"read pack", func() error { _, err := wo.ReadPack(ctx, somePack); return err }()},
		{"restore", func() error {
			_, err := restore.Restore(ctx, wo, snap, restore.Options{Target: filepath.Join(t.TempDir(), "r")})
			return err
		}()},
		{"check", func() error { _, err := wo.Check(ctx, archive.CheckOptions{}); return err }()},
		{"check --read-data", func() error { _, err := wo.Check(ctx, archive.CheckOptions{ReadData: true}); return err }()},
		{"copy from", func() error {
			// A target that shares the blob-ID key, as copy needs.
			be := local.New(filepath.Join(t.TempDir(), "copy"))
			if err := be.Create(); err != nil {
				t.Fatal(err)
			}
			if _, err := archive.InitCopyParams(ctx, be, archive.KeyRecipients{Recipients: []string{tr.id.Recipient().String()}}, full); err != nil {
				t.Fatal(err)
			}
			to, err := archive.Open(ctx, be, tr.creds(), archive.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer to.Close()
			if _, err := to.LoadIndex(ctx); err != nil {
				t.Fatal(err)
			}
			_, err = archive.Copy(ctx, wo, to, nil, nil)
			return err
		}()},
	}
	for _, r := range refusals {
		if !errors.Is(r.err, archive.ErrWriteOnly) || !errors.Is(r.err, archive.ErrWrongKey) {
			t.Errorf("%s with a write-only key: %v, want ErrWriteOnly (and ErrWrongKey)", r.what, r.err)
		}
	}

	got, _ := restoreTo(t, full, snap, restoreOptions())
	compareTrees(t, src, got)
	chk, err := full.Check(ctx, archive.CheckOptions{ReadData: true})
	if err != nil || !chk.OK() || len(chk.Warnings) != 0 {
		t.Fatalf("check with the full key: %+v, %v", chk, err)
	}
}

// TestWriteOnlyIncremental: a write-only host keeps its parent's folder
// lists in the cache, so a run without changes reads nothing and one after
// new deliveries reads only them; without the cache it reads everything
// but stores nothing new; a cache whose snapshot is gone or whose trees
// are damaged is not trusted. Every snapshot restores (with the full key)
// to the source as it was.
func TestWriteOnlyIncremental(t *testing.T) {
	ctx := t.Context()
	src := genCorpus(t, 22, 2e6)
	tr := newTestRepo(t, 0)
	creds, _ := tr.writeOnly(t)
	cache := filepath.Join(t.TempDir(), "cache")
	backup := func(t *testing.T, cacheDir string) *archive.Snapshot {
		t.Helper()
		wo := tr.openWith(t, creds) // a fresh process each time
		res, err := wo.Backup(ctx, archive.BackupOptions{Paths: []string{src}, Host: "wohost", ParentCache: cacheDir})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Warnings) != 0 {
			t.Fatalf("warnings: %v", res.Warnings)
		}
		got, _ := restoreTo(t, tr.open(t), res.Snapshot, restoreOptions())
		compareTrees(t, src, got)
		return res.Snapshot
	}
	parentOf := func(t *testing.T, s *archive.Snapshot) *archive.ID {
		t.Helper()
		stored, err := tr.open(t).LoadSnapshot(ctx, s.ID)
		if err != nil {
			t.Fatal(err)
		}
		return stored.Parent
	}

	first := backup(t, cache)
	total := first.Summary.BytesRead
	if first.Summary.MessagesNew != first.Summary.Messages || parentOf(t, first) != nil {
		t.Fatalf("first backup: %+v, parent %v", first.Summary, parentOf(t, first))
	}
	// The cache is private to the host.
	if err := filepath.Walk(cache, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		want := os.FileMode(0o600)
		if fi.IsDir() {
			want = 0o700 | os.ModeDir
		}
		if fi.Mode() != want {
			t.Errorf("%s: mode %v, want %v", p, fi.Mode(), want)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	prev := first
	t.Run("unchanged", func(t *testing.T) {
		s := backup(t, cache)
		if s.Summary.BytesRead != 0 || s.Summary.MessagesNew != 0 || s.Summary.BlobsNew != 0 || s.Summary.Messages != first.Summary.Messages {
			t.Errorf("summary %+v, want nothing read or stored", s.Summary)
		}
		if p := parentOf(t, s); p == nil || *p != prev.ID {
			t.Errorf("parent %v, want %s", p, prev.ID)
		}
		prev = s
	})
	t.Run("new mail", func(t *testing.T) {
		ms, err := corpus.Mutate(ctx, src, corpus.MutateOptions{Seed: 3, NewMessages: 6, FlagChanges: 10, Moves: 3, Deletes: 2})
		if err != nil {
			t.Fatal(err)
		}
		s := backup(t, cache)
		if s.Summary.MessagesNew != int64(ms.NewFiles) {
			t.Errorf("MessagesNew = %d, want %d", s.Summary.MessagesNew, ms.NewFiles)
		}
		// Only the new messages and the rewritten uid lists are read.
		if s.Summary.BytesRead < ms.NewBytes || s.Summary.BytesRead >= total/2 {
			t.Errorf("read %d bytes for %d new message bytes (first backup read %d)", s.Summary.BytesRead, ms.NewBytes, total)
		}
		if want := int64(ms.FlagChanges + ms.NewToCur + ms.Moves); s.Summary.MessagesChanged != want {
			t.Errorf("MessagesChanged = %d, want %d", s.Summary.MessagesChanged, want)
		}
		if p := parentOf(t, s); p == nil || *p != prev.ID {
			t.Errorf("parent %v, want %s", p, prev.ID)
		}
		prev = s
	})
	t.Run("no cache", func(t *testing.T) {
		s := backup(t, t.TempDir())
		// Nothing stored but the Message-ID index, which a backup
		// without a parent builds anew as one run (msgindex.go): its
		// root, the run and one page (82 messages).
		if s.Summary.MessagesNew != s.Summary.Messages || s.Summary.BlobsNew != 3 || s.Summary.PacksWritten != 1 {
			t.Errorf("summary %+v: want every message read, only the index's 3 blobs stored", s.Summary)
		}
		if p := parentOf(t, s); p != nil {
			t.Errorf("parent %v without a cache", p)
		}
	})
	t.Run("damaged cached tree", func(t *testing.T) {
		trees, err := os.ReadDir(filepath.Join(cache, "trees"))
		if err != nil || len(trees) == 0 {
			t.Fatal(trees, err)
		}
		for _, tf := range trees {
			if err := os.WriteFile(filepath.Join(cache, "trees", tf.Name()), []byte("garbage"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := corpus.Mutate(ctx, src, corpus.MutateOptions{Seed: 4, FlagChanges: 4}); err != nil {
			t.Fatal(err)
		}
		s := backup(t, cache)
		// The changed folders' messages are read again (and deduplicated
		// through the index); nothing is lost.
		if s.Summary.MessagesNew == 0 {
			t.Errorf("summary %+v: want the changed folders read again", s.Summary)
		}
		if p := parentOf(t, s); p == nil || *p != prev.ID {
			t.Errorf("parent %v, want %s", p, prev.ID)
		}
		// That run cached sound trees again: the next reads nothing.
		again := backup(t, cache)
		if again.Summary.BytesRead != 0 || again.Summary.MessagesNew != 0 {
			t.Errorf("after the cache healed: %+v, want nothing read", again.Summary)
		}
		prev = again
	})
	t.Run("parent gone from the repository", func(t *testing.T) {
		if err := os.Remove(filepath.Join(tr.dir, "snapshots", prev.ID.String())); err != nil {
			t.Fatal(err)
		}
		s := backup(t, cache)
		if s.Summary.MessagesNew != s.Summary.Messages || s.Summary.BytesNew != 0 {
			t.Errorf("summary %+v: want every message read, nothing stored", s.Summary)
		}
		if p := parentOf(t, s); p != nil {
			t.Errorf("parent %v: the cached parent no longer exists", p)
		}
	})
}
