package snapshot_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/mailvault/mailvault/mailserver/store"
	"github.com/mailvault/mailvault/snapshot"
	"github.com/mailvault/mailvault/snapshot/zfstest"
)

// viewHelper is the test binary run as a process that takes a view of
// the paths in MAILVAULT_VIEW_PATHS (one a line), prints it as JSON and
// waits — like a backup reading the view — until it is killed.
func viewHelper(mode string) int {
	ctx := context.Background()
	src, err := snapshot.New(ctx, snapshot.Mode(mode), strings.Split(os.Getenv("MAILVAULT_VIEW_PATHS"), "\n"), snapshot.Consistency{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if z, ok := src.(*snapshot.ZFS); ok {
		z.CloneDir = os.Getenv("MAILVAULT_VIEW_CLONEDIR")
		z.Keep = os.Getenv("MAILVAULT_VIEW_KEEP") == "1"
	}
	v, err := src.Take(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := json.NewEncoder(os.Stdout).Encode(v); err != nil {
		return 1
	}
	_, _ = io.Copy(io.Discard, os.Stdin) // until killed
	return 0
}

// startViewHelper starts a viewHelper process and returns it once its
// view is taken, with the view.
func startViewHelper(t *testing.T, mode string, keep bool, cloneDir string, paths ...string) (*exec.Cmd, *snapshot.View) {
	t.Helper()
	return startViewHelperIn(t, nil, mode, keep, cloneDir, paths...)
}

// startViewHelperIn is startViewHelper with the helper run by a wrapper
// command (e.g. unshare).
func startViewHelperIn(t *testing.T, wrapper []string, mode string, keep bool, cloneDir string, paths ...string) (*exec.Cmd, *snapshot.View) {
	t.Helper()
	argv := append(append([]string{}, wrapper...), os.Args[0], "-test.run=^$")
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), "MAILVAULT_VIEW_HELPER="+mode, "MAILVAULT_VIEW_PATHS="+strings.Join(paths, "\n"),
		"MAILVAULT_VIEW_CLONEDIR="+cloneDir, fmt.Sprintf("MAILVAULT_VIEW_KEEP=%d", map[bool]int{false: 0, true: 1}[keep]))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadBytes('\n')
	if err != nil {
		t.Fatalf("view helper: %v: %s", err, stderr.String())
	}
	var v snapshot.View
	if err := json.Unmarshal(line, &v); err != nil {
		t.Fatalf("view helper said %q: %v", line, err)
	}
	return cmd, &v
}

func kill(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
}

// userPool makes a pool whose dataset "mail" holds the store, and in it
// each user's directory is a dataset of its own (mounted at
// <domain>/<user>, by an explicit mountpoint).
func userPool(t *testing.T) (zfstest.Pool, string) {
	t.Helper()
	p := zfstest.NewPool(t)
	zfstest.Run(t, "zfs", "create", p.Name+"/mail")
	root := filepath.Join(p.Mount, "mail")
	for _, a := range []store.Account{alice, bob} {
		zfstest.Run(t, "zfs", "create", "-o", "mountpoint="+filepath.Join(root, a.Domain, a.User), p.Name+"/mail/"+a.User)
	}
	return p, root
}

func exists(p string) bool { _, err := os.Lstat(p); return err == nil }

// TestCleanupAfterKill kills (SIGKILL) a process holding a view, as a
// backup reading it would be killed, and checks that the next Take
// removes what it left — and only that: not while the owner lives, not
// the user's look-alikes, not what another host's process owns.
func TestCleanupAfterKill(t *testing.T) {
	tests := []struct {
		mode snapshot.Mode
		keep bool
	}{
		{snapshot.ModeHardlink, false},
		{snapshot.ModeZFS, false},
		{snapshot.ModeZFS, true},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s keep=%v", tt.mode, tt.keep), func(t *testing.T) {
			ctx := t.Context()
			var root, pool string
			if tt.mode == snapshot.ModeZFS {
				var p zfstest.Pool
				p, root = userPool(t)
				pool = p.Name
			} else {
				root = filepath.Join(t.TempDir(), "mail")
			}
			s := openStore(t, root)
			deliver(t, s, alice, store.Inbox, "a1", "a2")
			deliver(t, s, bob, store.Inbox, "b1")
			cloneDir := t.TempDir()
			parent := filepath.Dir(root)

			// Look-alikes that are not a dead process's.
			foreign := "host=elsewhere.example pid=1 start=1 boot=x"
			var lookalikes []string
			if tt.mode == snapshot.ModeHardlink {
				for _, d := range []string{".mail.mailvault-view-users-own", ".mail.mailvault-view-other-host"} {
					lookalikes = append(lookalikes, filepath.Join(parent, d))
					if err := os.MkdirAll(filepath.Join(parent, d, "keep-me"), 0o700); err != nil {
						t.Fatal(err)
					}
				}
				if err := os.WriteFile(lookalikes[1]+".owner", []byte(foreign+"\n"), 0o600); err != nil {
					t.Fatal(err)
				}
			} else {
				lookalikes = []string{pool + "/mail@mailvault-20200101T000000.000Z", pool + "/mail@mailvault-20200102T000000.000Z"}
				zfstest.Run(t, "zfs", "snapshot", lookalikes[0])
				zfstest.Run(t, "zfs", "snapshot", "-o", "mailvault:owner="+foreign, lookalikes[1])
			}

			take := func() *snapshot.View {
				t.Helper()
				src, err := snapshot.New(ctx, tt.mode, []string{root}, snapshot.Consistency{})
				if err != nil {
					t.Fatal(err)
				}
				if z, ok := src.(*snapshot.ZFS); ok {
					z.CloneDir, z.Keep = cloneDir, tt.keep
				}
				v, err := src.Take(ctx)
				if err != nil {
					t.Fatal(err)
				}
				return v
			}
			// ours lists what views made: clone datasets and snapshots
			// named mailvault-… (ZFS) or link trees, owner files and
			// clone directories.
			ours := func() []string {
				t.Helper()
				var out []string
				if tt.mode == snapshot.ModeZFS {
					list := zfstest.Run(t, "zfs", "list", "-H", "-o", "name", "-t", "filesystem,snapshot", "-r", pool)
					for _, n := range strings.Fields(list) {
						if strings.Contains(n, "-view") || (strings.Contains(n, "@"+snapshot.Prefix) && !slices.Contains(lookalikes, n) && !strings.HasPrefix(n, pool+"/mail/")) {
							out = append(out, n)
						}
					}
				}
				for _, dir := range []string{parent, cloneDir} {
					ents, _ := os.ReadDir(dir)
					for _, e := range ents {
						p := filepath.Join(dir, e.Name())
						if strings.Contains(e.Name(), "mailvault-view-") && !slices.Contains(lookalikes, strings.TrimSuffix(p, ".owner")) {
							out = append(out, p)
						}
					}
				}
				slices.Sort(out)
				return out
			}

			helper, hv := startViewHelper(t, string(tt.mode), tt.keep, cloneDir, root)
			left := ours()
			if len(left) == 0 {
				t.Fatal("the helper's view made nothing")
			}
			t.Logf("the helper's view: %v; made %q", hv.Names, left)

			// While the owner runs, nothing of its view goes.
			v := take()
			if len(v.Leftovers) != 0 {
				t.Fatalf("a Take while the owner runs cleaned %+v", v.Leftovers)
			}
			if err := v.Release(ctx); err != nil {
				t.Fatal(err)
			}
			var kept []string // snapshots kept by views that ended well
			if tt.keep {
				kept = append(kept, v.Names[0])
				left = append(left, v.Names[0])
				slices.Sort(left)
			}
			if got := ours(); !slices.Equal(got, left) {
				t.Fatalf("with the owner alive: %q, want %q", got, left)
			}

			kill(t, helper)
			if got := ours(); !slices.Equal(got, left) {
				t.Fatalf("after the kill: %q, want what the view made: %q", got, left)
			}

			deliver(t, s, alice, store.Inbox, "a3")
			want := treeState(t, root)
			v = take()
			t.Logf("cleaned: %+v", v.Leftovers)
			if len(v.Leftovers) == 0 {
				t.Fatal("the next Take cleaned nothing")
			}
			for _, lo := range v.Leftovers {
				if lo.Err != "" || (lo.Action != "removed" && lo.Action != "destroyed" && lo.Action != "released") {
					t.Errorf("leftover %+v", lo)
				}
			}
			if got := treeState(t, v.Path(root)); !equalMaps(got, want, "") {
				t.Fatalf("the view after the cleanup differs from the tree:\n got %q\nwant %q", keys(got), keys(want))
			}
			if err := v.Release(ctx); err != nil {
				t.Fatal(err)
			}

			got := ours()
			var wantLeft []string
			if tt.keep {
				// The kept snapshots stay, unheld and unmarked: for
				// retention to prune.
				wantLeft = append(kept, hv.Names[0], v.Names[0])
				for _, n := range wantLeft {
					props := zfstest.Run(t, "zfs", "get", "-H", "-p", "-o", "value", "userrefs,mailvault:owner,mailvault:view", n)
					if f := strings.Fields(props); !slices.Equal(f, []string{"0", "-", "-"}) {
						t.Errorf("kept snapshot %s: userrefs, owner, view = %q", n, f)
					}
				}
				slices.Sort(wantLeft)
			}
			if !slices.Equal(got, wantLeft) {
				t.Fatalf("left after the cleanup and a release: %q, want %q", got, wantLeft)
			}
			for _, l := range lookalikes {
				if tt.mode == snapshot.ModeHardlink {
					if !exists(filepath.Join(l, "keep-me")) {
						t.Errorf("the cleanup removed %s", l)
					}
				} else if _, err := zfstest.RunErr(ctx, "zfs", "list", l); err != nil {
					t.Errorf("the cleanup destroyed %s: %v", l, err)
				}
			}
		})
	}
}

