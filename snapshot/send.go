package snapshot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"
)

// sentTagPrefix starts the tag of the hold that keeps, on the source, the
// newest snapshot sent to a destination: the base of the next incremental
// send must survive retention on the source (zfs-fuse has no bookmarks).
// The destination's dataset name completes the tag.
const sentTagPrefix = "mailvault-sent:"

// SentTag is the hold tag that keeps, on every member of the set, the
// newest snapshot sent to dest.
func SentTag(dest string) string { return sentTagPrefix + dest }

// SendOptions says what to send where.
type SendOptions struct {
	// Source is the dataset whose snapshot is sent, with its descendants
	// that have the same snapshot (a recursive set).
	Source string
	// Snapshot is the name (after '@') of the snapshot to send; empty
	// means the newest of mailvault's.
	Snapshot string
	// Dest is the dataset to receive into, usually on another pool. It
	// is created by the first (full) send; later sends are incremental
	// from the newest mailvault snapshot both sides have.
	Dest string
}

// SentDataset is the send of one member of a snapshot set.
type SentDataset struct {
	Source string `json:"source"`      // dataset@snapshot
	Dest   string `json:"destination"` // dataset
	// From is the base snapshot of an incremental send; empty for a full
	// one.
	From  string `json:"from,omitempty"`
	Bytes int64  `json:"bytes"`
	// UpToDate: the destination had the snapshot already; nothing sent.
	UpToDate bool `json:"up_to_date,omitempty"`
	// RolledBack: the destination had been changed since its newest
	// snapshot (e.g. access times, where it is mounted) and was rolled
	// back to the base before receiving.
	RolledBack bool `json:"rolled_back,omitempty"`
	// Remounted: the destination was not mounted before the send (a zfs
	// receive killed midway may leave it so) and was mounted after it.
	Remounted bool `json:"remounted,omitempty"`
}

// SendResult is what a send did.
type SendResult struct {
	Snapshot    string        `json:"snapshot"`    // dataset@name of the top member
	Dest        string        `json:"destination"` // the destination dataset
	Incremental bool          `json:"incremental"` // every member was sent incrementally (or was up to date)
	Bytes       int64         `json:"bytes"`       // stream bytes sent, all members
	Datasets    []SentDataset `json:"datasets"`
	Leftovers   []Leftover    `json:"leftovers_cleaned,omitempty"`
}

