package store

import (
	"fmt"
	"slices"
	"sync"
	"testing"
)

// TestWatchFoldersReportsNames: every create, delete and rename through
// the Store is reported once per folder named, a rename per folder moved.
func TestWatchFoldersReportsNames(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	var mu sync.Mutex
	var got []string
	stop := s.WatchFolders(func(a Account, ev FolderEvent) {
		mu.Lock()
		got = append(got, fmt.Sprintf("%s %d %s %s", a, ev.Kind, ev.Folder, ev.OldName))
		mu.Unlock()
	})
	steps := []struct {
		name string
		do   func() error
		want []string
	}{
		{"create", func() error { return s.CreateFolder(ctx, alice, "A") }, []string{"alice@example.test 1 A "}},
		{"create child", func() error { return s.CreateFolder(ctx, alice, "A/x") }, []string{"alice@example.test 1 A/x "}},
		{"create existing", func() error {
			if err := s.CreateFolder(ctx, alice, "A"); err == nil {
				return fmt.Errorf("created A twice")
			}
			return nil
		}, nil},
		{"rename with child", func() error { return s.RenameFolder(ctx, alice, "A", "B") }, []string{"alice@example.test 3 B A", "alice@example.test 3 B/x A/x"}},
		{"delete", func() error { return s.DeleteFolder(ctx, alice, "B/x") }, []string{"alice@example.test 2 B/x "}},
	}
	for _, st := range steps {
		if err := st.do(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		mu.Lock()
		g := got
		got = nil
		mu.Unlock()
		if !slices.Equal(g, st.want) {
			t.Fatalf("%s: got %q, want %q", st.name, g, st.want)
		}
	}
	stop()
	if err := s.CreateFolder(ctx, alice, "C"); err != nil {
		t.Fatal(err)
	}
	if len(got) != 0 {
		t.Fatalf("after cancel: %q", got)
	}
}
