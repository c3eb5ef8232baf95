package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/mailvault/mailvault/archive"
	"github.com/mailvault/mailvault/archive/local"
	"github.com/mailvault/mailvault/bench/corpus"
	"github.com/mailvault/mailvault/internal/testutil"
)

// TestMain lets the test binary act as the mailvault command, so that
// tests can run it as a separate process (and kill it) without a go build.
func TestMain(m *testing.M) {
	if os.Getenv("MAILVAULT_CLI_TEST_MAIN") == "1" {
		os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
	}
	for _, v := range []string{"MAILVAULT_REPO", "MAILVAULT_PASSWORD", "MAILVAULT_PASSWORD_FILE", "MAILVAULT_IDENTITY"} {
		os.Unsetenv(v)
	}
	// Every command keeps its repository's index table in the cache, a
	// local directory's too: keep the tests' out of the user's cache.
	cacheHome, err := os.MkdirTemp("", "mailvault-cli-test-cache-")
	if err != nil {
		panic(err)
	}
	os.Setenv("XDG_CACHE_HOME", cacheHome)
	code := m.Run()
	os.RemoveAll(cacheHome)
	os.Exit(code)
}

// cliEnv is a repository and an identity file that opens it.
type cliEnv struct {
	repo, identity string
}

func newCLIEnv(t *testing.T) *cliEnv {
	t.Helper()
	dir := t.TempDir()
	e := &cliEnv{repo: filepath.Join(dir, "repo"), identity: filepath.Join(dir, "key.txt")}
	id := newIdentityFile(t, e.identity)
	if _, stderr, code := runCLI(t, "--repo", e.repo, "init", "--recipient", id.Recipient().String()); code != 0 {
		t.Fatalf("init: exit %d: %s", code, stderr)
	}
	return e
}

// args prepends the repository and identity flags.
func (e *cliEnv) args(args ...string) []string {
	return append([]string{"--repo", e.repo, "--identity", e.identity}, args...)
}

// cli runs a command in this process.
func (e *cliEnv) cli(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return runCLI(t, e.args(args...)...)
}

func runCLI(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, strings.NewReader(""), &out, &errb)
	return out.String(), errb.String(), code
}

// process returns the command as a separate process of the test binary.
func (e *cliEnv) process(t *testing.T, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(t.Context(), os.Args[0], e.args(args...)...)
	// One thread: slow enough to be killed at a chosen moment.
	cmd.Env = append(os.Environ(), "MAILVAULT_CLI_TEST_MAIN=1", "GOMAXPROCS=1")
	return cmd
}

// setPackSize rewrites the plaintext config so that small corpora fill
// several packs.
func (e *cliEnv) setPackSize(t *testing.T, size int64) {
	t.Helper()
	testutil.SetPackSize(t, local.New(e.repo), size)
}

// files lists the repository's files of one kind (packs: all subdirs),
// skipping temporary files of interrupted writes.
func (e *cliEnv) files(t *testing.T, kind string) []string {
	t.Helper()
	var out []string
	root := filepath.Join(e.repo, kind)
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() && !strings.HasPrefix(d.Name(), ".tmp-") {
			out = append(out, p)
		}
		return nil
	})
	return out
}

type backupJSON struct {
	Snapshot archive.ID      `json:"snapshot"`
	Summary  archive.Summary `json:"summary"`
	Warnings []string        `json:"warnings"`
}

func (e *cliEnv) backup(t *testing.T, args ...string) backupJSON {
	t.Helper()
	stdout, stderr, code := e.cli(t, append([]string{"--json", "backup"}, args...)...)
	if code != 0 {
		t.Fatalf("backup: exit %d: %s", code, stderr)
	}
	var b backupJSON
	if err := json.Unmarshal([]byte(stdout), &b); err != nil {
		t.Fatalf("backup output: %v\n%s", err, stdout)
	}
	return b
}

