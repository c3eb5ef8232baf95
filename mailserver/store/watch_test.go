package store

import (
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
)

func TestWatchReportsChanges(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	var mu sync.Mutex
	var got []string
	stop := s.Watch(func(a Account, folder string) {
		mu.Lock()
		got = append(got, a.String()+" "+folder)
		mu.Unlock()
	})
	take := func() []string {
		mu.Lock()
		defer mu.Unlock()
		out := got
		got = nil
		return out
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	d, err := s.Deliver(ctx, alice, "", strings.NewReader("Subject: a\r\n\r\nx\r\n"))
	must(err)
	if d.Path == "" {
		t.Fatal("Deliver: no Path")
	}
	if _, err := os.Stat(d.Path); err != nil {
		t.Fatalf("Deliver's Path: %v", err)
	}
	must(s.CreateFolder(ctx, alice, "Sent"))
	ap, err := s.Append(ctx, alice, "Sent", strings.NewReader("Subject: b\r\n\r\ny\r\n"), "S")
	must(err)
	if !strings.HasSuffix(ap.Path, ":2,S") || ap.UID != 1 || ap.UIDValidity == 0 {
		t.Fatalf("Append: %+v", ap)
	}
	if w := []string{"alice@example.test INBOX", "alice@example.test Sent"}; !slices.Equal(take(), w) {
		t.Fatalf("after deliver and append: want %q", w)
	}
	l, err := s.List(ctx, alice, Inbox)
	must(err)
	uid := l.Messages[0].UID
	must(s.SetFlags(ctx, alice, "inbox", uid, "FS"))
	if w := []string{"alice@example.test INBOX"}; !slices.Equal(take(), w) {
		t.Fatalf("after SetFlags: want %q", w)
	}
	sentUID, err := s.Move(ctx, alice, Inbox, "Sent", uid)
	must(err)
	if g := take(); !slices.Equal(g, []string{"alice@example.test INBOX", "alice@example.test Sent"}) {
		t.Fatalf("after Move: %q", g)
	}
	_, err = s.Copy(ctx, alice, "Sent", Inbox, sentUID)
	must(err)
	if g := take(); !slices.Equal(g, []string{"alice@example.test INBOX"}) {
		t.Fatalf("after Copy: %q", g)
	}
	must(s.Expunge(ctx, alice, "Sent", []uint32{sentUID}))
	must(s.Expunge(ctx, alice, "Sent", []uint32{sentUID})) // nothing left to expunge: no event
	if g := take(); !slices.Equal(g, []string{"alice@example.test Sent"}) {
		t.Fatalf("after Expunge: %q", g)
	}
	must(s.RenameFolder(ctx, alice, "Sent", "Old"))
	if g := take(); !slices.Equal(g, []string{"alice@example.test Sent", "alice@example.test Old"}) {
		t.Fatalf("after RenameFolder: %q", g)
	}
	must(s.DeleteFolder(ctx, alice, "Old"))
	if g := take(); !slices.Equal(g, []string{"alice@example.test Old"}) {
		t.Fatalf("after DeleteFolder: %q", g)
	}
	stop()
	_, err = s.Deliver(ctx, alice, "", strings.NewReader("Subject: c\r\n\r\nz\r\n"))
	must(err)
	if g := take(); len(g) != 0 {
		t.Fatalf("after cancel: %q", g)
	}
}

func TestEnsureInboxGivesUIDValidity(t *testing.T) {
	s := newStore(t)
	bob := Account{Domain: "example.test", User: "bob"}
	l, err := s.List(t.Context(), bob, Inbox)
	if err != nil || l.UIDValidity != 0 {
		t.Fatalf("before: %+v %v", l, err)
	}
	for range 2 { // idempotent
		if err := s.EnsureInbox(t.Context(), bob); err != nil {
			t.Fatal(err)
		}
	}
	l, err = s.List(t.Context(), bob, Inbox)
	if err != nil || l.UIDValidity == 0 || l.UIDNext != 1 {
		t.Fatalf("after: %+v %v", l, err)
	}
	if err := s.EnsureInbox(t.Context(), Account{Domain: "example.test", User: "../x"}); err == nil {
		t.Fatal("bad account accepted")
	}
}
