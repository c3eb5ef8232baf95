package archive

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"sync"

	"filippo.io/age"
)

// Repairing damaged packs follows restic's `repair packs`: every blob of a
// damaged pack that still decrypts and matches its ID is stored again in a
// new pack, the index stops listing the damaged pack, and the pack is
// deleted. What could not be read is lost — unless a copy of the
// repository (same blob-ID key and chunker parameters, see copy.go) still
// has it — and the snapshots that used it are mended by RepairSnapshots.
//
// The write order is prune's, so a crash anywhere leaves a repository no
// worse than before: (1) the new packs and an index file listing them
// (Flush), (2) index files listing what the old files in force listed but
// the damaged packs, the last superseding those old files, (3) the old
// index files are deleted, (4) the damaged packs. Killed before (2), the
// damaged packs are still indexed beside their salvaged blobs (a second
// run finds those blobs stored and only deletes); killed after, the
// damaged packs are unindexed and a second run (or prune) deletes them.

// RepairPacksOptions say what RepairPacks repairs.
type RepairPacksOptions struct {
	// Packs to repair. None: every pack is read and the damaged ones
	// (and indexed packs missing from storage) are repaired.
	Packs []ID
	// From is a copy of the repository (InitCopyParams, Copy) with its
	// index loaded, from which blobs the damaged packs lost are taken.
	From *Repository
	// Progress is called after each pack read to find the damaged ones.
	Progress func(done, total int)
}

// PackRepair is what became of one damaged pack.
type PackRepair struct {
	Pack ID     `json:"pack"`
	Err  string `json:"error"` // what is wrong with it
	// Blobs the index (or, for an unindexed pack, its header) lists.
	Blobs int `json:"blobs"`
	// Salvaged were read from the pack, verified and stored again, or
	// are stored in another pack already; FromCopy came from the copy.
	Salvaged int  `json:"salvaged"`
	FromCopy int  `json:"from_copy,omitempty"`
	Lost     []ID `json:"lost,omitempty"`
	// Deleted is false when the pack was missing already, or is waiting
	// for its retention to run out (see RepairPacksResult.Waiting).
	Deleted bool `json:"deleted"`
}

// RepairPacksResult says what RepairPacks did.
type RepairPacksResult struct {
	PacksRead int          `json:"packs_read"` // read to find damage (no packs named)
	Packs     []PackRepair `json:"packs"`
	// Totals over Packs.
	BlobsSalvaged int `json:"blobs_salvaged"`
	BlobsFromCopy int `json:"blobs_from_copy"`
	BlobsLost     int `json:"blobs_lost"`
	// Missing counts blobs that snapshots use and no pack held before the
	// repair (a pack lost and its index entries gone, say by repair
	// index); MissingFromCopy of them were stored from the copy.
	Missing         int `json:"missing,omitempty"`
	MissingFromCopy int `json:"missing_from_copy,omitempty"`

	PacksWritten   int `json:"packs_written"`
	IndexesWritten int `json:"indexes_written"`
	IndexesRemoved int `json:"indexes_removed"`
	// Waiting are damaged packs and old index files that object-lock
	// retention keeps: a damaged pack stays listed in the index with no
	// blobs (so that no backup adopts it again) until a later repair
	// packs deletes it.
	Waiting []Waiting `json:"waiting,omitempty"`
	// Lost are the messages and files of each snapshot that lost
	// content; RepairSnapshots rewrites those snapshots without them.
	Lost []LostMessage `json:"lost,omitempty"`
}

