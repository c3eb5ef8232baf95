package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailvault/mailvault/internal/testutil"
)

// TestCLIRestoreByMessageID: `restore --message <id>` through the
// snapshot's Message-ID index gives back every copy of the message, byte
// for byte, and nothing else — after a full backup and after an
// incremental that added the message.
func TestCLIRestoreByMessageID(t *testing.T) {
	src := genCorpus(t, 51, 2e6)
	e := newCLIEnv(t)
	e.backup(t, src)
	want, _ := testutil.ReadTree(t, src)

	// A message delivered to two mailboxes after the first backup.
	msg := "From: carol@example.org\r\nMessage-ID: <late-1@example.org>\r\nSubject: late\r\n\r\nhello\r\n"
	users, _ := filepath.Glob(filepath.Join(src, "*", "*", "Maildir"))
	if len(users) < 2 {
		t.Fatalf("corpus has %d mailboxes", len(users))
	}
	for _, u := range users[:2] {
		if err := os.WriteFile(filepath.Join(u, "new", "1800000000.M1P1.late"), []byte(msg), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	e.backup(t, src)

	snap, err := openRepo(t, e).FindSnapshot(t.Context(), "latest")
	if err != nil {
		t.Fatal(err)
	}
	if snap.Roots[0].MessageIndex == nil {
		t.Fatal("the snapshot has no Message-ID index")
	}
	// An old message (from the first backup's run) and the new one.
	var old string
	for rel, f := range want {
		if f.IsMail {
			data, err := os.ReadFile(filepath.Join(src, rel))
			if err != nil {
				t.Fatal(err)
			}
			if id := messageIDOf(data); id != "" {
				old = id
				break
			}
		}
	}
	if old == "" {
		t.Fatal("no message of the corpus has a Message-ID")
	}
	for _, tc := range []struct {
		id    string
		files int
	}{
		{"<late-1@example.org>", 2},
		{old, -1}, // as many as the source has
	} {
		target := filepath.Join(t.TempDir(), "out")
		if _, stderr, code := e.cli(t, "--quiet", "restore", "latest", "--message", tc.id, "--target", target); code != 0 {
			t.Fatalf("restore --message %s: exit %d: %s", tc.id, code, stderr)
		}
		got, _ := testutil.ReadTree(t, target)
		wantN := tc.files
		if wantN < 0 {
			wantN = 0
			for rel, f := range want {
				data, _ := os.ReadFile(filepath.Join(src, rel))
				if f.IsMail && messageIDOf(data) == tc.id {
					wantN++
				}
			}
		}
		n := 0
		for rel, f := range got {
			if !f.IsMail {
				continue
			}
			n++
			data, err := os.ReadFile(filepath.Join(src, rel))
			if err != nil || !bytes.Equal(data, f.Content) {
				t.Errorf("restore --message %s: %s differs from the source (%v)", tc.id, rel, err)
			}
		}
		if n != wantN {
			t.Errorf("restore --message %s restored %d messages, want %d", tc.id, n, wantN)
		}
	}
}

// messageIDOf is the Message-ID header of a message, angle brackets
// included, or "".
func messageIDOf(data []byte) string {
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimRight(line, "\r")
		if line == "" {
			return ""
		}
		if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(k, "Message-ID") {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
