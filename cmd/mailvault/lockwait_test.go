package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailvault/mailvault/archive"
)

// syncBuffer is a bytes.Buffer that a running command writes while the
// test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// foreignLock writes a lock file as another host's live process would.
func (e *cliEnv) foreignLock(t *testing.T, exclusive bool) string {
	t.Helper()
	raw, err := json.Marshal(archive.LockInfo{Time: time.Now(), Exclusive: exclusive, Host: "elsewhere.invalid", PID: 4242})
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(e.repo, "locks", fmt.Sprintf("%064x", 7))
	if err := os.WriteFile(p, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestCLIWaitLock: a backup that meets a prune's exclusive lock waits with
// --wait-lock, says so once, and runs when the lock goes; a prune that
// meets a backup's lock that stays exits 11 after the wait, naming the
// holder, and leaves no lock of its own. (Tries and pauses are counted
// in archive's TestLockWait*, on a fake clock.)
func TestCLIWaitLock(t *testing.T) {
	src := genCorpus(t, 7, 3e5)

	t.Run("released", func(t *testing.T) {
		e := newCLIEnv(t)
		lock := e.foreignLock(t, true)
		var stdout, stderr syncBuffer
		done := make(chan int, 1)
		go func() {
			done <- run(e.args("--json", "--wait-lock", "10m", "backup", src), strings.NewReader(""), &stdout, &stderr)
		}()
		// Wait for the backup to say it waits (or to end): only then is
		// the lock's removal sure to happen while it waits.
		for !strings.Contains(stderr.String(), "waiting up to 10m0s") {
			select {
			case code := <-done:
				t.Fatalf("backup ended (exit %d) without waiting: %s", code, stderr.String())
			case <-time.After(10 * time.Millisecond):
			}
		}
		if err := os.Remove(lock); err != nil {
			t.Fatal(err)
		}
		if code := <-done; code != exitOK {
			t.Fatalf("backup with --wait-lock after the lock went: exit %d\n%s", code, stderr.String())
		}
		var b backupJSON
		if err := json.Unmarshal([]byte(stdout.String()), &b); err != nil || b.Summary.Messages == 0 {
			t.Errorf("backup output: %v\n%s", err, stdout.String())
		}
		if n := strings.Count(stderr.String(), "waiting up to"); n != 1 {
			t.Errorf("said it waits %d times, want once:\n%s", n, stderr.String())
		}
		if locks := e.files(t, "locks"); len(locks) != 0 {
			t.Errorf("lock files left: %v", locks)
		}
	})

	t.Run("held", func(t *testing.T) {
		e := newCLIEnv(t)
		e.backup(t, src)
		lock := e.foreignLock(t, false)
		stdout, stderr, code := e.cli(t, "--wait-lock", "2s", "prune")
		if code != exitLocked {
			t.Fatalf("prune against a held lock: exit %d, want %d\nstdout: %s\nstderr: %s", code, exitLocked, stdout, stderr)
		}
		for _, want := range []string{"waiting up to 2s", "shared lock held by PID 4242 on elsewhere.invalid", "after waiting 2s"} {
			if !strings.Contains(stderr, want) {
				t.Errorf("stderr does not say %q:\n%s", want, stderr)
			}
		}
		if locks := e.files(t, "locks"); len(locks) != 1 || locks[0] != lock {
			t.Errorf("lock files %v, want only the backup's", locks)
		}
		// Without --wait-lock: exit 11 at once, as before.
		if _, stderr, code := e.cli(t, "prune"); code != exitLocked || strings.Contains(stderr, "waiting") {
			t.Errorf("prune without --wait-lock: exit %d, %s", code, stderr)
		}
	})

	t.Run("help", func(t *testing.T) {
		for _, cmd := range []string{"backup", "prune", "forget", "check", "copy", "maintain", "repair"} {
			stdout, _, _ := runCLI(t, cmd, "--help")
			if !strings.Contains(stdout, "--wait-lock duration") {
				t.Errorf("%s --help does not list --wait-lock", cmd)
			}
		}
	})
}
