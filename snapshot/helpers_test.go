package snapshot_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/mailvault/mailvault/archive"
	"github.com/mailvault/mailvault/archive/local"
	"github.com/mailvault/mailvault/mailserver/store"
	"github.com/mailvault/mailvault/restore"
	"github.com/mailvault/mailvault/snapshot"
)

var (
	alice = store.Account{Domain: "example.com", User: "alice"}
	bob   = store.Account{Domain: "example.org", User: "bob"}
)

func openStore(t testing.TB, root string) *store.Store {
	t.Helper()
	s, err := store.Open(t.Context(), root, store.Options{Hostname: "test"})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// message is a mail with a Message-ID by which the checks find it.
func message(id string) *strings.Reader {
	return strings.NewReader(fmt.Sprintf("Message-ID: <%s@test>\r\nSubject: %s\r\n\r\nbody of %s\r\n", id, id, id))
}

func deliver(t testing.TB, s *store.Store, a store.Account, folder string, ids ...string) {
	t.Helper()
	for _, id := range ids {
		if _, err := s.Deliver(t.Context(), a, folder, message(id)); err != nil {
			t.Fatal(err)
		}
	}
}

// newRepo makes a repository in a temporary directory, opened with an
// age identity (no scrypt per open).
func newRepo(t testing.TB) *archive.Repository {
	t.Helper()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	be := local.New(filepath.Join(t.TempDir(), "repo"))
	if err := be.Create(); err != nil {
		t.Fatal(err)
	}
	if _, err := archive.Init(t.Context(), be, archive.KeyRecipients{Recipients: []string{id.Recipient().String()}}); err != nil {
		t.Fatal(err)
	}
	r, err := archive.Open(t.Context(), be, archive.Credentials{Identities: []age.Identity{id}}, archive.Options{Compression: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	if _, err := r.LoadIndex(t.Context()); err != nil {
		t.Fatal(err)
	}
	return r
}

// backupView backs up the view's paths, recording the original paths.
func backupView(t testing.TB, r *archive.Repository, v *snapshot.View, paths ...string) *archive.Snapshot {
	t.Helper()
	res, err := r.Backup(t.Context(), archive.BackupOptions{Paths: paths, Host: "test", ReadFrom: v.Paths})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Warnings) > 0 {
		t.Fatalf("backup warnings: %q", res.Warnings)
	}
	return res.Snapshot
}

func restoreTo(t testing.TB, r *archive.Repository, s *archive.Snapshot) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "restored")
	if _, err := restore.Restore(t.Context(), r, s, restore.Options{Target: dir}); err != nil {
		t.Fatal(err)
	}
	return dir
}

// messageIDs counts the messages below dir by Message-ID, and says where
// each was (relative path of the folder).
func messageIDs(t testing.TB, dir string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		sub := filepath.Base(filepath.Dir(p))
		if d.IsDir() || (sub != "cur" && sub != "new") {
			return nil
		}
		raw, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		sc := bufio.NewScanner(bytes.NewReader(raw))
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "Message-ID: <"); ok {
				rel, _ := filepath.Rel(dir, filepath.Dir(filepath.Dir(p)))
				id := strings.TrimSuffix(strings.TrimSpace(v), "@test>")
				out[id] = append(out[id], rel)
				break
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// treeState is every file below dir with its content, for comparing a
// restore with the tree it came from. tmp/ contents are left out: they
// are not delivered mail and no view carries them.
func treeState(t testing.TB, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if d.IsDir() || d.Type()&fs.ModeSymlink != 0 || filepath.Base(filepath.Dir(p)) == "tmp" {
			return nil
		}
		raw, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		out[rel] = string(raw)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// recordingQuiescer wraps the store's Quiesce: it notes how many
// deliveries had been acknowledged when the pause was asked for, and can
// run a check while writers are paused.
type recordingQuiescer struct {
	inner  snapshot.Quiescer
	acked  func() int
	paused func() // runs with writers paused, after the snapshot

	mu     sync.Mutex
	marks  []int
	pauses []time.Duration
}

func (q *recordingQuiescer) Quiesce(ctx context.Context) (func(), error) {
	mark := q.acked()
	start := time.Now()
	resume, err := q.inner.Quiesce(ctx)
	if err != nil {
		return nil, err
	}
	q.mu.Lock()
	q.marks = append(q.marks, mark)
	q.mu.Unlock()
	return func() {
		if q.paused != nil {
			q.paused()
		}
		resume()
		q.mu.Lock()
		q.pauses = append(q.pauses, time.Since(start))
		q.mu.Unlock()
	}, nil
}
