package snapshot

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// User properties by which mailvault marks what is in use, so that what a
// killed process left behind can be found and told from the user's own.
const (
	// ownerProperty records the Owner of a view's snapshot or clone.
	ownerProperty = "mailvault:owner"
	// viewProperty records, on a view's snapshot, the tag of the view's
	// hold and whether the snapshot is to be kept: "hold=TAG keep=BOOL".
	viewProperty = "mailvault:view"
	// sendingProperty records the Owner of a send that holds the
	// snapshot (with SendHoldTag) while it sends it.
	sendingProperty = "mailvault:sending"
	// receivingProperty records, on a dataset a full receive creates, the
	// Owner of the send, from as soon as the dataset appears until the
	// receive has ended.
	receivingProperty = "mailvault:receiving"
)

// SendHoldTag is the tag of the hold a send keeps on the snapshots it
// sends (and on the base of an incremental send) while it sends them.
const SendHoldTag = "mailvault-send"

func viewMark(tag string, keep bool) string { return fmt.Sprintf("hold=%s keep=%t", tag, keep) }

func parseViewMark(s string) (tag string, keep bool) {
	tag = DefaultHoldTag
	for _, f := range strings.Fields(s) {
		k, v, _ := strings.Cut(f, "=")
		switch k {
		case "hold":
			tag = v
		case "keep":
			keep = v == "true"
		}
	}
	return tag, keep
}

// disown clears the view's marks on snapshots that are kept: they are
// then ordinary mailvault snapshots, for retention to prune.
func (t *ZFSTool) disown(ctx context.Context, members []string) error {
	var errs []error
	for _, m := range members {
		for _, p := range []string{ownerProperty, viewProperty} {
			if _, err := t.run(ctx, "zfs", "inherit", p, m); err != nil {
				errs = append(errs, fmt.Errorf("snapshot: clear %s of %s: %w", p, m, err))
			}
		}
	}
	return errors.Join(errs...)
}

type marked struct {
	name  string
	props map[string]string
	owner Owner
	why   string
}

