package archive

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"
)

// Forget and prune delete from the repository; they are the only
// operations besides `repair index` and `key remove` that do (see
// docs/FORMAT.md "Write order, crash safety and concurrency"). The model
// is restic's forget/prune: forget removes snapshot files only; prune
// finds the blobs no snapshot reaches and deletes or repacks the packs
// holding them, under the exclusive lock, so that no backup adds a
// reference to a blob while it is being deleted.
//
// Crash safety (a SIGKILL anywhere): prune writes the repacked packs, then
// the new index files (the last one names every old index file in
// "supersedes"), then deletes the old index files, then the packs. Killed
// before the new index is complete, the repository holds extra packs and
// duplicate index entries; killed after, it holds superseded index files
// and unindexed packs that the next prune deletes. A snapshot never refers
// to a blob that no index file in force places in an existing pack.

// DefaultMaxUnused is the CLI's default for PruneOptions.MaxUnused: as
// restic's, 5 % of the repository may stay unused rather than be repacked.
const DefaultMaxUnused = 0.05

// PruneOptions tune Prune.
type PruneOptions struct {
	// DryRun computes the plan and changes nothing.
	DryRun bool
	// MaxUnused is the fraction of the stored bytes that may stay unused
	// (in packs that also hold used blobs) after prune; partly used packs
	// are repacked, most unused first, until the rest is within it. 0
	// repacks every partly used pack. The CLI's default is DefaultMaxUnused.
	MaxUnused float64
	// MaxRepackBytes bounds the bytes of packs repacked in one run (0: no
	// bound). Tree packs with unused trees are repacked regardless (see
	// planRepack).
	MaxRepackBytes int64
	// Without are snapshots to leave out as if they were forgotten
	// (forget --prune --dry-run); only a dry run may set it.
	Without []ID
	// Progress is called as prune advances.
	Progress func(PruneProgress)
	// Erase are blobs that must leave every pack (an erasure's,
	// erase.go): a pack holding one that no snapshot uses is repacked
	// whatever MaxUnused says. With Erase set MaxUnused repacks nothing
	// else, so that an erasure rewrites only the packs that held its
	// bytes (and tree packs with unused trees, which prune always
	// repacks).
	Erase []ID
}

// PruneProgress is what Prune has done so far in its current phase.
type PruneProgress struct {
	Phase string `json:"phase"` // "snapshots", "repack", "delete"
	Done  int64  `json:"done"`
	Total int64  `json:"total"`
	Bytes int64  `json:"bytes"` // repack: bytes of packs read so far
	Size  int64  `json:"size"`  // repack: bytes of all packs to read
}

// PruneResult says what Prune did, or with DryRun would do.
type PruneResult struct {
	DryRun    bool `json:"dry_run,omitempty"`
	Snapshots int  `json:"snapshots"`
	Packs     int  `json:"packs"` // indexed packs before
	// Stored bytes (inside packs) of the blobs snapshots use, and of the
	// rest: blobs no snapshot uses, and second copies of a blob (only the
	// copy the index reads counts as used).
	BlobsUsed   int   `json:"blobs_used"`
	BytesUsed   int64 `json:"bytes_used"`
	BlobsUnused int   `json:"blobs_unused"`
	BytesUnused int64 `json:"bytes_unused"`

	// Delete are wholly unused packs, Repack partly unused ones whose
	// used blobs move to new packs, Unindexed packs that no index lists
	// (left by killed backups, copies or prunes). Each is deleted.
	Delete    []ID `json:"delete,omitempty"`
	Repack    []ID `json:"repack,omitempty"`
	Unindexed []ID `json:"unindexed,omitempty"`
	// PacksKept stay as they are (used, or within MaxUnused, or waiting).
	PacksKept int `json:"packs_kept"`

	PacksDeleted   int   `json:"packs_deleted"` // of Delete, Repack and Unindexed
	PacksWritten   int   `json:"packs_written"` // by repacking
	BlobsRepacked  int   `json:"blobs_repacked"`
	IndexesWritten int   `json:"indexes_written"`
	IndexesRemoved int   `json:"indexes_removed"`
	BytesDeleted   int64 `json:"bytes_deleted"` // file sizes of the packs deleted (a dry run: would delete)
	BytesWritten   int64 `json:"bytes_written"` // file sizes of the new packs (a dry run: the used bytes to move)
	BytesFreed     int64 `json:"bytes_freed"`   // BytesDeleted - BytesWritten

	// UnusedAfter is the fraction of the stored bytes unused after prune
	// (in kept packs, waiting ones included).
	UnusedAfter float64 `json:"unused_after"`

	// Waiting are files prune would delete but object-lock retention
	// keeps until a date: packs (kept, and still listed in the index, so
	// that no backup adopts them again) and old index files (ignored:
	// the new index supersedes them). Run prune again after that date.
	Waiting []Waiting `json:"waiting,omitempty"`
}