// TestOwnerDead tells a dead owner from a live one.
func TestOwnerDead(t *testing.T) {
	me, err := snapshot.CurrentOwner()
	if err != nil {
		t.Fatal(err)
	}
	if back, err := snapshot.ParseOwner(me.String()); err != nil || back != me {
		t.Fatalf("ParseOwner(%q) = %+v, %v", me.String(), back, err)
	}
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	with := func(f func(o *snapshot.Owner)) snapshot.Owner { o := me; f(&o); return o }
	tests := []struct {
		name  string
		owner snapshot.Owner
		dead  bool
	}{
		{"this process", me, false},
		{"exited process", with(func(o *snapshot.Owner) { o.PID = gone.Process.Pid }), true},
		{"earlier boot", with(func(o *snapshot.Owner) { o.Boot = "an-earlier-boot" }), true},
		{"PID reused", with(func(o *snapshot.Owner) { o.Start++ }), true},
		{"other host", with(func(o *snapshot.Owner) { o.Host = "elsewhere.example"; o.PID = gone.Process.Pid }), false},
		{"other PID namespace", with(func(o *snapshot.Owner) { o.PidNS++; o.PID = gone.Process.Pid }), false},
		{"other PID namespace, earlier boot", with(func(o *snapshot.Owner) { o.PidNS++; o.Boot = "an-earlier-boot" }), true},
		{"record without a namespace", with(func(o *snapshot.Owner) { o.PidNS = 0; o.PID = gone.Process.Pid }), true},
	}
	for _, tt := range tests {
		if dead, why := tt.owner.Dead(); dead != tt.dead {
			t.Errorf("%s: dead = %v (%s), want %v", tt.name, dead, why, tt.dead)
		}
	}
	// Records of older versions have no pidns.
	if o, err := snapshot.ParseOwner("host=h pid=7 start=9 boot=b"); err != nil || o.PidNS != 0 || o.PID != 7 {
		t.Errorf("ParseOwner of a record without pidns: %+v, %v", o, err)
	}
	for _, bad := range []string{"", "host=x", "host=x pid=1 start=1 pidns=5", "host=x pid=0 start=1 boot=b", "host=x pid=y start=1 boot=b"} {
		if _, err := snapshot.ParseOwner(bad); err == nil {
			t.Errorf("ParseOwner(%q) accepted", bad)
		}
	}
}

