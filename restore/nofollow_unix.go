//go:build unix

package restore

import (
	"os"
	"syscall"
)

// syscallNoFollow makes opening a file fail if its last component is a
// symbolic link, so a restore never writes through one.
const syscallNoFollow = syscall.O_NOFOLLOW

// linkRename renames oldpath to newpath unless newpath exists: link(2)
// refuses an existing name, symlinks included.
func linkRename(oldpath, newpath string) error {
	if err := os.Link(oldpath, newpath); err != nil {
		return err
	}
	return os.Remove(oldpath)
}