// CleanLeftovers finds, in a pool, what views and sends of processes that
// were killed (provably dead: see Owner.Dead) left behind, and removes
// it:
//
//   - read-only clones of a view (named <snapshot>-view<N>, marked with
//     the owner) are destroyed, deepest mountpoint first, and their
//     mount directories removed when empty;
//   - a view's snapshot (named mailvault-<time>, marked with the owner)
//     loses the view's hold and is destroyed — or kept, unmarked, when
//     the view was to keep it (backup --snapshot-keep) or another hold
//     (a legal hold) protects it;
//   - a snapshot held by a killed send loses the send's hold;
//   - a dataset that a killed send's full receive was creating (marked
//     with the owner, without any snapshot: a full receive makes its
//     snapshot as it completes, so none means incomplete; not mounted;
//     nothing below it) is destroyed, once ZFS had a moment to discard
//     it itself — which it does with an interrupted receive, after the
//     stream's writer is gone. A marked dataset that has a snapshot was
//     received whole: it only loses the mark.
//
// Nothing without mailvault's name and owner mark is touched, nor
// anything whose owner may still run (same host, same boot, PID alive with
// the same start time) or ran on another host. cloneDir is also searched
// for empty clone mount directories of dead owners whose clone was never
// made (os.TempDir() if empty).
func (t *ZFSTool) CleanLeftovers(ctx context.Context, pool, cloneDir string) ([]Leftover, error) {
	out, err := t.run(ctx, "zfs", "get", "-H", "-r", "-s", "local", "-o", "name,property,value",
		ownerProperty+","+viewProperty+","+sendingProperty+","+receivingProperty, pool)
	if err != nil {
		return nil, fmt.Errorf("snapshot: look for leftovers in %s: %w", pool, err)
	}
	props := map[string]map[string]string{}
	var names []string
	for _, l := range out {
		if len(l) != 3 {
			continue
		}
		if props[l[0]] == nil {
			props[l[0]] = map[string]string{}
			names = append(names, l[0])
		}
		props[l[0]][l[1]] = l[2]
	}
	var clones, snaps, sending, receiving []marked
	for _, n := range names {
		p := props[n]
		ds, snapName, isSnap := strings.Cut(n, "@")
		if s, ok := p[sendingProperty]; ok && isSnap {
			if o, err := ParseOwner(s); err == nil {
				if dead, why := o.Dead(); dead {
					sending = append(sending, marked{n, p, o, why})
				}
			}
		}
		if s, ok := p[receivingProperty]; ok && !isSnap {
			if o, err := ParseOwner(s); err == nil {
				if dead, why := o.Dead(); dead {
					receiving = append(receiving, marked{n, p, o, why})
				}
			}
		}
		s, ok := p[ownerProperty]
		if !ok {
			continue
		}
		o, err := ParseOwner(s)
		if err != nil {
			continue
		}
		dead, why := o.Dead()
		if !dead {
			continue
		}
		m := marked{n, p, o, why}
		switch {
		case isSnap && strings.HasPrefix(snapName, Prefix):
			snaps = append(snaps, m)
		case !isSnap && strings.HasPrefix(ds[strings.LastIndexByte(ds, '/')+1:], Prefix) && strings.Contains(ds, "-view"):
			clones = append(clones, m)
		}
	}

	var left []Leftover
	var errs []error
	note := func(lo Leftover, err error) {
		if err != nil {
			lo.Err = err.Error()
			errs = append(errs, err)
		}
		left = append(left, lo)
	}

	// Clones first: a snapshot with clones cannot be destroyed. Deepest
	// mountpoint first: a clone mounted inside another goes before it.
	mounts := map[string]string{}
	for _, c := range clones {
		if mo, err := t.run(ctx, "zfs", "get", "-H", "-o", "value", "mountpoint", c.name); err == nil && len(mo) == 1 {
			mounts[c.name] = mo[0][0]
		}
	}
	sort.SliceStable(clones, func(i, j int) bool {
		return strings.Count(mounts[clones[i].name], "/") > strings.Count(mounts[clones[j].name], "/")
	})
	for _, c := range clones {
		lo := Leftover{Kind: "clone", Name: c.name, Owner: c.owner.String(), Reason: c.why, Action: "destroyed"}
		if err := t.destroy(ctx, c.name, false); err != nil {
			lo.Action = "kept"
			note(lo, err)
			continue
		}
		note(lo, nil)
		mp := mounts[c.name]
		if _, err := os.Stat(mp + ownerFileSuffix); err == nil && strings.HasPrefix(filepath.Base(mp), cloneDirPrefix) {
			note(Leftover{Kind: "clone-dir", Name: mp, Owner: c.owner.String(), Reason: c.why, Action: "removed"}, removeOwned(mp, false))
		}
	}

	// Snapshots: a recursive set's members all carry the mark; deepest
	// first, so that a set is never left with its children gone and its
	// top in place by an error in between.
	sort.SliceStable(snaps, func(i, j int) bool {
		return strings.Count(snaps[i].name, "/") > strings.Count(snaps[j].name, "/")
	})
	for _, s := range snaps {
		tag, keep := parseViewMark(s.props[viewProperty])
		lo := Leftover{Kind: "snapshot", Name: s.name, Owner: s.owner.String(), Reason: s.why}
		if _, err := t.run(ctx, "zfs", "release", tag, s.name); err != nil && !strings.Contains(stderrOf(err), "no such tag") {
			lo.Action = "kept"
			note(lo, fmt.Errorf("snapshot: release %s: %w", s.name, err))
			continue
		}
		if err := t.noteTag(ctx, s.name, tag, false); err != nil {
			lo.Action = "kept"
			note(lo, err)
			continue
		}
		refs, err := t.userrefs(ctx, s.name)
		if err == nil && !keep && refs == 0 {
			lo.Action = "destroyed"
			note(lo, t.destroy(ctx, s.name, false))
			continue
		}
		lo.Action = "released"
		if !keep {
			lo.Action, lo.Reason = "kept", fmt.Sprintf("%s; %d other holds keep it", s.why, refs)
		}
		note(lo, errors.Join(err, t.disown(ctx, []string{s.name})))
	}

	for _, s := range sending {
		lo := Leftover{Kind: "send-hold", Name: s.name, Owner: s.owner.String(), Reason: s.why, Action: "released"}
		err := t.Release(ctx, Snap{Name: s.name, Members: []string{s.name}}, SendHoldTag)
		if err == nil {
			_, err = t.run(ctx, "zfs", "inherit", sendingProperty, s.name)
		}
		note(lo, err)
	}

	// Deepest first: a partial child goes before its parent is judged.
	sort.SliceStable(receiving, func(i, j int) bool {
		return strings.Count(receiving[i].name, "/") > strings.Count(receiving[j].name, "/")
	})
	for _, r := range receiving {
		if lo, ok, err := t.cleanPartialReceive(ctx, r); ok {
			note(lo, err)
		}
	}

	if cloneDir == "" {
		cloneDir = os.TempDir()
	}
	left = append(left, cleanOwnedDirs(cloneDir, isCloneDir, "clone-dir", false)...)
	return left, errors.Join(errs...)
}