func (e *cliEnv) check(t *testing.T, readData bool) (archive.CheckResult, int) {
	t.Helper()
	args := []string{"--json", "check"}
	if readData {
		args = append(args, "--read-data")
	}
	stdout, stderr, code := e.cli(t, args...)
	var res archive.CheckResult
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatalf("check: exit %d: %v\n%s\n%s", code, err, stdout, stderr)
	}
	return res, code
}

func genCorpus(t *testing.T, seed uint64, size int64) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "mail")
	if _, err := corpus.Generate(t.Context(), dir, corpus.Options{Seed: seed, TargetBytes: size, Domains: 2, UsersPerDomain: 10}); err != nil {
		t.Fatal(err)
	}
	return dir
}

// killBackup starts `mailvault backup` as a process and kills it with
// SIGKILL once packs pack files are stored (0: once it holds its lock).
// It reports false if the backup got as far as writing its index first.
func killBackup(t *testing.T, e *cliEnv, src string, packs int) bool {
	t.Helper()
	stored := func() bool {
		if packs == 0 {
			return len(e.files(t, "locks")) > 0
		}
		return len(e.files(t, "data")) >= packs
	}
	return killWhen(t, e, stored, "--quiet", "backup", "--compression", "off", src) &&
		len(e.files(t, "index")) == 0 && len(e.files(t, "snapshots")) == 0
}

// killedCopy copies base's repository into a new environment and runs
// `mailvault args...` on it, killed with SIGKILL once ready says so. When
// the command finished before the poll saw the point, it tries again with
// a fresh copy, five times at most.
func killedCopy(t *testing.T, base *cliEnv, point string, ready func(e *cliEnv) bool, args ...string) *cliEnv {
	t.Helper()
	for attempt := 1; ; attempt++ {
		e := &cliEnv{repo: filepath.Join(t.TempDir(), "repo"), identity: base.identity}
		if err := os.CopyFS(e.repo, os.DirFS(base.repo)); err != nil {
			t.Fatal(err)
		}
		if killWhen(t, e, func() bool { return ready(e) }, args...) {
			return e
		}
		if attempt == 5 {
			t.Fatalf("%v always finished before it could be killed at %q", args, point)
		}
	}
}

