package archive_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"filippo.io/age"

	"github.com/mailvault/mailvault/archive"
	"github.com/mailvault/mailvault/restore"
)

// ageCipherOffset maps an offset in the plaintext of an age file to the
// offset of that byte in the file: header, 16-byte nonce, then 64 KiB
// chunks each followed by a 16-byte tag.
func ageCipherOffset(t *testing.T, sealed []byte, plainOff int64) int64 {
	t.Helper()
	i := bytes.Index(sealed, []byte("\n--- "))
	if i < 0 {
		t.Fatal("no age header end")
	}
	j := bytes.IndexByte(sealed[i+1:], '\n')
	hdr := int64(i + 1 + j + 1)
	const chunk = 64 << 10
	return hdr + 16 + plainOff/chunk*(chunk+16) + plainOff%chunk
}

// flipByte inverts one byte of a file.
func flipByte(t *testing.T, path string, off int64) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	data[off] ^= 0xff
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

type msgRef struct {
	user, folder string
	msg          archive.Message
}

// snapshotMessages loads every message of a snapshot.
func snapshotMessages(t *testing.T, r *archive.Repository, snap *archive.Snapshot) []msgRef {
	t.Helper()
	var out []msgRef
	for _, root := range snap.Roots {
		for _, f := range root.Folders {
			tree, err := r.LoadFolderTree(t.Context(), f.Tree)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range tree.Messages {
				out = append(out, msgRef{f.User, f.Folder, m})
			}
		}
	}
	return out
}

// TestFlippedBytePack damages one byte of one pack: check --read-data must
// name the pack and every message that has content in it, a restore of
// such a message must fail naming the pack, and messages stored elsewhere
// must still restore.
func TestFlippedBytePack(t *testing.T) {
	src := genCorpus(t, 11, 4e6)
	tr := newTestRepo(t, 1<<20)
	// Uncompressed, so that 4 MB of text fill several 1 MiB packs.
	r := tr.openOpt(t, archive.Options{Compression: 0})
	snap := runBackup(t, r, src).Snapshot
	if n := len(tr.packFiles(t)); n < 3 {
		t.Fatalf("%d packs, want several", n)
	}
	msgs := snapshotMessages(t, r, snap)

	// Which blobs go into which pack depends on the workers' timing, so
	// choose the data pack that the fewest messages have content in; the
	// victim is the message with the longest blob there, and the flipped
	// byte is in the middle of that blob (so that even a ranged read of
	// the victim alone hits the damaged age chunk).
	idx := r.Index()
	byPack := idx.PackBlobs()
	var pack archive.ID
	var blob archive.PackedBlob
	var victim msgRef
	fewest := len(msgs)
	for p, blobs := range byPack {
		in := map[archive.ID]archive.PackedBlob{}
		for _, b := range blobs {
			if b.Type == archive.DataBlob {
				in[b.ID] = b
			}
		}
		users := 0
		var best msgRef
		var bestBlob archive.PackedBlob
		for _, m := range msgs {
			hit := false
			for _, id := range m.msg.Blobs {
				if b, ok := in[id]; ok {
					hit = true
					if b.Length > bestBlob.Length {
						best, bestBlob = m, b
					}
				}
			}
			if hit {
				users++
			}
		}
		if users > 0 && users < fewest {
			fewest, pack, blob, victim = users, p, bestBlob, best
		}
	}
	if pack.IsNull() {
		t.Fatalf("every message has content in every data pack (%d packs); corpus too small", len(byPack))
	}
	packFile := tr.packPath(pack.String())
	sealed, err := os.ReadFile(packFile)
	if err != nil {
		t.Fatal(err)
	}
	flipByte(t, packFile, ageCipherOffset(t, sealed, int64(blob.Offset)+int64(blob.Length)/2))

	// Who has content in the pack, and who has none.
	inPack := map[archive.ID]bool{}
	for _, b := range byPack[pack] {
		inPack[b.ID] = true
	}
	var wantAffected []string
	var unaffected *msgRef
	for i, m := range msgs {
		hit := slices.ContainsFunc(m.msg.Blobs, func(id archive.ID) bool { return inPack[id] })
		if hit {
			// Named with its Message-ID and subject, which every
			// generated message has.
			if m.msg.MessageID == "" || m.msg.Subject == "" {
				t.Fatalf("message %s has no Message-ID or subject", m.msg.Unique)
			}
			wantAffected = append(wantAffected, fmt.Sprintf("snapshot %s %s/%s/%s <%s> %q", snap.ID.Short(), m.user, m.folder, m.msg.Unique, m.msg.MessageID, m.msg.Subject))
		} else if unaffected == nil {
			unaffected = &msgs[i]
		}
	}
	// Non-message files (uid lists ...) are named too.
	for _, root := range snap.Roots {
		ft, err := r.LoadFilesTree(t.Context(), root.Files)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ft.Entries {
			if slices.ContainsFunc(e.Blobs, func(id archive.ID) bool { return inPack[id] }) {
				wantAffected = append(wantAffected, fmt.Sprintf("snapshot %s file %s", snap.ID.Short(), e.Path))
			}
		}
	}
	if unaffected == nil {
		t.Fatalf("every one of %d messages has content in the damaged pack (of %d packs, %d blobs in it); corpus too small", len(msgs), len(tr.packFiles(t)), len(inPack))
	}

	t.Run("check structure", func(t *testing.T) {
		res, err := tr.openOpt(t, archive.Options{}).Check(t.Context(), archive.CheckOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !res.OK() {
			t.Errorf("structure check (packs not read) found errors: %+v", res.Errors)
		}
	})
	t.Run("check read data", func(t *testing.T) {
		res, err := tr.openOpt(t, archive.Options{}).Check(t.Context(), archive.CheckOptions{ReadData: true})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Errors) != 1 {
			t.Fatalf("check found %d errors, want 1 (the pack): %+v", len(res.Errors), res.Errors)
		}
		p := res.Errors[0]
		if p.Object != "pack "+pack.String() {
			t.Errorf("problem names %q, want pack %s", p.Object, pack)
		}
		if res.PacksRead != res.Packs {
			t.Errorf("read %d of %d packs", res.PacksRead, res.Packs)
		}
		sort.Strings(wantAffected)
		if strings.Join(p.Affected, "\n") != strings.Join(wantAffected, "\n") {
			t.Errorf("affected:\n%s\nwant:\n%s", strings.Join(p.Affected, "\n"), strings.Join(wantAffected, "\n"))
		}
	})
	t.Run("restore damaged message", func(t *testing.T) {
		_, err := restore.Restore(t.Context(), tr.open(t), snap, restore.Options{Target: t.TempDir(), Overwrite: true, Message: victim.msg.Unique})
		if err == nil || !errors.Is(err, archive.ErrCorrupt) || !strings.Contains(err.Error(), pack.String()) {
			t.Errorf("restore of a message in the damaged pack: err = %v, want ErrCorrupt naming pack %s", err, pack)
		}
	})
	t.Run("restore undamaged message", func(t *testing.T) {
		got, res := restoreTo(t, tr.open(t), snap, restore.Options{Message: unaffected.msg.Unique})
		if res.Messages != 1 {
			t.Fatalf("restored %d messages", res.Messages)
		}
		files := mailFiles(t, got)
		if len(files) != 1 {
			t.Fatalf("restored %v", files)
		}
		want, err := os.ReadFile(filepath.Join(src, filepath.FromSlash(files[0])))
		if err != nil {
			t.Fatal(err)
		}
		have, _ := os.ReadFile(filepath.Join(got, filepath.FromSlash(files[0])))
		if !bytes.Equal(have, want) {
			t.Error("restored message differs from the source")
		}
	})
}