// Send copies a snapshot set to another dataset (another pool: one more
// copy for the 3-2-1 rule) with zfs send | zfs receive: in full the first
// time, afterwards incrementally ("zfs send -i") from the newest
// mailvault snapshot both sides have (same name and guid). Each member of
// a recursive set is sent on its own, into the same relative place below
// Dest, so a child dataset that is new since the last send is sent in
// full.
//
// Nothing on the destination is destroyed: "zfs receive -F" is never
// used (it destroys snapshots that are not on the source); a destination
// that exists without a snapshot in common is refused. A destination
// changed since its newest snapshot (a mounted copy's access times; zfs
// receive -u is missing on zfs-fuse) is rolled back to that snapshot, and
// only when it is the base of the send (zfs rollback without -r refuses
// otherwise).
//
// While sending, the snapshots sent and the bases are held (SendHoldTag,
// marked with the Owner, so that a killed send's holds are released by
// CleanLeftovers); afterwards the newest snapshot sent keeps a hold
// SentTag(Dest) on the source, so that retention keeps the base of the
// next send, and the previous one loses it.
//
// go-zfs's SendSnapshot and ReceiveSnapshot are not used: they take no
// context, and ReceiveSnapshot lists the received dataset with "zfs list
// -p", which zfs-fuse lacks.
func (t *ZFSTool) Send(ctx context.Context, opt SendOptions) (*SendResult, error) {
	owner, err := CurrentOwner()
	if err != nil {
		return nil, err
	}
	res := &SendResult{Dest: opt.Dest, Incremental: true}
	destPool, _, _ := strings.Cut(opt.Dest, "/")
	for _, pool := range appendUnique(nil, Dataset{Name: opt.Source}.Pool(), destPool) {
		left, err := t.CleanLeftovers(ctx, pool, "")
		res.Leftovers = append(res.Leftovers, left...)
		if err != nil {
			t.logger().Warn("snapshot: cleaning up after a killed backup or send", "pool", pool, "err", err)
		}
	}
	snaps, err := t.Snapshots(ctx, opt.Source)
	if err != nil {
		return nil, err
	}
	var set *Snap
	for i := range snaps {
		s := &snaps[i]
		if s.Dataset != opt.Source {
			continue // a set of descendants only
		}
		if (opt.Snapshot == "" && s.Ours) || s.Name == opt.Snapshot {
			set = s
			break
		}
	}
	if set == nil {
		if opt.Snapshot == "" {
			return nil, fmt.Errorf("snapshot: %s has no mailvault snapshot to send (take one: mailvault snapshot take)", opt.Source)
		}
		return nil, fmt.Errorf("snapshot: no snapshot %s@%s", opt.Source, opt.Snapshot)
	}
	res.Snapshot = set.FullName()
	unmounted := t.unmountBelow(ctx, opt.Dest)
	var dests []string
	var sendErr error
	for _, m := range set.Members {
		ds, _, _ := strings.Cut(m, "@")
		dest := opt.Dest + strings.TrimPrefix(ds, opt.Source)
		dests = append(dests, dest)
		if sendErr != nil {
			continue // not sent; only mounted again below
		}
		sent, err := t.sendOne(ctx, owner, ds, set.Name, dest, SentTag(opt.Dest))
		if err == nil && sent.From == "" && !sent.UpToDate && ds != opt.Source {
			err = t.placeLikeSource(ctx, opt.Source, ds, opt.Dest, dest)
		}
		if sent != nil {
			res.Datasets = append(res.Datasets, *sent)
			res.Bytes += sent.Bytes
			res.Incremental = res.Incremental && (sent.From != "" || sent.UpToDate)
		}
		sendErr = err
	}
	// Also after a failed send: what unmountBelow unmounted goes back.
	remounted, err := t.remountCopy(context.WithoutCancel(ctx), appendUnique(dests, unmounted...), unmounted)
	for i := range res.Datasets {
		res.Datasets[i].Remounted = remounted[res.Datasets[i].Dest]
	}
	return res, errors.Join(sendErr, err)
}

// placeLikeSource mounts a newly received descendant dest where the
// source's layout puts it: a stream without properties (no -R, -p) leaves
// it at the inherited place, but the source's descendant may have a
// mountpoint of its own (e.g. a user's dataset mounted at
// <domain>/<user>). Mountpoints outside the top's are left inherited.
func (t *ZFSTool) placeLikeSource(ctx context.Context, top, dataset, destTop, dest string) error {
	mp := func(ds string) (string, error) {
		out, err := t.run(ctx, "zfs", "get", "-H", "-o", "value", "mountpoint", ds)
		if err != nil || len(out) != 1 || len(out[0]) != 1 {
			return "", fmt.Errorf("snapshot: mountpoint of %s: %w", ds, err)
		}
		return out[0][0], nil
	}
	srcTop, err := mp(top)
	if err != nil {
		return err
	}
	src, err := mp(dataset)
	if err != nil {
		return err
	}
	dstTop, err := mp(destTop)
	if err != nil {
		return err
	}
	cur, err := mp(dest)
	if err != nil {
		return err
	}
	rel, err := filepath.Rel(srcTop, src)
	if err != nil || !filepath.IsAbs(srcTop) || !filepath.IsAbs(dstTop) || !within(src, srcTop) {
		return nil
	}
	if want := filepath.Join(dstTop, rel); want != cur {
		return t.setProp(ctx, dest, "mountpoint", want)
	}
	return nil
}

// unmountBelow unmounts the mounted datasets below the copy's top,
// deepest first, and returns them. zfs-fuse's receive does not: after a
// receive into a dataset (seen after one killed midway and the next
// send), the directory a descendant is mounted on was replaced, and the
// descendant's mount, still in the mount table, was no longer reachable
// by its path — the copy looked empty there. A dataset in use (busy)
// stays mounted; the send goes on.
func (t *ZFSTool) unmountBelow(ctx context.Context, top string) []string {
	out, err := t.run(ctx, "zfs", "list", "-H", "-o", "name,mounted", "-t", "filesystem", "-r", top)
	if err != nil {
		return nil // no copy yet
	}
	var done []string
	for i := len(out) - 1; i >= 0; i-- {
		l := out[i]
		if len(l) != 2 || l[0] == top || l[1] != "yes" {
			continue
		}
		if _, err := t.run(ctx, "zfs", "umount", l[0]); err != nil {
			t.logger().Warn("snapshot: cannot unmount a dataset of the send destination for the receive", "dataset", l[0], "err", err)
			continue
		}
		done = append(done, l[0])
	}
	return done
}

