package archive_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailvault/mailvault/restore"
)

// deepMaildir makes, below src, a Maildir whose cur/ directory's absolute
// path is about 3880 bytes, just short of PATH_MAX (4096 on Linux), and returns an os.Root
// for that Maildir and its absolute path. Entries with long names in it
// have paths that no system call accepts (ENAMETOOLONG), even from root
// — the one way to make a source file unreadable that works as root
// (mode 000 does not stop root; FIFOs and sockets are skipped, not errors).
// Creating them goes through directory handles, one short name at a time.
func deepMaildir(t *testing.T, src string) (*os.Root, string) {
	t.Helper()
	r, err := os.OpenRoot(src)
	if err != nil {
		t.Fatal(err)
	}
	dir := src
	for len(dir)+len("/Maildir")+2 <= 3880 {
		comp := strings.Repeat("d", min(200, 3880-len("/Maildir")-len(dir)-1))
		if err := r.Mkdir(comp, 0o700); err != nil {
			t.Fatal(err)
		}
		next, err := r.OpenRoot(comp)
		if err != nil {
			t.Fatal(err)
		}
		r.Close()
		r, dir = next, dir+"/"+comp
	}
	for _, d := range []string{"Maildir", "Maildir/cur", "Maildir/new", "Maildir/tmp"} {
		if err := r.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	md, err := r.OpenRoot("Maildir")
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	t.Cleanup(func() { md.Close() })
	return md, dir + "/Maildir"
}

// TestUnreadableSourceEntry: an entry that cannot be read is skipped with
// a warning naming it, the rest is backed up, and the snapshot is marked
// partial.
func TestUnreadableSourceEntry(t *testing.T) {
	long := strings.Repeat("x", 250)
	tests := []struct {
		name string
		file string // below the deep Maildir
	}{
		{"message", "cur/1772445605.M1P1Q1." + long[:220] + ",S=20:2,S"},
		{"message without size in its name", "new/1772445605.M2P1Q2." + long[:230]},
		{"other file", "dovecot-" + long[:240]},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := filepath.Join(t.TempDir(), "src")
			if err := os.MkdirAll(src, 0o700); err != nil {
				t.Fatal(err)
			}
			md, mdPath := deepMaildir(t, src)
			msg := []byte("Subject: hi\n\nhello\n") // 20 bytes
			for _, f := range []string{"cur/1772445600.M0P1Q0.h,S=20:2,S", tc.file} {
				if err := md.WriteFile(f, msg, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := os.Stat(mdPath + "/" + tc.file); err == nil || !strings.Contains(err.Error(), "file name too long") {
				t.Fatalf("the long path is accessible (%v): the test cannot make it unreadable", err)
			}
			// And a normal corpus beside it.
			ok := filepath.Join(src, "example.com", "bob", "Maildir")
			for _, d := range []string{"cur", "new", "tmp"} {
				os.MkdirAll(filepath.Join(ok, d), 0o700)
			}
			if err := os.WriteFile(filepath.Join(ok, "cur", "1.M1.h,S=20:2,S"), msg, 0o600); err != nil {
				t.Fatal(err)
			}

			tr := newTestRepo(t, 0)
			r := tr.open(t)
			res, err := r.Backup(t.Context(), backupOptions(src))
			if err != nil {
				t.Fatalf("backup failed instead of skipping the entry: %v", err)
			}
			s := res.Snapshot
			if !s.Partial || s.Summary.Errors != 1 || len(res.Warnings) != 1 {
				t.Fatalf("partial=%v errors=%d warnings=%q, want one warning", s.Partial, s.Summary.Errors, res.Warnings)
			}
			if want := mdPath + "/" + tc.file; !strings.HasPrefix(res.Warnings[0], want+": ") {
				t.Errorf("warning %q does not name %s", res.Warnings[0], want)
			}
			if s.Summary.MessagesNew != 2 || s.Summary.Messages != 2 {
				t.Errorf("%d messages (%d new), want the 2 readable ones", s.Summary.Messages, s.Summary.MessagesNew)
			}
			// The partial snapshot is flagged when loaded, and what
			// it holds restores.
			loaded, err := r.LoadSnapshot(t.Context(), s.ID)
			if err != nil || !loaded.Partial {
				t.Fatalf("loaded snapshot partial=%v, %v", loaded != nil && loaded.Partial, err)
			}
			got, _ := restoreTo(t, r, loaded, restore.Options{User: "bob@example.com"})
			if files := mailFiles(t, got); len(files) != 1 {
				t.Errorf("restored %v", files)
			}
		})
	}
}
