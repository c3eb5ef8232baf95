package restore_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"

	"github.com/mailvault/mailvault/archive"
	"github.com/mailvault/mailvault/archive/local"
	"github.com/mailvault/mailvault/internal/testutil"
	"github.com/mailvault/mailvault/restore"
)

// testRepo is a repository in a temporary directory and its key.
type testRepo struct {
	dir string
	be  *local.Backend
	id  *age.X25519Identity
}

// createRepo creates a repository; packSize > 0 sets its pack size.
func createRepo(t *testing.T, packSize int64) *testRepo {
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
		testutil.SetPackSize(t, be, packSize)
	}
	return &testRepo{dir: dir, be: be, id: id}
}

// open opens the repository anew, closed when the test ends.
func (tr *testRepo) open(t *testing.T, opt archive.Options) *archive.Repository {
	t.Helper()
	r, err := archive.Open(t.Context(), tr.be, archive.Credentials{Identities: []age.Identity{tr.id}}, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// newRepo creates and opens a repository in a temporary directory.
func newRepo(t *testing.T) *archive.Repository {
	t.Helper()
	return createRepo(t, 0).open(t, archive.Options{})
}

// saveTree stores v (a hand-built, possibly hostile tree) as a tree blob.
func saveTree(t *testing.T, r *archive.Repository, v any) archive.ID {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	id, _, err := r.SaveBlob(t.Context(), archive.TreeBlob, raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	return id
}

// saveData stores content as a data blob.
func saveData(t *testing.T, r *archive.Repository, content string) archive.ID {
	t.Helper()
	id, _, err := r.SaveBlob(t.Context(), archive.DataBlob, []byte(content))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	return id
}

// saveSnapshot stores a hand-built snapshot and loads it back the way a
// restore would.
func saveSnapshot(t *testing.T, r *archive.Repository, s any) (*archive.Snapshot, error) {
	t.Helper()
	id, err := r.SaveJSONFile(t.Context(), archive.SnapshotFile, s)
	if err != nil {
		t.Fatal(err)
	}
	return r.LoadSnapshot(t.Context(), id)
}

// sandbox is a directory holding the restore target and, beside it, a
// directory that hostile manifests try to write into.
type sandbox struct {
	target, outside string
}

func newSandbox(t *testing.T) sandbox {
	d := t.TempDir()
	s := sandbox{filepath.Join(d, "sub", "target"), filepath.Join(d, "outside")}
	if err := os.MkdirAll(s.outside, 0o700); err != nil {
		t.Fatal(err)
	}
	return s
}

// assertNothingOutside fails if anything was written outside the target.
func (s sandbox) assertNothingOutside(t *testing.T) {
	t.Helper()
	root := filepath.Dir(filepath.Dir(s.target))
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == root || p == s.outside || p == filepath.Dir(s.target) {
			return nil
		}
		if p == s.target || strings.HasPrefix(p, s.target+string(filepath.Separator)) {
			return nil
		}
		t.Errorf("written outside the target: %s", p)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestHostileManifestRefused stores snapshots and trees whose paths point
// outside any restore target: loading them must fail, as must a restore,
// and nothing may appear outside the target.
func TestHostileManifestRefused(t *testing.T) {
	unsafe := []string{"../evil", "/etc/evil", "a/../../b", "a/./b", "", "a//b", "a/", "..", "a\x00b"}

	t.Run("snapshot", func(t *testing.T) {
		r := newRepo(t)
		for _, p := range unsafe {
			for _, s := range []archive.Snapshot{
				{Version: 1, Roots: []archive.SourceRoot{{Path: "/src", Name: p}}},
				{Version: 1, Roots: []archive.SourceRoot{{Path: "/src", Folders: []archive.FolderEntry{{User: "u", Folder: "INBOX", Dir: p}}}}},
			} {
				if p == "" && s.Roots[0].Name == "" && len(s.Roots[0].Folders) == 0 {
					continue // an empty root name means "single root"
				}
				if _, err := saveSnapshot(t, r, s); !errors.Is(err, archive.ErrCorrupt) {
					t.Errorf("snapshot with path %q: LoadSnapshot = %v, want ErrCorrupt", p, err)
				}
			}
		}
	})

	t.Run("folder tree", func(t *testing.T) {
		r := newRepo(t)
		for _, m := range []archive.Message{
			{Unique: "../../evil", Flags: "S"},
			{Unique: "a/b", Flags: "S"},
			{Unique: "/etc/passwd", New: true},
			{Unique: "..", New: true},
			{Unique: "", New: true},
			{Unique: "x", Flags: "/../../evil"},
			{Unique: "x\x00", Flags: "S"},
			// The exact-bytes twin of a name is checked like the name.
			{Unique: "ok", UniqueRaw: []byte("../../evil"), Flags: "S"},
			{Unique: "ok", NameRaw: []byte("../\xffevil")},
			{Unique: "ok", UniqueRaw: []byte("a/\xff"), New: true},
		} {
			id := saveTree(t, r, archive.FolderTree{Version: 1, Messages: []archive.Message{m}})
			if _, err := r.LoadFolderTree(t.Context(), id); !errors.Is(err, archive.ErrCorrupt) {
				t.Errorf("message %q flags %q: LoadFolderTree = %v, want ErrCorrupt", m.Unique, m.Flags, err)
			}
		}
	})

	t.Run("files tree", func(t *testing.T) {
		r := newRepo(t)
		for _, p := range unsafe {
			for _, typ := range []string{"file", "dir", "symlink"} {
				id := saveTree(t, r, archive.FilesTree{Version: 1, Entries: []archive.FileEntry{{Path: p, Type: typ, Link: "x"}}})
				if _, err := r.LoadFilesTree(t.Context(), id); !errors.Is(err, archive.ErrCorrupt) {
					t.Errorf("%s %q: LoadFilesTree = %v, want ErrCorrupt", typ, p, err)
				}
			}
		}
		id := saveTree(t, r, archive.FilesTree{Version: 1, Entries: []archive.FileEntry{{Path: "dev", Type: "device"}}})
		if _, err := r.LoadFilesTree(t.Context(), id); !errors.Is(err, archive.ErrCorrupt) {
			t.Errorf("unknown entry type: LoadFilesTree = %v, want ErrCorrupt", err)
		}
	})

	t.Run("restore", func(t *testing.T) {
		// A snapshot whose folder tree is hostile: the restore fails
		// while planning, before writing anything.
		r := newRepo(t)
		if _, err := r.LoadIndex(t.Context()); err != nil {
			t.Fatal(err)
		}
		tree := saveTree(t, r, archive.FolderTree{Version: 1, Messages: []archive.Message{{Unique: "ok", New: true}, {Unique: "../../../evil", Flags: "S"}}})
		snap, err := saveSnapshot(t, r, archive.Snapshot{Version: 1, Roots: []archive.SourceRoot{{Path: "/src",
			Folders: []archive.FolderEntry{{User: "u", Folder: "INBOX", Dir: "u/Maildir", Tree: tree}}}}})
		if err != nil {
			t.Fatal(err)
		}
		sb := newSandbox(t)
		if _, err := restore.Restore(t.Context(), r, snap, restore.Options{Target: sb.target}); !errors.Is(err, archive.ErrCorrupt) {
			t.Errorf("Restore = %v, want ErrCorrupt", err)
		}
		sb.assertNothingOutside(t)
		if _, err := os.Stat(sb.target); err == nil {
			t.Error("the target was created although nothing could be restored")
		}
	})
}

// fakeRepo serves trees straight to restore, bypassing the decoders'
// checks, to test that restore re-checks every path itself.
type fakeRepo struct {
	folders map[archive.ID]*archive.FolderTree
	files   *archive.FilesTree
}

func (f *fakeRepo) LoadFolderTree(_ context.Context, id archive.ID) (*archive.FolderTree, error) {
	return f.folders[id], nil
}

func (f *fakeRepo) LoadFilesTree(context.Context, archive.ID) (*archive.FilesTree, error) {
	return f.files, nil
}

func (f *fakeRepo) ReadBlobs(context.Context, archive.ID, []archive.PackedBlob, func(archive.PackedBlob, []byte) error) error {
	return errors.New("no blobs")
}

func (f *fakeRepo) Index() *archive.Index { return &archive.Index{} }

// TestRestoreRechecksPaths feeds restore unchecked hostile trees: it must
// return an error (not panic) and write nothing outside the target.
func TestRestoreRechecksPaths(t *testing.T) {
	tid := archive.ID{1}
	fid := archive.ID{2}
	tests := []struct {
		name   string
		dir    string // folder directory
		rootNm string
		msgs   []archive.Message
		files  []archive.FileEntry
	}{
		{name: "message name", dir: "u", msgs: []archive.Message{{Unique: "../../../outside/evil", Flags: "S"}}},
		{name: "folder dir", dir: "../outside", msgs: []archive.Message{{Unique: "m", Flags: "S"}}},
		{name: "absolute folder dir", dir: "/tmp/evil-mailvault-test", msgs: []archive.Message{{Unique: "m", Flags: "S"}}},
		{name: "root name", dir: "u", rootNm: "..", msgs: []archive.Message{{Unique: "m", Flags: "S"}}},
		{name: "file", dir: "u", files: []archive.FileEntry{{Path: "../outside/evil", Type: "file", Mode: 0o600}}},
		{name: "dir", dir: "u", files: []archive.FileEntry{{Path: "a/../../outside/d", Type: "dir", Mode: 0o700}}},
		{name: "symlink", dir: "u", files: []archive.FileEntry{{Path: "../outside/link", Type: "symlink", Link: "/etc"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			repo := &fakeRepo{
				folders: map[archive.ID]*archive.FolderTree{tid: {Version: 1, Messages: tc.msgs}},
				files:   &archive.FilesTree{Version: 1, Entries: tc.files},
			}
			snap := &archive.Snapshot{Version: 1, Roots: []archive.SourceRoot{{Path: "/src", Name: tc.rootNm, Files: fid,
				Folders: []archive.FolderEntry{{User: "u", Folder: "INBOX", Dir: tc.dir, Tree: tid}}}}}
			sb := newSandbox(t)
			var err error
			func() {
				defer func() {
					if p := recover(); p != nil {
						t.Errorf("restore panicked: %v", p)
					}
				}()
				_, err = restore.Restore(t.Context(), repo, snap, restore.Options{Target: sb.target})
			}()
			if err == nil {
				t.Error("restore of a hostile tree succeeded")
			}
			sb.assertNothingOutside(t)
			os.Remove("/tmp/evil-mailvault-test")
		})
	}
}

// TestRestoreNeverWritesThroughSymlinks covers links in the files tree and
// links already in the target (left by an earlier restore with
// --overwrite): no file or folder is written through them.
func TestRestoreNeverWritesThroughSymlinks(t *testing.T) {
	tests := []struct {
		name string
		// preexisting symlinks in the target: name → "outside" or a path
		links     []string
		overwrite bool
		folderDir string // "" for none
		files     []archive.FileEntry
	}{
		{name: "link then file inside it", files: []archive.FileEntry{
			{Path: "link", Type: "symlink", Link: "OUTSIDE"},
			{Path: "link/evil", Type: "file", Mode: 0o600},
		}},
		{name: "link then folder inside it", folderDir: "link/Maildir", files: []archive.FileEntry{
			{Path: "link", Type: "symlink", Link: "OUTSIDE"},
		}},
		{name: "link over a folder's cur", folderDir: "u", overwrite: true, files: []archive.FileEntry{
			{Path: "u/cur", Type: "symlink", Link: "OUTSIDE"},
		}},
		{name: "existing link, file inside", links: []string{"link"}, overwrite: true, files: []archive.FileEntry{
			{Path: "link/evil", Type: "file", Mode: 0o600},
		}},
		{name: "existing link, dir inside", links: []string{"link"}, overwrite: true, files: []archive.FileEntry{
			{Path: "link/d", Type: "dir", Mode: 0o700},
		}},
		{name: "existing link, folder inside", links: []string{"link"}, overwrite: true, folderDir: "link/Maildir"},
		{name: "existing link as folder", links: []string{"u"}, overwrite: true, folderDir: "u"},
		{name: "existing link as message", links: []string{"u/cur/m:2,S"}, overwrite: true, folderDir: "u"},
		{name: "existing link as file", links: []string{"f"}, overwrite: true, files: []archive.FileEntry{
			{Path: "f", Type: "file", Mode: 0o600},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newRepo(t)
			sb := newSandbox(t)
			content := saveData(t, r, "evil content\n")
			for i := range tc.files {
				if tc.files[i].Link == "OUTSIDE" {
					tc.files[i].Link = sb.outside
				}
				if tc.files[i].Type == "file" {
					tc.files[i].Blobs, tc.files[i].Size = []archive.ID{content}, 13
				}
			}
			root := archive.SourceRoot{Path: "/src", Files: saveTree(t, r, archive.FilesTree{Version: 1, Entries: tc.files})}
			if tc.folderDir != "" {
				tree := saveTree(t, r, archive.FolderTree{Version: 1, Messages: []archive.Message{{Unique: "m", Flags: "S", Size: 13, Blobs: []archive.ID{content}}}})
				root.Folders = []archive.FolderEntry{{User: "u", Folder: "INBOX", Dir: tc.folderDir, Tree: tree}}
			}
			snap, err := saveSnapshot(t, r, archive.Snapshot{Version: 1, Roots: []archive.SourceRoot{root}})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := r.LoadIndex(t.Context()); err != nil {
				t.Fatal(err)
			}
			for _, l := range tc.links {
				p := filepath.Join(sb.target, filepath.FromSlash(l))
				if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
					t.Fatal(err)
				}
				target := sb.outside
				if strings.Contains(l, "/cur/") || l == "f" {
					target = filepath.Join(sb.outside, "victim")
					if err := os.WriteFile(target, []byte("precious\n"), 0o600); err != nil {
						t.Fatal(err)
					}
				}
				if err := os.Symlink(target, p); err != nil {
					t.Fatal(err)
				}
			}
			_, err = restore.Restore(t.Context(), r, snap, restore.Options{Target: sb.target, Overwrite: tc.overwrite})
			t.Logf("restore: %v", err)
			entries, _ := os.ReadDir(sb.outside)
			for _, e := range entries {
				if e.Name() == "victim" {
					if b, _ := os.ReadFile(filepath.Join(sb.outside, "victim")); string(b) == "precious\n" {
						continue
					}
				}
				t.Errorf("written through a symlink: %s/%s", sb.outside, e.Name())
			}
		})
	}
}

// TestRestoreTargetExists: a non-empty target is refused unless Overwrite
// is given; an empty or missing one is fine.
func TestRestoreTargetExists(t *testing.T) {
	r := newRepo(t)
	content := saveData(t, r, "hello\n")
	tree := saveTree(t, r, archive.FolderTree{Version: 1, Messages: []archive.Message{{Unique: "m1", Flags: "S", Size: 6, MTime: 1e18, Blobs: []archive.ID{content}}}})
	files := saveTree(t, r, archive.FilesTree{Version: 1})
	snap, err := saveSnapshot(t, r, archive.Snapshot{Version: 1, Roots: []archive.SourceRoot{{Path: "/src", Files: files,
		Folders: []archive.FolderEntry{{User: "", Folder: "INBOX", Dir: ".", Tree: tree}}}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.LoadIndex(t.Context()); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		prepare   func(target string)
		overwrite bool
		wantErr   error
		keep      string // a file that must survive
	}{
		{"missing", func(string) {}, false, nil, ""},
		{"empty", func(d string) { os.MkdirAll(d, 0o700) }, false, nil, ""},
		{"not empty", func(d string) { os.MkdirAll(d, 0o700); os.WriteFile(filepath.Join(d, "mine"), []byte("x"), 0o600) }, false, restore.ErrTargetExists, "mine"},
		{"not empty, overwrite", func(d string) { os.MkdirAll(d, 0o700); os.WriteFile(filepath.Join(d, "mine"), []byte("x"), 0o600) }, true, nil, "mine"},
		{"same file, overwrite", func(d string) {
			os.MkdirAll(filepath.Join(d, "cur"), 0o700)
			os.WriteFile(filepath.Join(d, "cur", "m1:2,S"), []byte("old content that is longer\n"), 0o600)
		}, true, nil, ""},
		{"same file, no overwrite", func(d string) {
			os.MkdirAll(filepath.Join(d, "cur"), 0o700)
			os.WriteFile(filepath.Join(d, "cur", "m1:2,S"), []byte("old\n"), 0o600)
		}, false, restore.ErrTargetExists, "cur/m1:2,S"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			target := filepath.Join(t.TempDir(), "target")
			tc.prepare(target)
			before, _ := os.ReadFile(filepath.Join(target, filepath.FromSlash(tc.keep)))
			_, err := restore.Restore(t.Context(), r, snap, restore.Options{Target: target, Overwrite: tc.overwrite})
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Restore = %v, want %v", err, tc.wantErr)
			}
			if tc.keep != "" {
				if after, _ := os.ReadFile(filepath.Join(target, filepath.FromSlash(tc.keep))); string(after) != string(before) {
					t.Errorf("%s changed: %q → %q", tc.keep, before, after)
				}
			}
			if err == nil {
				if b, err := os.ReadFile(filepath.Join(target, "cur", "m1:2,S")); err != nil || string(b) != "hello\n" {
					t.Errorf("restored message = %q, %v", b, err)
				}
			}
		})
	}
}
