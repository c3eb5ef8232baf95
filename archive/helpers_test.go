package archive_test

import (
	"os"
	"path/filepath"
	"sort"
	"testing"

	"filippo.io/age"

	"github.com/mailvault/mailvault/archive"
	"github.com/mailvault/mailvault/archive/local"
	"github.com/mailvault/mailvault/bench/corpus"
	"github.com/mailvault/mailvault/internal/testutil"
	"github.com/mailvault/mailvault/maildir"
	"github.com/mailvault/mailvault/restore"
)

// testRepo is a repository in a temporary directory, opened by an age
// X25519 identity (a passphrase would cost a scrypt run per open).
type testRepo struct {
	dir string
	be  *local.Backend
	id  *age.X25519Identity
}

// newTestRepo creates a repository. packSize > 0 rewrites the (plaintext)
// config so that small corpora spread over several packs.
func newTestRepo(t testing.TB, packSize int64) *testRepo {
	t.Helper()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "repo")
	be := local.New(dir)
	if err := be.Create(); err != nil {
		t.Fatal(err)
	}
	if _, err := archive.Init(t.Context(), be, archive.KeyRecipients{Recipients: []string{id.Recipient().String()}}); err != nil {
		t.Fatal(err)
	}
	if packSize > 0 {
		setPackSize(t, be, packSize)
	}
	return &testRepo{dir: dir, be: be, id: id}
}

// setPackSize, readTree and compareTrees are shared with the s3 and CLI
// tests (internal/testutil).
func setPackSize(t testing.TB, be archive.Backend, packSize int64) {
	t.Helper()
	testutil.SetPackSize(t, be, packSize)
}

func (tr *testRepo) creds() archive.Credentials {
	return archive.Credentials{Identities: []age.Identity{tr.id}}
}

// open opens the repository (compression "auto") and loads its index; it
// is closed when the test ends.
func (tr *testRepo) open(t testing.TB) *archive.Repository {
	t.Helper()
	r := tr.openOpt(t, archive.Options{Compression: 2})
	if _, err := r.LoadIndex(t.Context()); err != nil {
		t.Fatal(err)
	}
	return r
}

// openOpt opens the repository without loading the index.
func (tr *testRepo) openOpt(t testing.TB, opt archive.Options) *archive.Repository {
	t.Helper()
	r, err := archive.Open(t.Context(), tr.be, tr.creds(), opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// packFiles lists the pack files on disk with their sizes.
func (tr *testRepo) packFiles(t testing.TB) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	if err := tr.be.List(t.Context(), archive.PackFile, func(name string, size int64) error {
		out[name] = size
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func (tr *testRepo) packPath(name string) string {
	return filepath.Join(tr.dir, "data", name[:2], name)
}

// genCorpus writes a deterministic corpus of about size bytes.
func genCorpus(t testing.TB, seed uint64, size int64) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "mail")
	if _, err := corpus.Generate(t.Context(), dir, corpus.Options{Seed: seed, TargetBytes: size, Domains: 2, UsersPerDomain: 4}); err != nil {
		t.Fatal(err)
	}
	return dir
}

// runBackup backs up paths with the repository's own parent detection.
func runBackup(t testing.TB, r *archive.Repository, paths ...string) *archive.BackupResult {
	t.Helper()
	res, err := r.Backup(t.Context(), archive.BackupOptions{Paths: paths, Host: "testhost"})
	if err != nil {
		t.Fatalf("backup: %v", err)
	}
	return res
}

func readTree(t testing.TB, root string) (map[string]testutil.File, map[string]bool) {
	t.Helper()
	return testutil.ReadTree(t, root)
}

func compareTrees(t testing.TB, want, got string) {
	t.Helper()
	testutil.CompareTrees(t, want, got)
}

// restoreTo restores snap into a new directory and returns it.
func restoreTo(t testing.TB, r *archive.Repository, snap *archive.Snapshot, opt restore.Options) (string, *restore.Result) {
	t.Helper()
	if opt.Target == "" {
		opt.Target = filepath.Join(t.TempDir(), "restored")
	}
	res, err := restore.Restore(t.Context(), r, snap, opt)
	if err != nil {
		t.Fatalf("restore %+v: %v", opt, err)
	}
	return opt.Target, res
}

// mailFiles lists the message files below root (slash paths).
func mailFiles(t testing.TB, root string) []string {
	t.Helper()
	files, _ := readTree(t, root)
	var out []string
	for rel, f := range files {
		if f.IsMail {
			out = append(out, rel)
		}
	}
	sort.Strings(out)
	return out
}

// assertMaildir checks that dir is a Maildir (cur, new, tmp exist).
func assertMaildir(t testing.TB, dir string) {
	t.Helper()
	for _, sub := range []string{"cur", "new", "tmp"} {
		if fi, err := os.Stat(filepath.Join(dir, sub)); err != nil || !fi.IsDir() {
			t.Errorf("%s is not a valid Maildir: %s missing (%v)", dir, sub, err)
		}
	}
}

// uniqueOf returns the Maildir unique name of a message path.
func uniqueOf(rel string) string { return maildir.ParseName(filepath.Base(rel)).Unique }

func restoreOptions() restore.Options { return restore.Options{} }

func backupOptions(paths ...string) archive.BackupOptions {
	return archive.BackupOptions{Paths: paths, Host: "testhost"}
}
