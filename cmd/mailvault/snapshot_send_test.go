package main

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/mailvault/mailvault/bench/corpus"
	"github.com/mailvault/mailvault/snapshot"
	"github.com/mailvault/mailvault/snapshot/zfstest"
)

// TestCLIKillDuringSnapshotBackup kills `mailvault backup --snapshot`
// with SIGKILL while it reads its view: the view stays behind (a link
// tree, or a clone and a held snapshot); the next backup removes it,
// backs up and restores the tree.
func TestCLIKillDuringSnapshotBackup(t *testing.T) {
	for _, mode := range []string{"hardlink", "zfs"} {
		t.Run(mode, func(t *testing.T) {
			var src, pool string
			if mode == "zfs" {
				zfstest.Start(t)
				p := zfstest.NewPool(t)
				pool = p.Name
				zfstest.Run(t, "zfs", "create", p.Name+"/mail")
				src = filepath.Join(p.Mount, "mail")
			} else {
				src = filepath.Join(t.TempDir(), "mail")
			}
			if _, err := corpus.Generate(t.Context(), src, corpus.Options{Seed: 43, TargetBytes: 20e6, Domains: 2, UsersPerDomain: 10}); err != nil {
				t.Fatal(err)
			}
			// leftovers lists what views make: link trees and their
			// owner files beside src, clones and mailvault snapshots.
			leftovers := func() []string {
				t.Helper()
				out, _ := filepath.Glob(filepath.Join(filepath.Dir(src), ".mail.mailvault-view-*"))
				if pool != "" {
					for _, n := range strings.Fields(zfstest.Run(t, "zfs", "list", "-H", "-o", "name", "-t", "filesystem,snapshot", "-r", pool)) {
						if strings.Contains(n, "-view") || strings.Contains(n, "@"+snapshot.Prefix) {
							out = append(out, n)
						}
					}
				}
				return out
			}

			var e *cliEnv
			for attempt := 1; ; attempt++ {
				e = newCLIEnv(t)
				e.setPackSize(t, 1<<20)
				if killSnapshotBackup(t, e, mode, src) {
					break
				}
				if attempt == 3 {
					t.Fatal("the backup always finished before it could be killed")
				}
			}
			left := leftovers()
			t.Logf("left by the killed backup: %q", left)
			if len(left) == 0 {
				t.Fatal("the killed backup left nothing behind: the test does not test the cleanup")
			}

			b := e.backup(t, "--snapshot", mode, src)
			if b.Summary.Messages == 0 {
				t.Fatalf("next backup: %+v", b.Summary)
			}
			if got := leftovers(); len(got) != 0 {
				t.Fatalf("left after the next backup: %q", got)
			}
			target := filepath.Join(t.TempDir(), "restored")
			if _, stderr, code := e.cli(t, "restore", "latest", "--target", target); code != 0 {
				t.Fatalf("restore: exit %d: %s", code, stderr)
			}
			sameTree(t, src, target)
		})
	}
}

// killSnapshotBackup starts `mailvault backup --snapshot mode` as a
// process and kills it once it has stored a pack, i.e. while it reads
// its view. It reports false if the backup finished first.
func killSnapshotBackup(t *testing.T, e *cliEnv, mode, src string) bool {
	t.Helper()
	stored := func() bool { return len(e.files(t, "data")) >= 1 }
	return killWhen(t, e, stored, "--quiet", "backup", "--compression", "off", "--snapshot", mode, src) &&
		len(e.files(t, "snapshots")) == 0
}

