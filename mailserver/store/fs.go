package store

import (
	"fmt"
	"os"
	"sync/atomic"
	"syscall"
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

// Create makes a new file for writing. The file is opened with open(2)
// and wrapped with os.NewFile rather than by os.OpenFile, which tries to
// register every file with the network poller (four fcntl calls and an
// epoll_ctl that fails for a regular file): per APPEND, a fifth of the
// store's system calls (docs/PERFORMANCE.md).
func (osFS) Create(path string) (*os.File, error) {
	return openFile(path, syscall.O_CREAT|syscall.O_EXCL|syscall.O_WRONLY, 0o600)
}

// openFile is os.OpenFile for regular files and directories, without the
// poller (see Create).
func openFile(path string, flag int, perm uint32) (*os.File, error) {
	var fd int
	var err error
	for {
		fd, err = syscall.Open(path, flag|syscall.O_CLOEXEC, perm)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return os.NewFile(uintptr(fd), path), nil
}

func (fs osFS) SyncFile(f *os.File) error {
	fs.count()
	return f.Sync()
}

// Rename is rename(2). os.Rename first lstats the new name to refuse
// replacing a directory, which the store's renames never do.
func (osFS) Rename(oldPath, newPath string) error {
	if err := syscall.Rename(oldPath, newPath); err != nil {
		return &os.LinkError{Op: "rename", Old: oldPath, New: newPath, Err: err}
	}
	return nil
}

// SyncDir fsyncs a directory so that entries created or renamed in it
// survive a crash (POSIX fsync on the file alone does not promise that).
// open, fsync and close, no more (see Create).
func (fs osFS) SyncDir(path string) error {
	fs.count()
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("store: open dir for fsync: %w", &os.PathError{Op: "open", Path: path, Err: err})
	}
	defer syscall.Close(fd)
	if err := syscall.Fsync(fd); err != nil {
		return fmt.Errorf("store: fsync dir %s: %w", path, err)
	}
	return nil
}
