package archive_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailvault/mailvault/internal/testutil"
	"github.com/mailvault/mailvault/restore"
)

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
			md, mdPath := testutil.DeepMaildir(t, src)
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
