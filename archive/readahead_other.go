//go:build !linux

package archive

import "os"

// readAhead is a no-op where posix_fadvise is not available.
func readAhead(f *os.File, n int64) {}
