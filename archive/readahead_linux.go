package archive

import "golang.org/x/sys/unix"

// readAhead asks the kernel to start reading the first n bytes of the file
// fd into the page cache without waiting for them. The backup opens each
// file when it queues it for a worker, so a cold disk is reading the next
// files while the workers hash, compress and encrypt the current ones: the
// workers alone keep only as many reads in flight as there are workers,
// each followed by CPU work during which that worker reads nothing. It is
// only a hint; an error changes nothing but speed.
func readAhead(fd int, n int64) {
	_ = unix.Fadvise(fd, 0, n, unix.FADV_WILLNEED)
}
