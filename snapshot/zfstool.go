package snapshot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	zfs "github.com/mistifyio/go-zfs/v3"
)

// Prefix starts the name of every snapshot mailvault takes; retention
// only ever prunes snapshots with it.
const Prefix = "mailvault-"

// holdsProperty is the user property in which mailvault notes the tags
// of the holds it placed on a snapshot. ZFS itself counts holds (the
// userrefs property, which every ZFS answers), but the command that names
// them, zfs holds, does not work everywhere (zfs-fuse); the note lets
// prune say whose hold keeps a snapshot there too.
const holdsProperty = "mailvault:holds"

// ErrHeld is returned when a snapshot cannot be destroyed because a hold
// protects it.
var ErrHeld = errors.New("snapshot is held")

// ZFSTool runs the zfs and zpool commands. It works with OpenZFS 2.x and
// with zfs-fuse 0.7, whose commands lack several options; it probes what
// the installed tools can do and does the rest itself:
//
//   - listing never uses "zfs list -p" (zfs-fuse lacks it; go-zfs's
//     listing calls use it), only "zfs list -H -o" and "zfs get -Hp";
//   - holds are counted by the userrefs property; "zfs holds" is tried
//     for their names and the holdsProperty note used where it fails;
//   - destroying a dataset that was just unmounted may answer "dataset is
//     busy" on zfs-fuse: destroys are retried a few times;
//   - a listing of every pool fails when another process destroys or
//     exports a pool during it, and zfs-fuse's zfs then even dies of
//     SIGSEGV: such listings are asked again (listAll).
//
// go-zfs runs the commands that work the same everywhere (destroy, set
// and get of a property).
type ZFSTool struct {
	Logger *slog.Logger

	mu        sync.Mutex
	holdsList *bool // nil until probed
}

// NewZFSTool checks that the zfs command answers.
func NewZFSTool(ctx context.Context) (*ZFSTool, error) {
	t := &ZFSTool{}
	if _, err := t.listAll(ctx, "-H", "-o", "name"); err != nil {
		return nil, fmt.Errorf("snapshot: zfs not usable: %w", err)
	}
	return t, nil
}

func (t *ZFSTool) logger() *slog.Logger {
	if t.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return t.Logger
}

// run runs zfs or zpool and returns its tab-separated output lines. Errors
// are go-zfs's *zfs.Error, so that callers see one error type whichever
// way a command ran.
func (t *ZFSTool) run(ctx context.Context, tool string, args ...string) ([][]string, error) {
	cmd := exec.CommandContext(ctx, tool, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	t.logger().Debug("zfs command", "cmd", tool+" "+strings.Join(args, " "), "err", err)
	if err != nil {
		return nil, &zfs.Error{Err: err, Debug: tool + " " + strings.Join(args, " "), Stderr: stderr.String()}
	}
	var out [][]string
	for _, l := range strings.Split(stdout.String(), "\n") {
		if l != "" {
			out = append(out, strings.Split(l, "\t"))
		}
	}
	return out, nil
}

// listAll runs "zfs list" with args over every pool. zfs walks the pools
// and fails the whole listing on one that is gone by the time it opens it
// ("cannot open 'p': no such pool"), as when another process destroys or
// exports a pool meanwhile; zfs-fuse's zfs dies of SIGSEGV there instead
// (seen in CI, with tests in two packages sharing the daemon). A listing
// changes nothing, so it is asked again, three times at most.
func (t *ZFSTool) listAll(ctx context.Context, args ...string) ([][]string, error) {
	var err error
	for range 3 {
		var out [][]string
		out, err = t.run(ctx, "zfs", append([]string{"list"}, args...)...)
		if err == nil || !poolVanished(err) || ctx.Err() != nil {
			return out, err
		}
		t.logger().Info("zfs list raced with a pool going away; asking again", "err", err)
	}
	return nil, err
}

// poolVanished reports whether a zfs command failed on a pool that went
// away under it, or died of a signal.
func poolVanished(err error) bool {
	var ze *zfs.Error
	if !errors.As(err, &ze) {
		return false
	}
	var ee *exec.ExitError
	if errors.As(ze.Err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return true
		}
	}
	return strings.Contains(ze.Stderr, "no such pool")
}

