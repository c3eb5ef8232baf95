package snapshot_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mailvault/mailvault/archive"
	"github.com/mailvault/mailvault/mailserver/store"
	"github.com/mailvault/mailvault/snapshot"
)

func inode(t testing.TB, p string) uint64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// TestHardlinkView checks what the link tree is made of, that later
// changes to the live tree do not show through it, and that Release
// removes it.
func TestHardlinkView(t *testing.T) {
	ctx := t.Context()
	root := filepath.Join(t.TempDir(), "mail")
	s := openStore(t, root)
	deliver(t, s, alice, store.Inbox, "a1", "a2", "a3")
	deliver(t, s, alice, "Archive/2024", "a4")
	deliver(t, s, bob, store.Inbox, "b1")
	l, err := s.List(ctx, alice, store.Inbox) // writes the uid list, moves nothing
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetFlags(ctx, alice, store.Inbox, l.Messages[0].UID, "S"); err != nil {
		t.Fatal(err)
	}
	stray := filepath.Join(s.MaildirPath(alice), "tmp", "half-delivered")
	if err := os.WriteFile(stray, []byte("partial"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("Maildir", filepath.Join(root, "example.com", "alice", "link")); err != nil {
		t.Fatal(err)
	}
	before := treeState(t, root)
	delete(before, "example.com/alice/link") // a symlink to a directory: compared below

	src, err := snapshot.New(ctx, snapshot.ModeHardlink, []string{root}, snapshot.Consistency{Quiescer: s})
	if err != nil {
		t.Fatal(err)
	}
	v, err := src.Take(ctx)
	if err != nil {
		t.Fatal(err)
	}
	view := v.Path(root)
	if view == root || filepath.Dir(view) != filepath.Dir(root) {
		t.Fatalf("view at %s, want a sibling of %s", view, root)
	}
	t.Logf("hardlink view: pause %v", v.Pause)

	// Messages are links; everything else is a copy.
	first := func(glob string) string {
		m, _ := filepath.Glob(filepath.Join(root, glob))
		if len(m) == 0 {
			t.Fatalf("nothing matches %s", glob)
		}
		rel, _ := filepath.Rel(root, m[0])
		return rel
	}
	tests := []struct {
		rel  string
		link bool
	}{
		{first("example.com/alice/Maildir/cur/*"), true},
		{first("example.com/alice/Maildir/new/*"), true},
		{first("example.com/alice/Maildir/*uidlist*"), false},
		{"example.com/alice/Maildir/.Archive.2024/maildirfolder", false},
	}
	for _, tt := range tests {
		if _, err := os.Stat(filepath.Join(view, tt.rel)); err != nil {
			t.Fatalf("%s missing from view: %v", tt.rel, err)
		}
		same := inode(t, filepath.Join(view, tt.rel)) == inode(t, filepath.Join(root, tt.rel))
		if same != tt.link {
			t.Errorf("%s: shares the source inode = %v, want %v", tt.rel, same, tt.link)
		}
	}
	if got := treeState(t, view); !equalMaps(got, before, "example.com/alice/link") {
		t.Fatalf("view differs from the tree:\n got %v\nwant %v", keys(got), keys(before))
	}
	if ents, _ := os.ReadDir(filepath.Join(view, "example.com/alice/Maildir/tmp")); len(ents) != 0 {
		t.Errorf("tmp/ in the view holds %d entries, want none", len(ents))
	}
	if target, err := os.Readlink(filepath.Join(view, "example.com/alice/link")); err != nil || target != "Maildir" {
		t.Errorf("symlink in view = %q, %v", target, err)
	}

	// Changes after the instant do not show.
	deliver(t, s, alice, store.Inbox, "late")
	if _, err := s.Move(ctx, alice, store.Inbox, "Archive/2024", l.Messages[2].UID); err != nil {
		t.Fatal(err)
	}
	if got := treeState(t, view); !equalMaps(got, before, "example.com/alice/link") {
		t.Fatalf("view changed with the live tree")
	}

	if err := v.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(view); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("view still there after Release: %v", err)
	}
	if err := v.Release(ctx); err != nil {
		t.Fatalf("second Release: %v", err)
	}
}

func equalMaps(a, b map[string]string, ignore string) bool {
	delete(a, ignore)
	delete(b, ignore)
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func TestHardlinkRefusesBadDir(t *testing.T) {
	root := filepath.Join(t.TempDir(), "mail")
	openStore(t, root)
	deliver(t, openStore(t, root), alice, store.Inbox, "x")
	tests := []struct {
		name string
		dir  string
		want string
	}{
		{"inside the source", root, "inside the source"},
		{"missing", filepath.Join(root, "..", "nonexistent"), "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := &snapshot.Hardlink{Paths: []string{root}, Dir: tt.dir}
			v, err := h.Take(t.Context())
			if err == nil {
				v.Release(t.Context())
				t.Fatal("Take succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q, want it to mention %q", err, tt.want)
			}
		})
	}
}

// TestHooks checks the order of pre and post hooks around the instant,
// and that post runs even when pre fails.
func TestHooks(t *testing.T) {
	tests := []struct {
		name    string
		pre     []string
		wantErr bool
		want    string
	}{
		{"pre then post", []string{"echo pre >> $LOG"}, false, "pre\ntake\npost\n"},
		{"failing pre still runs post", []string{"echo pre >> $LOG; exit 3"}, true, "pre\npost\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			log := filepath.Join(dir, "log")
			t.Setenv("LOG", log)
			root := filepath.Join(dir, "mail")
			deliver(t, openStore(t, root), alice, store.Inbox, "x")
			q := &recordingQuiescer{inner: quiescerFunc(func(context.Context) (func(), error) {
				appendFile(t, log, "take\n")
				return func() {}, nil
			}), acked: func() int { return 0 }}
			h := &snapshot.Hardlink{Paths: []string{root}, Consistency: snapshot.Consistency{
				Quiescer: q,
				Hooks:    snapshot.Hooks{Pre: tt.pre, Post: []string{"echo post >> $LOG"}},
			}}
			v, err := h.Take(t.Context())
			if (err != nil) != tt.wantErr {
				t.Fatalf("Take error = %v, want error %v", err, tt.wantErr)
			}
			v.Release(t.Context())
			got, _ := os.ReadFile(log)
			if string(got) != tt.want {
				t.Fatalf("hooks ran as %q, want %q", got, tt.want)
			}
			if ents, _ := filepath.Glob(filepath.Join(dir, ".mail.mailvault-view-*")); len(ents) != 0 {
				t.Fatalf("link trees left behind: %q", ents)
			}
		})
	}
}

