package snapshot_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mailvault/mailvault/mailserver/store"
	"github.com/mailvault/mailvault/snapshot"
	"github.com/mailvault/mailvault/snapshot/zfstest"
)

// The ZFS tests run against a real ZFS: zfs-fuse in CI (started here when
// not running), or whatever ZFS the machine has.
// With MAILVAULT_VIEW_HELPER set, the test binary is instead a process
// that takes a view and waits to be killed (see viewHelper).
func TestMain(m *testing.M) {
	if mode := os.Getenv("MAILVAULT_VIEW_HELPER"); mode != "" {
		os.Exit(viewHelper(mode))
	}
	os.Exit(zfstest.Main(m))
}

// mailPool makes a pool with a dataset "mail" and, below it, a dataset
// for the domain example.org, so that the mail data spans two datasets.
func mailPool(t *testing.T) (zfstest.Pool, string) {
	t.Helper()
	p := zfstest.NewPool(t)
	zfstest.Run(t, "zfs", "create", p.Name+"/mail")
	zfstest.Run(t, "zfs", "create", p.Name+"/mail/example.org")
	return p, filepath.Join(p.Mount, "mail")
}

func newTool(t *testing.T) *snapshot.ZFSTool {
	t.Helper()
	tool, err := snapshot.NewZFSTool(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return tool
}

func TestZFSLocate(t *testing.T) {
	p, root := mailPool(t)
	if err := os.MkdirAll(filepath.Join(root, "example.com", "alice"), 0o700); err != nil {
		t.Fatal(err)
	}
	tool := newTool(t)
	tests := []struct {
		path    string
		dataset string
		rel     string
		below   []string
	}{
		{root, p.Name + "/mail", ".", []string{p.Name + "/mail/example.org"}},
		{filepath.Join(root, "example.com", "alice"), p.Name + "/mail", "example.com/alice", nil},
		{filepath.Join(root, "example.org"), p.Name + "/mail/example.org", ".", nil},
		{p.Mount, p.Name, ".", []string{p.Name + "/mail", p.Name + "/mail/example.org"}},
	}
	for _, tt := range tests {
		loc, err := tool.Locate(t.Context(), tt.path)
		if err != nil {
			t.Fatal(err)
		}
		var below []string
		for _, d := range loc.Below {
			below = append(below, d.Name)
		}
		if loc.Dataset.Name != tt.dataset || loc.Rel != tt.rel || !slices.Equal(below, tt.below) {
			t.Errorf("Locate(%s) = %s %q below %q; want %s %q below %q", tt.path, loc.Dataset.Name, loc.Rel, below, tt.dataset, tt.rel, tt.below)
		}
	}
	if _, err := tool.Locate(t.Context(), t.TempDir()); err == nil {
		t.Error("Locate found a dataset for a directory outside ZFS")
	}
}

// TestZFSViewBackupRestore takes a view of a live store spanning two
// datasets, changes the store, backs up the view twice and restores: the
// restore equals the tree at the instant of the snapshot.
func TestZFSViewBackupRestore(t *testing.T) {
	for _, keep := range []bool{false, true} {
		t.Run(map[bool]string{false: "destroy", true: "keep"}[keep], func(t *testing.T) {
			ctx := t.Context()
			p, root := mailPool(t)
			s := openStore(t, root)
			deliver(t, s, alice, store.Inbox, "a1", "a2", "a3")
			deliver(t, s, alice, "Sent", "a4")
			deliver(t, s, bob, store.Inbox, "b1", "b2")
			tool := newTool(t)
			r := newRepo(t)

			var atInstant map[string]string
			q := &recordingQuiescer{inner: s, acked: func() int { return 0 },
				paused: func() { atInstant = treeState(t, root) }}
			// The store spans two datasets: one path, one recursive
			// snapshot, the child's clone stitched in at its place.
			src := &snapshot.ZFS{Tool: tool, Paths: []string{root}, Keep: keep, CloneDir: t.TempDir(),
				Consistency: snapshot.Consistency{Quiescer: q}}
			v, err := src.Take(ctx)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("zfs view %v at %v: pause %v (quiesced %v)", v.Names, v.Paths, v.Pause, q.pauses)
			if len(v.Names) != 1 || !strings.HasPrefix(v.Names[0], p.Name+"/mail@"+snapshot.Prefix) {
				t.Fatalf("view names %q", v.Names)
			}
			snaps, err := tool.Snapshots(ctx, p.Name+"/mail")
			if err != nil {
				t.Fatal(err)
			}
			if len(snaps) != 1 || len(snaps[0].Members) != 2 || snaps[0].Holds != 2 || !slices.Contains(snaps[0].HoldTags, snapshot.DefaultHoldTag) {
				t.Fatalf("snapshots while the view is in use: %+v", snaps)
			}
			if err := tool.Destroy(ctx, snaps[0]); !errors.Is(err, snapshot.ErrHeld) {
				t.Fatalf("destroying the snapshot in use: %v, want ErrHeld", err)
			}

			// The live store moves on.
			deliver(t, s, alice, store.Inbox, "late-a")
			deliver(t, s, bob, "Lists", "late-b")
			// A move by another program (store.List would keep the uid
			// index open, and the store has no Close: the pool could not
			// be destroyed at the end).
			moved, _ := filepath.Glob(filepath.Join(s.MaildirPath(alice), "new", "*"))
			if err := os.Rename(moved[0], filepath.Join(s.MaildirPath(alice), ".Sent", "cur", filepath.Base(moved[0])+":2,S")); err != nil {
				t.Fatal(err)
			}

			viewState := treeState(t, v.Path(root))
			if !equalMaps(viewState, atInstant, "") {
				t.Fatalf("view differs from the tree at the instant:\n got %q\nwant %q", keys(viewState), keys(atInstant))
			}
			snap := backupView(t, r, v, root)
			if !slices.Equal(snap.Paths, []string{root}) {
				t.Fatalf("snapshot records %q, want %q", snap.Paths, []string{root})
			}
			got := map[string]string{}
			for k, c := range treeState(t, restoreTo(t, r, snap)) {
				got[strings.TrimPrefix(k, "mail/")] = c
			}
			if !equalMaps(got, atInstant, "") {
				t.Fatalf("restore differs from the tree at the instant:\n got %q\nwant %q", keys(got), keys(atInstant))
			}
			if err := v.Release(ctx); err != nil {
				t.Fatal(err)
			}

			// A second view: the backup finds the first as parent and
			// reads only the new messages.
			v2, err := src.Take(ctx)
			if err != nil {
				t.Fatal(err)
			}
			snap2 := backupView(t, r, v2, root)
			if err := v2.Release(ctx); err != nil {
				t.Fatal(err)
			}
			if snap2.Parent == nil || *snap2.Parent != snap.ID {
				t.Fatalf("second backup's parent = %v, want %v", snap2.Parent, snap.ID)
			}
			if snap2.Summary.MessagesNew != 2 {
				t.Errorf("second backup read %d messages, want the 2 new ones", snap2.Summary.MessagesNew)
			}
			ids := messageIDs(t, restoreTo(t, r, snap2))
			if len(ids) != 8 {
				t.Errorf("second restore has %d messages, want 8: %v", len(ids), ids)
			}

			// Released: no clones, no holds; the snapshots only if kept.
			list := zfstest.Run(t, "zfs", "list", "-H", "-o", "name", "-t", "filesystem", "-r", p.Name)
			if strings.Contains(list, "-view") {
				t.Fatalf("clones left after Release:\n%s", list)
			}
			snaps, err = tool.Snapshots(ctx, p.Name+"/mail")
			if err != nil {
				t.Fatal(err)
			}
			want := 0
			if keep {
				want = 2
			}
			if len(snaps) != want {
				t.Fatalf("%d snapshots after Release, want %d: %+v", len(snaps), want, snaps)
			}
			for _, sn := range snaps {
				if sn.Holds != 0 || len(sn.HoldTags) != 0 {
					t.Errorf("%s still held after Release: %d %q", sn.FullName(), sn.Holds, sn.HoldTags)
				}
			}
		})
	}
}

// TestZFSPrune applies a retention to mailvault's snapshots beside a
// user's own and a held one.
func TestZFSPrune(t *testing.T) {
	ctx := t.Context()
	p, _ := mailPool(t)
	ds := p.Name + "/mail"
	tool := newTool(t)
	base := time.Date(2026, 1, 10, 12, 0, 0, 0, time.UTC)
	// Newest first: 12:00, 11:00 (same day), yesterday 12:00, 11:00, and
	// three and four days ago.
	offsets := []time.Duration{0, time.Hour, 24 * time.Hour, 25 * time.Hour, 72 * time.Hour, 96 * time.Hour}
	var names []string
	for _, o := range offsets {
		n, err := tool.Take(ctx, ds, true, base.Add(-o))
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, n)
	}
	zfstest.Run(t, "zfs", "snapshot", ds+"@users-own")
	snaps, err := tool.Snapshots(ctx, ds)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]snapshot.Snap{}
	for _, s := range snaps {
		byName[s.Name] = s
	}
	legal := byName[names[5]]
	if err := tool.Hold(ctx, legal, "legal-case-42"); err != nil {
		t.Fatal(err)
	}

	r := snapshot.Retention{Daily: 2}
	plan, err := tool.Prune(ctx, ds, r, true)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		names[0]: "keep",    // newest, daily 1/2
		names[1]: "destroy", // same day as names[0]
		names[2]: "keep",    // daily 2/2
		names[3]: "destroy",
		names[4]: "destroy",
		names[5]: "keep", // held
	}
	check := func(plan []snapshot.Decision) {
		t.Helper()
		if len(plan) != len(want) {
			t.Fatalf("plan has %d decisions, want %d", len(plan), len(want))
		}
		for _, d := range plan {
			got := map[bool]string{true: "keep", false: "destroy"}[d.Keep]
			if got != want[d.Snap.Name] {
				t.Errorf("%s: %s (%q), want %s", d.Snap.Name, got, d.Reasons, want[d.Snap.Name])
			}
			if d.Snap.Name == names[5] && !strings.Contains(strings.Join(d.Reasons, ";"), "legal-case-42") {
				t.Errorf("held snapshot kept for %q, want the hold's tag named", d.Reasons)
			}
		}
	}
	check(plan)
	if after, _ := tool.Snapshots(ctx, ds); len(after) != len(snaps) {
		t.Fatalf("dry run destroyed snapshots: %d left of %d", len(after), len(snaps))
	}
	plan, err = tool.Prune(ctx, ds, r, false)
	if err != nil {
		t.Fatal(err)
	}
	check(plan)
	var left []string
	after, err := tool.Snapshots(ctx, ds)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range after {
		left = append(left, s.Name)
		if len(s.Members) != 2 && s.Ours {
			t.Errorf("%s has members %q, want the dataset and its child", s.Name, s.Members)
		}
	}
	slices.Sort(left)
	wantLeft := []string{names[5], names[2], names[0], "users-own"}
	if !slices.Equal(left, wantLeft) {
		t.Fatalf("left after prune: %q, want %q", left, wantLeft)
	}

	// Once the legal hold is released, the snapshot goes with the next
	// prune.
	if err := tool.Release(ctx, legal, "legal-case-42"); err != nil {
		t.Fatal(err)
	}
	if _, err := tool.Prune(ctx, ds, r, false); err != nil {
		t.Fatal(err)
	}
	after, err = tool.Snapshots(ctx, ds)
	if err != nil {
		t.Fatal(err)
	}
	left = left[:0]
	for _, s := range after {
		left = append(left, s.Name)
	}
	slices.Sort(left)
	if wantLeft = []string{names[2], names[0], "users-own"}; !slices.Equal(left, wantLeft) {
		t.Fatalf("left after release and prune: %q, want %q", left, wantLeft)
	}

	u, err := tool.Usage(ctx, p.Name)
	if err != nil {
		t.Fatal(err)
	}
	if u.Used == 0 || u.Available == 0 || u.Health != "ONLINE" {
		t.Errorf("usage %+v", u)
	}
	t.Logf("pool usage: %+v", u)
}