// ForgetResult says what Forget did.
type ForgetResult struct {
	Removed []ID `json:"removed"`
	// Waiting snapshots are under object-lock retention: they stay in
	// the repository, are still listed and restorable, and prune keeps
	// every blob they use until they can be deleted.
	Waiting []Waiting `json:"waiting,omitempty"`
}

// Forget removes snapshot files. A snapshot under retention stays (see
// ForgetResult.Waiting); its data stays referenced. Removing a snapshot
// frees nothing by itself: Prune deletes what no snapshot uses. The
// caller holds the exclusive lock.
func (r *Repository) Forget(ctx context.Context, ids []ID) (*ForgetResult, error) {
	if r.dataID == nil {
		return nil, fmt.Errorf("forget: %w", ErrWriteOnly)
	}
	res := &ForgetResult{Removed: []ID{}}
	seen := map[ID]bool{}
	for _, id := range ids {
		if seen[id] {
			continue // named twice ("latest" and its ID, say)
		}
		seen[id] = true
		w, err := r.removeDurable(ctx, SnapshotFile, id.String())
		if err != nil {
			return res, fmt.Errorf("forget snapshot %s: %w", id.Short(), err)
		}
		if w != nil {
			res.Waiting = append(res.Waiting, *w)
			continue
		}
		res.Removed = append(res.Removed, id)
	}
	return res, nil
}

// packPlan is what prune knows about one indexed pack.
type packPlan struct {
	id          ID
	blobs       []PackedBlob // every blob the index lists in it
	used        []PackedBlob // those snapshots use (read from this pack)
	usedBytes   int64
	unusedBytes int64
	unusedTree  bool  // an unused tree blob is in it
	erased      bool  // an unused blob of PruneOptions.Erase is in it
	size        int64 // file size
}

