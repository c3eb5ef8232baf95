package restore

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// renameNoReplace renames oldpath to newpath unless newpath exists, in
// one step (renameat2 RENAME_NOREPLACE), or with link and unlink where
// the file system does not support that.
func renameNoReplace(oldpath, newpath string) error {
	err := unix.Renameat2(unix.AT_FDCWD, oldpath, unix.AT_FDCWD, newpath, unix.RENAME_NOREPLACE)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
		return linkRename(oldpath, newpath)
	}
	if err != nil {
		return &os.LinkError{Op: "rename", Old: oldpath, New: newpath, Err: err}
	}
	return nil
}

// syncFS returns a function that makes everything written to the file
// system holding dir durable: syncfs(2), one call for a batch of files.
func syncFS(dir *os.File) func() error {
	return func() error { return unix.Syncfs(int(dir.Fd())) }
}