func stderrOf(err error) string {
	var ze *zfs.Error
	if errors.As(err, &ze) {
		return ze.Stderr
	}
	return ""
}

func isBusy(err error) bool { return strings.Contains(stderrOf(err), "busy") }

// Dataset is a mounted ZFS file system.
type Dataset struct {
	Name       string
	Mountpoint string
}

// Pool returns the name of the dataset's pool.
func (d Dataset) Pool() string { p, _, _ := strings.Cut(d.Name, "/"); return p }

// mounted lists the mounted file systems.
func (t *ZFSTool) mounted(ctx context.Context) ([]Dataset, error) {
	out, err := t.listAll(ctx, "-H", "-t", "filesystem", "-o", "name,mountpoint,mounted")
	if err != nil {
		return nil, err
	}
	var ds []Dataset
	for _, l := range out {
		if len(l) < 3 || l[2] != "yes" || !strings.HasPrefix(l[1], "/") {
			continue // legacy, none, or not mounted
		}
		ds = append(ds, Dataset{Name: l[0], Mountpoint: filepath.Clean(l[1])})
	}
	return ds, nil
}

// Location is where a path lies in ZFS.
type Location struct {
	Dataset Dataset // the dataset holding the path
	Rel     string  // the path relative to the dataset's mountpoint
	// Below are the datasets mounted under the path: they need the
	// snapshot to be recursive.
	Below []Dataset
}

// Locate finds the dataset that holds path and the datasets mounted
// below it.
func (t *ZFSTool) Locate(ctx context.Context, path string) (*Location, error) {
	p, err := filepath.EvalSymlinks(path)
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	p, err = filepath.Abs(p)
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	ds, err := t.mounted(ctx)
	if err != nil {
		return nil, err
	}
	var loc *Location
	for _, d := range ds {
		if within(p, d.Mountpoint) && (loc == nil || len(d.Mountpoint) > len(loc.Dataset.Mountpoint)) {
			loc = &Location{Dataset: d}
		}
	}
	if loc == nil {
		return nil, fmt.Errorf("snapshot: %s is not on a mounted ZFS dataset", path)
	}
	loc.Rel, _ = filepath.Rel(loc.Dataset.Mountpoint, p)
	for _, d := range ds {
		if strings.HasPrefix(d.Name, loc.Dataset.Name+"/") && within(d.Mountpoint, p) && d.Mountpoint != p {
			loc.Below = append(loc.Below, d)
		}
	}
	sort.Slice(loc.Below, func(i, j int) bool { return loc.Below[i].Mountpoint < loc.Below[j].Mountpoint })
	return loc, nil
}

// within reports whether p is dir or lies below it.
func within(p, dir string) bool {
	return p == dir || strings.HasPrefix(p, strings.TrimSuffix(dir, "/")+"/")
}

// onZFS reports whether every path is on a mounted ZFS dataset. It asks
// zfs rather than the mount table: zfs-fuse mounts show there as "fuse".
func onZFS(ctx context.Context, paths []string) bool {
	t := &ZFSTool{}
	if _, err := exec.LookPath("zfs"); err != nil {
		return false
	}
	for _, p := range paths {
		if _, err := t.Locate(ctx, p); err != nil {
			return false
		}
	}
	return true
}

