package snapshot

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
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
// recursively, in one atomic "zfs snapshot -r", when other datasets are
// mounted below the path — and reads it through the dataset's
// .zfs/snapshot directory where that exists (OpenZFS) and the path spans
// no datasets, else through read-only clones: one of the dataset, mounted
// in a temporary directory, and one of each dataset mounted below the
// path, mounted at its place inside the first (a dataset's snapshot shows
// the mountpoints of the datasets below it as empty directories, so the
// view is stitched together like the live tree). A hold protects the
// snapshot while the view is in use.
//
// Everything a view creates records its Owner (the ownerProperty on
// snapshots and clones, set by "-o" as they are created; an owner file
// beside each clone directory), and every Take first removes what views
// of provably dead owners left behind on the pools it uses (see
// ZFSTool.CleanLeftovers).
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

// cloneDirPrefix starts the names of the directories clones are mounted
// in.
const cloneDirPrefix = "mailvault-view-"

// Take snapshots the datasets while writers are paused and returns a view
// of the snapshot.
func (z *ZFS) Take(ctx context.Context) (*View, error) {
	tag := z.HoldTag
	if tag == "" {
		tag = DefaultHoldTag
	}
	cloneParent := z.CloneDir
	if cloneParent == "" {
		cloneParent = os.TempDir()
	}
	owner, err := CurrentOwner()
	if err != nil {
		return nil, err
	}
	locs := make([]*Location, len(z.Paths))
	var targets []zfsTarget
	var pools []string
	for i, p := range z.Paths {
		loc, err := z.Tool.Locate(ctx, p)
		if err != nil {
			return nil, err
		}
		locs[i] = loc
		targets = addTarget(targets, zfsTarget{ds: loc.Dataset, recursive: len(loc.Below) > 0})
		pools = appendUnique(pools, loc.Dataset.Pool())
	}
	targets = dropCovered(targets)

	v := &View{Mode: ModeZFS, Paths: map[string]string{}}
	for _, pool := range pools {
		left, err := z.Tool.CleanLeftovers(ctx, pool, cloneParent)
		v.Leftovers = append(v.Leftovers, left...)
		if err != nil {
			// What is left is in the way of nothing: the view's names
			// are new. Report it and go on.
			z.Consistency.logger().Warn("snapshot: cleaning up after a killed backup", "pool", pool, "err", err)
		}
	}
	var (
		name     string
		sets     []Snap
		held     []Snap
		clones   []string // dataset names, in creation order
		cloneDir []string
	)
	cleanup := func(ctx context.Context) error {
		var errs []error
		// Deepest first: a clone mounted inside another goes before it.
		for i := len(clones) - 1; i >= 0; i-- {
			errs = append(errs, z.Tool.destroy(ctx, clones[i], false))
		}
		for _, d := range cloneDir {
			errs = append(errs, removeOwned(d, false))
		}
		for _, s := range held {
			errs = append(errs, z.Tool.Release(ctx, s, tag))
		}
		for _, s := range sets {
			if z.Keep {
				errs = append(errs, z.Tool.disown(ctx, s.Members))
			} else {
				errs = append(errs, z.Tool.Destroy(ctx, s))
			}
		}
		return errors.Join(errs...)
	}
	fail := func(err error) (*View, error) {
		return nil, errors.Join(err, cleanup(context.WithoutCancel(ctx)))
	}
	props := map[string]string{ownerProperty: owner.String(), viewProperty: viewMark(tag, z.Keep)}

	pause, err := z.Consistency.Freeze(ctx, func(ctx context.Context) error {
		v.Time = time.Now().UTC()
		for i, t := range targets {
			if i == 0 {
				n, err := z.Tool.take(ctx, t.ds.Name, t.recursive, v.Time, props)
				if err != nil {
					return err
				}
				name = n
			} else if err := z.Tool.takeNamed(ctx, t.ds.Name, t.recursive, name, props); err != nil {
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

	cloneProps := map[string]string{ownerProperty: owner.String(), "readonly": "on"}
	for i, p := range z.Paths {
		loc := locs[i]
		dir := filepath.Join(loc.Dataset.Mountpoint, ".zfs", "snapshot", name, loc.Rel)
		if fi, err := os.Stat(dir); err == nil && fi.IsDir() && len(loc.Below) == 0 {
			v.Paths[p] = dir
			continue
		}
		// No .zfs directory (zfs-fuse), or datasets to stitch in:
		// read-only clones. zfs-fuse answers the destroy of a clone
		// just unmounted with "busy" at times; destroy retries.
		base, err := newCloneDir(cloneParent, owner)
		if err != nil {
			return fail(err)
		}
		cloneDir = append(cloneDir, base)
		for _, d := range append([]Dataset{loc.Dataset}, loc.Below...) {
			rel, _ := filepath.Rel(loc.Dataset.Mountpoint, d.Mountpoint)
			clone := d.Pool() + "/" + name + "-view" + strconv.Itoa(len(clones))
			if err := z.Tool.Clone(ctx, d.Name+"@"+name, clone, filepath.Join(base, rel), cloneProps); err != nil {
				return fail(err)
			}
			clones = append(clones, clone)
		}
		v.Paths[p] = filepath.Join(base, loc.Rel)
	}
	v.release = cleanup
	return v, nil
}

// newCloneDir makes a fresh directory (with its owner file) to mount a
// clone in. Its name is random: the parent is usually the world-writable
// temporary directory, where a predictable name could be taken first.
func newCloneDir(parent string, o Owner) (string, error) {
	for range 100 {
		var b [8]byte
		if _, err := rand.Read(b[:]); err != nil {
			return "", fmt.Errorf("snapshot: %w", err)
		}
		dir := filepath.Join(parent, cloneDirPrefix+hex.EncodeToString(b[:]))
		err := createOwned(dir, o)
		if err == nil {
			return dir, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return "", err
		}
	}
	return "", errors.New("snapshot: no free name for a clone directory")
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

// takeNamed snapshots a dataset under an exact name, with properties.
func (t *ZFSTool) takeNamed(ctx context.Context, dataset string, recursive bool, name string, props map[string]string) error {
	if _, err := t.run(ctx, "zfs", snapshotArgs(dataset+"@"+name, recursive, props)...); err != nil {
		return fmt.Errorf("snapshot: take %s@%s: %w", dataset, name, err)
	}
	return nil
}