// discardPolls bounds how often cleanPartialReceive looks whether ZFS
// has discarded an interrupted receive itself (every discardPoll) before
// destroying what is left. zfs-fuse needs about 20 ms once the stream's
// writer is gone.
const (
	discardPolls = 50
	discardPoll  = 20 * time.Millisecond
)

// cleanPartialReceive handles a dataset marked by a dead send's full
// receive; ok is false when nothing is left to report (ZFS had discarded
// it before we looked).
func (t *ZFSTool) cleanPartialReceive(ctx context.Context, r marked) (lo Leftover, ok bool, err error) {
	lo = Leftover{Kind: "partial-receive", Name: r.name, Owner: r.owner.String(), Reason: r.why}
	gone := func(err error) bool { return strings.Contains(stderrOf(err), "does not exist") }
	snaps, err := t.snapshotGUIDs(ctx, r.name)
	if gone(err) {
		return lo, false, nil
	}
	if err != nil {
		lo.Action = "kept"
		return lo, true, err
	}
	if len(snaps) > 0 {
		// Received whole; the send died before it cleared the mark.
		lo.Action, lo.Reason = "kept", r.why+"; received whole (has snapshots), mark cleared"
		_, err = t.run(ctx, "zfs", "inherit", receivingProperty, r.name)
		return lo, true, err
	}
	below, err := t.run(ctx, "zfs", "list", "-H", "-o", "name,mounted", "-r", "-d", "1", "-t", "filesystem,volume", r.name)
	if gone(err) {
		return lo, false, nil
	}
	if err != nil {
		lo.Action = "kept"
		return lo, true, err
	}
	if len(below) != 1 || len(below[0]) != 2 || below[0][1] == "yes" {
		// Not as an interrupted receive leaves it: something was put
		// below it, or it is mounted. Not provably ours alone.
		lo.Action, lo.Reason = "kept", r.why+"; has datasets below it or is mounted"
		return lo, true, nil
	}
	for i := 0; i < discardPolls; i++ {
		if _, err := t.run(ctx, "zfs", "list", "-H", "-o", "name", r.name); gone(err) {
			lo.Action, lo.Reason = "discarded", r.why+"; ZFS discarded the interrupted receive"
			return lo, true, nil
		}
		select {
		case <-ctx.Done():
			lo.Action = "kept"
			return lo, true, ctx.Err()
		case <-time.After(discardPoll):
		}
	}
	lo.Action, lo.Reason = "destroyed", r.why+"; incomplete receive (no snapshot)"
	if err := t.destroy(ctx, r.name, false); err != nil {
		if _, lerr := t.run(ctx, "zfs", "list", "-H", "-o", "name", r.name); gone(lerr) {
			lo.Action, lo.Reason = "discarded", r.why+"; ZFS discarded the interrupted receive"
			return lo, true, nil
		}
		lo.Action = "kept"
		return lo, true, err
	}
	return lo, true, nil
}

// userrefs counts the holds on one snapshot.
func (t *ZFSTool) userrefs(ctx context.Context, snap string) (int, error) {
	out, err := t.run(ctx, "zfs", "get", "-H", "-p", "-o", "value", "userrefs", snap)
	if err != nil {
		return 0, err
	}
	if len(out) != 1 {
		return 0, fmt.Errorf("snapshot: userrefs of %s: %q", snap, out)
	}
	var n int
	if _, err := fmt.Sscan(out[0][0], &n); err != nil {
		return 0, fmt.Errorf("snapshot: userrefs of %s: %w", snap, err)
	}
	return n, nil
}

func isCloneDir(name string) bool { return strings.HasPrefix(name, cloneDirPrefix) }
