//go:build unix

package restore

import "syscall"

// syscallNoFollow makes opening a file fail if its last component is a
// symbolic link, so a restore never writes through one.
const syscallNoFollow = syscall.O_NOFOLLOW