// TestDamagedMetadata covers the other kinds of damage check must report
// (and not crash on): a corrupt or undecodable index, a missing pack, a
// damaged snapshot.
func TestDamagedMetadata(t *testing.T) {
	src := genCorpus(t, 12, 1e6)
	tests := []struct {
		name string
		// damage breaks the repository and returns what check must name.
		damage func(t *testing.T, tr *testRepo, r *archive.Repository, snap *archive.Snapshot) string
	}{
		{"index byte flipped", func(t *testing.T, tr *testRepo, r *archive.Repository, _ *archive.Snapshot) string {
			ids, _ := r.List(t.Context(), archive.IndexFile)
			flipByte(t, filepath.Join(tr.dir, "index", ids[0].String()), 200)
			return "index"
		}},
		{"index truncated", func(t *testing.T, tr *testRepo, r *archive.Repository, _ *archive.Snapshot) string {
			ids, _ := r.List(t.Context(), archive.IndexFile)
			p := filepath.Join(tr.dir, "index", ids[0].String())
			fi, _ := os.Stat(p)
			if err := os.Truncate(p, fi.Size()/2); err != nil {
				t.Fatal(err)
			}
			return "index"
		}},
		{"index of another version", func(t *testing.T, _ *testRepo, r *archive.Repository, _ *archive.Snapshot) string {
			if _, err := r.SaveJSONFile(t.Context(), archive.IndexFile, map[string]any{"version": 2}); err != nil {
				t.Fatal(err)
			}
			return "index"
		}},
		{"index with unknown blob type", func(t *testing.T, _ *testRepo, r *archive.Repository, _ *archive.Snapshot) string {
			bad := fmt.Sprintf(`{"version":1,"packs":[{"id":"%064x","blobs":[{"id":"%064x","type":"nope","offset":0,"length":1,"raw_length":1,"compression":"none"}]}]}`, 1, 2)
			if _, err := r.SaveJSONFile(t.Context(), archive.IndexFile, jsonRaw(bad)); err != nil {
				t.Fatal(err)
			}
			return "index"
		}},
		{"pack missing", func(t *testing.T, tr *testRepo, _ *archive.Repository, _ *archive.Snapshot) string {
			for name := range tr.packFiles(t) {
				if err := os.Remove(tr.packPath(name)); err != nil {
					t.Fatal(err)
				}
				return "pack " + name
			}
			t.Fatal("no packs")
			return ""
		}},
		{"snapshot byte flipped", func(t *testing.T, tr *testRepo, _ *archive.Repository, snap *archive.Snapshot) string {
			flipByte(t, filepath.Join(tr.dir, "snapshots", snap.ID.String()), 300)
			return "snapshot " + snap.ID.String()
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr := newTestRepo(t, 0)
			r := tr.open(t)
			snap := runBackup(t, r, src).Snapshot
			object := tc.damage(t, tr, r, snap)
			res, err := tr.openOpt(t, archive.Options{}).Check(t.Context(), archive.CheckOptions{ReadData: true})
			if err != nil {
				t.Fatalf("check failed instead of reporting: %v", err)
			}
			if res.OK() {
				t.Fatal("check found no errors")
			}
			found := false
			for _, p := range res.Errors {
				if p.Object == object {
					found = true
					if !strings.Contains(p.Err, "damaged") && !strings.Contains(p.Err, "missing") {
						t.Errorf("problem %+v does not say what is wrong", p)
					}
				}
			}
			if !found {
				t.Errorf("errors %+v do not name %q", res.Errors, object)
			}
		})
	}
}

