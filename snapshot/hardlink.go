package snapshot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// viewInfix marks the directories Hardlink creates, so that they are
// recognisable (and removable) after a crash.
const viewInfix = ".mailvault-view-"

// Hardlink takes a view by building a tree of hard links to the Maildir
// message files beside each path. Maildir never changes a delivered
// message file in place (a flag change renames it), so a link made while
// writers are paused shows the message as it was at that instant. Every
// other file (uid lists, subscriptions, ...) may be rewritten in place and
// is copied instead. tmp/ is left empty: what is there is not delivered.
//
// The tree is built in two passes: one while mail flows, which does the
// bulk of the linking, and one while writers are paused, which only lists
// the directories again and fixes what changed. The pause is therefore
// proportional to the number of directories and recent changes, not to
// the number of messages.
type Hardlink struct {
	Paths []string
	// Dir holds the link trees; it must be on the same file system as the
	// paths and not inside any of them. Empty means the parent directory
	// of each path.
	Dir         string
	Consistency Consistency
}

// Take removes the link trees that killed processes left beside the
// paths (see CleanLinkTrees), builds new ones and returns a view of them.
func (h *Hardlink) Take(ctx context.Context) (*View, error) {
	owner, err := CurrentOwner()
	if err != nil {
		return nil, err
	}
	stamp := time.Now().UTC().Format("20060102T150405.000000000Z")
	v := &View{Mode: ModeHardlink, Paths: map[string]string{}}
	v.Leftovers = CleanLinkTrees(h.Paths, h.Dir)
	var made []string
	v.release = func(ctx context.Context) error {
		var errs []error
		for _, d := range made {
			errs = append(errs, removeOwned(d, true))
		}
		return errors.Join(errs...)
	}
	fail := func(err error) (*View, error) {
		_ = v.Release(context.WithoutCancel(ctx))
		return nil, err
	}
	for i, p := range h.Paths {
		parent := h.Dir
		name := "." + filepath.Base(p) + viewInfix + stamp
		if parent == "" {
			parent = filepath.Dir(p)
		} else {
			// Paths from different parents may share a base name.
			name = fmt.Sprintf("%s-%d", name, i)
		}
		dst := filepath.Join(parent, name)
		if err := sameFileSystem(p, parent); err != nil {
			return fail(err)
		}
		if rel, err := filepath.Rel(p, dst); err == nil && !strings.HasPrefix(rel, "..") {
			return fail(fmt.Errorf("snapshot: link tree %s would be inside the source %s", dst, p))
		}
		if err := createOwned(dst, owner); err != nil {
			return fail(err)
		}
		made = append(made, dst)
		v.Paths[p] = dst
		v.Names = append(v.Names, dst)
	}
	// Pass 1, while mail flows: links nearly everything.
	for _, p := range h.Paths {
		if err := syncTree(ctx, p, v.Paths[p]); err != nil {
			return fail(err)
		}
	}
	// Pass 2, paused: the instant of the view.
	pause, err := h.Consistency.Freeze(ctx, func(ctx context.Context) error {
		v.Time = time.Now().UTC()
		for _, p := range h.Paths {
			if err := syncTree(ctx, p, v.Paths[p]); err != nil {
				return err
			}
		}
		return nil
	})
	v.Pause = pause
	if err != nil {
		return fail(err)
	}
	return v, nil
}

// CleanLinkTrees removes the link trees that views of killed processes
// left in dir (or, if dir is empty, beside each path): directories named
// .<name>.mailvault-view-<time> whose owner file names a provably dead
// process (see Owner.Dead). A directory of that name without an owner
// file, or of a process that may still run, is left alone.
func CleanLinkTrees(paths []string, dir string) []Leftover {
	var parents []string
	for _, p := range paths {
		if dir != "" {
			parents = appendUnique(parents, dir)
		} else {
			parents = appendUnique(parents, filepath.Dir(p))
		}
	}
	return CleanLinkTreesIn(parents...)
}

// CleanLinkTreesIn removes, from each directory, the link trees of
// provably dead owners, as CleanLinkTrees does beside paths.
func CleanLinkTreesIn(dirs ...string) []Leftover {
	var left []Leftover
	for _, d := range appendUnique(nil, dirs...) {
		left = append(left, cleanOwnedDirs(d, isLinkTree, "link-tree", true)...)
	}
	return left
}

func isLinkTree(name string) bool {
	return strings.HasPrefix(name, ".") && strings.Contains(name, viewInfix)
}

