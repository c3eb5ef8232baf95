//go:build !linux

package corpus

import "errors"

// Evict is only implemented on Linux (posix_fadvise).
func Evict(root string) (files int, bytes int64, err error) {
	return 0, 0, errors.New("evicting a tree from the page cache needs Linux")
}