// TestCLISnapshotSend sends a dataset's mailvault snapshots to a second
// pool with `mailvault snapshot send`: in full, then incrementally; the
// received files match.
func TestCLISnapshotSend(t *testing.T) {
	zfstest.Start(t)
	p, p2 := zfstest.NewPool(t), zfstest.NewPool(t)
	zfstest.Run(t, "zfs", "create", p.Name+"/mail")
	zfstest.Run(t, "zfs", "create", p.Name+"/mail/example.org")
	src := filepath.Join(p.Mount, "mail")
	dest := p2.Name + "/mail"
	write := func(rel, content string) {
		t.Helper()
		path := filepath.Join(src, rel)
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("example.com/alice/Maildir/cur/1.M1.test:2,S", "Subject: 1\r\n\r\none\r\n")
	write("example.org/bob/Maildir/new/2.M2.test", "Subject: 2\r\n\r\ntwo\r\n")

	type sendJSON struct {
		Snapshot    string                 `json:"snapshot"`
		Incremental bool                   `json:"incremental"`
		Bytes       int64                  `json:"bytes"`
		Datasets    []snapshot.SentDataset `json:"datasets"`
	}
	for i, incremental := range []bool{false, true} {
		if i > 0 {
			write("example.org/bob/Maildir/new/3.M3.test", "Subject: 3\r\n\r\nthree\r\n")
		}
		took := takeSnapshot(t, src)
		out, stderr, code := runCLI(t, "--json", "snapshot", "send", src, "--to", dest)
		if code != 0 {
			t.Fatalf("snapshot send: exit %d: %s", code, stderr)
		}
		var res sendJSON
		if err := json.Unmarshal([]byte(out), &res); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		t.Logf("send %d: %s", i, out)
		if res.Snapshot != took || res.Incremental != incremental || res.Bytes <= 0 || len(res.Datasets) != 2 {
			t.Fatalf("send %d: %+v, want %s sent (incremental %v) in 2 datasets", i, res, took, incremental)
		}
		sameTree(t, src, filepath.Join(p2.Mount, "mail"))
	}
	if _, stderr, code := runCLI(t, "snapshot", "send", src); code != exitUsage {
		t.Fatalf("send without --to: exit %d, want %d: %s", code, exitUsage, stderr)
	}

	// The second pool counts as a copy (medium zfs) in `mailvault status`,
	// read from the real received datasets; with the live mail that makes
	// two copies, so the 3-2-1 rule still fails, and says why.
	file := targetsFile(t, src, fmt.Sprintf("{name: pool2, zfs: %s, location: offsite, max_age: 1h}", dest))
	rep, stderr, code := status(t, file)
	if code != exitRuleFails || !strings.Contains(stderr, "only 2 copies (need 3)") {
		t.Errorf("status: exit %d, want %d: %s", code, exitRuleFails, stderr)
	}
	row := statusRow(t, rep, "pool2")
	if !row.Counts || row.Medium != "zfs" || row.Snapshots != 2 || row.Newest == nil {
		t.Errorf("pool2 = %+v, want a counting zfs copy with 2 snapshots", row)
	}
	// Its size is the received dataset's used bytes, as zfs reports them
	// (about the mail received; pools of zfs-fuse hold little else).
	used, err := strconv.ParseInt(strings.TrimSpace(zfstest.Run(t, "zfs", "get", "-H", "-p", "-o", "value", "used", dest)), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	if row.Bytes != used || used <= 0 {
		t.Errorf("pool2 reports %d bytes, zfs says the dataset uses %d", row.Bytes, used)
	}
	table, _, _ := runCLI(t, "status", "--targets", file)
	t.Logf("status:\n%s", table)
	if !strings.Contains(table, humanBytes(used)) {
		t.Errorf("the status table does not show pool2's %s:\n%s", humanBytes(used), table)
	}
	if v := rep.Rule; v.Copies != 2 || len(v.Media) != 2 || v.Offsite != 1 {
		t.Errorf("rule = %+v, want 2 copies on 2 media, 1 offsite", v)
	}
}

// TestCLIKillDuringSnapshotSend kills (SIGKILL) `mailvault snapshot send`
// and its `zfs receive` midway through the stream, of a full send and of
// an incremental one, and sends again at once: the next send releases the
// dead send's holds on the source, finds the destination as it was before
// (ZFS discards an interrupted receive; a partial dataset it has not
// discarded yet is marked as the dead send's and waited for, or
// destroyed), and sends the snapshot whole.
func TestCLIKillDuringSnapshotSend(t *testing.T) {
	zfstest.Start(t)
	for _, incremental := range []bool{false, true} {
		t.Run(fmt.Sprintf("incremental=%v", incremental), func(t *testing.T) {
			p, p2 := zfstest.NewPool(t), zfstest.NewPool(t)
			zfstest.Run(t, "zfs", "create", p.Name+"/mail")
			zfstest.Run(t, "zfs", "create", p.Name+"/mail/example.org")
			src := filepath.Join(p.Mount, "mail")
			dest := p2.Name + "/mail"
			write := func(rel string, content []byte) {
				t.Helper()
				path := filepath.Join(src, rel)
				if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, content, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			take := func() string { return takeSnapshot(t, src) }
			write("example.org/bob/Maildir/new/1.M1.test", []byte("Subject: 1\r\n\r\none\r\n"))
			if incremental {
				take()
				if _, stderr, code := runCLI(t, "snapshot", "send", src, "--to", dest); code != 0 {
					t.Fatalf("first send: exit %d: %s", code, stderr)
				}
			}
			// A message big enough (zfs-fuse sends ~100 MB/s) for the
			// stream to be cut midway.
			big := make([]byte, 128<<20)
			rand.Read(big)
			write("example.com/alice/Maildir/cur/2.M2.test:2,S", append([]byte("Subject: 2\r\n\r\n"), big...))
			snap := take()

			used := func() int64 {
				t.Helper()
				n, err := strconv.ParseInt(strings.TrimSpace(zfstest.Run(t, "zfs", "get", "-H", "-p", "-o", "value", "used", p2.Name)), 10, 64)
				if err != nil {
					t.Fatal(err)
				}
				return n
			}
			before := used()
			cmd := exec.CommandContext(t.Context(), os.Args[0], "snapshot", "send", src, "--to", dest)
			cmd.Env = append(os.Environ(), "MAILVAULT_CLI_TEST_MAIN=1")
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			// Kill once 8 MiB arrived and receive runs: midway.
			var recv int
			for recv == 0 || used()-before < 8<<20 {
				select {
				case err := <-exited:
					t.Fatalf("the send ended before it could be killed (%v): %s", err, stderr.String())
				default:
				}
				if recv == 0 {
					recv = childRunning(t, cmd.Process.Pid, "receive")
				}
			}
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			<-exited
			if err := syscall.Kill(recv, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
				t.Fatal(err)
			}
			t.Logf("killed the send (pid %d) and its zfs receive (pid %d) after %d bytes", cmd.Process.Pid, recv, used()-before)

			// What the kill left: the snapshot held by the dead send, and
			// not on the destination.
			mark := strings.TrimSpace(zfstest.Run(t, "zfs", "get", "-H", "-o", "value", "mailvault:sending", snap))
			if !strings.Contains(mark, fmt.Sprintf("pid=%d ", cmd.Process.Pid)) {
				t.Fatalf("%s: mailvault:sending = %q, want the killed send's", snap, mark)
			}
			_, name, _ := strings.Cut(snap, "@")
			if _, err := zfstest.RunErr(t.Context(), "zfs", "list", dest+"@"+name); err == nil {
				t.Fatalf("%s@%s was received whole: the send was not cut midway", dest, name)
			}
			t.Logf("destination after the kill:\n%s", zfstest.Run(t, "zfs", "list", "-H", "-t", "all", "-o", "name,used,mounted,mailvault:receiving", "-r", p2.Name))

			// The next send, at once.
			out, errOut, code := runCLI(t, "--json", "snapshot", "send", src, "--to", dest)
			if code != 0 {
				t.Fatalf("the next send: exit %d: %s", code, errOut)
			}
			var res snapshot.SendResult
			if err := json.Unmarshal([]byte(out), &res); err != nil {
				t.Fatalf("%v: %s", err, out)
			}
			t.Logf("the next send: %s\ndestination:\n%s", out, zfstest.Run(t, "zfs", "list", "-H", "-t", "all", "-o", "name,used,mounted,mountpoint", "-r", p2.Name))
			released := 0
			for _, lo := range res.Leftovers {
				if lo.Err != "" || lo.Action == "kept" {
					t.Errorf("leftover %+v", lo)
				}
				if lo.Kind == "send-hold" && lo.Action == "released" {
					released++
				}
			}
			// Members are sent one by one, the top first: the kill came
			// while the top's snapshot (and base) were held.
			if want := map[bool]int{false: 1, true: 2}[incremental]; released != want {
				t.Errorf("released %d send holds, want %d", released, want)
			}
			if res.Snapshot != snap || res.Incremental != incremental || len(res.Datasets) != 2 {
				t.Errorf("the next send: %+v", res)
			}
			sameTree(t, src, filepath.Join(p2.Mount, "mail"))

			// No marks left on either side; the source keeps only the
			// sent hold on the snapshot sent.
			for _, pool := range []string{p.Name, p2.Name} {
				for _, l := range strings.Split(strings.TrimSpace(zfstest.Run(t, "zfs", "get", "-H", "-r", "-o", "name,value", "mailvault:sending,mailvault:receiving", pool)), "\n") {
					if f := strings.Split(l, "\t"); len(f) != 2 || f[1] != "-" {
						t.Errorf("mark left: %q", l)
					}
				}
			}
			for _, m := range []string{snap, p.Name + "/mail/example.org@" + name} {
				if refs := strings.TrimSpace(zfstest.Run(t, "zfs", "get", "-H", "-o", "value", "userrefs", m)); refs != "1" {
					t.Errorf("%s has %s holds, want 1 (%s)", m, refs, snapshot.SentTag(dest))
				}
			}
		})
	}
}

// childRunning returns the PID of a child process of parent whose
// command line holds word, or 0.
func childRunning(t *testing.T, parent int, word string) int {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// Field 4 (ppid) follows the parenthesised command name.
		i := bytes.LastIndexByte(stat, ')')
		if f := strings.Fields(string(stat[i+1:])); i < 0 || len(f) < 2 || f[1] != strconv.Itoa(parent) {
			continue
		}
		if cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); bytes.Contains(cmdline, []byte(word)) {
			return pid
		}
	}
	return 0
}

// takeSnapshot runs `snapshot take --json` on path and returns the name of
// the snapshot it took.
func takeSnapshot(t *testing.T, path string) string {
	t.Helper()
	out, stderr, code := runCLI(t, "--json", "snapshot", "take", path)
	if code != 0 {
		t.Fatalf("snapshot take: exit %d: %s", code, stderr)
	}
	var took struct {
		Snapshot string `json:"snapshot"`
	}
	if err := json.Unmarshal([]byte(out), &took); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	return took.Snapshot
}