// remountCopy mounts every dataset of the copy that should be mounted
// (canmount=on, a path as mountpoint) and is not, shallowest first, as an
// uninterrupted zfs receive leaves what it receives (zfs-fuse has no
// receive -u): those unmountBelow unmounted, and those a receive killed
// midway left unmounted, which it reports.
func (t *ZFSTool) remountCopy(ctx context.Context, dests, unmounted []string) (map[string]bool, error) {
	remounted := map[string]bool{}
	var errs []error
	// Shallowest first: a dataset is mounted inside its parent.
	slices.SortStableFunc(dests, func(a, b string) int { return strings.Count(a, "/") - strings.Count(b, "/") })
	for _, dest := range dests {
		out, err := t.run(ctx, "zfs", "get", "-H", "-o", "property,value", "mounted,canmount,mountpoint", dest)
		if strings.Contains(stderrOf(err), "does not exist") {
			continue // not received (yet)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("snapshot: is %s mounted: %w", dest, err))
			continue
		}
		p := map[string]string{}
		for _, l := range out {
			if len(l) == 2 {
				p[l[0]] = l[1]
			}
		}
		if p["mounted"] != "no" || p["canmount"] != "on" || !filepath.IsAbs(p["mountpoint"]) {
			continue
		}
		for attempt := 0; attempt < 20; attempt++ {
			if _, err = t.run(ctx, "zfs", "mount", dest); err == nil || !isBusy(err) {
				break
			}
			time.Sleep(time.Duration(attempt+1) * 50 * time.Millisecond)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("snapshot: mount %s: %w", dest, err))
			continue
		}
		if !slices.Contains(unmounted, dest) {
			remounted[dest] = true
			t.logger().Warn("snapshot: send destination was not mounted (a receive killed midway?); mounted it", "dataset", dest)
		}
	}
	return remounted, errors.Join(errs...)
}

