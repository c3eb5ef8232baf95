package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// backdate sets the times of everything below dir an hour back, so that no
// file or folder is "racy" (changed within the timestamp granularity of
// the parent backup) and each must be recognised as unchanged.
func backdate(t *testing.T, dir string) {
	t.Helper()
	old := time.Now().Add(-time.Hour)
	var dirs []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			dirs = append(dirs, p) // after their contents: a change in a directory sets its mtime
			return nil
		}
		return os.Chtimes(p, old, old)
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := os.Chtimes(dirs[i], old, old); err != nil {
			t.Fatal(err)
		}
	}
}

// TestHardlinkBackupWithoutChanges: a second backup through a hardlink
// view of unchanged mail reads nothing and writes no pack. The view's
// copies of the other files (dovecot-uidlist, subscriptions, ...) and its
// directories are new inodes with new ctimes on every run, so comparing
// inode and ctime with the parent's made every run re-store every other
// file and write a pack with the new files tree (issue 9).
func TestHardlinkBackupWithoutChanges(t *testing.T) {
	e := newCLIEnv(t)
	src := genCorpus(t, 9, 200e3)
	backdate(t, src)
	first := e.backup(t, "--snapshot", "hardlink", src)
	if first.Summary.FilesNew == 0 {
		t.Fatal("the corpus has no other files; the test would prove nothing")
	}
	packs := len(e.files(t, "data"))
	for run := 2; run <= 3; run++ {
		b := e.backup(t, "--snapshot", "hardlink", src)
		s := b.Summary
		if s.FilesNew != 0 || s.MessagesNew != 0 || s.PacksWritten != 0 || s.BytesRead != 0 {
			t.Errorf("run %d without changes: %d new other files, %d new messages, %d bytes read, %d packs written; want all 0",
				run, s.FilesNew, s.MessagesNew, s.BytesRead, s.PacksWritten)
		}
		if s.FoldersUnchanged != s.Folders {
			t.Errorf("run %d without changes: %d of %d folders unchanged, want all", run, s.FoldersUnchanged, s.Folders)
		}
		if n := len(e.files(t, "data")); n != packs {
			t.Errorf("run %d without changes: %d packs in the repository, was %d", run, n, packs)
		}
	}
	// A change is still seen: a rewritten other file of the same size and
	// mtime is not (no ctime to tell), but one of another size is.
	uidlists, _ := filepath.Glob(filepath.Join(src, "*", "*", "Maildir", "dovecot-uidlist"))
	if len(uidlists) == 0 {
		t.Fatal("no dovecot-uidlist in the corpus")
	}
	f, err := os.OpenFile(uidlists[0], os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("999 1.M1P1.x\n")
	f.Close()
	if b := e.backup(t, "--snapshot", "hardlink", src); b.Summary.FilesNew != 1 {
		t.Errorf("after changing %s: %d new other files, want 1", uidlists[0], b.Summary.FilesNew)
	}
}
