package store

import (
	"fmt"
	"os"
	"sync/atomic"
)

// fileSystem is the handful of operations whose order makes delivery
// durable. Tests replace it to observe that order.
type fileSystem interface {
	Create(path string) (*os.File, error)
	SyncFile(f *os.File) error
	Rename(oldPath, newPath string) error
	SyncDir(path string) error
}

// osFS is the operating system's file system. syncs, when set, counts the
// fsyncs of files and directories (Store.Syncs): tests and benchmarks
// assert how many an operation costs, since their latency is most of a
// durable delivery's.
type osFS struct{ syncs *atomic.Int64 }

func (fs osFS) count() {
	if fs.syncs != nil {
		fs.syncs.Add(1)
	}
}

func (osFS) Create(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
}

func (fs osFS) SyncFile(f *os.File) error {
	fs.count()
	return f.Sync()
}

func (osFS) Rename(oldPath, newPath string) error { return os.Rename(oldPath, newPath) }

// SyncDir fsyncs a directory so that entries created or renamed in it
// survive a crash (POSIX fsync on the file alone does not promise that).
func (fs osFS) SyncDir(path string) error {
	fs.count()
	d, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("store: open dir for fsync: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("store: fsync dir %s: %w", path, err)
	}
	return nil
}
