package snapshot_test

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mailvault/mailvault/mailserver/store"
	"github.com/mailvault/mailvault/snapshot"
	"github.com/mailvault/mailvault/snapshot/zfstest"
)

// TestZFSSend sends a store spanning datasets to a second pool: in full,
// then incrementally after new mail, then nothing when up to date. The
// received datasets hold the files of the snapshot each time; the source
// keeps a hold on the newest snapshot sent (the next base), and nothing on
// the destination that is not mailvault's is destroyed.
func TestZFSSend(t *testing.T) {
	ctx := t.Context()
	p, root := userPool(t)
	p2 := zfstest.NewPool(t)
	s := openStore(t, root)
	deliver(t, s, alice, store.Inbox, "a1", "a2")
	deliver(t, s, bob, store.Inbox, "b1")
	tool := newTool(t)
	src, dest := p.Name+"/mail", p2.Name+"/copy"
	destRoot := filepath.Join(p2.Mount, "copy")

	at := time.Now()
	tests := []struct {
		name        string
		mail        []string // delivered to alice before the snapshot
		incremental bool
	}{
		{"full", nil, false},
		{"incremental", []string{"a3", "a4"}, true},
		{"incremental again", []string{"a5"}, true},
	}
	var prev string
	for _, tt := range tests {
		deliver(t, s, alice, store.Inbox, tt.mail...)
		at = at.Add(time.Second)
		name, err := tool.Take(ctx, src, true, at)
		if err != nil {
			t.Fatal(err)
		}
		want := treeState(t, root)
		res, err := tool.Send(ctx, snapshot.SendOptions{Source: src, Dest: dest})
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		t.Logf("%s: %d bytes, %+v", tt.name, res.Bytes, res.Datasets)
		if res.Snapshot != src+"@"+name || res.Incremental != tt.incremental || res.Bytes <= 0 || len(res.Datasets) != 3 {
			t.Fatalf("%s: result %+v", tt.name, res)
		}
		for _, d := range res.Datasets {
			if d.From != prev {
				t.Errorf("%s: %s sent from %q, want %q", tt.name, d.Source, d.From, prev)
			}
		}
		if got := treeState(t, destRoot); !equalMaps(got, want, "") {
			t.Fatalf("%s: received tree differs:\n got %q\nwant %q", tt.name, keys(got), keys(want))
		}
		// The newest snapshot sent is held on the source, and only it.
		snaps, err := tool.Snapshots(ctx, src)
		if err != nil {
			t.Fatal(err)
		}
		for _, sn := range snaps {
			wantHolds := 0
			if sn.Name == name {
				wantHolds = 3
			}
			if sn.Holds != wantHolds || (wantHolds > 0 && !slices.Equal(sn.HoldTags, []string{snapshot.SentTag(dest)})) {
				t.Errorf("%s: %s has %d holds %q, want %d", tt.name, sn.Name, sn.Holds, sn.HoldTags, wantHolds)
			}
		}
		prev = name
	}

	// Up to date: nothing is sent.
	res, err := tool.Send(ctx, snapshot.SendOptions{Source: src, Dest: dest})
	if err != nil {
		t.Fatal(err)
	}
	if res.Bytes != 0 || !res.Incremental {
		t.Fatalf("up to date send: %+v", res)
	}
	for _, d := range res.Datasets {
		if !d.UpToDate {
			t.Errorf("%s not up to date", d.Source)
		}
	}

	// A snapshot of the user's on the destination stops the next send;
	// it is not destroyed to make way.
	zfstest.Run(t, "zfs", "snapshot", dest+"@users-own")
	if _, err := tool.Take(ctx, src, true, at.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := tool.Send(ctx, snapshot.SendOptions{Source: src, Dest: dest}); err == nil {
		t.Fatal("send over a destination with a newer snapshot of the user's succeeded")
	}
	if _, err := zfstest.RunErr(ctx, "zfs", "list", dest+"@users-own"); err != nil {
		t.Fatalf("the user's snapshot on the destination is gone: %v", err)
	}
	// The refused send leaves the copy mounted, as it found it (each send
	// unmounts the datasets below the top while it receives).
	if got := zfstest.Run(t, "zfs", "get", "-H", "-r", "-o", "value", "mounted", dest); strings.Count(got, "yes") != 3 {
		t.Fatalf("after the refused send, mounted: %q", got)
	}
	list := zfstest.Run(t, "zfs", "list", "-H", "-o", "name", "-t", "snapshot", "-r", dest)
	if n := strings.Count(list, "@"+snapshot.Prefix); n != 9 {
		t.Errorf("destination has %d mailvault snapshots, want 3 sets of 3:\n%s", n, list)
	}
	// A send to a dataset that exists without a common snapshot is
	// refused.
	zfstest.Run(t, "zfs", "create", p2.Name+"/other")
	if _, err := tool.Send(ctx, snapshot.SendOptions{Source: src, Dest: p2.Name + "/other"}); err == nil || !strings.Contains(err.Error(), "in common") {
		t.Fatalf("send to an unrelated existing dataset: %v", err)
	}

	// What a killed send leaves — its mark and hold on a snapshot — is
	// released by the next cleanup.
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	dead, err := snapshot.CurrentOwner()
	if err != nil {
		t.Fatal(err)
	}
	dead.PID = gone.Process.Pid
	target := src + "@" + prev
	zfstest.Run(t, "zfs", "set", "mailvault:sending="+dead.String(), target)
	zfstest.Run(t, "zfs", "hold", snapshot.SendHoldTag, target)
	left, err := tool.CleanLeftovers(ctx, p.Name, t.TempDir())
	if err != nil || len(left) != 1 || left[0].Kind != "send-hold" || left[0].Action != "released" {
		t.Fatalf("cleanup after a killed send: %+v, %v", left, err)
	}
	if f := strings.Fields(zfstest.Run(t, "zfs", "get", "-H", "-p", "-o", "value", "userrefs,mailvault:sending", target)); !slices.Equal(f, []string{"1", "-"}) {
		t.Fatalf("after the cleanup %s has userrefs, mark %q; want only the sent hold", target, f)
	}
}

// TestCleanPartialReceive: what CleanLeftovers does with datasets marked
// by a send's full receive. ZFS discards a receive whose stream ends
// early by itself (TestCLIKillDuringSnapshotSend kills a real one), so
// these states, which a receive ZFS did not discard would leave, are
// built by hand: only a marked dataset of a dead send, without snapshot,
// unmounted and with nothing below it, is destroyed.
func TestCleanPartialReceive(t *testing.T) {
	ctx := t.Context()
	p := zfstest.NewPool(t)
	tool := newTool(t)
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	me, err := snapshot.CurrentOwner()
	if err != nil {
		t.Fatal(err)
	}
	dead := me
	dead.PID = gone.Process.Pid
	other := dead
	other.Host = "elsewhere.example"

	tests := []struct {
		name   string
		mark   string // the mailvault:receiving value; "" for none
		setup  func(ds string)
		action string // "" when the cleanup must not report it
		stays  bool
	}{
		{"incomplete", dead.String(), nil, "destroyed", false},
		{"received whole", dead.String(), func(ds string) { zfstest.Run(t, "zfs", "snapshot", ds+"@"+snapshot.SnapshotName(time.Now())) }, "kept", true},
		{"something below", dead.String(), func(ds string) { zfstest.Run(t, "zfs", "create", ds+"/child") }, "kept", true},
		{"mounted", dead.String(), func(ds string) { zfstest.Run(t, "zfs", "mount", ds) }, "kept", true},
		{"live send", me.String(), nil, "", true},
		{"other host", other.String(), nil, "", true},
		{"not marked", "", nil, "", true},
	}
	for i, tt := range tests {
		ds := fmt.Sprintf("%s/r%d", p.Name, i)
		args := []string{"create", "-o", "canmount=noauto"}
		if tt.mark != "" {
			args = append(args, "-o", "mailvault:receiving="+tt.mark)
		}
		zfstest.Run(t, "zfs", append(args, ds)...)
		if tt.setup != nil {
			tt.setup(ds)
		}
	}
	left, err := tool.CleanLeftovers(ctx, p.Name, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("cleaned: %+v", left)
	for i, tt := range tests {
		ds := fmt.Sprintf("%s/r%d", p.Name, i)
		var got []snapshot.Leftover
		for _, lo := range left {
			if lo.Name == ds {
				got = append(got, lo)
			}
		}
		switch {
		case tt.action == "" && len(got) != 0:
			t.Errorf("%s: cleaned %+v", tt.name, got)
		case tt.action != "" && (len(got) != 1 || got[0].Action != tt.action || got[0].Kind != "partial-receive" || got[0].Err != ""):
			t.Errorf("%s: cleaned %+v, want one partial-receive %s", tt.name, got, tt.action)
		}
		_, err := zfstest.RunErr(ctx, "zfs", "list", ds)
		if (err == nil) != tt.stays {
			t.Errorf("%s: the dataset stays: %v, want %v", tt.name, err == nil, tt.stays)
		}
		if tt.name == "received whole" {
			if v := strings.TrimSpace(zfstest.Run(t, "zfs", "get", "-H", "-o", "value", "mailvault:receiving", ds)); v != "-" {
				t.Errorf("%s: the mark stays: %q", tt.name, v)
			}
		}
	}
}