// sendOne sends dataset@name to dest; afterwards dataset@name holds
// sentTag.
func (t *ZFSTool) sendOne(ctx context.Context, owner Owner, dataset, name, dest, sentTag string) (*SentDataset, error) {
	sent := &SentDataset{Source: dataset + "@" + name, Dest: dest}
	srcGUIDs, err := t.snapshotGUIDs(ctx, dataset)
	if err != nil {
		return nil, err
	}
	dstGUIDs, err := t.snapshotGUIDs(ctx, dest)
	destExists := err == nil
	if err != nil && !strings.Contains(stderrOf(err), "does not exist") {
		return nil, err
	}
	if g, ok := dstGUIDs[name]; ok && g == srcGUIDs[name] {
		sent.UpToDate = true
		return sent, t.moveSentHold(ctx, dataset, name, sentTag)
	}
	// The base: the newest of mailvault's snapshots older than name that
	// both sides have, the same (guid).
	at, _ := parseName(name)
	var base string
	var baseAt time.Time
	for n, g := range srcGUIDs {
		ts, ours := parseName(n)
		if !ours || n == name || dstGUIDs[n] != g || (!at.IsZero() && !ts.Before(at)) {
			continue
		}
		if base == "" || ts.After(baseAt) {
			base, baseAt = n, ts
		}
	}
	if destExists && base == "" {
		return sent, fmt.Errorf("snapshot: %s exists and has no mailvault snapshot in common with %s: send to a new dataset (nothing on the destination is ever destroyed)", dest, dataset)
	}
	sent.From = base

	// Hold what is sent (and the base) until the send is over; the mark
	// first, so that a kill between the two leaves nothing unmarked.
	holds := []string{sent.Source}
	if base != "" {
		holds = append(holds, dataset+"@"+base)
	}
	var heldNow []string
	defer func() {
		for _, h := range heldNow {
			ctx := context.WithoutCancel(ctx)
			if err := t.Release(ctx, Snap{Name: h, Members: []string{h}}, SendHoldTag); err != nil {
				t.logger().Error("snapshot: release send hold", "snapshot", h, "err", err)
			}
			if _, err := t.run(ctx, "zfs", "inherit", sendingProperty, h); err != nil {
				t.logger().Error("snapshot: clear send mark", "snapshot", h, "err", err)
			}
		}
	}()
	for _, h := range holds {
		if err := t.setProp(ctx, h, sendingProperty, owner.String()); err != nil {
			return sent, err
		}
		heldNow = append(heldNow, h)
		if err := t.Hold(ctx, Snap{Name: h, Members: []string{h}}, SendHoldTag); err != nil {
			return sent, fmt.Errorf("%w (is another send of it running?)", err)
		}
	}

	// A full receive creates dest: mark it as ours while it is
	// incomplete, so that CleanLeftovers can tell it from the user's
	// should the send be killed and ZFS not discard it.
	mark := ""
	if !destExists {
		mark = owner.String()
	}
	n, stderr, err := t.pipe(ctx, dataset, name, base, dest, mark)
	if err != nil && base != "" && strings.Contains(stderr, "modified") {
		// zfs rollback without -r refuses unless base is the newest
		// snapshot of dest: nothing but changes since base goes.
		if _, rerr := t.run(ctx, "zfs", "rollback", dest+"@"+base); rerr != nil {
			return sent, fmt.Errorf("snapshot: %s was changed since %s and cannot be rolled back to it: %w", dest, base, errors.Join(err, rerr))
		}
		t.logger().Warn("snapshot: send destination had changed since its newest snapshot; rolled back", "dataset", dest, "snapshot", base)
		sent.RolledBack = true
		n, _, err = t.pipe(ctx, dataset, name, base, dest, "")
	}
	sent.Bytes = n
	if err != nil {
		return sent, err
	}
	return sent, t.moveSentHold(ctx, dataset, name, sentTag)
}

// moveSentHold gives dataset@name the hold tag and takes it from the
// dataset's other snapshots.
func (t *ZFSTool) moveSentHold(ctx context.Context, dataset, name, tag string) error {
	out, err := t.run(ctx, "zfs", "get", "-H", "-r", "-d", "1", "-s", "local", "-o", "name,value", holdsProperty, dataset)
	if err != nil {
		return err
	}
	target := dataset + "@" + name
	have := false
	var errs []error
	for _, l := range out {
		if len(l) != 2 || !strings.HasPrefix(l[0], dataset+"@") {
			continue
		}
		for _, tg := range strings.Split(l[1], ",") {
			if tg != tag {
				continue
			}
			if l[0] == target {
				have = true
			} else {
				errs = append(errs, t.Release(ctx, Snap{Name: l[0], Members: []string{l[0]}}, tag))
			}
		}
	}
	if !have {
		errs = append(errs, t.Hold(ctx, Snap{Name: target, Members: []string{target}}, tag))
	}
	return errors.Join(errs...)
}

// snapshotGUIDs maps the names of a dataset's own snapshots to their
// guids ("zfs get -p": zfs list shows guids rounded on zfs-fuse).
func (t *ZFSTool) snapshotGUIDs(ctx context.Context, dataset string) (map[string]string, error) {
	out, err := t.run(ctx, "zfs", "get", "-H", "-p", "-r", "-d", "1", "-o", "name,value", "guid", dataset)
	if err != nil {
		return nil, err
	}
	m := map[string]string{}
	for _, l := range out {
		if len(l) != 2 {
			continue
		}
		if ds, name, ok := strings.Cut(l[0], "@"); ok && ds == dataset {
			m[name] = l[1]
		}
	}
	return m, nil
}