// jsonRaw stores pre-encoded JSON through SaveJSONFile.
type jsonRaw string

func (j jsonRaw) MarshalJSON() ([]byte, error) { return []byte(j), nil }

// TestWrongKey opens a repository with an identity it was not made for.
func TestWrongKey(t *testing.T) {
	tr := newTestRepo(t, 0)
	other, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		creds archive.Credentials
	}{
		{"other identity", archive.Credentials{Identities: []age.Identity{other}}},
		{"passphrase", archive.Credentials{Passphrase: "not the key"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := archive.Open(t.Context(), tr.be, tc.creds, archive.Options{})
			if !errors.Is(err, archive.ErrWrongKey) {
				t.Errorf("Open = %v, want ErrWrongKey", err)
			}
		})
	}
}

// TestBackupDespiteDamagedSnapshot: one damaged snapshot file must not stop
// later backups (the damage is check's to report), nor listing the others.
func TestBackupDespiteDamagedSnapshot(t *testing.T) {
	src := genCorpus(t, 13, 5e5)
	tr := newTestRepo(t, 0)
	first := runBackup(t, tr.open(t), src).Snapshot
	second := runBackup(t, tr.open(t), src).Snapshot
	flipByte(t, filepath.Join(tr.dir, "snapshots", second.ID.String()), 100)

	r := tr.open(t)
	res, err := r.Backup(t.Context(), backupOptions(src))
	if err != nil {
		t.Fatalf("backup after a snapshot was damaged: %v", err)
	}
	if p := res.Snapshot.Parent; p == nil || *p != first.ID {
		t.Errorf("parent %v, want the newest intact snapshot %s", p, first.ID.Short())
	}
	if res.Snapshot.Summary.BytesRead != 0 {
		t.Errorf("read %d bytes: the intact parent was not used", res.Snapshot.Summary.BytesRead)
	}
	chk, err := tr.open(t).Check(t.Context(), archive.CheckOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(chk.Errors) != 1 || chk.Errors[0].Object != "snapshot "+second.ID.String() {
		t.Errorf("check errors %+v, want the damaged snapshot", chk.Errors)
	}
	// Listing skips the damaged snapshot and names it.
	snaps, damaged, err := r.Snapshots(t.Context())
	if err != nil || len(snaps) != 2 || len(damaged) != 1 || !strings.Contains(damaged[0].Error(), second.ID.String()) {
		t.Errorf("Snapshots: %d readable, damaged %v, err %v; want 2 readable and %s named", len(snaps), damaged, err, second.ID.Short())
	}
	// "latest" does not: the damaged one may be the newest (issue 9). It
	// fails, naming it and the newest readable one, which works by name.
	latest, err := r.FindSnapshot(t.Context(), "latest")
	if !errors.Is(err, archive.ErrCorrupt) || !strings.Contains(err.Error(), second.ID.Short()) || !strings.Contains(err.Error(), res.Snapshot.ID.Short()) {
		t.Errorf("latest = %v, %v; want ErrCorrupt naming %s and %s", latest, err, second.ID.Short(), res.Snapshot.ID.Short())
	}
	if s, err := r.FindSnapshot(t.Context(), res.Snapshot.ID.Short()); err != nil || s.ID != res.Snapshot.ID {
		t.Errorf("FindSnapshot(%s) = %v, %v", res.Snapshot.ID.Short(), s, err)
	}
}
