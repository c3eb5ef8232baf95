package store

import (
	"fmt"
	"os"
)

// fileSystem is the handful of operations whose order makes delivery
// durable. Tests replace it to observe that order.
type fileSystem interface {
	Create(path string) (*os.File, error)
	SyncFile(f *os.File) error
	Rename(oldPath, newPath string) error
	SyncDir(path string) error
}

type osFS struct{}

func (osFS) Create(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
}

func (osFS) SyncFile(f *os.File) error { return f.Sync() }

func (osFS) Rename(oldPath, newPath string) error { return os.Rename(oldPath, newPath) }

// SyncDir fsyncs a directory so that entries created or renamed in it
// survive a crash (POSIX fsync on the file alone does not promise that).
func (osFS) SyncDir(path string) error {
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
