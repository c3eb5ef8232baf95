package store

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func uidsOf(l *Listing) []uint32 {
	var out []uint32
	for _, m := range l.Messages {
		out = append(out, m.UID)
	}
	return out
}

// Listings after changes made through the Store read no directory, and
// show exactly what a fresh Store scanning the folder shows.
func TestListSkipsScanAfterOwnChanges(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	a := Account{Domain: "example.test", User: "alice"}
	if err := s.CreateFolder(ctx, a, "Archive"); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if _, err := s.Append(ctx, a, "", strings.NewReader("Subject: m\r\n\r\nbody\r\n"), ""); err != nil {
			t.Fatal(i, err)
		}
	}
	// Archive first: its first listing makes its UID index, whose new
	// UIDVALIDITY is recorded in the account's directory, INBOX's.
	for _, f := range []string{"Archive", ""} {
		if _, err := s.List(ctx, a, f); err != nil {
			t.Fatal(err)
		}
	}
	skipped := s.scansSkipped.Load()
	d, err := s.Append(ctx, a, "", strings.NewReader("Subject: n\r\n\r\nbody\r\n"), "S")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetFlags(ctx, a, "", 2, "FS"); err != nil {
		t.Fatal(err)
	}
	if err := s.Expunge(ctx, a, "", []uint32{3}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Move(ctx, a, "", "Archive", 4); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Copy(ctx, a, "", "Archive", 5); err != nil {
		t.Fatal(err)
	}
	got := map[string]*Listing{}
	for _, f := range []string{"", "Archive"} {
		if got[f], err = s.List(ctx, a, f); err != nil {
			t.Fatal(err)
		}
	}
	if n := s.scansSkipped.Load() - skipped; n != 2 {
		t.Fatalf("%d listings without a scan, want 2", n)
	}
	for _, f := range []string{"", "Archive"} {
		got := got[f]
		fresh, err := Open(ctx, s.Root(), Options{Hostname: "mx.test"})
		if err != nil {
			t.Fatal(err)
		}
		want, err := fresh.List(ctx, a, f)
		if err != nil {
			t.Fatal(err)
		}
		if len(got.Messages) != len(want.Messages) {
			t.Fatalf("%q: %v, a fresh scan %v", f, uidsOf(got), uidsOf(want))
		}
		for i := range got.Messages {
			if got.Messages[i] != want.Messages[i] {
				t.Fatalf("%q: message %d is %+v, a fresh scan %+v", f, i, got.Messages[i], want.Messages[i])
			}
		}
	}
	if d.UID != 6 {
		t.Fatalf("appended UID %d", d.UID)
	}
}

// A file another process put into cur/ is found: at once when it changed
// the directory's time, and when it left the time as it was (the same
// clock tick as the stamp) once the time is older than settleWindow.
func TestListSeesOtherProcessesChanges(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	a := Account{Domain: "example.test", User: "alice"}
	if _, err := s.Append(ctx, a, "", strings.NewReader("Subject: m\r\n\r\nbody\r\n"), ""); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	scanClock = func() time.Time { return now }
	t.Cleanup(func() { scanClock = time.Now })
	list := func() []uint32 {
		t.Helper()
		l, err := s.List(ctx, a, "")
		if err != nil {
			t.Fatal(err)
		}
		return uidsOf(l)
	}
	list()
	if _, err := s.Append(ctx, a, "", strings.NewReader("Subject: n\r\n\r\nbody\r\n"), ""); err != nil {
		t.Fatal(err)
	}
	if got := list(); len(got) != 2 {
		t.Fatalf("after an append: %v", got)
	}
	dir := s.MaildirPath(a)
	stamp, _ := dirTimes(dir)

	// Another process's file, with cur/'s time put back: invisible to
	// the times, found when they have settled.
	p := filepath.Join(dir, "cur", "1700000000.M1P1.other:2,")
	if err := os.WriteFile(p, []byte("Subject: x\r\n\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(filepath.Join(dir, "cur"), stamp[2], stamp[2]); err != nil {
		t.Fatal(err)
	}
	if got := list(); len(got) != 2 {
		t.Fatalf("same tick, before the window: %v (the times cannot show it yet)", got)
	}
	now = now.Add(settleWindow + time.Second)
	if got := list(); len(got) != 3 {
		t.Fatalf("after the window: %v, want the other process's message", got)
	}
	skipped := s.scansSkipped.Load()
	if got := list(); len(got) != 3 || s.scansSkipped.Load() != skipped+1 {
		t.Fatalf("settled: %v, %d skipped", got, s.scansSkipped.Load()-skipped)
	}

	// A removal that changes the time is seen at once.
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	later := stamp[2].Add(time.Second)
	if err := os.Chtimes(filepath.Join(dir, "cur"), later, later); err != nil {
		t.Fatal(err)
	}
	if got := list(); len(got) != 2 {
		t.Fatalf("after a removal: %v", got)
	}
}

// List hands out the store's own listing (no copy per call): a listing
// taken before a change must not see it, and Version tells whether
// anything changed since.
func TestListSharedCopyOnWrite(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	for range 3 {
		if _, err := s.Append(ctx, alice, Inbox, strings.NewReader("x"), ""); err != nil {
			t.Fatal(err)
		}
	}
	list := func() *Listing {
		t.Helper()
		l, err := s.List(ctx, alice, Inbox)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	l1 := list()
	if l2 := list(); l2.Version != l1.Version || l1.Version == 0 {
		t.Fatalf("versions %d, %d: want the same, not 0", l1.Version, l2.Version)
	}
	before := fmt.Sprint(l1.Messages)
	for _, tc := range []struct {
		name   string
		change func() error
	}{
		{"append", func() error { _, err := s.Append(ctx, alice, Inbox, strings.NewReader("y"), "S"); return err }},
		{"flags", func() error { return s.SetFlags(ctx, alice, Inbox, 2, "FS") }},
		{"expunge", func() error { return s.Expunge(ctx, alice, Inbox, []uint32{1}) }},
	} {
		prev := list()
		prevText := fmt.Sprint(prev.Messages)
		if err := tc.change(); err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprint(prev.Messages); got != prevText {
			t.Errorf("%s: a listing taken before changed: %s, was %s", tc.name, got, prevText)
		}
		if now := list(); now.Version == prev.Version || fmt.Sprint(now.Messages) == prevText {
			t.Errorf("%s: version %d → %d, messages %v", tc.name, prev.Version, now.Version, now.Messages)
		}
	}
	if got := fmt.Sprint(l1.Messages); got != before {
		t.Errorf("first listing changed: %s, was %s", got, before)
	}
}