// killWhen starts `mailvault args...` on e as a process and kills it with
// SIGKILL as soon as ready reports true. It reports false if the process
// ended first, and fails the test if it failed.
func killWhen(t *testing.T, e *cliEnv, ready func() bool, args ...string) bool {
	t.Helper()
	cmd := e.process(t, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	for !ready() {
		select {
		case err := <-exited:
			if err != nil {
				t.Fatalf("mailvault %s failed: %v: %s", strings.Join(args, " "), err, stderr.String())
			}
			return false
		case <-time.After(time.Millisecond):
		}
	}
	// The process may finish between the poll and the kill: then
	// Signal says so, or reaches a process already exiting, which exits
	// 0. Either way nothing was killed, and the caller tries again.
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Fatal(err)
	}
	err := <-exited
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
			return true
		}
	}
	if err != nil {
		t.Fatalf("mailvault %s failed: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	return false
}

// restoreLatest restores the latest snapshot into a new directory and
// returns it.
func (e *cliEnv) restoreLatest(t *testing.T) string {
	t.Helper()
	got := filepath.Join(t.TempDir(), "restored")
	if _, stderr, code := e.cli(t, "restore", "latest", "--target", got); code != 0 {
		t.Fatalf("restore latest: exit %d: %s", code, stderr)
	}
	return got
}

// sameTree asserts that got holds exactly the files and directories of
// want, with the same contents and mtimes.
func sameTree(t *testing.T, want, got string) {
	t.Helper()
	testutil.CompareTrees(t, want, got)
}

// TestCLIKillDuringBackup kills `mailvault backup` with SIGKILL at several
// moments: the repository must check clean (only warnings about the
// packs left unindexed), hold no snapshot, and the next backup must adopt
// the orphaned packs — storing less than a fresh backup — and restore.
func TestCLIKillDuringBackup(t *testing.T) {
	src := genCorpus(t, 41, 20e6)

	// What a backup stores from scratch.
	fresh := newCLIEnv(t)
	fresh.setPackSize(t, 1<<20)
	full := fresh.backup(t, "--compression", "off", src)
	totalPacks := len(fresh.files(t, "data"))
	if totalPacks < 8 {
		t.Fatalf("a full backup writes only %d packs; the corpus is too small to kill it midway", totalPacks)
	}

	tests := []struct {
		name  string
		packs int // kill once this many packs are stored; 0: once the lock is taken
	}{
		{"after lock", 0},
		{"after 1 pack", 1},
		{"after half the packs", totalPacks / 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var e *cliEnv
			// Kill the backup; a backup that gets as far as its index
			// before the signal lands is a miss (the machine was slow to
			// poll), and the attempt is repeated.
			for attempt := 1; ; attempt++ {
				e = newCLIEnv(t)
				e.setPackSize(t, 1<<20)
				if killBackup(t, e, src, tc.packs) {
					break
				}
				if attempt == 3 {
					t.Fatalf("the backup always finished before it could be killed after %d packs", tc.packs)
				}
			}
			if n := len(e.files(t, "snapshots")); n != 0 {
				t.Fatalf("killed backup left %d snapshots", n)
			}
			orphans := len(e.files(t, "data"))
			if orphans < tc.packs {
				t.Fatalf("%d packs after the kill, want at least %d", orphans, tc.packs)
			}

			for _, readData := range []bool{false, true} {
				res, code := e.check(t, readData)
				if code != 0 || !res.OK() {
					t.Fatalf("check (read data %v): exit %d, errors %+v", readData, code, res.Errors)
				}
				if len(res.Warnings) != orphans {
					t.Errorf("check warns %d times for %d unindexed packs: %q", len(res.Warnings), orphans, res.Warnings)
				}
			}

			next := e.backup(t, "--compression", "off", src)
			if next.Summary.BytesRead != full.Summary.BytesRead {
				t.Errorf("next backup read %d bytes, want everything (%d)", next.Summary.BytesRead, full.Summary.BytesRead)
			}
			if orphans > 0 && next.Summary.BytesStored >= full.Summary.BytesStored {
				t.Errorf("next backup stored %d bytes, a fresh one %d: the %d orphaned packs were not adopted", next.Summary.BytesStored, full.Summary.BytesStored, orphans)
			}
			res, code := e.check(t, true)
			if code != 0 || !res.OK() || len(res.Warnings) != 0 || res.Snapshots != 1 {
				t.Fatalf("check after the next backup: exit %d, %+v", code, res)
			}
			target := filepath.Join(t.TempDir(), "restored")
			if _, stderr, code := e.cli(t, "restore", "latest", "--target", target); code != 0 {
				t.Fatalf("restore: exit %d: %s", code, stderr)
			}
			sameTree(t, src, target)
		})
	}
}

