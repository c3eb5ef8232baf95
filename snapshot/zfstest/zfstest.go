// Package zfstest gives tests a real ZFS: it starts Debian's zfs-fuse
// daemon when no ZFS answers, and makes throw-away pools on files.
//
// Outside CI a test skips when no ZFS can be had; with CI=true it fails,
// since CI installs zfs-fuse (scripts/test.sh) and runs as root.
package zfstest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Main runs a package's tests with a ZFS daemon: it starts zfs-fuse if
// zfs does not answer and zfs-fuse is installed, and stops it afterwards
// unless another test process still uses it. Use it from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(zfstest.Main(m)) }
func Main(m *testing.M) int {
	stop, err := ensureDaemon()
	if err != nil {
		// The tests that need ZFS report it (and fail in CI); the
		// others still run.
		fmt.Fprintln(os.Stderr, "zfstest:", err)
	}
	code := m.Run()
	if stop != nil {
		stop()
	}
	return code
}

// zfsAnswers reports whether zfs lists. A listing walks every pool and
// fails (zfs-fuse's zfs even crashes) when another test process destroys
// a pool meanwhile, as snapshot.ZFSTool's listAll explains; taking one
// such failure for a dead daemon would start a second one, or fail the
// test in CI. Only three failures in a row say no.
func zfsAnswers() bool {
	for range 3 {
		if exec.Command("zfs", "list", "-H", "-o", "name").Run() == nil {
			return true
		}
	}
	return false
}

