package archive

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// evict drops a file's pages from the page cache, as a file not read
// since the machine started would be.
func evict(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		t.Fatal(err)
	}
}

// cachedPages is how many pages of the file the page cache holds, or -1
// where the kernel cannot tell (no cachestat).
func cachedPages(t *testing.T, path string) int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var st unix.Cachestat_t
	if err := unix.Cachestat(uint(f.Fd()), &unix.CachestatRange{}, &st, 0); err != nil {
		return -1
	}
	return int(st.Cache)
}

// TestReadDirectBypassesCache: a file none of which is cached is read
// from the disk into the buffer, leaving the page cache as it was; where
// the file system takes O_DIRECT and the kernel has cachestat.
func TestReadDirectBypassesCache(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "big")
	writeSynced(t, path, make([]byte, 1<<20+100))
	if fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_DIRECT, 0); err != nil {
		t.Skipf("%s: no O_DIRECT here: %v", dir, err)
	} else {
		syscall.Close(fd)
	}
	evict(t, path)
	if n := cachedPages(t, path); n != 0 {
		t.Skipf("cachestat: %d pages cached after eviction", n)
	}
	fd, err := openFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	buf := alignedBuffer(directLen(1<<20 + 100))
	if n, err := readDirect(fd, buf); err != nil || n != 1<<20+100 {
		t.Fatalf("read %d bytes, %v", n, err)
	}
	if n := cachedPages(t, path); n != 0 {
		t.Errorf("%d pages in the page cache after the read, want 0", n)
	}
	// The descriptor reads through the page cache again (the worker's
	// fallback for a file that grew reads with unaligned buffers).
	fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	if err != nil || fl&unix.O_DIRECT != 0 {
		t.Errorf("flags after the read: %#x, %v: O_DIRECT left set", fl, err)
	}
}