// pipe runs zfs send [-i base] dataset@name | zfs receive dest and
// returns the bytes of the stream and receive's error output. With mark
// (a full receive, which creates dest), dest carries receivingProperty =
// mark from as soon as it appears until the receive has succeeded.
func (t *ZFSTool) pipe(ctx context.Context, dataset, name, base, dest, mark string) (int64, string, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	args := []string{"send"}
	if base != "" {
		args = append(args, "-i", dataset+"@"+base)
	}
	args = append(args, dataset+"@"+name)
	send := exec.CommandContext(ctx, "zfs", args...)
	recv := exec.CommandContext(ctx, "zfs", "receive", dest)
	pr, pw := io.Pipe()
	cw := &countingWriter{w: pw}
	var sendErr, recvErr bytes.Buffer
	send.Stdout, send.Stderr = cw, &sendErr
	recv.Stdin, recv.Stderr = pr, &recvErr
	if err := recv.Start(); err != nil {
		return 0, "", fmt.Errorf("snapshot: zfs receive: %w", err)
	}
	recvDone := make(chan struct{})
	markDone := make(chan bool, 1)
	if mark != "" {
		go func() { markDone <- t.markReceiving(ctx, dest, mark, recvDone) }()
	} else {
		markDone <- false
	}
	if err := send.Start(); err != nil {
		cancel()
		pw.Close()
		_ = recv.Wait()
		return 0, "", fmt.Errorf("snapshot: zfs send: %w", err)
	}
	sendDone := make(chan error, 1)
	go func() {
		err := send.Wait()
		pw.CloseWithError(err) // EOF for receive when err is nil
		sendDone <- err
	}()
	rerr := recv.Wait()
	close(recvDone)
	if rerr != nil {
		// Receive gave up: stop send, which would block on a full pipe.
		cancel()
		pr.CloseWithError(errors.New("zfs receive exited"))
	}
	serr := <-sendDone
	// Complete: an ordinary received dataset now (should clearing fail,
	// the cleanup sees the snapshot and only clears the mark). Refused
	// because dest exists: it is not ours (someone made it since the
	// send looked), whatever was marked.
	if marked := <-markDone; marked && ((rerr == nil && serr == nil) || strings.Contains(recvErr.String(), "exists")) {
		if _, err := t.run(context.WithoutCancel(ctx), "zfs", "inherit", receivingProperty, dest); err != nil {
			t.logger().Warn("snapshot: clear the receive mark", "dataset", dest, "err", err)
		}
	}
	t.logger().Debug("zfs send | zfs receive", "send", strings.Join(args, " "), "dest", dest, "bytes", cw.n.Load(), "send_err", serr, "recv_err", rerr)
	switch {
	case rerr != nil:
		return cw.n.Load(), recvErr.String(), fmt.Errorf("snapshot: zfs receive %s: %w: %s", dest, rerr, strings.TrimSpace(recvErr.String()))
	case serr != nil:
		return cw.n.Load(), recvErr.String(), fmt.Errorf("snapshot: zfs %s: %w: %s", strings.Join(args, " "), serr, strings.TrimSpace(sendErr.String()))
	}
	return cw.n.Load(), recvErr.String(), nil
}

// receivePoll is how often markReceiving tries to mark the dataset a
// receive is creating.
const receivePoll = 10 * time.Millisecond

// markReceiving sets receivingProperty on dest as soon as the receive
// has created it (a dataset being received takes user properties on
// zfs-fuse; where it does not, the mark is missing and a killed
// receive's remains are left to ZFS and the user). It gives up when the
// receive ends or dest refuses the mark; it reports whether it marked
// dest.
func (t *ZFSTool) markReceiving(ctx context.Context, dest, mark string, done <-chan struct{}) bool {
	for {
		_, err := t.run(ctx, "zfs", "set", receivingProperty+"="+mark, dest)
		if err == nil {
			return true
		}
		if !strings.Contains(stderrOf(err), "does not exist") {
			t.logger().Debug("snapshot: cannot mark the dataset being received", "dataset", dest, "err", err)
			return false
		}
		select {
		case <-done:
			return false
		case <-ctx.Done():
			return false
		case <-time.After(receivePoll):
		}
	}
}

type countingWriter struct {
	w io.Writer
	n atomic.Int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Add(int64(n))
	return n, err
}

// setProp sets a property of one dataset or snapshot.
func (t *ZFSTool) setProp(ctx context.Context, name, prop, value string) error {
	if _, err := t.run(ctx, "zfs", "set", prop+"="+value, name); err != nil {
		return fmt.Errorf("snapshot: set %s on %s: %w", prop, name, err)
	}
	return nil
}