// ensureDaemon makes zfs answer. The returned stop undoes what it did.
func ensureDaemon() (stop func(), err error) {
	// Lock files in the temporary directory let the test processes of
	// several packages (go test runs them in parallel) share one daemon.
	// A shared lock on "users" for as long as this process runs tests;
	// the process that started the daemon stops it only if it can get
	// the lock exclusively, i.e. when no other test process uses it.
	users, err := os.OpenFile(filepath.Join(os.TempDir(), "mailvault-zfstest.users"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(users.Fd()), syscall.LOCK_SH); err != nil {
		users.Close()
		return nil, err
	}
	release := func() { users.Close() }

	// One process at a time decides whether to start the daemon.
	start, err := os.OpenFile(filepath.Join(os.TempDir(), "mailvault-zfstest.start"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return release, err
	}
	defer start.Close()
	if err := syscall.Flock(int(start.Fd()), syscall.LOCK_EX); err != nil {
		return release, err
	}
	if zfsAnswers() {
		return release, nil
	}
	daemon, err := exec.LookPath("zfs-fuse")
	if err != nil {
		return release, fmt.Errorf("no ZFS: zfs does not answer and zfs-fuse is not installed (apt-get install zfs-fuse)")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		return release, fmt.Errorf("no ZFS: zfs-fuse needs /dev/fuse: %w", err)
	}
	pidFile := filepath.Join(os.TempDir(), "mailvault-zfstest-zfs-fuse.pid")
	// zfs-fuse refuses to start, silently (it logs only to syslog), while
	// its pid file exists. A daemon killed with the session that started
	// it leaves one behind in a temporary directory that outlives it.
	removeStalePidFile(pidFile)
	if out, err := exec.Command(daemon, "--no-kstat-mount", "-p", pidFile).CombinedOutput(); err != nil {
		return release, fmt.Errorf("start zfs-fuse: %v: %s", err, out)
	}
	// The daemon forks; it answers once its socket is up. Bounded by
	// count, not by a clock.
	for i := 0; i < 200 && !zfsAnswers(); i++ {
		time.Sleep(50 * time.Millisecond)
	}
	if !zfsAnswers() {
		return release, fmt.Errorf("zfs-fuse started but zfs does not answer")
	}
	return func() {
		if syscall.Flock(int(users.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil {
			stopDaemon(pidFile)
		}
		users.Close()
	}, nil
}

// removeStalePidFile removes the pid file of a daemon that no longer
// answers: if its process is still a zfs-fuse, it is stopped first.
func removeStalePidFile(pidFile string) {
	raw, err := os.ReadFile(pidFile)
	if err != nil {
		return
	}
	if pid, err := strconv.Atoi(strings.TrimSpace(string(raw))); err == nil && pid > 1 {
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if strings.TrimSpace(string(comm)) == "zfs-fuse" {
			stopDaemon(pidFile)
		}
	}
	os.Remove(pidFile)
}

func stopDaemon(pidFile string) {
	raw, err := os.ReadFile(pidFile)
	if err != nil {
		return
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil || pid <= 1 {
		return
	}
	if syscall.Kill(pid, syscall.SIGTERM) != nil {
		return
	}
	for i := 0; i < 200 && syscall.Kill(pid, 0) == nil; i++ {
		time.Sleep(50 * time.Millisecond)
	}
	os.Remove(pidFile)
}

// Pool is a ZFS pool on a file, destroyed when the test ends.
type Pool struct {
	Name  string
	Mount string // where its root dataset is mounted
}

// Require fails the test in CI and skips it elsewhere when zfs does not
// answer.
func Require(t testing.TB) {
	t.Helper()
	if zfsAnswers() {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("zfs does not answer: CI must have ZFS (zfs-fuse is installed by scripts/test.sh and started by zfstest.Main)")
	}
	t.Skip("no ZFS here (install zfs-fuse and run as root)")
}

// NewPool creates a 512 MiB pool on a file in a temporary directory.
func NewPool(t testing.TB) Pool {
	t.Helper()
	Require(t)
	dir := t.TempDir()
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	p := Pool{Name: "mvtest" + hex.EncodeToString(b[:]), Mount: filepath.Join(dir, "mnt")}
	disk := filepath.Join(dir, "disk")
	f, err := os.Create(disk)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(512 << 20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	// No cache file: the pool must not be imported again by a later
	// daemon once its file is gone.
	Run(t, "zpool", "create", "-o", "cachefile=none", "-m", p.Mount, p.Name, disk)
	t.Cleanup(func() {
		// zfs-fuse may answer "busy" to the first tries; unmounting
		// the datasets first, deepest first, helps it along.
		// On a loaded machine it can stay busy for seconds, so the
		// unmounts are repeated now and then while the destroy is retried.
		unmountAll := func(log bool) {
			out, _ := RunErr(context.Background(), "zfs", "list", "-H", "-o", "name", "-t", "filesystem", "-r", p.Name)
			names := strings.Fields(out)
			for i := len(names) - 1; i >= 0; i-- {
				if _, err := RunErr(context.Background(), "zfs", "umount", "-f", names[i]); err != nil && log {
					t.Logf("cleanup: %v", err)
				}
			}
		}
		unmountAll(true)
		var err error
		for i := 1; i <= 300; i++ {
			if _, err = RunErr(context.Background(), "zpool", "destroy", "-f", p.Name); err == nil {
				return
			}
			if i%20 == 0 {
				unmountAll(false)
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Errorf("zpool destroy %s: %v", p.Name, err)
	})
	return p
}

// Run runs a command and fails the test if it fails; it returns stdout.
func Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := RunErr(t.Context(), name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// RunErr runs a command and returns its stdout, or an error with stderr.
func RunErr(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, stderr.String())
	}
	return string(out), nil
}

// Start is Main for one test, in test binaries whose TestMain is not
// Main: it starts zfs-fuse when zfs does not answer, and stops it when
// the test ends unless another test process still uses it. Like Require,
// it skips the test outside CI when no ZFS can be had.
func Start(t testing.TB) {
	t.Helper()
	stop, err := ensureDaemon()
	if stop != nil {
		t.Cleanup(stop)
	}
	if err != nil {
		t.Logf("zfstest: %v", err)
	}
	Require(t)
}