type quiescerFunc func(context.Context) (func(), error)

func (f quiescerFunc) Quiesce(ctx context.Context) (func(), error) { return f(ctx) }

func appendFile(t testing.TB, p, s string) {
	f, err := os.OpenFile(p, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		t.Error(err)
		return
	}
	f.WriteString(s)
	f.Close()
}

// TestHardlinkLiveDelivery delivers mail and moves messages between
// folders without pause while several snapshot-and-backup cycles run,
// then restores every backup: each message acknowledged before its
// snapshot's instant is there exactly once, and nothing else is.
func TestHardlinkLiveDelivery(t *testing.T) {
	ctx := t.Context()
	root := filepath.Join(t.TempDir(), "mail")
	s := openStore(t, root)
	deliver(t, s, alice, store.Inbox, "seed-a")
	deliver(t, s, bob, store.Inbox, "seed-b")
	r := newRepo(t)

	var (
		mu        sync.Mutex
		acked     = []string{"seed-a", "seed-b"} // in acknowledgement order
		attempted = map[string]bool{"seed-a": true, "seed-b": true}
		moves     int
	)
	if err := s.CreateFolder(ctx, alice, "Archive"); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var stopOnce sync.Once
	halt := func() { stopOnce.Do(func() { close(stop) }); wg.Wait() }
	// Writers must be gone before the temporary directory is removed.
	defer halt()
	const perWriter = 4000 // a bound; the cycles normally end first
	for w, a := range []store.Account{alice, bob} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWriter {
				select {
				case <-stop:
					return
				default:
				}
				id := fmt.Sprintf("w%d-%d", w, i)
				mu.Lock()
				attempted[id] = true
				mu.Unlock()
				folder := store.Inbox
				if i%5 == 4 {
					folder = "Lists"
				}
				if _, err := s.Deliver(ctx, a, folder, message(id)); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				acked = append(acked, id)
				mu.Unlock()
			}
		}()
	}
	// Moves and flag changes rename files between and within folders:
	// the case a live walk counts twice or misses.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 100000; i++ {
			select {
			case <-stop:
				return
			default:
			}
			from, to := store.Inbox, "Archive"
			if i%2 == 1 {
				from, to = to, from
			}
			l, err := s.List(ctx, alice, from)
			if err != nil || len(l.Messages) == 0 {
				continue
			}
			m := l.Messages[i%len(l.Messages)]
			if i%3 == 0 {
				if err := s.SetFlags(ctx, alice, from, m.UID, "S"); err != nil && !errors.Is(err, store.ErrNoSuchMessage) {
					t.Error(err)
					return
				}
				continue
			}
			if _, err := s.Move(ctx, alice, from, to, m.UID); err != nil && !errors.Is(err, store.ErrNoSuchMessage) {
				t.Error(err)
				return
			}
			mu.Lock()
			moves++
			mu.Unlock()
		}
	}()

	q := &recordingQuiescer{inner: s, acked: func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }}
	src := &snapshot.Hardlink{Paths: []string{root}, Consistency: snapshot.Consistency{Quiescer: q}}
	type cycle struct {
		snap *archive.Snapshot
		must []string
	}
	var cycles []cycle
	const nCycles = 5
	for c := range nCycles {
		// Let some mail arrive between cycles: wait for a number of
		// acknowledgements, not for a time.
		for q.acked() < (c+1)*150 {
			if t.Failed() {
				t.FailNow()
			}
			time.Sleep(time.Millisecond) // a poll, not a bound
		}
		v, err := src.Take(ctx)
		if err != nil {
			t.Fatal(err)
		}
		snap := backupView(t, r, v, root)
		if err := v.Release(ctx); err != nil {
			t.Fatal(err)
		}
		q.mu.Lock()
		mark := q.marks[len(q.marks)-1]
		q.mu.Unlock()
		mu.Lock()
		must := slices.Clone(acked[:mark])
		mu.Unlock()
		if snap.Paths[0] != root {
			t.Fatalf("snapshot records %q, want the original path %q", snap.Paths, root)
		}
		if c > 0 && snap.Parent == nil {
			t.Fatalf("cycle %d: backup through a new view found no parent", c)
		}
		t.Logf("cycle %d: pause %v, %d messages in snapshot, %d read, %d taken from the parent by name, %d folders unchanged",
			c, v.Pause, snap.Summary.Messages, snap.Summary.MessagesNew, snap.Summary.Messages-snap.Summary.MessagesNew, snap.Summary.FoldersUnchanged)
		cycles = append(cycles, cycle{snap, must})
	}
	halt()
	mu.Lock()
	t.Logf("%d deliveries acknowledged, %d moves during the test; quiesce pauses %v", len(acked), moves, q.pauses)
	mu.Unlock()

	for c, cy := range cycles {
		got := messageIDs(t, restoreTo(t, r, cy.snap))
		for id, where := range got {
			if len(where) != 1 {
				t.Errorf("cycle %d: message %s restored %d times, in %q", c, id, len(where), where)
			}
			if !attempted[id] {
				t.Errorf("cycle %d: restored message %s was never delivered", c, id)
			}
		}
		for _, id := range cy.must {
			if _, ok := got[id]; !ok {
				t.Errorf("cycle %d: message %s, acknowledged before the snapshot, is missing", c, id)
			}
		}
		t.Logf("cycle %d: %d messages restored, %d acknowledged before the instant, all present once", c, len(got), len(cy.must))
	}
}
