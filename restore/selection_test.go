package restore_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/mailvault/mailvault/archive"
	"github.com/mailvault/mailvault/restore"
)

// listTree returns every regular file below dir (slash paths) with content.
func listTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		out[filepath.ToSlash(rel)] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestRestoreSelectionTakesItsFiles: a user restore brings back the user's
// whole Maildir — uid lists and subscriptions too, not only messages — and a
// folder restore the files of that folder's directory.
func TestRestoreSelectionTakesItsFiles(t *testing.T) {
	src := t.TempDir()
	write := func(rel, content string) {
		p := filepath.Join(src, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"ex.com/alice/Maildir", "ex.com/alice/Maildir/.Sent", "ex.com/bob/Maildir"} {
		for _, sub := range []string{"cur", "new", "tmp"} {
			os.MkdirAll(filepath.Join(src, d, sub), 0o700)
		}
	}
	write("ex.com/alice/Maildir/cur/1.a.h:2,S", "Subject: a\r\n\r\nhi\r\n")
	write("ex.com/alice/Maildir/dovecot-uidlist", "3 V1 N2\n1 1.a.h\n")
	write("ex.com/alice/Maildir/subscriptions", "Sent\n")
	write("ex.com/alice/Maildir/.Sent/cur/2.b.h:2,S", "Subject: b\r\n\r\nsent\r\n")
	write("ex.com/alice/Maildir/.Sent/dovecot-uidlist", "3 V2 N2\n1 2.b.h\n")
	write("ex.com/alice/Maildir/.Sent/maildirfolder", "")
	write("ex.com/bob/Maildir/cur/3.c.h:2,", "Subject: c\r\n\r\nbob\r\n")
	write("ex.com/bob/Maildir/dovecot-uidlist", "3 V3 N2\n1 3.c.h\n")

	r := newRepo(t)
	res, err := r.Backup(t.Context(), archive.BackupOptions{Paths: []string{src}, Host: "h"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.LoadIndex(t.Context()); err != nil {
		t.Fatal(err)
	}
	all := listTree(t, src)
	tests := []struct {
		name string
		opt  restore.Options
		want []string
	}{
		{"user", restore.Options{User: "alice@ex.com"}, []string{
			"ex.com/alice/Maildir/.Sent/cur/2.b.h:2,S", "ex.com/alice/Maildir/.Sent/dovecot-uidlist", "ex.com/alice/Maildir/.Sent/maildirfolder",
			"ex.com/alice/Maildir/cur/1.a.h:2,S", "ex.com/alice/Maildir/dovecot-uidlist", "ex.com/alice/Maildir/subscriptions"}},
		{"folder", restore.Options{User: "alice@ex.com", Folder: "Sent"}, []string{
			"ex.com/alice/Maildir/.Sent/cur/2.b.h:2,S", "ex.com/alice/Maildir/.Sent/dovecot-uidlist", "ex.com/alice/Maildir/.Sent/maildirfolder"}},
		{"inbox", restore.Options{User: "alice@ex.com", Folder: "INBOX"}, []string{
			"ex.com/alice/Maildir/cur/1.a.h:2,S", "ex.com/alice/Maildir/dovecot-uidlist", "ex.com/alice/Maildir/subscriptions"}},
		{"message", restore.Options{Message: "1.a.h"}, []string{"ex.com/alice/Maildir/cur/1.a.h:2,S"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.opt.Target = filepath.Join(t.TempDir(), "out")
			if _, err := restore.Restore(t.Context(), r, res.Snapshot, tc.opt); err != nil {
				t.Fatal(err)
			}
			got := listTree(t, tc.opt.Target)
			var names []string
			for n, content := range got {
				names = append(names, n)
				if content != all[n] {
					t.Errorf("%s: content differs from the source", n)
				}
			}
			sort.Strings(names)
			if len(names) != len(tc.want) {
				t.Fatalf("restored %q\nwant %q", names, tc.want)
			}
			for i := range names {
				if names[i] != tc.want[i] {
					t.Fatalf("restored %q\nwant %q", names, tc.want)
				}
			}
		})
	}
}
