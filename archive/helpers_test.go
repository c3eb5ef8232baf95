package archive_test

import (
	"bytes"
	"encoding/json"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/mailvault/mailvault/archive"
	"github.com/mailvault/mailvault/archive/local"
	"github.com/mailvault/mailvault/bench/corpus"
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

// fileInfo is what a round trip must preserve for one file.
type fileInfo struct {
	content []byte
	mtime   time.Time
	isMail  bool
}

// readTree returns every regular file below root by slash path, and the set
// of directories.
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
		if !d.Type().IsRegular() {
			t.Errorf("%s: unexpected file type %v", rel, d.Type())
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		parent := filepath.Base(filepath.Dir(p))
		files[rel] = fileInfo{content: data, mtime: fi.ModTime(), isMail: parent == "cur" || parent == "new"}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files, dirs
}

// compareTrees asserts that got holds exactly the files of want (names,
// so flags, content and mtimes) and its directories.
func compareTrees(t testing.TB, want, got string) {
	t.Helper()
	wf, wd := readTree(t, want)
	gf, gd := readTree(t, got)
	for rel, w := range wf {
		g, ok := gf[rel]
		if !ok {
			t.Errorf("missing after restore: %s", rel)
			continue
		}
		if !bytes.Equal(w.content, g.content) {
			t.Errorf("%s: content differs (%d vs %d bytes)", rel, len(w.content), len(g.content))
		}
		if !w.mtime.Equal(g.mtime) {
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
		if f.isMail {
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