// Prune deletes what no snapshot uses: packs holding only unused blobs
// are deleted, packs holding some are repacked (their used blobs copied,
// verified, into new packs) when MaxUnused asks for it, and packs no
// index lists are deleted. It refuses when any snapshot, tree or index
// file cannot be read, a used blob is in no pack, or an indexed pack is
// missing: it would not know what a damaged snapshot needs. The caller
// holds the exclusive lock (so no backup runs); Prune loads the index
// itself. It needs a full key.
func (r *Repository) Prune(ctx context.Context, opt PruneOptions) (*PruneResult, error) {
	if r.dataID == nil {
		return nil, fmt.Errorf("prune: %w", ErrWriteOnly)
	}
	if opt.MaxUnused < 0 || opt.MaxUnused >= 1 {
		return nil, fmt.Errorf("prune: max unused %v must be at least 0 and below 1", opt.MaxUnused)
	}
	if len(opt.Without) > 0 && !opt.DryRun {
		return nil, errors.New("prune: Without is only for a dry run")
	}
	progress := func(p PruneProgress) {
		if opt.Progress != nil {
			opt.Progress(p)
		}
	}
	res := &PruneResult{DryRun: opt.DryRun}

	// The index, as readers see it: files in force, first location wins.
	contents := map[ID]*IndexFileContent{}
	scan, err := r.scanIndexFiles(ctx, func(f ID, ic *IndexFileContent) { contents[f] = ic })
	if err != nil {
		return nil, err
	}
	if len(scan.damaged) > 0 {
		return nil, fmt.Errorf("prune: %w (run `mailvault repair index` first): %v", ErrCorrupt, errors.Join(scan.damaged...))
	}
	allIndexes := scan.all
	sizes, err := r.packSizes(ctx)
	if err != nil {
		return nil, err
	}
	idx := newIndex()
	plans := map[ID]*packPlan{}
	var order []ID // packs in index order, for a stable plan
	for _, f := range scan.live {
		for _, p := range contents[f].Packs {
			idx.addPack(p.ID, p.Blobs)
			if _, ok := plans[p.ID]; ok {
				continue
			}
			size, ok := sizes[p.ID]
			if !ok {
				return nil, fmt.Errorf("prune: pack %s is in the index but missing from storage (run check): %w", p.ID, ErrCorrupt)
			}
			plans[p.ID] = &packPlan{id: p.ID, blobs: p.Blobs, size: size}
			order = append(order, p.ID)
		}
		idx.files[f] = struct{}{}
	}
	r.idx = idx
	res.Packs = len(plans)

	// Used blobs: everything every snapshot reaches, trees included.
	snaps, bad, err := r.Snapshots(ctx)
	if err != nil {
		return nil, err
	}
	if len(bad) > 0 {
		return nil, fmt.Errorf("prune: refusing to delete anything while a snapshot cannot be read (it may need any pack; run check): %w", errors.Join(bad...))
	}
	snaps = slices.DeleteFunc(snaps, func(s *Snapshot) bool { return slices.Contains(opt.Without, s.ID) })
	res.Snapshots = len(snaps)
	used := idx.newBlobSet()
	walked := map[ID]struct{}{}
	for i, s := range snaps {
		var missing *ID
		err := r.eachSnapshotBlob(ctx, s, walked, func(ids ...ID) {
			for _, b := range ids {
				_, pos, ok := idx.locate(b)
				if !ok && missing == nil {
					missing = &b
				}
				used.add(b, pos)
			}
		})
		if err != nil {
			return nil, fmt.Errorf("prune: refusing to delete anything while snapshot %s cannot be read (run check): %w", s.ID.Short(), err)
		}
		if missing != nil {
			return nil, fmt.Errorf("prune: snapshot %s uses blob %s, which is in no pack (run check): %w", s.ID.Short(), *missing, ErrCorrupt)
		}
		progress(PruneProgress{Phase: "snapshots", Done: int64(i + 1), Total: int64(len(snaps))})
	}

	// Per pack: a blob counts as used only where the index reads it from.
	erase := make(map[ID]struct{}, len(opt.Erase))
	for _, id := range opt.Erase {
		erase[id] = struct{}{}
	}
	// An erasure killed before its prune finished left its intent in an
	// index file (erase.go). Every prune honours it: one run before the
	// erasure's rerun (whose new index supersedes the intent) still takes
	// those bytes out of every pack.
	for _, f := range scan.live {
		for _, id := range contents[f].Erase {
			erase[id] = struct{}{}
		}
	}
	for _, id := range order {
		p := plans[id]
		seen := make(map[ID]struct{}, len(p.blobs))
		for _, b := range p.blobs {
			from, pos, _ := idx.locate(b.ID)
			isUsed := used.has(b.ID, pos)
			_, twice := seen[b.ID] // listed twice in one pack: one copy serves
			seen[b.ID] = struct{}{}
			if isUsed && from == id && !twice {
				p.used = append(p.used, b)
				p.usedBytes += int64(b.Length)
				res.BlobsUsed++
				res.BytesUsed += int64(b.Length)
				continue
			}
			p.unusedBytes += int64(b.Length)
			res.BlobsUnused++
			res.BytesUnused += int64(b.Length)
			if b.Type == TreeBlob {
				p.unusedTree = true
			}
			if _, ok := erase[b.ID]; ok {
				p.erased = true
			}
		}
		if p.unusedBytes == 0 {
			// Kept as it is: its used list is never read, and for every
			// pack it would be a second copy of the whole index.
			p.used = nil
		}
	}

	// What may go. A pack under retention is neither deleted nor
	// repacked (repacking it would free nothing until its date).
	var deletes, partial, candidates []*packPlan
	for _, id := range order {
		if p := plans[id]; p.unusedBytes > 0 {
			candidates = append(candidates, p)
		} else {
			res.PacksKept++
		}
	}
	// One HEAD per candidate on locked storage; a few at once.
	waits := make([]*Waiting, len(candidates))
	if err := parallel(ctx, Connections(r.be), len(candidates), func(i int) error {
		var err error
		waits[i], err = r.retained(ctx, PackFile, candidates[i].id.String())
		return err
	}); err != nil {
		return nil, err
	}
	for i, p := range candidates {
		if w := waits[i]; w != nil {
			res.Waiting = append(res.Waiting, *w)
			res.PacksKept++
			continue
		}
		if len(p.used) == 0 {
			deletes = append(deletes, p)
		} else {
			partial = append(partial, p)
		}
	}
	repack := planRepack(partial, res.BytesUsed, opt)
	res.PacksKept += len(partial) - len(repack)
	isRepack, isDelete := map[ID]bool{}, map[ID]bool{}
	for _, p := range repack {
		isRepack[p.id] = true
	}
	for _, p := range deletes {
		isDelete[p.id] = true
	}
	var unusedAfter int64
	for _, id := range order {
		p := plans[id]
		if !isRepack[id] && !isDelete[id] {
			unusedAfter += p.unusedBytes
		}
	}
	if total := res.BytesUsed + unusedAfter; total > 0 {
		res.UnusedAfter = float64(unusedAfter) / float64(total)
	}
	for _, p := range deletes {
		res.Delete = append(res.Delete, p.id)
		res.BytesDeleted += p.size
	}
	for _, p := range repack {
		res.Repack = append(res.Repack, p.id)
		res.BytesDeleted += p.size
	}
	var unindexed []ID
	for id, size := range sizes {
		if _, ok := plans[id]; !ok {
			unindexed = append(unindexed, id)
			res.BytesDeleted += size
		}
	}
	sortIDs(unindexed)
	res.Unindexed = unindexed

	if opt.DryRun {
		for _, p := range repack {
			res.BlobsRepacked += len(p.used)
			res.BytesWritten += p.usedBytes
		}
		res.BytesFreed = res.BytesDeleted - res.BytesWritten
		// What would wait is only known by trying; pack retention is
		// already in Waiting.
		return res, nil
	}
	res.BytesDeleted = 0

	// 1. Repacked blobs into new packs.
	var newPacks []IndexPack
	if len(repack) > 0 {
		if newPacks, err = r.repackBlobs(ctx, repack, res, progress); err != nil {
			return nil, err
		}
	}
	// 2. The new index: every kept pack as the old index listed it, and
	// the new packs. Only needed when an indexed pack goes.
	if len(deletes)+len(repack) > 0 {
		// The new packs first: a blob they hold may have an unused second
		// copy in a kept pack, and readers take the first location.
		packs := newPacks
		fresh := newIndex()
		for _, id := range order {
			if isRepack[id] || isDelete[id] {
				continue
			}
			packs = append(packs, IndexPack{ID: id, Blobs: plans[id].blobs})
		}
		for _, p := range packs {
			fresh.addPack(p.ID, p.Blobs)
		}
		written, err := r.writeIndexFiles(ctx, packs, allIndexes)
		if err != nil {
			return nil, err
		}
		res.IndexesWritten = len(written)
		for _, id := range written {
			fresh.files[id] = struct{}{}
		}
		r.idx = fresh
		// 3. The old index files; one that retention keeps is ignored
		// from now on (the new index supersedes it).
		for _, id := range allIndexes {
			if _, justWritten := fresh.files[id]; justWritten {
				continue
			}
			w, err := r.removeDurable(ctx, IndexFile, id.String())
			if err != nil {
				return nil, fmt.Errorf("remove old index file: %w", err)
			}
			if w != nil {
				res.Waiting = append(res.Waiting, *w)
				continue
			}
			res.IndexesRemoved++
		}
	} else {
		// Nothing to rewrite; index files an earlier prune or repair
		// superseded but could not delete (retention) may go now.
		inForce := map[ID]bool{}
		for _, f := range scan.live {
			inForce[f] = true
		}
		for _, id := range allIndexes {
			if inForce[id] {
				continue
			}
			w, err := r.removeDurable(ctx, IndexFile, id.String())
			if err != nil {
				return nil, fmt.Errorf("remove superseded index file: %w", err)
			}
			if w != nil {
				res.Waiting = append(res.Waiting, *w)
				continue
			}
			res.IndexesRemoved++
		}
	}
	// 4. The packs.
	var gone []ID
	gone = append(gone, res.Delete...)
	gone = append(gone, res.Repack...)
	gone = append(gone, unindexed...)
	// A remote backend deletes a few at once (S3: every version of each).
	waits = make([]*Waiting, len(gone))
	var mu sync.Mutex
	var deleted int64
	err = parallel(ctx, Connections(r.be), len(gone), func(i int) error {
		w, err := r.removeDurable(ctx, PackFile, gone[i].String())
		if err != nil {
			return fmt.Errorf("delete pack: %w", err)
		}
		waits[i] = w
		mu.Lock()
		deleted++
		progress(PruneProgress{Phase: "delete", Done: deleted, Total: int64(len(gone))})
		mu.Unlock()
		return nil
	})
	for i, id := range gone {
		switch {
		case waits[i] != nil:
			// Only unindexed packs get here under retention (indexed
			// ones were asked above): they stay unindexed, harmless.
			res.Waiting = append(res.Waiting, *waits[i])
		case err == nil:
			res.PacksDeleted++
			res.BytesDeleted += sizes[id]
		}
	}
	if err != nil {
		return nil, err
	}
	res.BytesFreed = res.BytesDeleted - res.BytesWritten
	return res, nil
}