// RepairPacks salvages damaged packs (see the comment above). The caller
// holds the exclusive lock; RepairPacks loads the index itself. It needs a
// full key, and refuses while an index file cannot be read (run
// RebuildIndex first: the packs it lists would look unindexed).
func (r *Repository) RepairPacks(ctx context.Context, opt RepairPacksOptions) (*RepairPacksResult, error) {
	if r.WriteOnly() {
		return nil, fmt.Errorf("repair packs: %w", ErrWriteOnly)
	}
	if from := opt.From; from != nil {
		if from.cfg.ID == r.cfg.ID {
			return nil, errors.New("repair packs: the copy is the repository itself")
		}
		if !r.SameParams(from) {
			return nil, fmt.Errorf("repair packs: %w", ErrParamsDiffer)
		}
		if from.WriteOnly() {
			return nil, fmt.Errorf("repair packs: the copy: %w", ErrWriteOnly)
		}
	}
	st, err := r.loadPackState(ctx)
	if err != nil {
		return nil, fmt.Errorf("repair packs: %w", err)
	}
	res := &RepairPacksResult{}
	damaged, err := r.findDamaged(ctx, st, opt, res)
	if err != nil {
		return nil, fmt.Errorf("repair packs: %w", err)
	}
	if len(damaged) == 0 && opt.From == nil {
		return res, nil
	}
	isDamaged := make(map[ID]bool, len(damaged))
	for _, d := range damaged {
		isDamaged[d.Pack] = true
	}

	// The index without the damaged packs: a blob also stored in a sound
	// pack is not lost, and saving one puts it into a new pack (not into
	// the index entry of the damaged pack it came from).
	r.idx = newIndex()
	for _, f := range st.live {
		for _, p := range st.contents[f].Packs {
			if !isDamaged[p.ID] {
				r.idx.addPack(p.ID, p.Blobs)
			}
		}
		r.idx.files[f] = struct{}{}
	}
	packs0 := r.Stats().Packs

	// (1) Salvage into new packs, then what is still missing from the copy.
	for i := range damaged {
		if err := r.salvagePack(ctx, &damaged[i], st); err != nil {
			return nil, fmt.Errorf("repair packs: pack %s: %w", damaged[i].Pack, err)
		}
	}
	if opt.From != nil {
		var lost []ID
		for _, d := range damaged {
			lost = append(lost, d.Lost...)
		}
		if err := r.fetchFromCopy(ctx, opt.From, lost); err != nil {
			return nil, fmt.Errorf("repair packs: from %s: %w", opt.From.be.Location(), err)
		}
	}
	if err := r.Flush(ctx); err != nil {
		return nil, fmt.Errorf("repair packs: %w", err)
	}
	if opt.From != nil {
		// What no pack held even before: the copy may have it too.
		missing, err := r.missingBlobs(ctx, opt.From)
		if err != nil {
			return nil, fmt.Errorf("repair packs: %w", err)
		}
		// Those of the damaged packs are counted there.
		wasIn := map[ID]bool{}
		for _, d := range damaged {
			for _, b := range st.entries[d.Pack] {
				wasIn[b.ID] = true
			}
		}
		missing = slices.DeleteFunc(missing, func(id ID) bool { return wasIn[id] })
		if err := r.fetchFromCopy(ctx, opt.From, missing); err != nil {
			return nil, fmt.Errorf("repair packs: from %s: %w", opt.From.be.Location(), err)
		}
		if err := r.Flush(ctx); err != nil {
			return nil, fmt.Errorf("repair packs: %w", err)
		}
		res.Missing = len(missing)
		for _, id := range missing {
			if r.idx.Has(id) {
				res.MissingFromCopy++
			}
		}
	}
	res.PacksWritten = int(r.Stats().Packs - packs0)
	lost := map[ID]struct{}{}
	for i := range damaged {
		d := &damaged[i]
		var still []ID
		for _, b := range d.Lost {
			if !r.idx.Has(b) {
				still = append(still, b)
				lost[b] = struct{}{}
			}
		}
		// A blob lost here but stored from another damaged pack counts as
		// salvaged (without a copy, that is the only way back).
		if opt.From != nil {
			d.FromCopy = len(d.Lost) - len(still)
		} else {
			d.Salvaged += len(d.Lost) - len(still)
		}
		d.Lost = still
		res.BlobsSalvaged += d.Salvaged
		res.BlobsFromCopy += d.FromCopy
		res.BlobsLost += len(d.Lost)
	}

	// Which damaged packs can go now: on locked storage, one still under
	// retention stays listed with no blobs, so that no backup adopts it
	// again and brings its damaged blobs back into the index.
	present := make([]bool, len(damaged))
	waits := make([]*Waiting, len(damaged))
	if err := parallel(ctx, Connections(r.be), len(damaged), func(i int) error {
		if _, ok := st.sizes[damaged[i].Pack]; !ok {
			return nil
		}
		present[i] = true
		var err error
		waits[i], err = r.retained(ctx, PackFile, damaged[i].Pack.String())
		return err
	}); err != nil {
		return nil, fmt.Errorf("repair packs: %w", err)
	}

	// (2) The index files in force that list a damaged pack, written again
	// without it; the last new file supersedes them — and every file
	// already superseded, which one of them may have been the one to
	// supersede (were it deleted, the older file would be in force again).
	var affected []ID
	for _, f := range st.live {
		for _, p := range st.contents[f].Packs {
			if isDamaged[p.ID] {
				affected = append(affected, f)
				break
			}
		}
	}
	if len(affected) > 0 {
		var packs []IndexPack
		seen := map[ID]bool{}
		for _, f := range affected {
			for _, p := range st.contents[f].Packs {
				if !isDamaged[p.ID] && !seen[p.ID] {
					seen[p.ID] = true
					packs = append(packs, p)
				}
			}
		}
		for i, d := range damaged {
			if waits[i] != nil && !seen[d.Pack] {
				seen[d.Pack] = true
				packs = append(packs, IndexPack{ID: d.Pack, Blobs: []PackedBlob{}})
			}
		}
		supersede := append([]ID(nil), affected...)
		inForce := map[ID]bool{}
		for _, f := range st.live {
			inForce[f] = true
		}
		for _, f := range st.all {
			if !inForce[f] {
				supersede = append(supersede, f)
			}
		}
		written, err := r.writeIndexFiles(ctx, packs, supersede)
		if err != nil {
			return nil, fmt.Errorf("repair packs: %w", err)
		}
		res.IndexesWritten += len(written)
		for _, p := range packs {
			r.idx.addPack(p.ID, p.Blobs)
		}
		r.idx.mu.Lock()
		for _, f := range affected {
			delete(r.idx.files, f)
		}
		for _, f := range written {
			r.idx.files[f] = struct{}{}
		}
		r.idx.mu.Unlock()
		// (3) The old index files.
		for _, f := range affected {
			if containsID(written, f) {
				continue // the same content again, under the same name
			}
			w, err := r.removeDurable(ctx, IndexFile, f.String())
			if err != nil {
				return nil, fmt.Errorf("repair packs: remove old index file: %w", err)
			}
			if w != nil {
				res.Waiting = append(res.Waiting, *w)
				continue
			}
			res.IndexesRemoved++
		}
	}
	// (4) The damaged packs.
	for i := range damaged {
		switch {
		case !present[i]:
		case waits[i] != nil:
			res.Waiting = append(res.Waiting, *waits[i])
		default:
			if _, err := r.removeDurable(ctx, PackFile, damaged[i].Pack.String()); err != nil {
				return nil, fmt.Errorf("repair packs: delete pack: %w", err)
			}
			damaged[i].Deleted = true
		}
	}
	res.Packs = damaged

	if len(lost) > 0 {
		gone := func(id ID) bool { _, ok := lost[id]; return ok }
		if res.Lost, err = r.lostMessages(ctx, gone); err != nil {
			return nil, fmt.Errorf("repair packs: find the messages that lost data: %w", err)
		}
	}
	return res, nil
}

