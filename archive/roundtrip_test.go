package archive_test

import (
	"path"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/mailvault/mailvault/maildir"
	"github.com/mailvault/mailvault/mailmeta"
	"github.com/mailvault/mailvault/restore"
)

// TestRoundTrip backs up a generated corpus and restores it whole and in
// parts: the whole restore must equal the source byte for byte (names, so
// flags, contents and mtimes); partial restores must give exactly the
// selected messages (and the uid lists etc. that go with a user or
// folder), each in a valid Maildir.
func TestRoundTrip(t *testing.T) {
	src := genCorpus(t, 1, 3e6)
	tr := newTestRepo(t, 1<<20)
	r := tr.open(t)
	res := runBackup(t, r, src)
	snap := res.Snapshot
	if len(res.Warnings) != 0 || snap.Partial {
		t.Fatalf("backup warnings: %v", res.Warnings)
	}

	srcFiles, _ := readTree(t, src)
	var nMail int64
	for _, f := range srcFiles {
		if f.IsMail {
			nMail++
		}
	}
	if snap.Summary.Messages != nMail || snap.Summary.MessagesNew != nMail {
		t.Errorf("summary: %d messages (%d new), want %d", snap.Summary.Messages, snap.Summary.MessagesNew, nMail)
	}

	// Reopen, as a restore on another day would.
	r = tr.open(t)
	got, rres := restoreTo(t, r, snap, restore.Options{})
	compareTrees(t, src, got)
	if rres.Messages != nMail {
		t.Errorf("restore result: %d messages, want %d", rres.Messages, nMail)
	}

	// Where each message file lives: mailbox (user, folder) by directory.
	tree, err := maildir.Scan(src)
	if err != nil {
		t.Fatal(err)
	}
	boxOf := map[string]maildir.Mailbox{}
	for _, mb := range tree.Mailboxes {
		boxOf[mb.Dir] = mb
	}
	type mailFile struct {
		rel       string
		box       maildir.Mailbox
		unique    string
		messageID string
	}
	var mails []mailFile
	for rel, f := range srcFiles {
		if !f.IsMail {
			continue
		}
		box, ok := boxOf[path.Dir(path.Dir(rel))]
		if !ok {
			t.Fatalf("%s: no mailbox", rel)
		}
		mails = append(mails, mailFile{rel, box, uniqueOf(rel), mailmeta.Parse(f.Content).MessageID})
	}
	sort.Slice(mails, func(i, j int) bool { return mails[i].rel < mails[j].rel })

	// Pick selections from the corpus: a user, a folder, one message by
	// unique name and one fanned-out message by Message-ID (several
	// copies share it).
	user := mails[len(mails)/2].box.User
	byID := map[string]int{}
	for _, m := range mails {
		byID[m.messageID]++
	}
	var fanned string
	for _, m := range mails {
		if byID[m.messageID] > 1 && m.messageID != "" {
			fanned = m.messageID
			break
		}
	}
	if fanned == "" {
		t.Fatal("corpus has no message with several copies")
	}
	one := mails[len(mails)/3]

	// The non-message files that go with a selection: those in the
	// user's Maildir for a user, those directly in the folder's
	// directory for a folder, none for single messages.
	userRoot := map[string]string{} // user → Maildir root
	for _, mb := range tree.Mailboxes {
		userRoot[mb.User] = mb.Root
	}
	inUser := func(u string) func(string) bool {
		return func(rel string) bool { return strings.HasPrefix(rel, userRoot[u]+"/") }
	}
	inFolder := func(user, folder string) func(string) bool {
		return func(rel string) bool {
			for _, mb := range tree.Mailboxes {
				if (user == "" || mb.User == user) && strings.EqualFold(mb.Folder, folder) && path.Dir(rel) == mb.Dir {
					return true
				}
			}
			return false
		}
	}
	none := func(string) bool { return false }

	tests := []struct {
		name  string
		opt   restore.Options
		want  func(m mailFile) bool
		other func(rel string) bool // non-message files expected
	}{
		{"user", restore.Options{User: user}, func(m mailFile) bool { return m.box.User == user }, inUser(user)},
		{"folder", restore.Options{Folder: "Sent"}, func(m mailFile) bool { return m.box.Folder == "Sent" }, inFolder("", "Sent")},
		{"user folder", restore.Options{User: user, Folder: "inbox"}, func(m mailFile) bool { return m.box.User == user && m.box.Folder == "INBOX" }, inFolder(user, "INBOX")},
		{"unique", restore.Options{Message: one.unique}, func(m mailFile) bool { return m.rel == one.rel }, none},
		{"message-id", restore.Options{Message: "<" + fanned + ">"}, func(m mailFile) bool { return m.messageID == fanned }, none},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, res := restoreTo(t, r, snap, tc.opt)
			var want []string
			boxes := map[string]bool{}
			for _, m := range mails {
				if tc.want(m) {
					want = append(want, m.rel)
					boxes[m.box.Dir] = true
				}
			}
			have := mailFiles(t, got)
			if strings.Join(have, "\n") != strings.Join(want, "\n") {
				t.Fatalf("restored %d messages, want %d:\n got %q\nwant %q", len(have), len(want), have, want)
			}
			var wantOther []string
			for rel, f := range srcFiles {
				if !f.IsMail && tc.other(rel) {
					wantOther = append(wantOther, rel)
				}
			}
			sort.Strings(wantOther)
			all, _ := readTree(t, got)
			var haveOther []string
			for rel, f := range all {
				if !f.IsMail {
					haveOther = append(haveOther, rel)
				}
				w := srcFiles[rel]
				if string(f.Content) != string(w.Content) || !f.ModTime.Equal(w.ModTime) {
					t.Errorf("%s: content or mtime differs", rel)
				}
			}
			sort.Strings(haveOther)
			if strings.Join(haveOther, "\n") != strings.Join(wantOther, "\n") {
				t.Errorf("restored other files:\n%q\nwant\n%q", haveOther, wantOther)
			}
			if res.Messages != int64(len(want)) || res.Files != int64(len(wantOther)) {
				t.Errorf("result %+v, want %d messages and %d other files", res, len(want), len(wantOther))
			}
			for dir := range boxes {
				assertMaildir(t, filepath.Join(got, filepath.FromSlash(dir)))
			}
		})
	}

	t.Run("nothing selected", func(t *testing.T) {
		_, err := restore.Restore(t.Context(), r, snap, restore.Options{Target: filepath.Join(t.TempDir(), "x"), Message: "no-such-message"})
		if err != restore.ErrNothingSelected {
			t.Errorf("err = %v, want ErrNothingSelected", err)
		}
	})
}
