package maildir

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
)

// Mailbox is one Maildir folder of one user.
type Mailbox struct {
	// User is "alice@example.com" for the <domain>/<user>/Maildir and
	// <domain>/<user> layouts (the domain is recognised by containing a
	// dot); otherwise it is the slash path of the user directory relative
	// to the scan root, and "" when the scan root itself is the Maildir.
	User string
	// Root is the slash path, relative to the scan root, of the user's
	// Maildir root (the INBOX directory); "." when it is the scan root.
	Root string
	// Folder is "INBOX" for the Maildir root, else the Maildir++ folder
	// name without its leading dot: "Sent", "Archive.2024".
	Folder string
	// Dir is the slash path, relative to the scan root, of this folder's
	// directory.
	Dir string
}

// Tree is what Scan found.
type Tree struct {
	// Mailboxes are sorted by User, then Folder ("INBOX" first).
	Mailboxes []Mailbox
	// Files are the slash paths, relative to the scan root, of every
	// regular file and symbolic link that is not inside the cur/, new/ or
	// tmp/ directory of a Maildir (dovecot-uidlist, subscriptions,
	// maildirfolder, ...); sorted.
	Files []string
	// Dirs are the slash paths of the directories that are neither
	// mailboxes nor their cur/, new/ and tmp/, so that empty directories
	// are kept; sorted.
	Dirs []string
	// Skipped are the entries that could not be read (a directory that
	// cannot be listed) or cannot be backed up as files (FIFOs, sockets,
	// devices); sorted by Path.
	Skipped []SkipError
}

// SkipError records an entry that Scan passed over.
type SkipError struct {
	Path string // slash path relative to the scan root
	Err  error
}

func (e SkipError) Error() string { return e.Path + ": " + e.Err.Error() }

func (e SkipError) Unwrap() error { return e.Err }

// inboxFolder is the name of the folder stored in the Maildir root itself.
const inboxFolder = "INBOX"

// Scan walks the tree under root and reports its Maildirs, the other files
// and directories, and what it had to skip. It does not list the contents
// of the cur/, new/ and tmp/ directories of a Maildir, and it does not
// follow symbolic links (they are reported in Files).
//
// Scan fails only when root itself cannot be read; problems below it are
// reported in Tree.Skipped.
func Scan(root string) (*Tree, error) {
	if root == "" {
		return nil, errors.New("maildir: scan: empty root")
	}
	// Not os.DirFS: io/fs paths must be valid UTF-8, and a Linux file
	// name need not be (a folder or user directory with a Latin-1 name
	// would be skipped as "invalid argument"). The slash paths handed
	// around here are raw bytes joined below root.
	t, err := scan(func(rel string) ([]fs.DirEntry, error) {
		return os.ReadDir(filepath.Join(root, filepath.FromSlash(rel)))
	})
	if err != nil {
		return nil, fmt.Errorf("maildir: scan %s: %w", root, err)
	}
	return t, nil
}

// FolderDir returns the directory of a Maildir++ folder of the Maildir whose
// root (INBOX) directory is root; it is the inverse of Mailbox.Folder:
// FolderDir("example.com/alice/Maildir", "Archive.2024") is
// "example.com/alice/Maildir/.Archive.2024".
func FolderDir(root, folder string) string {
	if folder == inboxFolder {
		return root
	}
	return path.Join(root, "."+folder)
}

// scanFS is Scan on a file system, so that tests can inject failures that
// cannot be produced on a real one when running as root.
func scanFS(fsys fs.FS) (*Tree, error) {
	return scan(func(rel string) ([]fs.DirEntry, error) { return fs.ReadDir(fsys, rel) })
}

// scan walks the tree whose directories readDir lists (by slash path
// relative to the root, "." for the root).
func scan(readDir func(rel string) ([]fs.DirEntry, error)) (*Tree, error) {
	entries, err := readDir(".")
	if err != nil {
		return nil, err
	}
	s := scanner{readDir: readDir, tree: &Tree{}}
	s.dir(".", entries, false)

	t := s.tree
	slices.SortFunc(t.Mailboxes, func(a, b Mailbox) int {
		return cmp.Or(
			cmp.Compare(a.User, b.User),
			compareFolders(a.Folder, b.Folder),
			cmp.Compare(a.Dir, b.Dir),
		)
	})
	slices.Sort(t.Files)
	slices.Sort(t.Dirs)
	slices.SortFunc(t.Skipped, func(a, b SkipError) int { return cmp.Compare(a.Path, b.Path) })
	return t, nil
}