// packState is the index as readers see it, per file, and the packs in
// storage.
type packState struct {
	all, live []ID // index files present, and those in force
	contents  map[ID]*IndexFileContent
	entries   map[ID][]PackedBlob // per indexed pack, every blob listed for it
	sizes     map[ID]int64        // packs in storage
	headless  []ID                // unindexed packs whose header cannot be read
}

// loadPackState reads the index files and lists the packs. Packs no index
// lists are adopted first, as a backup would (their header read, an index
// file written), so that they are checked and their blobs count as
// stored; those whose header cannot be read are in headless.
func (r *Repository) loadPackState(ctx context.Context) (*packState, error) {
	st := &packState{contents: map[ID]*IndexFileContent{}, entries: map[ID][]PackedBlob{}}
	scan, err := r.scanIndexFiles(ctx, func(f ID, ic *IndexFileContent) { st.contents[f] = ic })
	if err != nil {
		return nil, err
	}
	if len(scan.damaged) > 0 {
		return nil, fmt.Errorf("%w (run `mailvault repair index` first): %v", ErrCorrupt, errors.Join(scan.damaged...))
	}
	st.all, st.live = scan.all, scan.live
	if st.sizes, err = r.packSizes(ctx); err != nil {
		return nil, err
	}
	indexed := map[ID]bool{}
	for _, f := range st.live {
		for _, p := range st.contents[f].Packs {
			indexed[p.ID] = true
		}
	}
	var adopt []IndexPack
	for id, size := range st.sizes {
		if indexed[id] {
			continue
		}
		blobs, err := r.ReadPackHeader(ctx, id, size)
		switch {
		case errors.Is(err, ErrCorrupt):
			st.headless = append(st.headless, id)
		case err != nil:
			return nil, err
		default:
			adopt = append(adopt, IndexPack{ID: id, Blobs: blobs})
		}
	}
	sortIDs(st.headless)
	if len(adopt) > 0 {
		id, err := r.SaveJSONFile(ctx, IndexFile, IndexFileContent{Version: 1, Packs: adopt})
		if err != nil {
			return nil, fmt.Errorf("store index: %w", err)
		}
		st.contents[id] = &IndexFileContent{Version: 1, Packs: adopt}
		if !containsID(st.all, id) {
			st.all = append(st.all, id)
			st.live = append(st.live, id)
		}
	}
	for _, f := range st.live {
		for _, p := range st.contents[f].Packs {
			if _, ok := st.entries[p.ID]; !ok {
				// Listed, if with no blobs: a damaged pack that retention
				// keeps (RepairPacks), to be deleted once it may.
				st.entries[p.ID] = nil
			}
			have := map[ID]bool{}
			for _, b := range st.entries[p.ID] {
				have[b.ID] = true
			}
			for _, b := range p.Blobs {
				if !have[b.ID] {
					have[b.ID] = true
					st.entries[p.ID] = append(st.entries[p.ID], b)
				}
			}
		}
	}
	return st, nil
}

