package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBackupSnapshotFlag backs up through each non-ZFS view mode: the
// snapshot records the original path, the second backup finds the first
// as parent, hooks run around the instant, and no link tree is left.
func TestBackupSnapshotFlag(t *testing.T) {
	tests := []struct {
		name string
		args []string
		code int
	}{
		{"none", []string{"--snapshot", "none"}, exitOK},
		{"hardlink", []string{"--snapshot", "hardlink"}, exitOK},
		{"hardlink with hooks", []string{"--snapshot", "hardlink", "--snapshot-pre", "echo pre >> $HOOKLOG", "--snapshot-post", "echo post >> $HOOKLOG"}, exitOK},
		{"unknown mode", []string{"--snapshot", "lvm"}, exitUsage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newCLIEnv(t)
			dir := t.TempDir()
			t.Setenv("HOOKLOG", filepath.Join(dir, "hooks"))
			src := filepath.Join(dir, "mail")
			for _, sub := range []string{"cur", "new", "tmp"} {
				if err := os.MkdirAll(filepath.Join(src, "example.com", "alice", "Maildir", sub), 0o700); err != nil {
					t.Fatal(err)
				}
			}
			msg := filepath.Join(src, "example.com", "alice", "Maildir", "cur", "1.M1P1.test,S=20:2,S")
			if err := os.WriteFile(msg, []byte("Subject: x\r\n\r\nhello\r\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			var ids []string
			for range 2 {
				out, stderr, code := runCLI(t, e.args(append([]string{"--json", "backup"}, append(tt.args, src)...)...)...)
				if code != tt.code {
					t.Fatalf("backup: exit %d, want %d: %s", code, tt.code, stderr)
				}
				if code != exitOK {
					return
				}
				var res struct {
					Snapshot string  `json:"snapshot"`
					Parent   *string `json:"parent"`
				}
				if err := json.Unmarshal([]byte(out), &res); err != nil {
					t.Fatalf("%v: %s", err, out)
				}
				if len(ids) == 1 && (res.Parent == nil || *res.Parent != ids[0]) {
					t.Errorf("second backup's parent = %v, want %s", res.Parent, ids[0])
				}
				ids = append(ids, res.Snapshot)
			}
			out, _, code := runCLI(t, e.args("--json", "snapshots")...)
			if code != exitOK || !strings.Contains(out, `"`+src+`"`) {
				t.Fatalf("snapshots (exit %d) do not record %s: %s", code, src, out)
			}
			if left, _ := filepath.Glob(filepath.Join(dir, ".mail.mailvault-view-*")); len(left) != 0 {
				t.Fatalf("link trees left: %q", left)
			}
			if strings.Contains(tt.name, "hooks") {
				got, _ := os.ReadFile(filepath.Join(dir, "hooks"))
				if string(got) != "pre\npost\npre\npost\n" {
					t.Fatalf("hooks ran as %q", got)
				}
			}
		})
	}
}
