package archive

import (
	"errors"

	"golang.org/x/sys/unix"
)

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

// readDirect reads the file fd from its start into buf, whose address and
// length are multiples of directAlign, and returns how many bytes it
// holds: fewer than len(buf) when the file ended there. A file none of
// which is in the page cache (cachestat(2)) is read with O_DIRECT, from
// the disk into buf; others, and all where the kernel has no cachestat or
// the file system or device refuses O_DIRECT, through the page cache. A
// large file read through the page cache costs the kernel the pages it
// allocates and fills, the copy out of them, and their reclaim later; on
// the reference machine (a virtual one) that was most of the system time
// of reading the corpus cold (docs/PERFORMANCE.md, "fullpar"), and the
// pages evicted mail that a server was using for a backup's data that is
// read once. (A read with RWF_NOWAIT is no test of what is cached: where
// nothing is, it starts the read-ahead into the cache before it fails.)
func readDirect(fd int, buf []byte) (int, error) {
	var st unix.Cachestat_t
	err := unix.Cachestat(uint(fd), &unix.CachestatRange{Len: uint64(len(buf))}, &st, 0)
	if err != nil || st.Cache > 0 {
		return preadFrom(fd, buf, 0, false)
	}
	fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	if err == nil {
		_, err = unix.FcntlInt(uintptr(fd), unix.F_SETFL, fl|unix.O_DIRECT)
	}
	if err != nil {
		return preadFrom(fd, buf, 0, false)
	}
	// Direct reads stop after a short one, normally the end of the file:
	// a further direct read would be at an unaligned offset.
	n, err := preadFrom(fd, buf, 0, true)
	_, _ = unix.FcntlInt(uintptr(fd), unix.F_SETFL, fl)
	if errors.Is(err, unix.EINVAL) {
		n, err = 0, nil // O_DIRECT refused after all: from the start
	}
	if err != nil {
		return n, err
	}
	// Where the direct reads stopped short: normally the end of the
	// file, which the read through the cache then finds at once; if not
	// (a short read that was not the end), the rest.
	return preadFrom(fd, buf, n, false)
}

// adviseHuge asks for huge pages for b (madvise MADV_HUGEPAGE); a hint,
// where transparent huge pages are on "madvise".
func adviseHuge(b []byte) {
	_ = unix.Madvise(b, unix.MADV_HUGEPAGE)
}
