package archive_test

import (
	"os"
	"path/filepath"
	"testing"
)

// TestEmptyFiles: empty message files (and empty uid lists) round-trip
// and, unchanged, are not read again by the next backup.
func TestEmptyFiles(t *testing.T) {
	src := filepath.Join(t.TempDir(), "Maildir")
	for _, d := range []string{"cur", "new", "tmp", ".Sent/cur", ".Sent/new", ".Sent/tmp"} {
		if err := os.MkdirAll(filepath.Join(src, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	for name, content := range map[string]string{
		"cur/1700000000.M1P1Q1.h,S=0:2,S":   "",
		"new/1700000001.M1P1Q2.h":           "",
		"cur/1700000002.M1P1Q3.h,S=12:2,S":  "Subject: x\n\n",
		".Sent/cur/1700000003.M1P1Q4.h:2,S": "",
		".Sent/maildirfolder":               "",
		"dovecot-uidlist":                   "",
	} {
		if err := os.WriteFile(filepath.Join(src, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tr := newTestRepo(t, 0)
	first := runBackup(t, tr.open(t), src).Snapshot
	if first.Summary.MessagesNew != 4 {
		t.Errorf("first backup: %d new messages, want 4", first.Summary.MessagesNew)
	}
	// Change the folders' directories (not their messages), so that the
	// next backup lists them again whatever the clock says.
	for _, d := range []string{"cur", "new", ".Sent/cur"} {
		p := filepath.Join(src, d, "x")
		os.WriteFile(p, nil, 0o600)
		os.Remove(p)
	}
	r := tr.open(t)
	second := runBackup(t, r, src).Snapshot
	if second.Summary.FoldersUnchanged != 0 {
		t.Fatalf("%d folders skipped", second.Summary.FoldersUnchanged)
	}
	if s := second.Summary; s.MessagesNew != 0 || s.FilesNew != 0 || s.BytesRead != 0 {
		t.Errorf("second backup of an unchanged tree: %d new messages, %d new files, %d bytes read; want 0",
			s.MessagesNew, s.FilesNew, s.BytesRead)
	}
	got, _ := restoreTo(t, r, second, restoreOptions())
	compareTrees(t, src, got)
}
