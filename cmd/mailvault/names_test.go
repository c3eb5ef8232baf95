package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCLIBackslashNames is issue 9's report as the admin ran it: Dovecot's
// own escaped unique names (\057, \072) and a folder with a backslash back
// up, restore, check clean, and the next backup and prune work.
func TestCLIBackslashNames(t *testing.T) {
	src := filepath.Join(t.TempDir(), "mail")
	maildir := filepath.Join(src, "example.com", "alice", "Maildir")
	for _, d := range []string{"", `.Back\slash`} {
		for _, sub := range []string{"cur", "new", "tmp"} {
			if err := os.MkdirAll(filepath.Join(maildir, d, sub), 0o700); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, n := range []string{`cur/1700000010.M10P10Q1%d.host\057name:2,S`, `cur/1700000011.M10P10Q1%d.host\072name:2,S`} {
		for i, d := range []string{"", `.Back\slash`} {
			n := fmt.Sprintf(n, i)
			body := "Subject: " + d + n + "\n\nbody\n"
			if err := os.WriteFile(filepath.Join(maildir, d, n), []byte(body), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	e := newCLIEnv(t)
	if b := e.backup(t, src); b.Summary.Messages != 4 || len(b.Warnings) > 0 {
		t.Fatalf("backup: %d messages, warnings %q; want 4 and none", b.Summary.Messages, b.Warnings)
	}
	target := filepath.Join(t.TempDir(), "restored")
	if _, stderr, code := e.cli(t, "restore", "latest", "--target", target); code != 0 {
		t.Fatalf("restore: exit %d: %s", code, stderr)
	}
	sameTree(t, src, filepath.Join(target))
	if res, code := e.check(t, true); code != 0 || !res.OK() {
		t.Fatalf("check: exit %d: %+v", code, res.Errors)
	}
	if b := e.backup(t, src); b.Summary.MessagesNew != 0 {
		t.Errorf("second backup read %d messages, want 0", b.Summary.MessagesNew)
	}
	if _, stderr, code := e.cli(t, "prune", "--dry-run"); code != 0 {
		t.Errorf("prune: exit %d: %s", code, stderr)
	}
	if out, stderr, code := e.cli(t, "snapshots"); code != 0 || !strings.Contains(out, "2 snapshots") {
		t.Errorf("snapshots: exit %d: %s%s", code, out, stderr)
	}
}

// TestCLILatestDamaged: when the newest snapshot file is damaged, restore
// and ls of "latest" fail, naming it, instead of quietly using the one
// before (issue 9, defect 3); the one before still works by its ID.
func TestCLILatestDamaged(t *testing.T) {
	src := genCorpus(t, 9, 2e5)
	e := newCLIEnv(t)
	first := e.backup(t, src)
	os.WriteFile(filepath.Join(src, "example.com", "new-file"), []byte("x"), 0o600)
	second := e.backup(t, src)
	p := filepath.Join(e.repo, "snapshots", second.Snapshot.String())
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 1
	os.WriteFile(p, data, 0o600)
	for _, args := range [][]string{
		{"restore", "latest", "--target", filepath.Join(t.TempDir(), "r")},
		{"ls", "latest"},
	} {
		stdout, stderr, code := e.cli(t, args...)
		if code == 0 || !strings.Contains(stderr, second.Snapshot.Short()) || !strings.Contains(stderr, first.Snapshot.Short()) {
			t.Errorf("%s: exit %d, want a failure naming %s and %s:\n%s%s", args[0], code, second.Snapshot.Short(), first.Snapshot.Short(), stdout, stderr)
		}
	}
	target := filepath.Join(t.TempDir(), "r")
	if _, stderr, code := e.cli(t, "restore", first.Snapshot.Short(), "--target", target); code != 0 {
		t.Errorf("restore by ID: exit %d: %s", code, stderr)
	}
}
