package corpus

import (
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Evict drops the page-cache pages of every file under root
// (posix_fadvise DONTNEED after a sync of each file), so that the next
// reader of the tree reads it from disk — a cold backup, measured without
// the privileges that dropping the whole cache (/proc/sys/vm/drop_caches)
// needs and without disturbing other users of the machine. It returns the
// number of files and bytes evicted.
func Evict(root string) (files int, bytes int64, err error) {
	err = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			return err
		}
		// Dirty pages are not dropped: write them first.
		if err := unix.Fdatasync(int(f.Fd())); err != nil {
			return err
		}
		if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
			return err
		}
		files++
		bytes += fi.Size()
		return nil
	})
	return files, bytes, err
}
