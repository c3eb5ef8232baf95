//go:build !linux

package archive

// readAhead is a no-op where posix_fadvise is not available.
func readAhead(fd int, n int64) {}

// readDirect reads the file fd from its start into buf and returns how
// many bytes it holds: fewer than len(buf) when the file ended there.
// Through the page cache here; see the Linux version.
func readDirect(fd int, buf []byte) (int, error) { return preadFrom(fd, buf, 0, false) }

// adviseHuge is a no-op here.
func adviseHuge(b []byte) {}
