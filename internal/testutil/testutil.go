// Package testutil holds test helpers that the tests of several packages
// share (archive, archive/s3, cmd/mailvault): comparing a restored tree
// with its source, shrinking a repository's packs, and a Maildir whose
// messages no system call can open. It is imported by tests only.
package testutil

import (
	"bytes"
	"encoding/json"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailvault/mailvault/archive"
)

// File is what a backup and restore must keep of a regular file.
type File struct {
	Content []byte
	ModTime time.Time
	IsMail  bool // a message: in a cur or new directory
	// Link is a symbolic link's target (Content is then empty).
	Link string
}

// ReadTree returns every regular file and symbolic link below root by
// slash path, and the set of directories. Other file types are test
// errors: no source tree of these tests holds one.
func ReadTree(t testing.TB, root string) (map[string]File, map[string]bool) {
	t.Helper()
	files := map[string]File{}
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
		if d.Type()&fs.ModeSymlink != 0 {
			link, err := os.Readlink(p)
			if err != nil {
				return err
			}
			files[rel] = File{Link: link}
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
		files[rel] = File{Content: data, ModTime: fi.ModTime(), IsMail: parent == "cur" || parent == "new"}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files, dirs
}

// CompareTrees asserts that got holds exactly the files of want (names,
// so Maildir flags, content and mtimes) and its directories.
func CompareTrees(t testing.TB, want, got string) {
	t.Helper()
	wf, wd := ReadTree(t, want)
	gf, gd := ReadTree(t, got)
	for rel, w := range wf {
		g, ok := gf[rel]
		if !ok {
			t.Errorf("missing after restore: %s", rel)
			continue
		}
		if w.Link != g.Link {
			t.Errorf("%s: link to %q, want %q", rel, g.Link, w.Link)
		}
		if w.Link != "" {
			continue // a link's mtime is not restored
		}
		if !bytes.Equal(w.Content, g.Content) {
			t.Errorf("%s: content differs (%d vs %d bytes)", rel, len(w.Content), len(g.Content))
		}
		if !w.ModTime.Equal(g.ModTime) {
			t.Errorf("%s: mtime %v, want %v", rel, g.ModTime, w.ModTime)
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

// SetPackSize rewrites the (plaintext) config of the repository in be so
// that its packs hold packSize bytes: small corpora then spread over
// several packs.
func SetPackSize(t testing.TB, be archive.Backend, packSize int64) {
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

// DeepMaildir makes, below src, a Maildir whose cur/ directory's absolute
// path is about 3880 bytes, just short of PATH_MAX (4096 on Linux), and
// returns an os.Root for that Maildir and its absolute path. Entries with
// long names in it have paths that no system call accepts (ENAMETOOLONG),
// even from root — the one way to make a source file unreadable that
// works as root (mode 000 does not stop root; FIFOs and sockets are
// skipped, not errors). Creating them goes through directory handles, one
// short name at a time. The root is closed when the test ends.
func DeepMaildir(t testing.TB, src string) (*os.Root, string) {
	t.Helper()
	r, err := os.OpenRoot(src)
	if err != nil {
		t.Fatal(err)
	}
	dir := src
	for len(dir)+len("/Maildir")+2 <= 3880 {
		comp := strings.Repeat("d", min(200, 3880-len("/Maildir")-len(dir)-1))
		if err := r.Mkdir(comp, 0o700); err != nil {
			t.Fatal(err)
		}
		next, err := r.OpenRoot(comp)
		if err != nil {
			t.Fatal(err)
		}
		r.Close()
		r, dir = next, dir+"/"+comp
	}
	for _, d := range []string{"Maildir", "Maildir/cur", "Maildir/new", "Maildir/tmp"} {
		if err := r.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	md, err := r.OpenRoot("Maildir")
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	t.Cleanup(func() { md.Close() })
	return md, dir + "/Maildir"
}