// TestZFSPerUserDatasets backs up a store whose users' directories are
// datasets of their own (mounted by explicit mountpoints) through one
// view of the store's root: one recursive snapshot, the users' clones
// stitched in at their places. The restore equals the tree at the
// instant, and releasing leaves no clone, directory or snapshot.
func TestZFSPerUserDatasets(t *testing.T) {
	ctx := t.Context()
	p, root := userPool(t)
	s := openStore(t, root)
	deliver(t, s, alice, store.Inbox, "a1", "a2")
	deliver(t, s, alice, "Sent", "a3")
	deliver(t, s, bob, store.Inbox, "b1")
	if err := os.WriteFile(filepath.Join(root, "README"), []byte("not mail\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tool := newTool(t)
	r := newRepo(t)
	var atInstant map[string]string
	q := &recordingQuiescer{inner: s, acked: func() int { return 0 }, paused: func() { atInstant = treeState(t, root) }}
	cloneDir := t.TempDir()
	src := &snapshot.ZFS{Tool: tool, Paths: []string{root}, CloneDir: cloneDir, Consistency: snapshot.Consistency{Quiescer: q}}
	v, err := src.Take(ctx)
	if err != nil {
		t.Fatal(err)
	}
	deliver(t, s, alice, store.Inbox, "late-a")
	deliver(t, s, bob, store.Inbox, "late-b")

	snaps, err := tool.Snapshots(ctx, p.Name+"/mail")
	if err != nil {
		t.Fatal(err)
	}
	if len(snaps) != 1 || len(snaps[0].Members) != 3 {
		t.Fatalf("want one recursive snapshot of mail, alice and bob: %+v", snaps)
	}
	if got := treeState(t, v.Path(root)); !equalMaps(got, atInstant, "") {
		t.Fatalf("view differs from the tree at the instant:\n got %q\nwant %q", keys(got), keys(atInstant))
	}
	snap := backupView(t, r, v, root)
	got := map[string]string{}
	for k, c := range treeState(t, restoreTo(t, r, snap)) {
		got[strings.TrimPrefix(k, "mail/")] = c
	}
	if !equalMaps(got, atInstant, "") {
		t.Fatalf("restore differs from the tree at the instant:\n got %q\nwant %q", keys(got), keys(atInstant))
	}
	if ids := messageIDs(t, restoreTo(t, r, snap)); len(ids) != 4 {
		t.Errorf("restore has %d messages, want 4: %v", len(ids), ids)
	}
	if err := v.Release(ctx); err != nil {
		t.Fatal(err)
	}
	list := zfstest.Run(t, "zfs", "list", "-H", "-o", "name", "-t", "filesystem,snapshot", "-r", p.Name)
	if strings.Contains(list, "-view") || strings.Contains(list, "@") {
		t.Fatalf("clones or snapshots left after Release:\n%s", list)
	}
	if ents, _ := os.ReadDir(cloneDir); len(ents) != 0 {
		t.Fatalf("%d entries left in the clone directory", len(ents))
	}
}
