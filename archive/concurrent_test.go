package archive_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/mailvault/mailvault/archive"
)

// TestConcurrentBackups runs two backups at once into one repository, each
// through its own Repository (as two processes would): both succeed, check
// --read-data is clean and both snapshots restore.
func TestConcurrentBackups(t *testing.T) {
	a := genCorpus(t, 31, 2e6)
	b := genCorpus(t, 32, 2e6)
	tests := []struct {
		name string
		srcs [2]string
	}{
		{"same source", [2]string{a, a}},
		{"different sources", [2]string{a, b}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr := newTestRepo(t, 1<<20)
			var wg sync.WaitGroup
			var res [2]*archive.BackupResult
			var errs [2]error
			repos := [2]*archive.Repository{tr.open(t), tr.open(t)}
			for i := range 2 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					unlock, err := repos[i].Lock(t.Context(), false)
					if err != nil {
						errs[i] = err
						return
					}
					defer unlock()
					res[i], errs[i] = repos[i].Backup(t.Context(), archive.BackupOptions{Paths: []string{tc.srcs[i]}, Host: fmt.Sprint("host", i)})
				}()
			}
			wg.Wait()
			for i, err := range errs {
				if err != nil {
					t.Fatalf("backup %d: %v", i, err)
				}
			}
			r := tr.open(t)
			chk, err := r.Check(t.Context(), archive.CheckOptions{ReadData: true})
			if err != nil {
				t.Fatal(err)
			}
			if !chk.OK() || len(chk.Warnings) != 0 || chk.Snapshots != 2 || chk.PacksRead != chk.Packs {
				t.Fatalf("check: %+v", chk)
			}
			for i := range 2 {
				snap, err := r.LoadSnapshot(t.Context(), res[i].Snapshot.ID)
				if err != nil {
					t.Fatal(err)
				}
				got, _ := restoreTo(t, r, snap, restoreOptions())
				compareTrees(t, tc.srcs[i], got)
			}
		})
	}
}

// writeLock stores a lock file as another process would have left it.
func writeLock(t *testing.T, tr *testRepo, info archive.LockInfo) string {
	t.Helper()
	raw, err := json.Marshal(info)
	if err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("%064x", time.Now().UnixNano())
	if err := tr.be.Put(t.Context(), archive.LockFile, name, raw); err != nil {
		t.Fatal(err)
	}
	return name
}

// deadPID returns the PID of a process that has exited.
func deadPID(t *testing.T) int {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	return cmd.Process.Pid
}

func TestLocks(t *testing.T) {
	host, _ := os.Hostname()
	t.Run("live locks", func(t *testing.T) {
		tests := []struct {
			first, second bool // exclusive?
			wantErr       bool
		}{
			{false, false, false},
			{false, true, true},
			{true, false, true},
			{true, true, true},
		}
		tr := newTestRepo(t, 0)
		r1, r2 := tr.open(t), tr.open(t)
		for _, tc := range tests {
			t.Run(fmt.Sprintf("exclusive %v then %v", tc.first, tc.second), func(t *testing.T) {
				unlock1, err := r1.Lock(t.Context(), tc.first)
				if err != nil {
					t.Fatal(err)
				}
				unlock2, err := r2.Lock(t.Context(), tc.second)
				if tc.wantErr != (err != nil) || (err != nil && !errors.Is(err, archive.ErrLocked)) {
					t.Errorf("second lock: %v, want ErrLocked: %v", err, tc.wantErr)
				}
				if err == nil {
					unlock2()
				}
				unlock1()
				// Released: anything goes again, and no lock file
				// is left behind.
				unlock3, err := r2.Lock(t.Context(), true)
				if err != nil {
					t.Fatalf("lock after unlock: %v", err)
				}
				unlock3()
				n := 0
				tr.be.List(t.Context(), archive.LockFile, func(string, int64) error { n++; return nil })
				if n != 0 {
					t.Errorf("%d lock files left", n)
				}
			})
		}
	})

	t.Run("foreign locks", func(t *testing.T) {
		tests := []struct {
			name      string
			info      archive.LockInfo
			raw       string // instead of info
			blocks    bool
			removed   bool // the stale lock file is cleaned up
			exclusive bool
		}{
			{name: "dead process on this host", info: archive.LockInfo{Time: time.Now(), Exclusive: true, Host: host, PID: deadPID(t)}, removed: true, exclusive: true},
			{name: "live process on this host", info: archive.LockInfo{Time: time.Now(), Exclusive: true, Host: host, PID: os.Getppid()}, blocks: true},
			{name: "other host, fresh", info: archive.LockInfo{Time: time.Now(), Exclusive: true, Host: "elsewhere.invalid", PID: 1}, blocks: true},
			{name: "other host, shared", info: archive.LockInfo{Time: time.Now(), Host: "elsewhere.invalid", PID: 1}, blocks: false},
			{name: "other host, shared vs exclusive", info: archive.LockInfo{Time: time.Now(), Host: "elsewhere.invalid", PID: 1}, blocks: true, exclusive: true},
			{name: "other host, not refreshed", info: archive.LockInfo{Time: time.Now().Add(-31 * time.Minute), Exclusive: true, Host: "elsewhere.invalid", PID: 1}, removed: true, exclusive: true},
			{name: "torn lock file", raw: `{"time":"20`, exclusive: true},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				tr := newTestRepo(t, 0)
				var name string
				if tc.raw != "" {
					name = fmt.Sprintf("%064x", 1)
					if err := tr.be.Put(t.Context(), archive.LockFile, name, []byte(tc.raw)); err != nil {
						t.Fatal(err)
					}
				} else {
					name = writeLock(t, tr, tc.info)
				}
				unlock, err := tr.open(t).Lock(t.Context(), tc.exclusive)
				if tc.blocks {
					if !errors.Is(err, archive.ErrLocked) {
						t.Fatalf("Lock = %v, want ErrLocked", err)
					}
				} else {
					if err != nil {
						t.Fatalf("Lock = %v, want the foreign lock ignored", err)
					}
					unlock()
				}
				_, statErr := os.Stat(filepath.Join(tr.dir, "locks", name))
				if tc.removed && statErr == nil {
					t.Error("stale lock file not removed")
				}
				if tc.blocks && statErr != nil {
					t.Errorf("live lock file removed: %v", statErr)
				}
			})
		}
	})
}
