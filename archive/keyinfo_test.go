package archive_test

import (
	"os"
	"path/filepath"
	"testing"

	"filippo.io/age"

	"github.com/mailvault/mailvault/archive"
)

// keyFileCount counts the files in keys/ (key files and key info files).
func keyFileCount(t *testing.T, tr *testRepo) int {
	t.Helper()
	n := 0
	if err := tr.be.List(t.Context(), archive.KeyFile, func(string, int64) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestKeysDescribeEveryKey: `key list` fills kind, host, created and label
// for every key file, whichever key lists them — a write-only key among
// them, and listed by one — not only for the key in use; removing a key
// removes its description; a key from before descriptions existed is
// described once its holder asks.
func TestKeysDescribeEveryKey(t *testing.T) {
	ctx := t.Context()
	tr := newTestRepo(t, 0)
	admin := tr.open(t)
	hostID, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	wo, err := admin.AddWriteOnlyKey(ctx, archive.KeyRecipients{Recipients: []string{hostID.Recipient().String()}})
	if err != nil {
		t.Fatal(err)
	}
	pw, err := admin.AddKey(ctx, archive.KeyRecipients{Passphrase: "correct horse"})
	if err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	hostRepo, err := archive.Open(ctx, tr.be, archive.Credentials{Identities: []age.Identity{hostID}}, archive.Options{Compression: 1})
	if err != nil {
		t.Fatalf("open with the write-only key among key info files: %v", err)
	}
	defer hostRepo.Close()
	want := map[archive.ID]archive.KeyKind{wo[0]: archive.WriteOnlyKey, pw[0]: archive.FullKey}
	for who, r := range map[string]*archive.Repository{"full key": admin, "write-only key": hostRepo} {
		keys, err := r.Keys(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(keys) != 3 {
			t.Fatalf("%s lists %d keys, want 3: %+v", who, len(keys), keys)
		}
		for _, k := range keys {
			if k.Kind == "" || k.Host != host || k.Created.IsZero() || k.Label == "" {
				t.Errorf("%s lists %+v: a column is blank", who, k)
			}
			if kind, ok := want[k.ID]; ok && k.Kind != kind {
				t.Errorf("%s lists %s as %s, want %s", who, k.ID.Short(), k.Kind, kind)
			}
		}
	}

	// Removing a key removes its description.
	before := keyFileCount(t, tr)
	if err := admin.RemoveKey(ctx, wo[0]); err != nil {
		t.Fatal(err)
	}
	if n := keyFileCount(t, tr); n != before-2 {
		t.Errorf("%d files in keys/ after removing a key, want %d", n, before-2)
	}
	if keys, err := admin.Keys(ctx); err != nil || len(keys) != 2 {
		t.Errorf("keys after the removal: %+v, %v", keys, err)
	}

	// A key file from before key info files: no description until its
	// holder writes one (once).
	removeKeyInfo(t, tr, pw[0])
	keys, err := admin.Keys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if k.ID == pw[0] && k.Kind != "" {
			t.Errorf("undescribed key listed as %+v", k)
		}
	}
	pwRepo, err := archive.Open(ctx, tr.be, archive.Credentials{Passphrase: "correct horse"}, archive.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer pwRepo.Close()
	for i, want := range []bool{true, false} {
		if wrote, err := pwRepo.DescribeKey(ctx); err != nil || wrote != want {
			t.Errorf("DescribeKey #%d: %v, %v; want %v", i+1, wrote, err, want)
		}
	}
	if keys, err = admin.Keys(ctx); err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if k.Kind == "" || k.Created.IsZero() {
			t.Errorf("after DescribeKey: %+v", k)
		}
	}
}

// removeKeyInfo deletes the key info file of key id, as if id had been
// written before they existed.
func removeKeyInfo(t *testing.T, tr *testRepo, id archive.ID) {
	t.Helper()
	if err := os.Remove(filepath.Join(tr.dir, "keys", id.String()+".info")); err != nil {
		t.Fatal(err)
	}
}
