package maildir

import (
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"testing/fstest"
)

// makeTree creates the given paths under a new temporary directory: a path
// ending in "/" is a directory, "name -> target" a symbolic link, anything
// else an empty regular file.
func makeTree(t *testing.T, paths ...string) string {
	t.Helper()
	root := t.TempDir()
	for _, p := range paths {
		name, target, isLink := strings.Cut(p, " -> ")
		full := filepath.Join(root, filepath.FromSlash(strings.TrimSuffix(name, "/")))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		var err error
		switch {
		case isLink:
			err = os.Symlink(target, full)
		case strings.HasSuffix(p, "/"):
			err = os.MkdirAll(full, 0o755)
		default:
			err = os.WriteFile(full, []byte("x"), 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// maildirPaths returns the directories of a Maildir at dir, with one message
// in cur and new so that Scan's not listing them is tested too.
func maildirPaths(dir string) []string {
	return []string{dir + "/cur/1.M1P1.h:2,S", dir + "/new/2.M2P2.h", dir + "/tmp/"}
}

func TestScan(t *testing.T) {
	tests := []struct {
		name  string
		paths []string
		want  Tree
	}{
		{
			name: "root is a Maildir",
			paths: join(
				maildirPaths("."),
				maildirPaths(".Sent"),
				[]string{"dovecot-uidlist", "subscriptions", ".Sent/maildirfolder"},
			),
			want: Tree{
				Mailboxes: []Mailbox{
					{User: "", Root: ".", Folder: "INBOX", Dir: "."},
					{User: "", Root: ".", Folder: "Sent", Dir: ".Sent"},
				},
				Files: []string{".Sent/maildirfolder", "dovecot-uidlist", "subscriptions"},
			},
		},
		{
			name: "domain/user/Maildir with nested folders",
			paths: join(
				maildirPaths("example.com/alice/Maildir"),
				maildirPaths("example.com/alice/Maildir/.Archive"),
				maildirPaths("example.com/alice/Maildir/.Archive.2024"),
				maildirPaths("example.com/alice/Maildir/.Sent"),
				maildirPaths("example.com/bob/Maildir"),
				maildirPaths("example.org/alice/Maildir"),
				[]string{
					"example.com/alice/Maildir/.Archive.2024/maildirfolder",
					"example.com/alice/Maildir/dovecot.index",
					"example.com/alice/sieve/default.sieve",
					"example.com/bob/Maildir/.Drafts/", // no cur/new: not a folder
				},
			),
			want: Tree{
				Mailboxes: []Mailbox{
					{User: "alice@example.com", Root: "example.com/alice/Maildir", Folder: "INBOX", Dir: "example.com/alice/Maildir"},
					{User: "alice@example.com", Root: "example.com/alice/Maildir", Folder: "Archive", Dir: "example.com/alice/Maildir/.Archive"},
					{User: "alice@example.com", Root: "example.com/alice/Maildir", Folder: "Archive.2024", Dir: "example.com/alice/Maildir/.Archive.2024"},
					{User: "alice@example.com", Root: "example.com/alice/Maildir", Folder: "Sent", Dir: "example.com/alice/Maildir/.Sent"},
					{User: "alice@example.org", Root: "example.org/alice/Maildir", Folder: "INBOX", Dir: "example.org/alice/Maildir"},
					{User: "bob@example.com", Root: "example.com/bob/Maildir", Folder: "INBOX", Dir: "example.com/bob/Maildir"},
				},
				Files: []string{
					"example.com/alice/Maildir/.Archive.2024/maildirfolder",
					"example.com/alice/Maildir/dovecot.index",
					"example.com/alice/sieve/default.sieve",
				},
				Dirs: []string{
					"example.com",
					"example.com/alice",
					"example.com/alice/sieve",
					"example.com/bob",
					"example.com/bob/Maildir/.Drafts",
					"example.org",
					"example.org/alice",
				},
			},
		},
		{
			name: "user/Maildir",
			paths: join(
				maildirPaths("alice/Maildir"),
				maildirPaths("john.doe/Maildir"),
				maildirPaths("john.doe/Maildir/.Trash"),
			),
			want: Tree{
				Mailboxes: []Mailbox{
					{User: "alice", Root: "alice/Maildir", Folder: "INBOX", Dir: "alice/Maildir"},
					{User: "john.doe", Root: "john.doe/Maildir", Folder: "INBOX", Dir: "john.doe/Maildir"},
					{User: "john.doe", Root: "john.doe/Maildir", Folder: "Trash", Dir: "john.doe/Maildir/.Trash"},
				},
				Dirs: []string{"alice", "john.doe"},
			},
		},
		{
			name: "domain/user is the Maildir",
			paths: join(
				maildirPaths("example.com/alice"),
				maildirPaths("example.com/alice/.Sent"),
				maildirPaths("example.com/carol@example.com"),
				[]string{"example.com/empty/", "passwd"},
			),
			want: Tree{
				Mailboxes: []Mailbox{
					{User: "alice@example.com", Root: "example.com/alice", Folder: "INBOX", Dir: "example.com/alice"},
					{User: "alice@example.com", Root: "example.com/alice", Folder: "Sent", Dir: "example.com/alice/.Sent"},
					{User: "carol@example.com", Root: "example.com/carol@example.com", Folder: "INBOX", Dir: "example.com/carol@example.com"},
				},
				Files: []string{"passwd"},
				Dirs:  []string{"example.com", "example.com/empty"},
			},
		},
		{
			name: "deeper root and undotted parents",
			paths: join(
				maildirPaths("vmail/example.com/alice/Maildir"),
				maildirPaths("home/bob/Maildir"),
			),
			want: Tree{
				Mailboxes: []Mailbox{
					{User: "alice@example.com", Root: "vmail/example.com/alice/Maildir", Folder: "INBOX", Dir: "vmail/example.com/alice/Maildir"},
					{User: "home/bob", Root: "home/bob/Maildir", Folder: "INBOX", Dir: "home/bob/Maildir"},
				},
				Dirs: []string{"home", "home/bob", "vmail", "vmail/example.com", "vmail/example.com/alice"},
			},
		},
		{
			name: "symlinks are files and not followed",
			paths: join(
				maildirPaths("real/Maildir"),
				[]string{
					"link -> real",
					"dangling -> nowhere",
					"loop -> loop",
					"real/Maildir/.Sent -> ../../real/Maildir", // a folder that is a link
					"fake/cur -> ../real/Maildir/cur",          // not a Maildir: cur is a link
					"fake/new/",
				},
			),
			want: Tree{
				Mailboxes: []Mailbox{
					{User: "real", Root: "real/Maildir", Folder: "INBOX", Dir: "real/Maildir"},
				},
				Files: []string{"dangling", "fake/cur", "link", "loop", "real/Maildir/.Sent"},
				Dirs:  []string{"fake", "fake/new", "real"},
			},
		},
		{
			name:  "tmp that is not a directory is a file",
			paths: []string{"cur/", "new/", "tmp"},
			want: Tree{
				Mailboxes: []Mailbox{{Root: ".", Folder: "INBOX", Dir: "."}},
				Files:     []string{"tmp"},
			},
		},
		{
			name:  "empty root",
			paths: nil,
			want:  Tree{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := makeTree(t, tt.paths...)
			got, err := Scan(root)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(*got, tt.want) {
				t.Errorf("Scan:\n got %+v\nwant %+v", *got, tt.want)
			}
		})
	}
}

func join(lists ...[]string) []string {
	var all []string
	for _, l := range lists {
		all = append(all, l...)
	}
	return all
}

func TestScanSpecialFiles(t *testing.T) {
	// A FIFO cannot be backed up as a file even by root, so it exercises
	// the Skipped path whatever the test runs as. A socket (a running
	// server's control.sock) is left out silently: it is not data.
	root := makeTree(t, join(maildirPaths("example.com/alice/Maildir"), []string{"example.com/alice/Maildir/dovecot-uidlist"})...)
	fifo := filepath.Join(root, "example.com", "alice", "Maildir", "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	// A UNIX socket path must be short (108 bytes), so bind relative to
	// the directory rather than by the long temporary path.
	t.Chdir(filepath.Join(root, "example.com"))
	l, err := net.Listen("unix", "sock")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()

	got, err := Scan(root)
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, s := range got.Skipped {
		paths = append(paths, s.Path)
		if !errors.Is(s, errors.ErrUnsupported) {
			t.Errorf("Skipped %s: error %v is not ErrUnsupported", s.Path, s.Err)
		}
	}
	wantPaths := []string{"example.com/alice/Maildir/fifo"}
	if !reflect.DeepEqual(paths, wantPaths) {
		t.Errorf("Skipped paths = %q, want %q", paths, wantPaths)
	}
	if want := []string{"example.com/alice/Maildir/dovecot-uidlist"}; !reflect.DeepEqual(got.Files, want) {
		t.Errorf("Files = %q, want %q", got.Files, want)
	}
	if len(got.Mailboxes) != 1 {
		t.Errorf("Mailboxes = %+v, want the one INBOX", got.Mailboxes)
	}
}

func TestScanUnreadableDir(t *testing.T) {
	if os.Geteuid() == 0 {
		// Root reads directories whatever their mode; scanFS is tested
		// with an injected failure below instead.
		t.Skip("running as root: permission bits are not enforced")
	}
	root := makeTree(t, join(maildirPaths("example.com/alice/Maildir"), []string{"example.com/locked/x"})...)
	locked := filepath.Join(root, "example.com", "locked")
	if err := os.Chmod(locked, 0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(locked, 0o755) })

	got, err := Scan(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Skipped) != 1 || got.Skipped[0].Path != "example.com/locked" || !errors.Is(got.Skipped[0], fs.ErrPermission) {
		t.Errorf("Skipped = %v, want example.com/locked: permission denied", got.Skipped)
	}
	if len(got.Mailboxes) != 1 {
		t.Errorf("Mailboxes = %+v, want the one INBOX", got.Mailboxes)
	}
}

// failingFS fails to read the directories named in fail.
type failingFS struct {
	fstest.MapFS
	fail map[string]bool
}

func (f failingFS) ReadDir(name string) ([]fs.DirEntry, error) {
	if f.fail[name] {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: fs.ErrPermission}
	}
	return f.MapFS.ReadDir(name)
}

func TestScanFSSkipsUnreadableDirs(t *testing.T) {
	dir := &fstest.MapFile{Mode: fs.ModeDir | 0o755}
	fsys := failingFS{
		MapFS: fstest.MapFS{
			"example.com/alice/Maildir/cur":         dir,
			"example.com/alice/Maildir/new":         dir,
			"example.com/alice/Maildir/.Sent/cur":   dir,
			"example.com/alice/Maildir/.Sent/new":   dir,
			"example.com/alice/Maildir/.Junk/cur":   dir,
			"example.com/alice/Maildir/subscriptio": {Data: []byte("Sent\n")},
			"example.com/bob/Maildir/cur":           dir,
		},
		fail: map[string]bool{
			"example.com/alice/Maildir/.Junk": true,
			"example.com/bob":                 true,
		},
	}
	got, err := scanFS(fsys)
	if err != nil {
		t.Fatal(err)
	}
	want := Tree{
		Mailboxes: []Mailbox{
			{User: "alice@example.com", Root: "example.com/alice/Maildir", Folder: "INBOX", Dir: "example.com/alice/Maildir"},
			{User: "alice@example.com", Root: "example.com/alice/Maildir", Folder: "Sent", Dir: "example.com/alice/Maildir/.Sent"},
		},
		Files: []string{"example.com/alice/Maildir/subscriptio"},
		Dirs:  []string{"example.com", "example.com/alice"},
	}
	skipped := got.Skipped
	got.Skipped = nil
	if !reflect.DeepEqual(*got, want) {
		t.Errorf("scanFS:\n got %+v\nwant %+v", *got, want)
	}
	var paths []string
	for _, s := range skipped {
		paths = append(paths, s.Path)
		if !errors.Is(s, fs.ErrPermission) {
			t.Errorf("Skipped %s: error %v is not ErrPermission", s.Path, s.Err)
		}
	}
	if want := []string{"example.com/alice/Maildir/.Junk", "example.com/bob"}; !reflect.DeepEqual(paths, want) {
		t.Errorf("Skipped paths = %q, want %q", paths, want)
	}
}

func TestScanRootErrors(t *testing.T) {
	root := makeTree(t, "file")
	for _, r := range []string{"", filepath.Join(root, "missing"), filepath.Join(root, "file")} {
		if got, err := Scan(r); err == nil {
			t.Errorf("Scan(%q) = %+v, want error", r, got)
		}
	}
}

func TestFolderDir(t *testing.T) {
	tests := []struct {
		root, folder, want string
	}{
		{"example.com/alice/Maildir", "Archive.2024", "example.com/alice/Maildir/.Archive.2024"},
		{"example.com/alice/Maildir", "INBOX", "example.com/alice/Maildir"},
		{".", "INBOX", "."},
		{".", "Sent", ".Sent"},
		{"alice/Maildir/", "Sent", "alice/Maildir/.Sent"},
	}
	for _, tt := range tests {
		if got := FolderDir(tt.root, tt.folder); got != tt.want {
			t.Errorf("FolderDir(%q, %q) = %q, want %q", tt.root, tt.folder, got, tt.want)
		}
	}
}

// TestFolderDirInvertsScan checks FolderDir against every mailbox Scan
// finds, which is the archive's use of it.
func TestFolderDirInvertsScan(t *testing.T) {
	root := makeTree(t, join(
		maildirPaths("."),
		maildirPaths(".A.B"),
		maildirPaths("example.com/alice/Maildir"),
		maildirPaths("example.com/alice/Maildir/.Sent"),
		maildirPaths("example.com/alice/Maildir/.Archive.2024"),
	)...)
	got, err := Scan(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Mailboxes) != 5 {
		t.Fatalf("Mailboxes = %+v, want 5", got.Mailboxes)
	}
	for _, m := range got.Mailboxes {
		if d := FolderDir(m.Root, m.Folder); d != m.Dir {
			t.Errorf("FolderDir(%q, %q) = %q, want %q", m.Root, m.Folder, d, m.Dir)
		}
	}
}