// sameFileSystem fails unless a and b are on one file system, where hard
// links between them are possible.
func sameFileSystem(a, b string) error {
	var sa, sb syscall.Stat_t
	if err := syscall.Stat(a, &sa); err != nil {
		return fmt.Errorf("snapshot: %s: %w", a, err)
	}
	if err := syscall.Stat(b, &sb); err != nil {
		return fmt.Errorf("snapshot: %s: %w", b, err)
	}
	if sa.Dev != sb.Dev {
		return fmt.Errorf("snapshot: %s and %s are on different file systems; hard links need one (choose a directory beside the mail data)", a, b)
	}
	return nil
}

// syncTree makes dst mirror src: message files of Maildirs are hard
// links, other regular files are copies, symbolic links are recreated,
// and entries that are gone from src are removed from dst. It is run
// twice, so it only does what changed since the last run.
func syncTree(ctx context.Context, src, dst string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	have, err := dirNames(dst)
	if err != nil {
		return err
	}
	maildir := hasDirs(entries, "cur", "new")
	for _, e := range entries {
		name := e.Name()
		s, d := filepath.Join(src, name), filepath.Join(dst, name)
		typ, existed := e.Type(), have[name]
		delete(have, name)
		switch {
		case typ.IsDir():
			if existed {
				if fi, err := os.Lstat(d); err != nil || !fi.IsDir() {
					if err := os.RemoveAll(d); err != nil {
						return fmt.Errorf("snapshot: %w", err)
					}
				}
			}
			info, err := e.Info()
			if errors.Is(err, fs.ErrNotExist) {
				continue // removed while we listed
			} else if err != nil {
				return fmt.Errorf("snapshot: %w", err)
			}
			if err := os.Mkdir(d, info.Mode().Perm()); err != nil && !errors.Is(err, fs.ErrExist) {
				return fmt.Errorf("snapshot: %w", err)
			}
			switch {
			case maildir && (name == "cur" || name == "new"):
				err = syncMessages(s, d)
			case maildir && name == "tmp":
				// Not delivered yet: not part of the mailbox.
			default:
				err = syncTree(ctx, s, d)
			}
			if err != nil {
				return err
			}
			// The archive records directory times; keep the source's.
			_ = os.Chtimes(d, info.ModTime(), info.ModTime())
		case typ.IsRegular():
			if err := copyFile(s, d); err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					continue
				}
				return err
			}
		case typ&fs.ModeSymlink != 0:
			target, err := os.Readlink(s)
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					continue
				}
				return fmt.Errorf("snapshot: %w", err)
			}
			if old, err := os.Readlink(d); err == nil && old == target {
				continue
			}
			_ = os.RemoveAll(d)
			if err := os.Symlink(target, d); err != nil {
				return fmt.Errorf("snapshot: %w", err)
			}
		default:
			// Sockets, FIFOs, devices: not mail, and the archive skips
			// them too.
		}
	}
	for name := range have {
		if err := os.RemoveAll(filepath.Join(dst, name)); err != nil {
			return fmt.Errorf("snapshot: %w", err)
		}
	}
	return nil
}

// syncMessages mirrors a cur/ or new/ directory with hard links. A name
// present in both is the same message: Maildir names are unique and
// message files immutable, so it needs no look.
func syncMessages(src, dst string) error {
	want, err := dirNames(src)
	if err != nil {
		return err
	}
	have, err := dirNames(dst)
	if err != nil {
		return err
	}
	for name := range want {
		if have[name] {
			delete(have, name)
			continue
		}
		if name[0] == '.' {
			continue
		}
		if err := os.Link(filepath.Join(src, name), filepath.Join(dst, name)); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue // renamed since we listed; the next pass sees it
			}
			return fmt.Errorf("snapshot: %w", err)
		}
	}
	for name := range have {
		if err := os.Remove(filepath.Join(dst, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("snapshot: %w", err)
		}
	}
	return nil
}

// dirNames lists a directory's names without stat'ing them.
func dirNames(dir string) (map[string]bool, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("snapshot: list %s: %w", dir, err)
	}
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[n] = true
	}
	return m, nil
}

func hasDirs(entries []fs.DirEntry, names ...string) bool {
	found := 0
	for _, e := range entries {
		for _, n := range names {
			if e.Name() == n && e.IsDir() {
				found++
			}
		}
	}
	return found == len(names)
}

// copyFile copies a (small, mutable) file, keeping its mode and times.
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	// A link from an earlier pass would share the source's inode;
	// truncating it would damage the source.
	_ = os.Remove(dst)
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, fi.Mode().Perm())
	if err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("snapshot: copy %s: %w", src, err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	return os.Chtimes(dst, fi.ModTime(), fi.ModTime())
}