// Snap is one snapshot, or one set of snapshots of the same name taken
// recursively over a dataset and its descendants.
type Snap struct {
	// Name is the part after '@'.
	Name string
	// Dataset is the shallowest dataset that has the snapshot.
	Dataset string
	// Members are the full names (dataset@name) of the set, shallowest
	// first.
	Members []string
	// Time is when it was taken: from the name for mailvault's own,
	// else from the creation property (minute precision on zfs-fuse).
	Time time.Time
	// Ours: the name starts with Prefix and carries a time.
	Ours bool
	// Holds counts the holds on all members; HoldTags names them where
	// that is known.
	Holds    int
	HoldTags []string
	// Clones are datasets cloned from a member: a snapshot with clones
	// cannot be destroyed.
	Clones []string
}

// FullName is dataset@name of the shallowest member.
func (s Snap) FullName() string { return s.Dataset + "@" + s.Name }

// nameLayout is the UTC time in the names of mailvault's snapshots.
const nameLayout = "20060102T150405.000Z"

// SnapshotName returns the name mailvault gives a snapshot taken at t.
func SnapshotName(t time.Time) string { return Prefix + t.UTC().Format(nameLayout) }

// parseName returns the time of one of mailvault's snapshot names.
func parseName(name string) (time.Time, bool) {
	rest, ok := strings.CutPrefix(name, Prefix)
	if !ok {
		return time.Time{}, false
	}
	// A suffix "-N" distinguishes snapshots taken in one millisecond.
	if i := strings.LastIndexByte(rest, '-'); i > 0 {
		if _, err := strconv.Atoi(rest[i+1:]); err == nil {
			rest = rest[:i]
		}
	}
	ts, err := time.Parse(nameLayout, rest)
	if err != nil {
		return time.Time{}, false
	}
	return ts, true
}

// Snapshots lists the snapshots of a dataset and its descendants, newest
// first, grouping the members of recursive snapshots.
func (t *ZFSTool) Snapshots(ctx context.Context, dataset string) ([]Snap, error) {
	out, err := t.run(ctx, "zfs", "list", "-H", "-t", "snapshot", "-s", "creation", "-o", "name,userrefs,creation,"+holdsProperty, "-r", dataset)
	if err != nil {
		return nil, err
	}
	clones, err := t.clones(ctx, dataset)
	if err != nil {
		return nil, err
	}
	byName := map[string]*Snap{}
	var order []string
	var held []string
	for _, l := range out {
		if len(l) < 4 {
			continue
		}
		ds, name, ok := strings.Cut(l[0], "@")
		if !ok {
			continue
		}
		s := byName[name]
		if s == nil {
			s = &Snap{Name: name, Dataset: ds}
			if ts, ok := parseName(name); ok {
				s.Time, s.Ours = ts, true
			} else if ts, err := time.ParseInLocation("Mon Jan _2 15:04 2006", l[2], time.Local); err == nil {
				s.Time = ts.UTC()
			}
			byName[name] = s
			order = append(order, name)
		}
		if strings.Count(ds, "/") < strings.Count(s.Dataset, "/") {
			s.Dataset = ds
		}
		s.Members = append(s.Members, l[0])
		refs, _ := strconv.Atoi(l[1])
		s.Holds += refs
		if refs > 0 {
			held = append(held, l[0])
			if l[3] != "-" && l[3] != "" {
				s.HoldTags = appendUnique(s.HoldTags, strings.Split(l[3], ",")...)
			}
		}
		s.Clones = append(s.Clones, clones[l[0]]...)
	}
	if len(held) > 0 {
		if tags, ok := t.holdTags(ctx, held); ok {
			for _, name := range order {
				s := byName[name]
				if s.Holds > 0 {
					s.HoldTags = nil
					for _, m := range s.Members {
						s.HoldTags = appendUnique(s.HoldTags, tags[m]...)
					}
				}
			}
		}
	}
	snaps := make([]Snap, 0, len(order))
	for _, name := range order {
		s := byName[name]
		sort.Slice(s.Members, func(i, j int) bool {
			return strings.Count(s.Members[i], "/") < strings.Count(s.Members[j], "/")
		})
		snaps = append(snaps, *s)
	}
	sort.SliceStable(snaps, func(i, j int) bool { return snaps[i].Time.After(snaps[j].Time) })
	return snaps, nil
}