// unreadableEntry adds, below src, a message whose absolute path exceeds
// PATH_MAX: no system call accepts it, even from root (mode 000 does not
// stop root), so the backup cannot read it. It returns that path.
func unreadableEntry(t *testing.T, src string) string {
	t.Helper()
	md, dir := testutil.DeepMaildir(t, src)
	name := "cur/1772445605.M1P1Q1." + strings.Repeat("x", 220) + ",S=20:2,S"
	if err := md.WriteFile(name, []byte("Subject: hi\n\nhello\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir + "/" + name
}

// TestCLIExitCodes checks the documented exit codes and that the messages
// beside them name what is wrong.
func TestCLIExitCodes(t *testing.T) {
	src := genCorpus(t, 42, 1e6)
	other, _ := age.GenerateX25519Identity()
	otherKey := filepath.Join(t.TempDir(), "other.txt")
	os.WriteFile(otherKey, []byte(other.String()+"\n"), 0o600)

	tests := []struct {
		name string
		// setup prepares a fresh repository (with one backup of src)
		// and returns the command line and what the output must say.
		setup    func(t *testing.T, e *cliEnv) (args []string, says []string)
		wantCode int
	}{
		{"ok", func(t *testing.T, e *cliEnv) ([]string, []string) {
			return e.args("check", "--read-data"), []string{"0 errors"}
		}, exitOK},
		{"usage", func(t *testing.T, e *cliEnv) ([]string, []string) {
			return e.args("backup", "--no-such-flag", src), []string{"unknown flag"}
		}, exitUsage},
		{"partial backup", func(t *testing.T, e *cliEnv) ([]string, []string) {
			dir := filepath.Join(t.TempDir(), "src")
			os.MkdirAll(dir, 0o700)
			bad := unreadableEntry(t, dir)
			return e.args("backup", dir), []string{"warning: " + bad, "partial"}
		}, exitPartial},
		{"unknown command", func(t *testing.T, e *cliEnv) ([]string, []string) {
			return e.args("nosuch"), []string{"unknown command", "--help"}
		}, exitUsage},
		{"missing argument", func(t *testing.T, e *cliEnv) ([]string, []string) {
			return e.args("restore"), []string{"accepts 1 arg", "restore --help"}
		}, exitUsage},
		{"no repository", func(t *testing.T, e *cliEnv) ([]string, []string) {
			return []string{"--repo", t.TempDir(), "--identity", e.identity, "snapshots"}, []string{"no repository"}
		}, exitNoRepo},
		{"locked", func(t *testing.T, e *cliEnv) ([]string, []string) {
			raw, _ := json.Marshal(archive.LockInfo{Time: time.Now(), Exclusive: true, Host: "elsewhere.invalid", PID: 4242})
			os.WriteFile(filepath.Join(e.repo, "locks", fmt.Sprintf("%064x", 7)), raw, 0o600)
			return e.args("backup", src), []string{"locked", "elsewhere.invalid"}
		}, exitLocked},
		{"wrong key", func(t *testing.T, e *cliEnv) ([]string, []string) {
			return []string{"--repo", e.repo, "--identity", otherKey, "snapshots"}, []string{"wrong password or identity"}
		}, exitWrongKey},
		{"damaged pack", func(t *testing.T, e *cliEnv) ([]string, []string) {
			packs := e.files(t, "data")
			data, _ := os.ReadFile(packs[0])
			data[len(data)/2] ^= 1
			os.WriteFile(packs[0], data, 0o600)
			return e.args("check", "--read-data"), []string{"error: pack " + filepath.Base(packs[0]), "affects snapshot"}
		}, exitCheckFailed},
		{"damaged index", func(t *testing.T, e *cliEnv) ([]string, []string) {
			idx := e.files(t, "index")
			data, _ := os.ReadFile(idx[0])
			data[len(data)/2] ^= 1
			os.WriteFile(idx[0], data, 0o600)
			return e.args("check"), []string{"error: index", filepath.Base(idx[0])}
		}, exitCheckFailed},
		{"damaged pack, restore", func(t *testing.T, e *cliEnv) ([]string, []string) {
			packs := e.files(t, "data")
			for _, p := range packs {
				data, _ := os.ReadFile(p)
				data[len(data)/2] ^= 1
				os.WriteFile(p, data, 0o600)
			}
			return e.args("restore", "latest", "--target", t.TempDir()), []string{"damaged", "not restored", "  folder "}
		}, exitIncomplete},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newCLIEnv(t)
			e.backup(t, src)
			args, says := tc.setup(t, e)
			stdout, stderr, code := runCLI(t, args...)
			if code != tc.wantCode {
				t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.wantCode, stdout, stderr)
			}
			for _, s := range says {
				if !strings.Contains(stdout+stderr, s) {
					t.Errorf("output does not say %q:\nstdout: %s\nstderr: %s", s, stdout, stderr)
				}
			}
		})
	}
}

// newIdentityFile writes a fresh age identity to path (mode 0600), as
// `age-keygen -o path` would.
func newIdentityFile(t *testing.T, path string) *age.X25519Identity {
	t.Helper()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(id.String()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return id
}
