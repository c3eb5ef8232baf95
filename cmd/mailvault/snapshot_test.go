package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailvault/mailvault/bench/corpus"
	"github.com/mailvault/mailvault/snapshot"
	"github.com/mailvault/mailvault/snapshot/zfstest"
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

// TestCLISnapshotCleansLinkTrees kills `backup --snapshot hardlink`
// (SIGKILL) of mail in a ZFS dataset, and of a directory in the mail,
// while it reads its link tree (hard links need the tree on the mail's
// file system: the mail is a directory of the dataset): `snapshot take` and `snapshot prune` (not with
// --dry-run) remove the trees left beside PATH and in PATH, before the
// snapshot could keep them.
func TestCLISnapshotCleansLinkTrees(t *testing.T) {
	zfstest.Start(t)
	for _, cmd := range []string{"take", "prune"} {
		t.Run(cmd, func(t *testing.T) {
			p := zfstest.NewPool(t)
			zfstest.Run(t, "zfs", "create", p.Name+"/mail")
			src := filepath.Join(p.Mount, "mail", "vmail")
			if _, err := corpus.Generate(t.Context(), src, corpus.Options{Seed: 44, TargetBytes: 20e6, Domains: 2, UsersPerDomain: 10}); err != nil {
				t.Fatal(err)
			}
			domains, err := os.ReadDir(src)
			if err != nil || len(domains) == 0 {
				t.Fatalf("corpus: %v", err)
			}
			trees := func() []string {
				t.Helper()
				beside, _ := filepath.Glob(filepath.Join(p.Mount, "mail", ".vmail.mailvault-view-*"))
				in, _ := filepath.Glob(filepath.Join(src, ".*.mailvault-view-*"))
				return append(beside, in...)
			}
			// One backup of PATH (its tree goes beside PATH), one of a
			// directory in it (its tree goes in PATH).
			for _, path := range []string{src, filepath.Join(src, domains[0].Name())} {
				killed := false
				for attempt := 0; attempt < 3 && !killed; attempt++ {
					e := newCLIEnv(t)
					e.setPackSize(t, 1<<20)
					killed = killSnapshotBackup(t, e, "hardlink", path)
				}
				if !killed {
					t.Fatal("the backup always finished before it could be killed")
				}
			}
			left := trees()
			if len(left) != 4 { // two trees, two owner files
				t.Fatalf("the killed backups left %q, want two trees and their owner files", left)
			}
			zfstest.Run(t, "zfs", "snapshot", p.Name+"/mail@"+snapshot.SnapshotName(time.Now().Add(-time.Hour)))
			if cmd == "prune" {
				if _, stderr, code := runCLI(t, "snapshot", "prune", "--dry-run", src); code != 0 {
					t.Fatalf("prune --dry-run: exit %d: %s", code, stderr)
				}
				if got := trees(); len(got) != 4 {
					t.Fatalf("prune --dry-run removed link trees: left %q", got)
				}
			}
			out, stderr, code := runCLI(t, "--json", "snapshot", cmd, src)
			if code != 0 {
				t.Fatalf("snapshot %s: exit %d: %s", cmd, code, stderr)
			}
			var res struct {
				Leftovers []snapshot.Leftover `json:"leftovers_cleaned"`
			}
			if err := json.Unmarshal([]byte(out), &res); err != nil {
				t.Fatalf("%v: %s", err, out)
			}
			removed := 0
			for _, lo := range res.Leftovers {
				if lo.Kind == "link-tree" && lo.Action == "removed" && lo.Err == "" {
					removed++
				}
			}
			if removed != 2 {
				t.Errorf("snapshot %s cleaned %+v, want 2 link trees removed", cmd, res.Leftovers)
			}
			if got := trees(); len(got) != 0 {
				t.Errorf("left after snapshot %s: %q", cmd, got)
			}
		})
	}
}