func appendUnique(list []string, items ...string) []string {
	for _, it := range items {
		found := false
		for _, x := range list {
			found = found || x == it
		}
		if !found && it != "" {
			list = append(list, it)
		}
	}
	return list
}

// clones maps each snapshot of the dataset's pool to the datasets cloned
// from it. zfs-fuse has no "clones" property; every ZFS has "origin".
func (t *ZFSTool) clones(ctx context.Context, dataset string) (map[string][]string, error) {
	pool, _, _ := strings.Cut(dataset, "/")
	out, err := t.run(ctx, "zfs", "list", "-H", "-t", "filesystem,volume", "-o", "name,origin", "-r", pool)
	if err != nil {
		return nil, err
	}
	m := map[string][]string{}
	for _, l := range out {
		if len(l) == 2 && l[1] != "-" {
			m[l[1]] = append(m[l[1]], l[0])
		}
	}
	return m, nil
}

// holdTags asks "zfs holds" for the tags on snapshots; ok is false where
// the command does not work (zfs-fuse), which is remembered.
func (t *ZFSTool) holdTags(ctx context.Context, snaps []string) (map[string][]string, bool) {
	t.mu.Lock()
	probed := t.holdsList
	t.mu.Unlock()
	if probed != nil && !*probed {
		return nil, false
	}
	out, err := t.run(ctx, "zfs", append([]string{"holds", "-H"}, snaps...)...)
	works := err == nil
	t.mu.Lock()
	t.holdsList = &works
	t.mu.Unlock()
	if !works {
		t.logger().Debug("zfs holds does not work here; using the mailvault:holds note", "err", err)
		return nil, false
	}
	m := map[string][]string{}
	for _, l := range out {
		if len(l) >= 2 {
			m[l[0]] = append(m[l[0]], l[1])
		}
	}
	return m, true
}

// Take snapshots dataset (recursively when recursive) under a fresh
// mailvault name and returns that name.
func (t *ZFSTool) Take(ctx context.Context, dataset string, recursive bool, at time.Time) (string, error) {
	return t.take(ctx, dataset, recursive, at, nil)
}

// take is Take with properties set on every snapshot as it is created
// ("zfs snapshot -o", which every ZFS has): a marker set afterwards could
// be missing from a snapshot whose maker was killed in between.
func (t *ZFSTool) take(ctx context.Context, dataset string, recursive bool, at time.Time, props map[string]string) (string, error) {
	base := SnapshotName(at)
	name := base
	for i := 1; ; i++ {
		_, err := t.run(ctx, "zfs", snapshotArgs(dataset+"@"+name, recursive, props)...)
		if err == nil {
			return name, nil
		}
		if !strings.Contains(stderrOf(err), "exists") || i > 100 {
			return "", fmt.Errorf("snapshot: take %s@%s: %w", dataset, name, err)
		}
		name = fmt.Sprintf("%s-%d", base, i)
	}
}

// snapshotArgs are the arguments of "zfs snapshot". "-r" takes the
// dataset and all its descendants at one instant (atomically).
func snapshotArgs(full string, recursive bool, props map[string]string) []string {
	args := []string{"snapshot"}
	if recursive {
		args = append(args, "-r")
	}
	return append(append(args, propArgs(props)...), full)
}

