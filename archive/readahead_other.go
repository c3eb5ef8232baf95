//go:build !linux

package archive

// readAhead is a no-op where posix_fadvise is not available.
func readAhead(fd int, n int64) {}