// TestOwnerOtherPIDNamespace runs a view's owner in a PID namespace of
// its own, as in a container (unshare --pid --fork --mount-proc): its
// PID, 1 there, names another process here. Such an owner is alive
// unless proven otherwise (only a reboot proves it dead), so neither a
// Take while it runs nor one after it was killed removes its link tree.
// Judged by PID alone, it was dead from the start.
func TestOwnerOtherPIDNamespace(t *testing.T) {
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("unshare (util-linux) is missing")
		}
		t.Skip("no unshare")
	}
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("a new PID namespace needs root")
		}
		t.Skip("a new PID namespace needs root")
	}
	ctx := t.Context()
	root := filepath.Join(t.TempDir(), "mail")
	s := openStore(t, root)
	deliver(t, s, alice, store.Inbox, "a1")
	me, err := snapshot.CurrentOwner()
	if err != nil {
		t.Fatal(err)
	}

	// --kill-child: the helper (PID 1 of the namespace) dies with unshare.
	helper, hv := startViewHelperIn(t, []string{unshare, "--pid", "--fork", "--mount-proc", "--kill-child"}, "hardlink", false, "", root)
	tree := hv.Names[0]
	raw, err := os.ReadFile(tree + ".owner")
	if err != nil {
		t.Fatal(err)
	}
	o, err := snapshot.ParseOwner(string(raw))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("owner in the namespace: %s; this process: %s", o, me)
	if o.PidNS == 0 || o.PidNS == me.PidNS || o.PID != 1 || o.Boot != me.Boot {
		t.Fatalf("owner %+v: want PID 1 in another PID namespace than %d, same boot", o, me.PidNS)
	}

	take := func() []snapshot.Leftover {
		t.Helper()
		src, err := snapshot.New(ctx, snapshot.ModeHardlink, []string{root}, snapshot.Consistency{})
		if err != nil {
			t.Fatal(err)
		}
		v, err := src.Take(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := v.Release(ctx); err != nil {
			t.Fatal(err)
		}
		return v.Leftovers
	}
	for _, phase := range []string{"running", "killed"} {
		if phase == "killed" {
			kill(t, helper)
		}
		if dead, why := o.Dead(); dead || !strings.Contains(why, "PID namespace") {
			t.Errorf("%s: Dead() = %v, %q; want alive (another PID namespace)", phase, dead, why)
		}
		if left := take(); len(left) != 0 {
			t.Errorf("%s: a Take cleaned %+v", phase, left)
		}
		if !exists(filepath.Join(tree, "example.com")) {
			t.Fatalf("%s: the link tree of the owner in another namespace is gone", phase)
		}
	}

	// An owner record of an older version (no pidns) is judged as
	// before: by PID and start time in this namespace.
	old := o
	old.PidNS = 0
	if dead, why := old.Dead(); !dead {
		t.Errorf("owner without a namespace, PID 1 with another start time: Dead() = false (%s)", why)
	}
	if err := os.RemoveAll(tree); err != nil {
		t.Fatal(err)
	}
	os.Remove(tree + ".owner")
}