// propArgs turns properties into "-o k=v" arguments, in a stable order.
func propArgs(props map[string]string) []string {
	keys := make([]string, 0, len(props))
	for k := range props {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var args []string
	for _, k := range keys {
		args = append(args, "-o", k+"="+props[k])
	}
	return args
}

// Hold places a hold with tag on every member of a snapshot set, so that
// nothing destroys it while it is in use.
func (t *ZFSTool) Hold(ctx context.Context, s Snap, tag string) error {
	for i, m := range s.Members {
		if _, err := t.run(ctx, "zfs", "hold", tag, m); err != nil {
			for _, done := range s.Members[:i] {
				_, _ = t.run(context.WithoutCancel(ctx), "zfs", "release", tag, done)
			}
			return fmt.Errorf("snapshot: hold %s: %w", m, err)
		}
		if err := t.noteTag(ctx, m, tag, true); err != nil {
			return err
		}
	}
	return nil
}

// Release removes the hold with tag from every member of a snapshot set.
// A member without that hold is not an error: releasing is idempotent.
func (t *ZFSTool) Release(ctx context.Context, s Snap, tag string) error {
	var errs []error
	for _, m := range s.Members {
		if _, err := t.run(ctx, "zfs", "release", tag, m); err != nil && !strings.Contains(stderrOf(err), "no such tag") {
			errs = append(errs, fmt.Errorf("snapshot: release %s: %w", m, err))
			continue
		}
		if err := t.noteTag(ctx, m, tag, false); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// noteTag adds or removes tag in the holdsProperty note of a snapshot.
func (t *ZFSTool) noteTag(ctx context.Context, snap, tag string, add bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	d := &zfs.Dataset{Name: snap, Type: zfs.DatasetSnapshot}
	cur, err := d.GetProperty(holdsProperty)
	if err != nil {
		return fmt.Errorf("snapshot: read %s of %s: %w", holdsProperty, snap, err)
	}
	var tags []string
	for _, x := range strings.Split(cur, ",") {
		if x != "" && x != "-" && x != tag {
			tags = append(tags, x)
		}
	}
	if add {
		tags = append(tags, tag)
	}
	if len(tags) == 0 {
		// "zfs inherit" removes a user property; go-zfs has no call
		// for it.
		if _, err := t.run(ctx, "zfs", "inherit", holdsProperty, snap); err != nil {
			return fmt.Errorf("snapshot: clear %s of %s: %w", holdsProperty, snap, err)
		}
		return nil
	}
	if err := d.SetProperty(holdsProperty, strings.Join(tags, ",")); err != nil {
		return fmt.Errorf("snapshot: note hold on %s: %w", snap, err)
	}
	return nil
}

// Destroy destroys a snapshot set, deepest member first. It refuses with
// ErrHeld when any member is held (zfs-fuse answers a held snapshot's
// destroy with the same "busy" as a transient one, so the count is
// checked first) and retries transient "busy" answers.
func (t *ZFSTool) Destroy(ctx context.Context, s Snap) error {
	fresh, err := t.snapshot(ctx, s)
	if err != nil {
		return err
	}
	if fresh.Holds > 0 {
		return fmt.Errorf("snapshot: %s: %w (%d holds: %s)", s.FullName(), ErrHeld, fresh.Holds, strings.Join(fresh.HoldTags, ","))
	}
	if len(fresh.Clones) > 0 {
		return fmt.Errorf("snapshot: %s has clones (%s)", s.FullName(), strings.Join(fresh.Clones, ","))
	}
	for i := len(fresh.Members) - 1; i >= 0; i-- {
		if err := t.destroy(ctx, fresh.Members[i], false); err != nil {
			return err
		}
	}
	return nil
}

// snapshot re-reads one snapshot set.
func (t *ZFSTool) snapshot(ctx context.Context, s Snap) (Snap, error) {
	all, err := t.Snapshots(ctx, s.Dataset)
	if err != nil {
		return Snap{}, err
	}
	for _, x := range all {
		if x.Name == s.Name {
			return x, nil
		}
	}
	return Snap{}, fmt.Errorf("snapshot: %s not found", s.FullName())
}

// destroy destroys one dataset or snapshot through go-zfs, retrying
// "busy" (zfs-fuse often answers so to the first destroy of a file system
// it has just unmounted).
func (t *ZFSTool) destroy(ctx context.Context, name string, recursive bool) error {
	var flags zfs.DestroyFlag
	if recursive {
		flags = zfs.DestroyRecursive
	}
	var err error
	for attempt := 0; attempt < 20; attempt++ {
		if cerr := ctx.Err(); cerr != nil {
			return cerr
		}
		err = (&zfs.Dataset{Name: name}).Destroy(flags)
		if err == nil || !isBusy(err) {
			break
		}
		t.logger().Debug("zfs destroy: busy, retrying", "dataset", name, "attempt", attempt)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(attempt+1) * 50 * time.Millisecond):
		}
	}
	if err != nil {
		return fmt.Errorf("snapshot: destroy %s: %w", name, err)
	}
	return nil
}

// Clone clones a snapshot, mounted at mountpoint, with properties (e.g.
// readonly=on) set as it is created.
func (t *ZFSTool) Clone(ctx context.Context, snap, clone, mountpoint string, props map[string]string) error {
	args := append([]string{"clone"}, propArgs(props)...)
	args = append(args, "-o", "mountpoint="+mountpoint, snap, clone)
	if _, err := t.run(ctx, "zfs", args...); err != nil {
		return fmt.Errorf("snapshot: clone %s: %w", snap, err)
	}
	return nil
}

// Used returns the bytes a dataset takes with its snapshots and
// descendants (the used property). "zfs get -Hp" gives exact bytes on
// OpenZFS and zfs-fuse alike ("zfs list -p" and logicalused are missing
// on zfs-fuse).
func (t *ZFSTool) Used(ctx context.Context, dataset string) (int64, error) {
	out, err := t.run(ctx, "zfs", "get", "-H", "-p", "-o", "value", "used", dataset)
	if err != nil {
		return 0, fmt.Errorf("snapshot: used bytes of %s: %w", dataset, err)
	}
	if len(out) != 1 || len(out[0]) != 1 {
		return 0, fmt.Errorf("snapshot: used bytes of %s: unexpected output %q", dataset, out)
	}
	n, err := strconv.ParseInt(out[0][0], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("snapshot: used bytes of %s: %w", dataset, err)
	}
	return n, nil
}

// PoolUsage is how full a pool is.
type PoolUsage struct {
	Pool      string
	Health    string
	Used      uint64 // bytes used by the pool's datasets
	Available uint64 // bytes still available to them
	Capacity  int    // percent of the pool allocated, as zpool reports it
}

// Usage reports how full a dataset's pool is. "zpool list -p" and "zfs
// list -p" are missing on zfs-fuse; "zfs get -Hp" is not.
func (t *ZFSTool) Usage(ctx context.Context, pool string) (PoolUsage, error) {
	u := PoolUsage{Pool: pool}
	out, err := t.run(ctx, "zpool", "list", "-H", "-o", "capacity,health", pool)
	if err != nil {
		return u, err
	}
	if len(out) != 1 || len(out[0]) != 2 {
		return u, fmt.Errorf("snapshot: zpool list %s: unexpected output %q", pool, out)
	}
	if u.Capacity, err = strconv.Atoi(strings.TrimSuffix(out[0][0], "%")); err != nil {
		return u, fmt.Errorf("snapshot: zpool capacity %q: %w", out[0][0], err)
	}
	u.Health = out[0][1]
	out, err = t.run(ctx, "zfs", "get", "-H", "-p", "-o", "property,value", "used,available", pool)
	if err != nil {
		return u, err
	}
	for _, l := range out {
		if len(l) != 2 {
			continue
		}
		v, err := strconv.ParseUint(l[1], 10, 64)
		if err != nil {
			return u, fmt.Errorf("snapshot: zfs get %s: %w", l[0], err)
		}
		switch l[0] {
		case "used":
			u.Used = v
		case "available":
			u.Available = v
		}
	}
	return u, nil
}
