package snapshot

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// DefaultHoldTag is the tag of the hold a ZFS view keeps on its snapshot
// while a backup reads it.
const DefaultHoldTag = "mailvault-backup"

// ZFS takes a view by snapshotting the dataset that holds each path —
// recursively when other datasets are mounted below the path — and reads
// it through the dataset's .zfs/snapshot directory where that exists
// (OpenZFS), else through a read-only clone mounted in a temporary
// directory (zfs-fuse has no .zfs directory). A path with other datasets
// mounted below it must have each of them as a path of its own (see
// checkSpans). A hold protects the snapshot while the view is in use.
type ZFS struct {
	Tool        *ZFSTool
	Paths       []string
	Consistency Consistency
	// Keep leaves the snapshot in place when the view is released, for
	// local retention to prune later; otherwise it is destroyed.
	Keep bool
	// HoldTag is the tag of the view's hold (DefaultHoldTag if empty).
	HoldTag string
	// CloneDir is where clones are mounted (os.TempDir() if empty).
	CloneDir string
}

type zfsTarget struct {
	ds        Dataset
	recursive bool
}

// Take snapshots the datasets while writers are paused and returns a view
// of the snapshot.
func (z *ZFS) Take(ctx context.Context) (*View, error) {
	tag := z.HoldTag
	if tag == "" {
		tag = DefaultHoldTag
	}
	locs := make([]*Location, len(z.Paths))
	var targets []zfsTarget
	for i, p := range z.Paths {
		loc, err := z.Tool.Locate(ctx, p)
		if err != nil {
			return nil, err
		}
		locs[i] = loc
		targets = addTarget(targets, zfsTarget{ds: loc.Dataset, recursive: len(loc.Below) > 0})
	}
	if err := z.checkSpans(locs); err != nil {
		return nil, err
	}
	targets = dropCovered(targets)

	v := &View{Mode: ModeZFS, Paths: map[string]string{}}
	var (
		name     string
		sets     []Snap
		held     []Snap
		clones   []string // dataset names, in creation order
		cloneDir []string
	)
	cleanup := func(ctx context.Context) error {
		var errs []error
		for i := len(clones) - 1; i >= 0; i-- {
			errs = append(errs, z.Tool.destroy(ctx, clones[i], false))
		}
		for _, d := range cloneDir {
			errs = append(errs, os.RemoveAll(d))
		}
		for _, s := range held {
			errs = append(errs, z.Tool.Release(ctx, s, tag))
		}
		if !z.Keep {
			for _, s := range sets {
				errs = append(errs, z.Tool.Destroy(ctx, s))
			}
		}
		return errors.Join(errs...)
	}
	fail := func(err error) (*View, error) {
		return nil, errors.Join(err, cleanup(context.WithoutCancel(ctx)))
	}

	pause, err := z.Consistency.Freeze(ctx, func(ctx context.Context) error {
		v.Time = time.Now().UTC()
		for i, t := range targets {
			if i == 0 {
				n, err := z.Tool.Take(ctx, t.ds.Name, t.recursive, v.Time)
				if err != nil {
					return err
				}
				name = n
			} else if err := z.Tool.takeNamed(ctx, t.ds.Name, t.recursive, name); err != nil {
				return err
			}
			sets = append(sets, Snap{Name: name, Dataset: t.ds.Name})
		}
		return nil
	})
	v.Pause = pause
	if err != nil {
		return fail(err)
	}
	for i, s := range sets {
		full, err := z.Tool.snapshot(ctx, s)
		if err != nil {
			return fail(err)
		}
		sets[i] = full
		v.Names = append(v.Names, full.FullName())
		if err := z.Tool.Hold(ctx, full, tag); err != nil {
			return fail(err)
		}
		held = append(held, full)
	}

	for i, p := range z.Paths {
		loc := locs[i]
		dir := filepath.Join(loc.Dataset.Mountpoint, ".zfs", "snapshot", name, loc.Rel)
		if fi, err := os.Stat(dir); err == nil && fi.IsDir() {
			v.Paths[p] = dir
			continue
		}
		// No .zfs directory (zfs-fuse): a read-only clone, mounted on
		// its own. Clones are never mounted inside one another: on
		// zfs-fuse, destroying a clone mounted inside another clone
		// deadlocks the daemon.
		base, err := os.MkdirTemp(z.CloneDir, "mailvault-view-")
		if err != nil {
			return fail(fmt.Errorf("snapshot: %w", err))
		}
		cloneDir = append(cloneDir, base)
		clone := loc.Dataset.Pool() + "/" + name + "-view" + strconv.Itoa(len(clones))
		if err := z.Tool.Clone(ctx, loc.Dataset.Name+"@"+name, clone, base); err != nil {
			return fail(err)
		}
		clones = append(clones, clone)
		v.Paths[p] = filepath.Join(base, loc.Rel)
	}
	v.release = cleanup
	return v, nil
}

// checkSpans refuses a path with another dataset mounted below it, unless
// that dataset's mountpoint is itself one of the paths: a view shows one
// dataset per path (a dataset's snapshot shows the mountpoints of the
// datasets below it as empty directories). All snapshots of one view are
// taken in one pause, so giving each dataset's mountpoint as a path
// keeps the backup consistent.
func (z *ZFS) checkSpans(locs []*Location) error {
	given := map[string]bool{}
	for _, p := range z.Paths {
		given[p] = true
	}
	for i, loc := range locs {
		for _, d := range loc.Below {
			if !given[d.Mountpoint] {
				return fmt.Errorf("snapshot: %s spans ZFS datasets (%s is mounted at %s): give %s as a path of its own too", z.Paths[i], d.Name, d.Mountpoint, d.Mountpoint)
			}
		}
	}
	return nil
}

// addTarget adds t unless its dataset is there already (then the
// recursive flags merge).
func addTarget(ts []zfsTarget, t zfsTarget) []zfsTarget {
	for i := range ts {
		if ts[i].ds.Name == t.ds.Name {
			ts[i].recursive = ts[i].recursive || t.recursive
			return ts
		}
	}
	return append(ts, t)
}

// dropCovered removes targets that a recursive snapshot of an ancestor
// takes already (taking them again would fail: the name exists).
func dropCovered(ts []zfsTarget) []zfsTarget {
	var out []zfsTarget
	for _, t := range ts {
		covered := false
		for _, u := range ts {
			covered = covered || (u.recursive && strings.HasPrefix(t.ds.Name, u.ds.Name+"/"))
		}
		if !covered {
			out = append(out, t)
		}
	}
	return out
}

// takeNamed snapshots a dataset under an exact name.
func (t *ZFSTool) takeNamed(ctx context.Context, dataset string, recursive bool, name string) error {
	args := []string{"snapshot"}
	if recursive {
		args = append(args, "-r")
	}
	if _, err := t.run(ctx, "zfs", append(args, dataset+"@"+name)...); err != nil {
		return fmt.Errorf("snapshot: take %s@%s: %w", dataset, name, err)
	}
	return nil
}