// findDamaged returns the packs to repair: the named ones, or every pack
// that fails verification (as check --read-data verifies it), every
// indexed pack missing from storage and every unindexed one whose header
// cannot be read.
func (r *Repository) findDamaged(ctx context.Context, st *packState, opt RepairPacksOptions, res *RepairPacksResult) ([]PackRepair, error) {
	var out []PackRepair
	add := func(id ID, why string) {
		why = strings.TrimPrefix(why, "pack "+id.String()+": ") // said once, in Pack
		out = append(out, PackRepair{Pack: id, Err: why, Blobs: len(st.entries[id])})
	}
	if len(opt.Packs) > 0 {
		seen := map[ID]bool{}
		for _, id := range opt.Packs {
			if seen[id] {
				continue
			}
			seen[id] = true
			_, indexed := st.entries[id]
			_, stored := st.sizes[id]
			switch {
			case !indexed && !stored:
				return nil, fmt.Errorf("pack %s is neither in the index nor in storage", id)
			case !stored:
				add(id, "pack is missing from storage")
			case !indexed:
				add(id, "pack header cannot be read")
			default:
				why := "named for repair"
				if err := r.verifyPack(ctx, id, st.entries[id]); err != nil {
					if !errors.Is(err, ErrCorrupt) {
						return nil, err
					}
					why = err.Error()
				}
				add(id, why)
			}
		}
		return out, nil
	}
	var toRead []ID
	for id := range st.entries {
		if _, ok := st.sizes[id]; ok {
			toRead = append(toRead, id)
		} else {
			add(id, "pack is missing from storage")
		}
	}
	for _, id := range st.headless {
		add(id, "pack is in no index and its header cannot be read")
	}
	sortIDs(toRead)
	errs := make([]error, len(toRead))
	var mu sync.Mutex
	err := parallel(ctx, 2, len(toRead), func(i int) error {
		err := r.verifyPack(ctx, toRead[i], st.entries[toRead[i]])
		if err != nil && !errors.Is(err, ErrCorrupt) {
			return err
		}
		errs[i] = err
		mu.Lock()
		res.PacksRead++
		if opt.Progress != nil {
			opt.Progress(res.PacksRead, len(toRead))
		}
		mu.Unlock()
		return nil
	})
	if err != nil {
		return nil, err
	}
	for i, err := range errs {
		if err != nil {
			add(toRead[i], err.Error())
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Pack.String() < out[j].Pack.String() })
	return out, nil
}

