package archive_test

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/mailvault/mailvault/archive"
)

// TestMessageNamesRoundTrip: message file names restore exactly as they
// were, also those that do not follow the Maildir convention to the letter
// (an info part in new/, none in cur/, unsorted flags, '!' separators).
func TestMessageNamesRoundTrip(t *testing.T) {
	names := []string{
		"cur/1700000000.M1P1Q1.h,S=6:2,FS",
		"cur/1700000001.M1P1Q2.h,S=6:2,",
		"cur/1700000002.M1P1Q3.h,S=6",
		"cur/1700000003.M1P1Q4.h,S=6:2,SF",
		"cur/1700000004.M1P1Q5.h,S=6!2,S",
		"cur/1700000005.M1P1Q6.h:2,a",
		"new/1700000006.M1P1Q7.h,S=6",
		"new/1700000007.M1P1Q8.h,S=6:2,",
		"new/1700000008.M1P1Q9.h:2,S",
		"cur/odd name with spaces:2,S",
	}
	src := filepath.Join(t.TempDir(), "Maildir")
	for _, d := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(src, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	mt := time.Date(2023, 11, 14, 22, 13, 20, 0, time.UTC)
	for _, n := range names {
		p := filepath.Join(src, n)
		if err := os.WriteFile(p, []byte("a: b\n\nx"), 0o600); err != nil {
			t.Fatal(err)
		}
		os.Chtimes(p, mt, mt)
	}
	tr := newTestRepo(t, 0)
	r := tr.open(t)
	snap := runBackup(t, r, src).Snapshot
	got, _ := restoreTo(t, r, snap, restoreOptions())
	compareTrees(t, src, got)
	// And once more from an incremental snapshot, where the messages are
	// taken over from the parent.
	snap = runBackup(t, tr.open(t), src).Snapshot
	got, _ = restoreTo(t, tr.open(t), snap, restoreOptions())
	compareTrees(t, src, got)
}

// uglyNames are message file names (below a Maildir folder) that Linux
// allows and that real servers write: Dovecot escapes '/' and ':' in the
// host part of a unique name as \057 and \072 (the Maildir spec), and
// everything else is what a broken client or a hand-made file can leave.
var uglyNames = []string{
	`cur/1700000010.M10P10Q10.host\057name:2,S`,
	`cur/1700000011.M10P10Q11.host\072name:2,S`,
	`new/1700000012.M10P10Q12.back\slash`,
	"cur/1700000013.M10P10Q13.\xff\xfe invalid utf-8:2,S",
	"cur/1700000014.M10P10Q14.new\nline:2,S",
	"cur/1700000015.M10P10Q15.ctl\x01\x7f\ttab:2,S",
	"cur/1700000016.M10P10Q16.h:2,S:2,T",
	"cur/1700000017.M10P10Q17.h,S=999:2,S",
	"cur/1700000018.M10P10Q18.h:2,S\xff",
	"cur/-dash ...:2,",
	"cur/x..:2,S",
	"cur/" + strings.Repeat("L", 240) + ".M1P1Q1.h:2,S",
	"cur/\\",
}

// uglyFolders are Maildir++ folder directory names with bytes that a
// JSON string cannot hold as they are, or that look like path syntax.
var uglyFolders = []string{`.Back\slash`, ".F\xffo\xc0", ".New\nline", `.C:\Windows`, ".a..b"}

// TestUglyNamesRoundTrip: whatever a Linux file name can hold backs up
// and restores byte for byte, through a full and an incremental backup,
// and the repository checks clean (issue 9, defect 1).
// writeUglyTree makes a Maildir tree of one user (whose directory name is
// not UTF-8) holding uglyNames in INBOX and in each of uglyFolders, plus a
// file and a symlink with odd names; it returns the tree and the user's
// Maildir. Each message carries pad bytes of random text.
func writeUglyTree(t *testing.T, pad int) (src, user string) {
	t.Helper()
	src = filepath.Join(t.TempDir(), "mail")
	user = filepath.Join(src, "example.com", "b\xffo\\b", "Maildir")
	dirs := []string{user}
	for _, f := range uglyFolders {
		dirs = append(dirs, filepath.Join(user, f))
	}
	mt := time.Date(2023, 11, 14, 22, 13, 20, 0, time.UTC)
	for i, d := range dirs {
		for _, sub := range []string{"cur", "new", "tmp"} {
			if err := os.MkdirAll(filepath.Join(d, sub), 0o700); err != nil {
				t.Fatal(err)
			}
		}
		for j, n := range uglyNames {
			// Unique names differ between folders (see
			// TestDuplicateUniqueNotGuessed for when they do not).
			sub, base, _ := strings.Cut(n, "/")
			p := filepath.Join(d, sub, fmt.Sprint(i)+base)
			body := fmt.Sprintf("Subject: %d %d\nMessage-ID: <%d.%d@x>\n\nbody %q\n", i, j, i, j, n)
			if pad > 0 {
				rnd := make([]byte, pad*3/4)
				rand.NewChaCha8([32]byte{byte(i), byte(j)}).Read(rnd)
				body += base64.StdEncoding.EncodeToString(rnd) + "\n"
			}
			if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
				t.Fatal(err)
			}
			os.Chtimes(p, mt, mt)
		}
	}
	// Non-message files with odd names, and a symlink whose target is
	// not UTF-8.
	if err := os.WriteFile(filepath.Join(user, "odd\\file \xff"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../t\xffarget\\", filepath.Join(user, "link\xfe")); err != nil {
		t.Fatal(err)
	}
	return src, user
}

func TestUglyNamesRoundTrip(t *testing.T) {
	src, user := writeUglyTree(t, 0)
	tr := newTestRepo(t, 0)
	r := tr.open(t)
	res := runBackup(t, r, src)
	if len(res.Warnings) > 0 {
		t.Fatalf("backup warned: %q", res.Warnings)
	}
	snaps, damaged, err := tr.open(t).Snapshots(t.Context())
	if err != nil || len(damaged) > 0 || len(snaps) != 1 {
		t.Fatalf("snapshots after backup: %d, damaged %v, %v", len(snaps), damaged, err)
	}
	got, _ := restoreTo(t, tr.open(t), snaps[0], restoreOptions())
	compareTrees(t, src, got)
	if c, err := tr.open(t).Check(t.Context(), archive.CheckOptions{ReadData: true}); err != nil || !c.OK() {
		t.Fatalf("check: %+v, %v", c, err)
	}
	// Incremental: every message comes from the parent, none is read.
	touch := filepath.Join(user, ".Back\\slash", "cur", "1700000099.M1P1Q1.h:2,S")
	if err := os.WriteFile(touch, []byte("Subject: new\n\nnew\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	res = runBackup(t, tr.open(t), src)
	if res.Snapshot.Summary.MessagesNew != 1 {
		t.Errorf("incremental backup read %d messages, want 1", res.Snapshot.Summary.MessagesNew)
	}
	got, _ = restoreTo(t, tr.open(t), res.Snapshot, restoreOptions())
	compareTrees(t, src, got)
}

// TestNonMessagesInCurWarned: what is in cur/ or new/ but is no message
// — a dot file, which Maildir readers ignore, a symbolic link, a
// directory — is not backed up, and the backup says so (partial) instead
// of leaving it out silently (issue 9).
func TestNonMessagesInCurWarned(t *testing.T) {
	src := filepath.Join(t.TempDir(), "Maildir")
	for _, d := range []string{"cur", "new", "tmp", "cur/subdir"} {
		if err := os.MkdirAll(filepath.Join(src, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []string{"cur/1.M1P1Q1.h:2,S", "cur/.hidden", "new/..."} {
		if err := os.WriteFile(filepath.Join(src, n), []byte("Subject: x\n\nx\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("/etc/passwd", filepath.Join(src, "cur", "2.M1P1Q1.h:2,S")); err != nil {
		t.Fatal(err)
	}
	res := runBackup(t, newTestRepo(t, 0).open(t), src)
	var got []string
	for _, w := range res.Warnings {
		rel, _, _ := strings.Cut(strings.TrimPrefix(w, src+"/"), ":")
		got = append(got, rel)
	}
	sort.Strings(got)
	want := []string{"cur/.hidden", "cur/2.M1P1Q1.h", "cur/subdir", "new/..."}
	if !slices.Equal(got, want) {
		t.Errorf("warned about %q, want %q", got, want)
	}
	if !res.Snapshot.Partial || res.Snapshot.Summary.Messages != 1 {
		t.Errorf("partial %v, %d messages; want partial with 1", res.Snapshot.Partial, res.Snapshot.Summary.Messages)
	}
}

// TestDuplicateUniqueNotGuessed: two files of a user with one unique name
// and one size but different content (a hand-made copy, edited) are both
// read again by an incremental backup, not taken from whichever the
// parent listed last.
func TestDuplicateUniqueNotGuessed(t *testing.T) {
	src := filepath.Join(t.TempDir(), "Maildir")
	files := map[string]string{
		"cur/1.M1P1Q1.h:2,S":        "Subject: a\n\naaaa\n",
		".Copy/cur/1.M1P1Q1.h:2,S":  "Subject: b\n\nbbbb\n",
		".Copy/new/1.M1P1Q1.h":      "Subject: c\n\ncccc\n",
		".Other/cur/2.M1P1Q1.h:2,S": "Subject: d\n\ndddd\n",
	}
	for _, d := range []string{"", ".Copy", ".Other"} {
		for _, sub := range []string{"cur", "new", "tmp"} {
			if err := os.MkdirAll(filepath.Join(src, d, sub), 0o700); err != nil {
				t.Fatal(err)
			}
		}
	}
	for n, body := range files {
		if err := os.WriteFile(filepath.Join(src, n), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tr := newTestRepo(t, 0)
	runBackup(t, tr.open(t), src)
	// Change every folder so that each is listed again.
	for _, d := range []string{"", ".Copy", ".Other"} {
		if err := os.WriteFile(filepath.Join(src, d, "cur", "9.M9P9Q9.h"+d+":2,S"), []byte("Subject: n\n\nn\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	res := runBackup(t, tr.open(t), src)
	got, _ := restoreTo(t, tr.open(t), res.Snapshot, restoreOptions())
	compareTrees(t, src, got)
	// The three new ones and the three that share a name; not .Other's.
	if n := res.Snapshot.Summary.MessagesNew; n != 6 {
		t.Errorf("read %d messages, want 6", n)
	}
}

// TestUglyNamesRepairSnapshots: a snapshot that repair snapshots rewrites
// after pack damage keeps every odd name it still holds byte for byte (the
// rewritten trees carry the names' exact-bytes twins too).
func TestUglyNamesRepairSnapshots(t *testing.T) {
	src, _ := writeUglyTree(t, 100<<10)
	tr := newTestRepo(t, 1<<20) // several packs: the damage costs a few messages
	runBackup(t, tr.open(t), src)
	packs := tr.packFiles(t)
	var data string
	for name := range packs {
		if data == "" || packs[name] > packs[data] {
			data = name // the largest: data, not the small tree pack
		}
	}
	flipByte(t, tr.packPath(data), packs[data]/2)
	r := tr.open(t)
	if _, err := r.RepairPacks(t.Context(), archive.RepairPacksOptions{}); err != nil {
		t.Fatal(err)
	}
	rs, err := r.RepairSnapshots(t.Context(), archive.RepairSnapshotsOptions{Forget: true})
	if err != nil || len(rs.Repaired) != 1 {
		t.Fatalf("repair snapshots: %+v, %v", rs, err)
	}
	snaps, damaged, err := tr.open(t).Snapshots(t.Context())
	if err != nil || len(damaged) > 0 || len(snaps) != 1 {
		t.Fatalf("snapshots after repair: %d, damaged %v, %v", len(snaps), damaged, err)
	}
	got, _ := restoreTo(t, tr.open(t), snaps[0], restoreOptions())
	want, _ := readTree(t, src)
	restored, _ := readTree(t, got)
	for rel, f := range restored {
		w, ok := want[rel]
		if !ok {
			t.Errorf("restored a name the source does not have: %q", rel)
		} else if !bytes.Equal(w.Content, f.Content) || w.Link != f.Link {
			t.Errorf("%q: content differs", rel)
		}
	}
	if lost := len(want) - len(restored); lost != len(rs.Dropped) || lost == 0 {
		t.Errorf("%d files missing after the repair, %d listed as dropped", lost, len(rs.Dropped))
	}
}
