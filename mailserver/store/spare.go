package store

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// Spare files: creating a file is a large part of an APPEND's time. On
// ext4 without a journal (this project's benchmark machine) the kernel
// looks for a free inode that was not freed in the last seconds, reading
// inode table blocks as it goes: 0.1 to 0.7 ms of CPU per create while
// other processes delete files, as much as one of the APPEND's fsyncs
// (docs/PERFORMANCE.md). Dovecot pays it twice per APPEND (the message
// and dovecot-uidlist.lock). So after an APPEND, while the client reads
// the answer and sends its next command, the IMAP server asks for the
// next file ahead (PrepareAppend): an empty file in the folder's tmp/,
// which the next Append into that folder opens and writes instead of
// creating one. Nothing about durability changes: the message is written
// into it, fsynced and renamed into cur/ under a fresh unique name as
// before.
//
// A spare is a plain empty file in tmp/, which Maildir readers, the
// backup and restore ignore. One left by a crash or an exit is removed
// when the folder is next loaded (removeSpares); an Append whose spare
// has gone creates a file as before.

// sparePrefix starts the name of a spare in tmp/; Maildir unique names
// start with a digit.
const sparePrefix = "spare-"

// PrepareAppend creates, if the folder has none, the spare file the next
// Append into the folder will write its message into. It is an
// optimisation only: errors are not reported.
func (s *Store) PrepareAppend(a Account, folder string) {
	dir, err := s.folderDir(a, folder)
	if err != nil {
		return
	}
	st, err := s.folder(dir)
	if err != nil {
		return
	}
	st.mu.Lock()
	have := st.spare != "" || st.idx == nil
	st.mu.Unlock()
	if have {
		return // or not loaded yet: the spares of an earlier run may be there
	}
	// Created without the folder's lock: the create is the slow part.
	p := filepath.Join(dir, "tmp", sparePrefix+s.newUnique(s.now()))
	f, err := s.fs.Create(p)
	if err != nil {
		return
	}
	f.Close()
	st.mu.Lock()
	if st.spare == "" {
		st.spare, p = p, ""
	}
	st.mu.Unlock()
	if p != "" {
		os.Remove(p) // another one was made meanwhile
	}
}

// createTmp returns a file in dir's tmp/ to write a message into: the
// folder's spare (PrepareAppend) if it has one and it is still there,
// else a new file named base.
func (s *Store) createTmp(dir, base string) (*os.File, string, error) {
	s.mu.Lock()
	st := s.folders[dir]
	s.mu.Unlock()
	if st != nil {
		st.mu.Lock()
		p := st.spare
		st.spare = ""
		st.mu.Unlock()
		if p != "" {
			// O_TRUNC: empty as made, unless something wrote to it.
			if f, err := openFile(p, syscall.O_WRONLY|syscall.O_TRUNC, 0); err == nil {
				return f, p, nil
			}
		}
	}
	p := filepath.Join(dir, "tmp", base)
	f, err := s.fs.Create(p)
	if err != nil {
		return nil, "", fmt.Errorf("store: create tmp: %w", err)
	}
	return f, p, nil
}

// removeSpares removes the spares an earlier run left in a folder's
// tmp/, when the folder is loaded (it has none of this run's yet).
func removeSpares(dir string) {
	entries, err := os.ReadDir(filepath.Join(dir, "tmp"))
	if err != nil {
		return // none, or none we can see
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), sparePrefix) {
			os.Remove(filepath.Join(dir, "tmp", e.Name()))
		}
	}
}

// dropSpareLocked removes the folder's spare (the folder is deleted or
// renamed, and its state forgotten).
func (st *folderState) dropSpareLocked() {
	if st.spare != "" {
		os.Remove(st.spare)
		st.spare = ""
	}
}
