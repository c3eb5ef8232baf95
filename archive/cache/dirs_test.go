package cache

import (
	"crypto/sha256"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/mailvault/mailvault/archive"
)

func testID(s string) archive.ID { return archive.ID(sha256.Sum256([]byte(s))) }

func mkfile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func makeOld(t *testing.T, path string, d time.Duration) {
	t.Helper()
	old := time.Now().Add(-d)
	if err := os.Chtimes(path, old, old); err != nil {
		t.Fatal(err)
	}
}

// The parent cache lives in the repository's directory of the cache
// root; one left under the default root by an older version is moved
// there, once.
func TestParentDir(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	def, err := DefaultDir()
	if err != nil {
		t.Fatal(err)
	}
	id := testID("repo")
	old := filepath.Join(def, id.String())
	mkfile(t, filepath.Join(old, "parents", "p1"), "parent")
	mkfile(t, filepath.Join(old, "trees", "t1"), "tree")
	mkfile(t, filepath.Join(old, "index", "i1"), "index") // the metadata cache stays

	root := filepath.Join(t.TempDir(), "cache")
	dir, err := ParentDir(root, id, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(root, id.String()); dir != want {
		t.Fatalf("dir %s, want %s", dir, want)
	}
	for _, f := range []string{"parents/p1", "trees/t1"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Fatalf("%s not moved: %v", f, err)
		}
		if _, err := os.Stat(filepath.Join(old, f)); !os.IsNotExist(err) {
			t.Fatalf("%s still in the old place: %v", f, err)
		}
	}
	if tag, err := os.ReadFile(filepath.Join(root, tagFile)); err != nil || string(tag) != tagContent {
		t.Fatalf("tag %q %v", tag, err)
	}
	// Once moved, a later parent cache in the old place is not taken.
	mkfile(t, filepath.Join(old, "parents", "p2"), "parent")
	if dir2, err := ParentDir(root, id, nil); err != nil || dir2 != dir {
		t.Fatalf("second call: %s %v", dir2, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "parents", "p2")); !os.IsNotExist(err) {
		t.Fatalf("moved again: %v", err)
	}
	// Under the default root it is the same directory as before.
	if d, err := ParentDir(def, id, nil); err != nil || d != old {
		t.Fatalf("default root: %s %v, want %s", d, err, old)
	}
}

// OldDirs reports repository directories unused for maxAge and nothing
// that may not be ours; RemoveDirs removes them.
func TestOldDirs(t *testing.T) {
	root := t.TempDir()
	current := testID("current")
	dirs := map[string]archive.ID{}
	for _, name := range []string{"old", "young", "foreign file", "file not dir", "current", "symlink"} {
		dirs[name] = testID(name)
	}
	mk := func(name string, files ...string) string {
		d := filepath.Join(root, dirs[name].String())
		for _, f := range files {
			mkfile(t, filepath.Join(d, f), "x")
		}
		return d
	}
	oldDir := mk("old", "index/a", "snapshots/b", "keys/c", "parents/d", "trees/e")
	mk("young", "index/a")
	mk("foreign file", "index/a", "notes.txt")
	mk("file not dir", "parents")
	curDir := mk("current", "index/a")
	// A symlink named like a repository, to a directory of the same shape.
	target := filepath.Join(t.TempDir(), "elsewhere")
	mkfile(t, filepath.Join(target, "index", "a"), "x")
	if err := os.Symlink(target, filepath.Join(root, dirs["symlink"].String())); err != nil {
		t.Fatal(err)
	}
	notID := filepath.Join(root, "not-an-id")
	mkfile(t, filepath.Join(notID, "index", "a"), "x")
	for _, name := range []string{"old", "foreign file", "file not dir", "current"} {
		makeOld(t, filepath.Join(root, dirs[name].String()), 40*24*time.Hour)
	}
	makeOld(t, notID, 40*24*time.Hour)
	makeOld(t, filepath.Join(root, dirs["young"].String()), 29*24*time.Hour)

	// No tag, or another tool's: nothing is ours.
	if got, err := OldDirs(root, MaxAge, current); err != nil || len(got) != 0 {
		t.Fatalf("without a tag: %v %v", got, err)
	}
	mkfile(t, filepath.Join(root, tagFile), "Signature: 8a477f597d28d172789f06886806bc55\n# another tool\n")
	if got, err := OldDirs(root, MaxAge, current); err != nil || len(got) != 0 {
		t.Fatalf("with another tool's tag: %v %v", got, err)
	}
	mkfile(t, filepath.Join(root, tagFile), tagContent)
	got, err := OldDirs(root, MaxAge, current)
	if err != nil || !slices.Equal(got, []string{oldDir}) {
		t.Fatalf("old dirs %v %v, want [%s]", got, err, oldDir)
	}
	if n, err := RemoveDirs(got); n != 1 || err != nil {
		t.Fatalf("removed %d: %v", n, err)
	}
	if _, err := os.Stat(oldDir); !os.IsNotExist(err) {
		t.Fatalf("old dir still there: %v", err)
	}
	for _, p := range []string{curDir, notID, filepath.Join(target, "index", "a"), filepath.Join(root, dirs["foreign file"].String(), "notes.txt")} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%s removed: %v", p, err)
		}
	}
	// A root that does not exist has none.
	if got, err := OldDirs(filepath.Join(root, "none"), MaxAge, current); err != nil || got != nil {
		t.Fatalf("missing root: %v %v", got, err)
	}
}

// Using a repository's metadata cache marks its directory used.
func TestCacheMarksDirUsed(t *testing.T) {
	r := newTestRepo(t)
	r.open(t)
	entries, err := os.ReadDir(r.cacheDir)
	if err != nil {
		t.Fatal(err)
	}
	var dir string
	for _, de := range entries {
		if de.IsDir() {
			dir = filepath.Join(r.cacheDir, de.Name())
		}
	}
	makeOld(t, dir, 40*24*time.Hour)
	if got, err := OldDirs(r.cacheDir, MaxAge, archive.ID{}); err != nil || len(got) != 1 {
		t.Fatalf("aged: %v %v", got, err)
	}
	r.open(t)
	if got, err := OldDirs(r.cacheDir, MaxAge, archive.ID{}); err != nil || len(got) != 0 {
		t.Fatalf("after use: %v %v", got, err)
	}
}
