//go:build !linux

package archive

import "syscall"

// readAhead is a no-op where posix_fadvise is not available.
func readAhead(fd int, n int64) {}

// readDirect reads the file fd from its start into buf and returns how
// many bytes it holds: fewer than len(buf) when the file ended there.
// Through the page cache here; see the Linux version.
func readDirect(fd int, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := syscall.Pread(fd, buf[n:], int64(n))
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return n, err
		}
		if m == 0 {
			break
		}
		n += m
	}
	return n, nil
}

// adviseHuge is a no-op here.
func adviseHuge(b []byte) {}
