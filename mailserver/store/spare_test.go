package store

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func tmpNames(t *testing.T, s *Store) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(s.MaildirPath(alice), "tmp"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// PrepareAppend makes the next Append's file ahead: that Append creates
// none, writes the spare and renames it into cur/ as it would its own;
// one that finds its spare gone creates a file; spares a run leaves are
// removed when the folder is next loaded.
func TestPrepareAppendSpare(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	s, err := Open(ctx, dir, Options{Hostname: "mx.test"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, alice, Inbox, strings.NewReader("first"), ""); err != nil {
		t.Fatal(err)
	}
	rec := &recordingFS{}
	s.fs = rec
	for i, tc := range []struct {
		name    string
		prepare bool
		before  func()
		creates int
	}{
		{"prepared", true, nil, 0},
		{"not prepared", false, nil, 1},
		{"spare removed meanwhile", true, func() {
			for _, n := range tmpNames(t, s) {
				os.Remove(filepath.Join(s.MaildirPath(alice), "tmp", n))
			}
		}, 1},
	} {
		if tc.prepare {
			s.PrepareAppend(alice, Inbox)
			if n := tmpNames(t, s); len(n) != 1 || !strings.HasPrefix(n[0], sparePrefix) {
				t.Fatalf("%s: tmp/ = %q, want one spare", tc.name, n)
			}
			s.PrepareAppend(alice, Inbox) // one is enough
			if n := tmpNames(t, s); len(n) != 1 {
				t.Fatalf("%s: tmp/ = %q after a second PrepareAppend", tc.name, n)
			}
		}
		if tc.before != nil {
			tc.before()
		}
		rec.ops = nil
		body := fmt.Sprintf("Subject: %d\r\n\r\n%s\r\n", i, tc.name)
		d, err := s.Append(ctx, alice, Inbox, strings.NewReader(body), "S")
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		creates := strings.Count(fmt.Sprint(rec.ops), "create")
		if creates != tc.creates {
			t.Errorf("%s: %d creates (%q), want %d", tc.name, creates, rec.ops, tc.creates)
		}
		if got, err := os.ReadFile(d.Path); err != nil || string(got) != body {
			t.Errorf("%s: %s = %q, %v", tc.name, d.Path, got, err)
		}
		if !strings.HasPrefix(filepath.Base(d.Path), d.Unique) || strings.Contains(d.Path, sparePrefix) {
			t.Errorf("%s: path %s, unique %s", tc.name, d.Path, d.Unique)
		}
		if n := tmpNames(t, s); len(n) != 0 {
			t.Errorf("%s: tmp/ = %q after the Append", tc.name, n)
		}
	}
	// A spare left behind (an exit, a crash) goes when a new process
	// loads the folder.
	s.PrepareAppend(alice, Inbox)
	s2, err := Open(ctx, dir, Options{Hostname: "mx.test"})
	if err != nil {
		t.Fatal(err)
	}
	l, err := s2.List(ctx, alice, Inbox)
	if err != nil || len(l.Messages) != 4 {
		t.Fatalf("listing: %v, %d messages", err, len(l.Messages))
	}
	if n := tmpNames(t, s2); len(n) != 0 {
		t.Errorf("tmp/ = %q after a reload", n)
	}
}
