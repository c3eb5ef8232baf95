package archive

import (
	"context"
	"errors"
	"io"
)

// FileType names the kind of a repository file; each kind lives in its own
// directory of the backend (see docs/FORMAT.md).
type FileType string

// The repository's file kinds.
const (
	ConfigFile   FileType = "config"
	KeyFile      FileType = "keys"
	PackFile     FileType = "data"
	IndexFile    FileType = "index"
	SnapshotFile FileType = "snapshots"
	LockFile     FileType = "locks"
	// PolicyFile holds the versions of the compliance documents (legal
	// holds now; retention rules and erasure records later), AuditFile
	// the audit chain of the acts that changed them (policydoc.go).
	PolicyFile FileType = "policy"
	AuditFile  FileType = "audit"
)

// ErrNotExist is returned (wrapped) by a Backend for a file that is not there.
var ErrNotExist = errors.New("file does not exist")

// Backend stores the repository's files. It is deliberately small — put,
// get, ranged get, list, delete — so that a local directory, S3 or SFTP can
// implement it without knowing anything about the format. Files are
// immutable once written: Put of an existing name must leave either the old
// or the new (identical) content, never a mix.
type Backend interface {
	// Location describes where the repository is, for messages.
	Location() string
	// Put stores a file atomically and durably: when Put returns nil the
	// whole file is on stable storage under its final name.
	Put(ctx context.Context, t FileType, name string, data []byte) error
	// Get opens a file for reading.
	Get(ctx context.Context, t FileType, name string) (io.ReadCloser, error)
	// GetRange reads length bytes at offset (length <= 0 means to the end).
	GetRange(ctx context.Context, t FileType, name string, offset, length int64) (io.ReadCloser, error)
	// Stat returns the size of a file.
	Stat(ctx context.Context, t FileType, name string) (int64, error)
	// List calls fn for every file of a type with its name and size.
	List(ctx context.Context, t FileType, fn func(name string, size int64) error) error
	// Remove deletes a file.
	Remove(ctx context.Context, t FileType, name string) error
}

// readerAt adapts a Backend file to io.ReaderAt with ranged gets, so that
// age.DecryptReaderAt can read single blobs out of a pack without fetching
// the whole pack.
type readerAt struct {
	ctx  context.Context
	be   Backend
	t    FileType
	name string
}

func (r readerAt) ReadAt(p []byte, off int64) (int, error) {
	rc, err := r.be.GetRange(r.ctx, r.t, r.name, off, int64(len(p)))
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	n, err := io.ReadFull(rc, p)
	if errors.Is(err, io.ErrUnexpectedEOF) {
		err = io.EOF
	}
	return n, err
}
