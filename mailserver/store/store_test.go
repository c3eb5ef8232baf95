package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

var alice = Account{Domain: "example.test", User: "alice"}

func newStore(t *testing.T) *Store {
	t.Helper()
	s, err := Open(t.Context(), t.TempDir(), Options{Hostname: "mx.test"})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// recordingFS logs the durability-relevant operations in order.
type recordingFS struct {
	osFS
	mu  sync.Mutex
	ops []string
}

func (r *recordingFS) add(op string) {
	r.mu.Lock()
	r.ops = append(r.ops, op)
	r.mu.Unlock()
}

func (r *recordingFS) Create(p string) (*os.File, error) {
	r.add("create " + filepath.Base(filepath.Dir(p)))
	return r.osFS.Create(p)
}
func (r *recordingFS) SyncFile(f *os.File) error {
	r.add("fsync " + filepath.Base(filepath.Dir(f.Name())))
	return r.osFS.SyncFile(f)
}
func (r *recordingFS) Rename(a, b string) error {
	r.add("rename " + filepath.Base(filepath.Dir(a)) + "->" + filepath.Base(filepath.Dir(b)))
	return r.osFS.Rename(a, b)
}
func (r *recordingFS) SyncDir(p string) error {
	r.add("fsyncdir " + filepath.Base(p))
	return r.osFS.SyncDir(p)
}

func TestDeliverFsyncOrdering(t *testing.T) {
	s := newStore(t)
	// Create the maildir first so only the delivery itself is recorded.
	if _, err := s.Deliver(t.Context(), alice, Inbox, strings.NewReader("x")); err != nil {
		t.Fatal(err)
	}
	rec := &recordingFS{}
	s.fs = rec
	body := "Subject: hi\r\n\r\nhello\r\n"
	d, err := s.Deliver(t.Context(), alice, Inbox, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	rec.add("returned")
	want := []string{"create tmp", "fsync tmp", "rename tmp->new", "fsyncdir new", "returned"}
	if fmt.Sprint(rec.ops) != fmt.Sprint(want) {
		t.Fatalf("operations = %q, want %q", rec.ops, want)
	}
	if d.Size != int64(len(body)) || !strings.HasSuffix(d.Unique, fmt.Sprintf(",S=%d", len(body))) {
		t.Fatalf("delivery = %+v", d)
	}
	got, err := os.ReadFile(filepath.Join(s.MaildirPath(alice), "new", d.Unique))
	if err != nil || string(got) != body {
		t.Fatalf("file = %q, %v", got, err)
	}
	tmp, _ := os.ReadDir(filepath.Join(s.MaildirPath(alice), "tmp"))
	if len(tmp) != 0 {
		t.Fatalf("tmp/ not empty: %v", tmp)
	}
}

// An APPEND is acknowledged after three fsyncs, of which only two are
// waited for in a row: the message file's and the UID index's (the
// record written before, so that no file is ever in cur/ without its UID
// record) at the same time, then cur/'s after the rename.
func TestAppendFsyncOrdering(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	if _, err := s.Append(ctx, alice, Inbox, strings.NewReader("x"), ""); err != nil {
		t.Fatal(err)
	}
	rec := &indexCheckingFS{index: filepath.Join(s.MaildirPath(alice), indexName)}
	rec.t = t
	s.fs = rec
	syncs := s.Syncs()
	d, err := s.Append(ctx, alice, Inbox, strings.NewReader("Subject: hi\r\n\r\nhello\r\n"), "S")
	if err != nil {
		t.Fatal(err)
	}
	rec.add("returned")
	ops := rec.ops
	if len(ops) != 6 {
		t.Fatalf("operations = %q", ops)
	}
	// The two fsyncs before the rename run at once, in either order.
	pair := []string{ops[1], ops[2]}
	slices.Sort(pair)
	got := append([]string{ops[0]}, append(pair, ops[3:]...)...)
	want := []string{"create tmp", "fsync Maildir", "fsync tmp", "rename tmp->cur", "fsyncdir cur", "returned"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("operations = %q, want %q (the first two fsyncs in any order)", ops, want)
	}
	if want := fmt.Sprintf("\nA %d %s\n", d.UID, d.Unique); !strings.Contains(rec.atRename, want) {
		t.Fatalf("index at the rename = %q, want the record %q in it", rec.atRename, want)
	}
	// The test's file system does not count; the store's does (Syncs),
	// three per APPEND, as checked in TestAppendSyncsCounted.
	if n := s.Syncs() - syncs; n != 0 {
		t.Fatalf("Syncs moved by %d under a replaced file system", n)
	}
}

// indexCheckingFS is recordingFS that also notes, at the rename into
// cur/, the UID index on disk.
type indexCheckingFS struct {
	recordingFS
	t        *testing.T
	index    string
	atRename string
}

func (r *indexCheckingFS) Rename(a, b string) error {
	data, err := os.ReadFile(r.index)
	if err != nil {
		r.t.Error(err)
	}
	r.atRename = string(data)
	return r.recordingFS.Rename(a, b)
}

// Every APPEND costs three fsyncs (message file, UID index, cur/) and
// every SMTP delivery two (message file, new/), counted by Syncs.
func TestAppendSyncsCounted(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	if _, err := s.Append(ctx, alice, Inbox, strings.NewReader("x"), ""); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Deliver(ctx, alice, Inbox, strings.NewReader("x")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		op    func() error
		syncs int64
	}{
		{"append", func() error { _, err := s.Append(ctx, alice, Inbox, strings.NewReader("a"), "S"); return err }, 3},
		{"append with date", func() error {
			_, err := s.AppendAt(ctx, alice, Inbox, strings.NewReader("b"), "", time.Unix(1e9, 0))
			return err
		}, 3},
		{"deliver", func() error { _, err := s.Deliver(ctx, alice, Inbox, strings.NewReader("c")); return err }, 2},
	} {
		for i := range 3 {
			before := s.Syncs()
			if err := tc.op(); err != nil {
				t.Fatal(err)
			}
			if n := s.Syncs() - before; n != tc.syncs {
				t.Errorf("%s #%d: %d fsyncs, want %d", tc.name, i, n, tc.syncs)
			}
		}
	}
}

// A crash between the UID record and the rename (the record durable, the
// message not in cur/) leaves a UID without a file: reopened, the store
// expunges it and gives the next message a later UID, never that one.
func TestAppendRecordWithoutFile(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	s, err := Open(ctx, dir, Options{Hostname: "mx.test"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, alice, Inbox, strings.NewReader("1"), ""); err != nil {
		t.Fatal(err)
	}
	// What the crash leaves: the record, and the message still in tmp/.
	idx := filepath.Join(s.MaildirPath(alice), indexName)
	f, err := os.OpenFile(idx, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("A 2 1.M1P1Q1.lost,S=1\n")
	f.Close()
	if err := os.WriteFile(filepath.Join(s.MaildirPath(alice), "tmp", "1.M1P1Q1.lost"), []byte("2"), 0o600); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(ctx, dir, Options{Hostname: "mx.test"})
	if err != nil {
		t.Fatal(err)
	}
	l, err := s2.List(ctx, alice, Inbox)
	if err != nil || fmt.Sprint(uids(l)) != "[1]" || l.UIDNext != 3 {
		t.Fatalf("reopened: %v uids %v next %d", err, uids(l), l.UIDNext)
	}
	d, err := s2.Append(ctx, alice, Inbox, strings.NewReader("3"), "")
	if err != nil || d.UID != 3 {
		t.Fatalf("next append: uid %d, %v", d.UID, err)
	}
}

func TestDeliverTooLargeLeavesNothing(t *testing.T) {
	s, err := Open(t.Context(), t.TempDir(), Options{MaxMessageBytes: 10})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Deliver(t.Context(), alice, Inbox, strings.NewReader(strings.Repeat("x", 11))); !errors.Is(err, ErrMessageTooLarge) {
		t.Fatalf("err = %v", err)
	}
	for _, sub := range []string{"tmp", "new", "cur"} {
		if e, _ := os.ReadDir(filepath.Join(s.MaildirPath(alice), sub)); len(e) != 0 {
			t.Fatalf("%s not empty: %v", sub, e)
		}
	}
}

func deliverN(t *testing.T, s *Store, folder string, n int) {
	t.Helper()
	for i := range n {
		if _, err := s.Deliver(t.Context(), alice, folder, strings.NewReader(fmt.Sprintf("Subject: %d\r\n\r\nbody\r\n", i))); err != nil {
			t.Fatal(err)
		}
	}
}

func uids(l *Listing) []uint32 {
	var out []uint32
	for _, m := range l.Messages {
		out = append(out, m.UID)
	}
	return out
}

func TestListFlagsExpunge(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	deliverN(t, s, Inbox, 3)
	l, err := s.List(ctx, alice, Inbox)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(uids(l)) != "[1 2 3]" || l.UIDNext != 4 || l.UIDValidity == 0 {
		t.Fatalf("listing = %+v", l)
	}
	for _, m := range l.Messages {
		if !m.Recent || m.Flags != "" || m.Size <= 0 {
			t.Fatalf("message = %+v", m)
		}
	}
	if err := s.SetFlags(ctx, alice, Inbox, 2, "SF"); err != nil {
		t.Fatal(err)
	}
	l2, _ := s.List(ctx, alice, Inbox)
	m := l2.Messages[1]
	if m.UID != 2 || m.Flags != "FS" || m.Recent || filepath.Base(filepath.Dir(m.Path)) != "cur" || !strings.HasSuffix(m.Path, ":2,FS") {
		t.Fatalf("after SetFlags: %+v", m)
	}
	if l2.UIDValidity != l.UIDValidity {
		t.Fatal("UIDVALIDITY changed")
	}
	f, err := s.OpenMessage(ctx, alice, Inbox, 2)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(f)
	f.Close()
	if !strings.HasPrefix(string(b), "Subject: 1") {
		t.Fatalf("message 2 = %q", b)
	}
	if err := s.Expunge(ctx, alice, Inbox, []uint32{1, 99}); err != nil {
		t.Fatal(err)
	}
	deliverN(t, s, Inbox, 1)
	l3, _ := s.List(ctx, alice, Inbox)
	if fmt.Sprint(uids(l3)) != "[2 3 4]" || l3.UIDNext != 5 {
		t.Fatalf("after expunge + deliver: %v next %d", uids(l3), l3.UIDNext)
	}
	if _, err := s.OpenMessage(ctx, alice, Inbox, 1); !errors.Is(err, ErrNoSuchMessage) {
		t.Fatalf("open expunged: %v", err)
	}
}

func TestUIDIndexPersistsAndRebuilds(t *testing.T) {
	dir := t.TempDir()
	ctx := t.Context()
	s, _ := Open(ctx, dir, Options{})
	deliverN(t, s, Inbox, 3)
	l1, _ := s.List(ctx, alice, Inbox)
	if err := s.Expunge(ctx, alice, Inbox, []uint32{3}); err != nil {
		t.Fatal(err)
	}

	// A new process sees the same UIDs and does not reuse UID 3.
	s2, _ := Open(ctx, dir, Options{})
	deliverN(t, s2, Inbox, 1)
	l2, _ := s2.List(ctx, alice, Inbox)
	if l2.UIDValidity != l1.UIDValidity || fmt.Sprint(uids(l2)) != "[1 2 4]" {
		t.Fatalf("reopened: validity %d/%d uids %v", l2.UIDValidity, l1.UIDValidity, uids(l2))
	}

	// A torn last record (crash mid-append) is ignored.
	idx := filepath.Join(s.MaildirPath(alice), indexName)
	f, _ := os.OpenFile(idx, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("A 77 torn-rec")
	f.Close()
	s3, _ := Open(ctx, dir, Options{})
	l3, err := s3.List(ctx, alice, Inbox)
	if err != nil || fmt.Sprint(uids(l3)) != "[1 2 4]" || l3.UIDNext != 5 {
		t.Fatalf("torn: %v %v next %d", err, uids(l3), l3.UIDNext)
	}

	// A lost or garbled index is rebuilt with a different UIDVALIDITY.
	if err := os.WriteFile(idx, []byte("garbage\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	later := func() time.Time { return time.Unix(int64(l1.UIDValidity), 0).Add(time.Hour) }
	s4, _ := Open(ctx, dir, Options{Now: later})
	l4, err := s4.List(ctx, alice, Inbox)
	if err != nil || len(l4.Messages) != 3 || l4.UIDValidity == l1.UIDValidity {
		t.Fatalf("rebuilt: %v %+v", err, l4)
	}
}

func TestFoldersMoveCopy(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	for _, f := range []string{"Sent", "Archive/2024"} {
		if err := s.CreateFolder(ctx, alice, f); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.CreateFolder(ctx, alice, "Sent"); !errors.Is(err, ErrFolderExists) {
		t.Fatalf("duplicate create: %v", err)
	}
	got, _ := s.Folders(ctx, alice)
	if fmt.Sprint(got) != "[INBOX Archive/2024 Sent]" {
		t.Fatalf("folders = %v", got)
	}
	if _, err := os.Stat(filepath.Join(s.MaildirPath(alice), ".Archive.2024", "maildirfolder")); err != nil {
		t.Fatalf("Maildir++ layout: %v", err)
	}
	deliverN(t, s, Inbox, 2)
	if _, err := s.List(ctx, alice, Inbox); err != nil {
		t.Fatal(err)
	}
	if err := s.SetFlags(ctx, alice, Inbox, 1, "S"); err != nil {
		t.Fatal(err)
	}
	uid, err := s.Move(ctx, alice, Inbox, "Sent", 1)
	if err != nil || uid != 1 {
		t.Fatalf("move: %d %v", uid, err)
	}
	cuid, err := s.Copy(ctx, alice, Inbox, "Sent", 2)
	if err != nil || cuid != 2 {
		t.Fatalf("copy: %d %v", cuid, err)
	}
	in, _ := s.List(ctx, alice, Inbox)
	sent, _ := s.List(ctx, alice, "Sent")
	if fmt.Sprint(uids(in)) != "[2]" || fmt.Sprint(uids(sent)) != "[1 2]" || sent.Messages[0].Flags != "S" {
		t.Fatalf("inbox %v sent %+v", uids(in), sent.Messages)
	}
	if sent.Messages[1].Unique == in.Messages[0].Unique {
		t.Fatal("copy kept the unique name")
	}
	if _, err := s.Move(ctx, alice, Inbox, "Nope", 2); !errors.Is(err, ErrNoSuchFolder) {
		t.Fatalf("move to missing folder: %v", err)
	}
}

func TestFolderNames(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"Sent", true},
		{"Archive/2024", true},
		{"Entwürfe", true},
		{"", false},
		{"a.b", false},
		{"/a", false},
		{"a//b", false},
		{"a/", false},
		{"..", false},
		{"INBOX/x", false},
		{"a\x00b", false},
		{"a\\b", false},
	} {
		if err := ValidFolderName(tc.name); (err == nil) != tc.ok {
			t.Errorf("ValidFolderName(%q) = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
	if _, err := AccountOf("../x@example.test"); err == nil {
		t.Error("AccountOf accepted a path")
	}
	if a, err := AccountOf("Bob@Example.TEST"); err != nil || a.String() != "bob@example.test" {
		t.Errorf("AccountOf = %v, %v", a, err)
	}
}

func TestConcurrentDeliveries(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 10 {
				folder := Inbox
				if i%2 == 1 {
					folder = "Sent"
				}
				if _, err := s.Append(ctx, alice, folder, strings.NewReader(fmt.Sprint(g, i)), "S"); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	for _, f := range []string{Inbox, "Sent"} {
		l, err := s.List(ctx, alice, f)
		if err != nil {
			t.Fatal(err)
		}
		seen := map[uint32]bool{}
		for _, m := range l.Messages {
			seen[m.UID] = true
		}
		if len(l.Messages) != 40 || len(seen) != 40 || l.UIDNext != 41 {
			t.Fatalf("%s: %d messages, %d distinct UIDs, next %d", f, len(l.Messages), len(seen), l.UIDNext)
		}
	}
}

// blockingReader returns data only after release is closed.
type blockingReader struct {
	started chan struct{}
	release chan struct{}
	done    bool
}

func (b *blockingReader) Read(p []byte) (int, error) {
	if b.done {
		return 0, io.EOF
	}
	close(b.started)
	<-b.release
	b.done = true
	return copy(p, "late message"), nil
}

func waitFor(cond func() bool) {
	for !cond() {
		runtime.Gosched()
	}
}

func (g *gate) state() (inflight, paused int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.inflight, g.paused
}

func TestQuiesceWaitsForInFlightAndBlocksNewWrites(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	br := &blockingReader{started: make(chan struct{}), release: make(chan struct{})}
	delivered := make(chan error, 1)
	go func() {
		_, err := s.Deliver(ctx, alice, Inbox, br)
		delivered <- err
	}()
	<-br.started

	quiesced := make(chan func(), 1)
	go func() {
		resume, err := s.Quiesce(ctx)
		if err != nil {
			t.Error(err)
		}
		quiesced <- resume
	}()
	waitFor(func() bool { _, p := s.gate.state(); return p == 1 })
	select {
	case <-quiesced:
		t.Fatal("Quiesce returned while a delivery was in flight")
	default:
	}
	close(br.release)
	resume := <-quiesced
	if err := <-delivered; err != nil {
		t.Fatal(err)
	}
	// The in-flight message is durable and visible in the snapshot.
	if e, _ := os.ReadDir(filepath.Join(s.MaildirPath(alice), "new")); len(e) != 1 {
		t.Fatalf("new/ = %v", e)
	}

	// New writes wait until resume.
	second := make(chan error, 1)
	go func() {
		_, err := s.Deliver(ctx, alice, Inbox, strings.NewReader("second"))
		second <- err
	}()
	waitFor(func() bool { s.gate.mu.Lock(); defer s.gate.mu.Unlock(); return s.gate.waiting == 1 })
	select {
	case err := <-second:
		t.Fatalf("delivery went through during quiesce: %v", err)
	default:
	}
	if e, _ := os.ReadDir(filepath.Join(s.MaildirPath(alice), "new")); len(e) != 1 {
		t.Fatalf("new/ changed during quiesce: %v", e)
	}
	resume()
	resume() // idempotent
	if err := <-second; err != nil {
		t.Fatal(err)
	}

	// A writer waiting on a quiesced store gives up with its context.
	resume2, err := s.Quiesce(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.Deliver(cctx, alice, Inbox, strings.NewReader("x")); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	resume2()
}

func TestQuiesceCanceled(t *testing.T) {
	s := newStore(t)
	br := &blockingReader{started: make(chan struct{}), release: make(chan struct{})}
	go s.Deliver(t.Context(), alice, Inbox, br)
	<-br.started
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := s.Quiesce(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	if _, p := s.gate.state(); p != 0 {
		t.Fatal("canceled Quiesce left the store paused")
	}
	close(br.release)
}

func TestUIDOrderFollowsDeliveryTime(t *testing.T) {
	for _, tc := range []struct{ a, b string }{
		{"1700000000.M999P1Q1.h", "1700000000.M1000P1Q2.h"},
		{"1699999999.M999999P1.h", "1700000000.M0P1.h"},
		{"1700000000.M5P1Q1.h", "1700000000.M5P1Q2.h"},
	} {
		if !lessUnique(tc.a, tc.b) || lessUnique(tc.b, tc.a) {
			t.Errorf("order of %s, %s", tc.a, tc.b)
		}
	}
}

func TestDeleteAndRenameFolders(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	for _, f := range []string{"Work", "Work/2024", "Old"} {
		if err := s.CreateFolder(ctx, alice, f); err != nil {
			t.Fatal(err)
		}
	}
	deliverN(t, s, "Work/2024", 2)
	before, _ := s.List(ctx, alice, "Work/2024")
	if err := s.RenameFolder(ctx, alice, "Work", "Projects"); err != nil {
		t.Fatal(err)
	}
	got, _ := s.Folders(ctx, alice)
	if fmt.Sprint(got) != "[INBOX Old Projects Projects/2024]" {
		t.Fatalf("after rename: %v", got)
	}
	after, err := s.List(ctx, alice, "Projects/2024")
	if err != nil || after.UIDValidity != before.UIDValidity || fmt.Sprint(uids(after)) != "[1 2]" {
		t.Fatalf("renamed folder listing: %+v %v", after, err)
	}
	for _, tc := range []struct{ from, to string }{{"Old", "Projects"}, {"Nope", "X"}, {"Projects", "Projects/sub"}, {"Old", "INBOX"}} {
		if err := s.RenameFolder(ctx, alice, tc.from, tc.to); err == nil {
			t.Errorf("rename %s -> %s succeeded", tc.from, tc.to)
		}
	}
	if err := s.DeleteFolder(ctx, alice, "Projects/2024"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteFolder(ctx, alice, "Projects/2024"); !errors.Is(err, ErrNoSuchFolder) {
		t.Fatalf("second delete: %v", err)
	}
	got, _ = s.Folders(ctx, alice)
	if fmt.Sprint(got) != "[INBOX Old Projects]" {
		t.Fatalf("after delete: %v", got)
	}
	entries, _ := os.ReadDir(s.MaildirPath(alice))
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "deleted-") {
			t.Fatalf("trash left behind: %s", e.Name())
		}
	}
}

// A folder deleted and created again within one second gets a larger
// UIDVALIDITY (RFC 3501 section 2.3.1.1), as does one whose index is
// lost: the account's last value is kept in mailvault-uidvalidity.
func TestUIDValidityGrowsWhenRecreatedInOneSecond(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	frozen := func() time.Time { return time.Unix(1_700_000_000, 0) }
	s, err := Open(ctx, dir, Options{Hostname: "mx.test", Now: frozen})
	if err != nil {
		t.Fatal(err)
	}
	var last uint32
	for i := range 3 {
		if err := s.CreateFolder(ctx, alice, "Box"); err != nil {
			t.Fatal(err)
		}
		l, err := s.List(ctx, alice, "Box")
		if err != nil {
			t.Fatal(err)
		}
		if l.UIDValidity <= last {
			t.Fatalf("round %d: UIDVALIDITY %d after %d", i, l.UIDValidity, last)
		}
		last = l.UIDValidity
		if err := s.DeleteFolder(ctx, alice, "Box"); err != nil {
			t.Fatal(err)
		}
	}
	// Other folders of the account, and a store opened again, go on
	// from there.
	s2, err := Open(ctx, dir, Options{Hostname: "mx.test", Now: frozen})
	if err != nil {
		t.Fatal(err)
	}
	if err := s2.CreateFolder(ctx, alice, "Other"); err != nil {
		t.Fatal(err)
	}
	l, err := s2.List(ctx, alice, "Other")
	if err != nil || l.UIDValidity <= last {
		t.Fatalf("another folder: %v, UIDVALIDITY %d after %d", err, l.UIDValidity, last)
	}
	b, err := os.ReadFile(filepath.Join(s.MaildirPath(alice), "mailvault-uidvalidity"))
	if err != nil || strings.TrimSpace(string(b)) != fmt.Sprint(l.UIDValidity) {
		t.Fatalf("mailvault-uidvalidity %q %v, want %d", b, err, l.UIDValidity)
	}
}

// AppendAt's date is the file's modification time from the moment the
// file appears, and Copy and Move keep it (RFC 3501 sections 6.3.11 and
// 6.4.7), through the copy that is made when a hard link cannot be.
func TestAppendAtDateKeptByCopyAndMove(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	for _, f := range []string{"Sent", "Trash"} {
		if err := s.CreateFolder(ctx, alice, f); err != nil {
			t.Fatal(err)
		}
	}
	date := time.Date(1996, 7, 17, 9, 44, 25, 0, time.UTC)
	var seen []time.Time
	s.WatchDeliveries(func(_ Account, d Delivery) {
		if fi, err := os.Stat(d.Path); err == nil {
			seen = append(seen, fi.ModTime())
		}
	})
	d, err := s.AppendAt(ctx, alice, Inbox, strings.NewReader("Subject: x\r\n\r\nx\r\n"), "S", date)
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != 1 || !seen[0].Equal(date) {
		t.Fatalf("delivery watchers saw %v, want %v", seen, date)
	}
	if _, err := s.Copy(ctx, alice, Inbox, "Sent", d.UID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Move(ctx, alice, Inbox, "Trash", d.UID); err != nil {
		t.Fatal(err)
	}
	// The copy without a hard link: a file in the way makes the link
	// fail, and the copy replaces it.
	l, _ := s.List(ctx, alice, "Trash")
	cp := filepath.Join(t.TempDir(), "copy")
	if err := os.WriteFile(cp, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := copyFile(s.fs, l.Messages[0].Path, cp, cp+".tmp"); err != nil {
		t.Fatal(err)
	}
	paths := []string{cp}
	for _, f := range []string{"Sent", "Trash"} {
		l, err := s.List(ctx, alice, f)
		if err != nil || len(l.Messages) != 1 {
			t.Fatalf("%s: %v %+v", f, err, l)
		}
		paths = append(paths, l.Messages[0].Path)
	}
	for _, p := range paths {
		if fi, err := os.Stat(p); err != nil || !fi.ModTime().Equal(date) {
			t.Errorf("%s: %v %v, want %v", p, fi.ModTime(), err, date)
		}
	}
}

// ClaimRecent moves the folder's first \Recent UID (RFC 3501 section
// 2.3.2) up only, and the index keeps it across a reopen and a rewrite.
func TestClaimRecentPersists(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	s, err := Open(ctx, dir, Options{Hostname: "mx.test"})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := s.Deliver(ctx, alice, Inbox, strings.NewReader(fmt.Sprint("m", i))); err != nil {
			t.Fatal(err)
		}
	}
	first := func(s *Store) uint32 {
		t.Helper()
		l, err := s.List(ctx, alice, Inbox)
		if err != nil {
			t.Fatal(err)
		}
		return l.FirstRecent
	}
	if got := first(s); got != 1 {
		t.Fatalf("FirstRecent of a new folder %d, want 1", got)
	}
	if err := s.ClaimRecent(ctx, alice, Inbox, 3); err != nil {
		t.Fatal(err)
	}
	if err := s.ClaimRecent(ctx, alice, Inbox, 2); err != nil {
		t.Fatal(err)
	}
	if got := first(s); got != 3 {
		t.Fatalf("FirstRecent %d, want 3", got)
	}
	// Beyond UIDNEXT is capped: a message that has no UID yet is new.
	if err := s.ClaimRecent(ctx, alice, Inbox, 100); err != nil {
		t.Fatal(err)
	}
	if got := first(s); got != 4 {
		t.Fatalf("FirstRecent %d, want 4 (UIDNEXT)", got)
	}
	s2, _ := Open(ctx, dir, Options{Hostname: "mx.test"})
	if got := first(s2); got != 4 {
		t.Fatalf("reopened: FirstRecent %d, want 4", got)
	}
	st, _ := s2.folder(s2.MaildirPath(alice))
	st.mu.Lock()
	err = st.idx.rewrite(s2.fs)
	st.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	s3, _ := Open(ctx, dir, Options{Hostname: "mx.test"})
	if got := first(s3); got != 4 {
		t.Fatalf("rewritten: FirstRecent %d, want 4", got)
	}
}