// compareFolders orders "INBOX" before every other folder.
func compareFolders(a, b string) int {
	switch {
	case a == b:
		return 0
	case a == inboxFolder:
		return -1
	case b == inboxFolder:
		return 1
	}
	return cmp.Compare(a, b)
}

type scanner struct {
	readDir func(rel string) ([]fs.DirEntry, error)
	tree    *Tree
}

// dir classifies the directory rel, whose entries are given, and descends
// into its subdirectories. inMaildirRoot reports whether rel's parent is a
// Maildir root, which makes a ".Name" Maildir a Maildir++ folder of it
// rather than a Maildir of its own.
func (s *scanner) dir(rel string, entries []fs.DirEntry, inMaildirRoot bool) {
	isMaildir := isMaildir(entries)
	isRoot := false
	switch {
	case isMaildir && inMaildirRoot && strings.HasPrefix(path.Base(rel), ".") && len(path.Base(rel)) > 1:
		parent := path.Dir(rel)
		s.tree.Mailboxes = append(s.tree.Mailboxes, Mailbox{
			User:   userOf(parent),
			Root:   parent,
			Folder: path.Base(rel)[1:],
			Dir:    rel,
		})
	case isMaildir:
		isRoot = true
		s.tree.Mailboxes = append(s.tree.Mailboxes, Mailbox{
			User:   userOf(rel),
			Root:   rel,
			Folder: inboxFolder,
			Dir:    rel,
		})
	case rel != ".":
		s.tree.Dirs = append(s.tree.Dirs, rel)
	}

	for _, e := range entries {
		child := path.Join(rel, e.Name())
		switch typ := e.Type(); {
		case typ.IsDir():
			if isMaildir && isMessageDir(e.Name()) {
				// The archive lists these itself, with its own
				// change detection.
				continue
			}
			sub, err := s.readDir(child)
			if err != nil {
				s.tree.Skipped = append(s.tree.Skipped, SkipError{Path: child, Err: err})
				continue
			}
			s.dir(child, sub, isRoot)
		case typ.IsRegular(), typ&fs.ModeSymlink != 0:
			// Symbolic links are recorded, not followed: the
			// caller lstat's them and stores the link itself.
			s.tree.Files = append(s.tree.Files, child)
		case typ&fs.ModeSocket != 0:
			// A socket (e.g. a running server's control.sock in its
			// data directory) is an endpoint, not data: nothing to
			// back up, and nothing worth a warning either.
		default:
			s.tree.Skipped = append(s.tree.Skipped, SkipError{
				Path: child,
				Err:  fmt.Errorf("not a regular file or directory (%v): %w", typ, errors.ErrUnsupported),
			})
		}
	}
}

// isMessageDir reports whether name is one of the three directories of a
// Maildir that hold messages.
func isMessageDir(name string) bool {
	return name == "cur" || name == "new" || name == "tmp"
}

// isMaildir reports whether a directory with these entries is a Maildir: it
// has cur and new subdirectories (tmp is only needed for delivery, and is
// often missing from restored or copied Maildirs). Symbolic links to
// directories do not count, since Scan does not follow them.
func isMaildir(entries []fs.DirEntry) bool {
	var cur, nw bool
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		switch e.Name() {
		case "cur":
			cur = true
		case "new":
			nw = true
		}
	}
	return cur && nw
}

// userOf derives the user of the Maildir rooted at root (a slash path
// relative to the scan root) from its path: the user directory is root,
// or its parent when root is called "Maildir"; and when the user
// directory's parent looks like a domain (contains a dot), the user is
// "user@domain".
func userOf(root string) string {
	if root == "." {
		return ""
	}
	userDir := root
	if strings.EqualFold(path.Base(root), "Maildir") {
		userDir = path.Dir(root)
		if userDir == "." {
			// The scan root is the user directory.
			return ""
		}
	}
	parent, user := path.Split(userDir)
	parent = strings.TrimSuffix(parent, "/")
	if parent == "" {
		return userDir
	}
	domain := path.Base(parent)
	if !strings.Contains(domain, ".") {
		return userDir
	}
	if strings.Contains(user, "@") {
		// Some setups name the user directory after the full address.
		return user
	}
	return user + "@" + domain
}