// parallel calls fn(0) … fn(n-1) on up to workers goroutines and returns
// the first error; after one, no further calls start.
func parallel(ctx context.Context, workers, n int, fn func(i int) error) error {
	var (
		mu    sync.Mutex
		first error
		wg    sync.WaitGroup
		next  int
	)
	for range min(max(workers, 1), n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				if first != nil || next == n {
					mu.Unlock()
					return
				}
				i := next
				next++
				mu.Unlock()
				if err := ctx.Err(); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					return
				}
				if err := fn(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	return first
}

// retained returns the Waiting entry of a file whose object-lock
// retention is still active, nil if it may be deleted now.
func (r *Repository) retained(ctx context.Context, t FileType, name string) (*Waiting, error) {
	ol, ok := r.be.(ObjectLocker)
	if !ok || r.cfg.ObjectLock == nil {
		return nil, nil
	}
	ret, err := ol.Retention(ctx, t, name)
	if err != nil {
		return nil, fmt.Errorf("%s/%s: retention: %w", t, name, err)
	}
	if !ret.Active(time.Now()) {
		return nil, nil
	}
	return &Waiting{File: string(t) + "/" + name, Mode: ret.Mode, Until: ret.Until}, nil
}

// planRepack picks the partly used packs to repack. Packs holding an
// unused tree are always repacked (tree packs are small): afterwards
// every tree the index lists is one a snapshot uses, so all the blobs it
// names are stored too — a backup that reuses a tree it finds in the
// index cannot refer to a blob prune deleted. So are packs holding an
// unused blob of opt.Erase; with opt.Erase set nothing else is. Then, as
// restic does, the packs with the largest unused share go first until
// the unused bytes left are at most MaxUnused of the total (used/(1-f) -
// used of unused bytes), within MaxRepackBytes.
func planRepack(partial []*packPlan, usedBytes int64, opt PruneOptions) []*packPlan {
	var out, rest []*packPlan
	var unused, repackBytes int64
	for _, p := range partial {
		if p.unusedTree || p.erased {
			out = append(out, p)
			repackBytes += p.size
		} else {
			rest = append(rest, p)
			unused += p.unusedBytes
		}
	}
	sort.SliceStable(rest, func(i, j int) bool {
		fi := float64(rest[i].unusedBytes) / float64(rest[i].unusedBytes+rest[i].usedBytes)
		fj := float64(rest[j].unusedBytes) / float64(rest[j].unusedBytes+rest[j].usedBytes)
		return fi > fj
	})
	if opt.Erase != nil {
		return out
	}
	maxUnused := int64(float64(usedBytes) * opt.MaxUnused / (1 - opt.MaxUnused))
	for _, p := range rest {
		if unused <= maxUnused {
			break
		}
		if opt.MaxRepackBytes > 0 && repackBytes+p.size > opt.MaxRepackBytes {
			continue
		}
		out = append(out, p)
		repackBytes += p.size
		unused -= p.unusedBytes
	}
	return out
}

// repackBlobs copies the used blobs of the given packs into new packs —
// each blob read through ReadBlobs, so it is verified against its ID
// before it is stored again — and returns the new packs. They are not
// indexed yet: a crash leaves them unindexed, and the next prune deletes
// them.
func (r *Repository) repackBlobs(ctx context.Context, packs []*packPlan, res *PruneResult, progress func(PruneProgress)) ([]IndexPack, error) {
	var out []IndexPack
	var open [2]*packBuilder // per blob type, as a backup keeps them apart
	stored := map[ID]struct{}{}
	finish := func(t BlobType) error {
		p := open[t]
		open[t] = nil
		if p == nil {
			return nil
		}
		if len(p.entries) == 0 {
			discardTemp(p.file)
			return nil
		}
		id, err := p.finish()
		if err == nil {
			err = p.bw.Flush()
		}
		if err != nil {
			discardTemp(p.file)
			return fmt.Errorf("repack: write pack: %w", err)
		}
		fi, err := p.file.Stat()
		if err != nil {
			discardTemp(p.file)
			return err
		}
		if err := r.storePackFile(ctx, id, p.file); err != nil {
			return fmt.Errorf("repack: store pack: %w", err)
		}
		out = append(out, IndexPack{ID: id, Blobs: p.entries})
		res.PacksWritten++
		res.BytesWritten += fi.Size()
		return nil
	}
	defer func() {
		for _, p := range open {
			if p != nil {
				discardTemp(p.file)
			}
		}
	}()
	var size, done int64
	for _, p := range packs {
		size += p.size
	}
	for i, p := range packs {
		blobs := append([]PackedBlob(nil), p.used...)
		err := r.ReadBlobs(ctx, p.id, blobs, func(b PackedBlob, data []byte) error {
			if _, dup := stored[b.ID]; dup {
				return nil
			}
			if open[b.Type] == nil {
				var err error
				if open[b.Type], err = r.newPack(); err != nil {
					return err
				}
			}
			comp, enc := r.compress(b.Type, data)
			err := open[b.Type].add(b.ID, b.Type, comp, len(data), enc)
			if comp != Uncompressed {
				r.zbufs.put(enc)
			}
			if err != nil {
				return err
			}
			stored[b.ID] = struct{}{}
			res.BlobsRepacked++
			if open[b.Type].size >= r.cfg.PackSize {
				return finish(b.Type)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("repack pack %s: %w", p.id, err)
		}
		done += p.size
		progress(PruneProgress{Phase: "repack", Done: int64(i + 1), Total: int64(len(packs)), Bytes: done, Size: size})
	}
	for _, t := range []BlobType{DataBlob, TreeBlob} {
		if err := finish(t); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// writeIndexFiles stores packs in index files of at most
// indexPacksPerFile packs each; the last one written names supersede in
// "supersedes" (less the files just written, which may have the name of
// an old one with the same content). Writing it last means a crash before
// it leaves the old files in force, never a gap. It returns the files
// written, in order.
func (r *Repository) writeIndexFiles(ctx context.Context, packs []IndexPack, supersede []ID) ([]ID, error) {
	var written []ID
	for len(packs) > indexPacksPerFile {
		id, err := r.SaveJSONFile(ctx, IndexFile, IndexFileContent{Version: 1, Packs: packs[:indexPacksPerFile]})
		if err != nil {
			return nil, fmt.Errorf("store index: %w", err)
		}
		written = append(written, id)
		packs = packs[indexPacksPerFile:]
	}
	last := IndexFileContent{Version: 1, Packs: packs}
	if last.Packs == nil {
		last.Packs = []IndexPack{}
	}
	for _, id := range supersede {
		if !containsID(written, id) {
			last.Supersedes = append(last.Supersedes, id)
		}
	}
	if len(last.Packs) == 0 && len(last.Supersedes) == 0 {
		return written, nil
	}
	id, err := r.SaveJSONFile(ctx, IndexFile, last)
	if err != nil {
		return nil, fmt.Errorf("store index: %w", err)
	}
	return append(written, id), nil
}

func containsID(ids []ID, id ID) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}