// salvagePack stores again every blob of d's pack that reads back and
// verifies, and records the others in d.Lost. A blob already stored in a
// sound pack counts as salvaged without being read. Only an error that is
// not damage (a failed read, a failed write) is returned.
func (r *Repository) salvagePack(ctx context.Context, d *PackRepair, st *packState) error {
	var todo []PackedBlob
	for _, b := range st.entries[d.Pack] {
		if r.idx.Has(b.ID) || r.isPending(b.ID) {
			d.Salvaged++
			continue
		}
		todo = append(todo, b)
	}
	if _, stored := st.sizes[d.Pack]; !stored {
		d.Lost = blobIDs(todo)
		return nil
	}
	var err error
	d.Lost, err = readSalvage(ctx, r, d.Pack, todo, func(b PackedBlob, data []byte) error {
		if _, err := r.saveBlobWithID(ctx, b.Type, b.ID, data); err != nil {
			return err
		}
		d.Salvaged++
		return nil
	})
	return err
}

// fetchFromCopy stores from the copy those of ids that r lacks, reading
// the copy pack by pack; a damaged pack of the copy costs only the blobs
// that do not verify there (they stay lost).
func (r *Repository) fetchFromCopy(ctx context.Context, from *Repository, ids []ID) error {
	byPack := map[ID][]PackedBlob{}
	seen := map[ID]bool{}
	for _, id := range ids {
		if seen[id] || r.idx.Has(id) || r.isPending(id) {
			continue
		}
		seen[id] = true
		if pack, b, ok := from.idx.Lookup(id); ok {
			byPack[pack] = append(byPack[pack], b)
		}
	}
	packs := make([]ID, 0, len(byPack))
	for p := range byPack {
		packs = append(packs, p)
	}
	sortIDs(packs)
	for _, p := range packs {
		// Verified against its ID with the blob-ID key both share.
		_, err := readSalvage(ctx, from, p, byPack[p], func(b PackedBlob, data []byte) error {
			_, err := r.saveBlobWithID(ctx, b.Type, b.ID, data)
			return err
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// missingBlobs returns the blobs r's snapshots use that r's index does not
// list, trees included. A tree r cannot load is read from the copy, so
// that what it lists is found too; one neither can is skipped (repair
// snapshots drops it).
func (r *Repository) missingBlobs(ctx context.Context, from *Repository) ([]ID, error) {
	snaps, _, err := r.Snapshots(ctx)
	if err != nil {
		return nil, err
	}
	var missing []ID
	seen := map[ID]bool{}
	need := func(ids ...ID) {
		for _, id := range ids {
			if !seen[id] {
				seen[id] = true
				if !r.idx.Has(id) {
					missing = append(missing, id)
				}
			}
		}
	}
	// load tries r, then the copy; nil for a tree neither can read.
	load := func(into func(*Repository) error) error {
		err := into(r)
		if err == nil || !isDamage(err) {
			return err
		}
		if err := into(from); err != nil && !isDamage(err) {
			return err
		}
		return nil
	}
	for _, s := range snaps {
		for _, root := range s.Roots {
			if idx := root.MessageIndex; idx != nil && !seen[*idx] {
				err := load(func(repo *Repository) error {
					ids, err := msgIndexBlobs(ctx, *idx, repo.loadTreeBlob, map[ID]struct{}{})
					need(ids...)
					return err
				})
				if err != nil {
					return nil, err
				}
				need(*idx)
			}
			if !root.Files.IsNull() && !seen[root.Files] {
				need(root.Files)
				err := load(func(repo *Repository) error {
					t, err := repo.LoadFilesTree(ctx, root.Files)
					if err == nil {
						for _, e := range t.Entries {
							need(e.Blobs...)
						}
					}
					return err
				})
				if err != nil {
					return nil, err
				}
			}
			for _, f := range root.Folders {
				if seen[f.Tree] {
					continue
				}
				need(f.Tree)
				err := load(func(repo *Repository) error {
					t, err := repo.LoadFolderTree(ctx, f.Tree)
					if err == nil {
						for _, p := range t.Pages {
							need(p.ID)
						}
						for _, m := range t.Messages {
							need(m.Blobs...)
						}
					}
					return err
				})
				if err != nil {
					return nil, err
				}
			}
		}
	}
	return missing, nil
}

// readSalvage calls fn with every blob of blobs (all in pack, of repo)
// that reads back and verifies, and returns the IDs of the others. Only an
// error that is not damage (a failed read, or fn's) is returned.
//
// ReadBlobs hands blobs over in pack order and stops at the first one
// that does not verify: that one is lost, and the read resumes after it,
// so one damaged age chunk costs only the blobs in it. A damaged age
// header (which wraps the key to every chunk) or a missing pack costs all.
func readSalvage(ctx context.Context, repo *Repository, pack ID, blobs []PackedBlob, fn func(PackedBlob, []byte) error) ([]ID, error) {
	if len(blobs) == 0 {
		return nil, nil
	}
	if err := repo.checkPackHeader(ctx, pack); err != nil {
		if isDamage(err) {
			return blobIDs(blobs), nil
		}
		return nil, err
	}
	todo := slices.Clone(blobs)
	sort.Slice(todo, func(i, j int) bool { return todo[i].Offset < todo[j].Offset })
	var lost []ID
	for len(todo) > 0 {
		var fnErr error
		done := 0
		err := repo.ReadBlobs(ctx, pack, todo, func(b PackedBlob, data []byte) error {
			if fnErr = fn(b, data); fnErr != nil {
				return fnErr
			}
			done++
			return nil
		})
		switch {
		case fnErr != nil:
			return nil, fnErr
		case err == nil:
			return lost, nil
		case !isDamage(err):
			return nil, err
		}
		lost = append(lost, todo[done].ID)
		todo = todo[done+1:]
	}
	return lost, nil
}

// isPending reports whether a blob is saved but its pack not yet stored.
func (r *Repository) isPending(id ID) bool {
	r.saveMu.Lock()
	defer r.saveMu.Unlock()
	_, ok := r.pending[id]
	return ok
}

// checkPackHeader reads a pack's age header and unwraps its file key.
func (r *Repository) checkPackHeader(ctx context.Context, pack ID) error {
	ident, err := r.identityFor(PackFile)
	if err != nil {
		return err
	}
	rc, err := r.be.GetRange(ctx, PackFile, pack.String(), 0, ageHeaderWindow)
	if err != nil {
		return err
	}
	defer rc.Close()
	prefix, err := io.ReadAll(rc)
	if err != nil {
		return fmt.Errorf("read pack %s: %w", pack, err)
	}
	hdr, err := age.ExtractHeader(bytes.NewReader(prefix))
	if err == nil {
		_, err = age.DecryptHeader(hdr, ident)
	}
	if err != nil {
		return fmt.Errorf("pack %s: %w: age header: %v", pack, ErrCorrupt, err)
	}
	return nil
}

func blobIDs(bs []PackedBlob) []ID {
	out := make([]ID, len(bs))
	for i, b := range bs {
		out[i] = b.ID
	}
	return out
}
