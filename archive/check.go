package archive

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"sync"
)

// CheckOptions say how deep check goes.
type CheckOptions struct {
	// ReadData downloads and verifies every pack (or ReadSubset of them).
	ReadData bool
	// ReadSubset in (0,1] checks that fraction of the packs, chosen
	// deterministically by pack ID from Seed, so repeated runs with
	// different seeds cover the repository.
	ReadSubset float64
	Seed       uint64
	// Progress is called after each pack read.
	Progress func(done, total int)
}

// Problem is one finding of check.
type Problem struct {
	// Object names the damaged or missing file, e.g. "pack 1a2b…".
	Object string `json:"object"`
	Err    string `json:"error"`
	// Affected lists the messages (snapshot user/folder/unique
	// <message-id> "subject", either of the last two left out when the
	// message has none) and files whose content depends on the object.
	Affected []string `json:"affected,omitempty"`
}

// CheckResult is what check found. Errors mean data is missing or
// damaged; warnings are harmless leftovers (e.g. unindexed packs of an
// interrupted backup, adopted by the next backup).
type CheckResult struct {
	Snapshots int       `json:"snapshots"`
	Packs     int       `json:"packs"`
	PacksRead int       `json:"packs_read"`
	Blobs     int       `json:"blobs"`
	Errors    []Problem `json:"errors"`
	Warnings  []string  `json:"warnings"`
}

// OK reports whether check found no errors.
func (c *CheckResult) OK() bool { return len(c.Errors) == 0 }

// Check verifies the repository's structure and, optionally, its content.
// It only reads; unindexed packs are reported, not adopted.
func (r *Repository) Check(ctx context.Context, opt CheckOptions) (*CheckResult, error) {
	if r.WriteOnly() {
		// It could read no snapshot, tree or pack, and would report every
		// one of them as damaged.
		return nil, fmt.Errorf("check: %w", ErrWriteOnly)
	}
	res := &CheckResult{}
	// Check reads every index file, so that damage to one is reported
	// even where the cached index table would have served (the table is
	// written afresh from what it reads).
	r.indexFromFiles = true
	unindexed, err := r.LoadIndex(ctx)
	if err != nil {
		return nil, err
	}
	for _, err := range r.DamagedIndexes() {
		res.Errors = append(res.Errors, Problem{Object: "index", Err: err.Error() + " (run `mailvault repair index` to rebuild the index from the packs)"})
	}
	// The audit chain of compliance acts (policydoc.go) verifies as `hold
	// log` verifies it: a break is an error, since the chain is the proof
	// of who placed and released holds and who erased what.
	log, err := r.AuditLog(ctx)
	if err != nil {
		return nil, err
	}
	for _, b := range log.Breaks {
		res.Errors = append(res.Errors, Problem{Object: "audit chain", Err: b})
	}
	// Unindexed packs are read from their own headers (in memory only),
	// so that what they hold counts as stored and --read-data checks them.
	readable := map[ID]bool{}
	for _, p := range r.IndexPacks(ctx, unindexed) {
		readable[p.ID] = true
	}
	for id := range unindexed {
		if readable[id] {
			res.Warnings = append(res.Warnings, fmt.Sprintf("pack %s is not in any index (left by an interrupted or running backup, or listed in a damaged index; the next backup adopts it)", id))
		} else {
			res.Warnings = append(res.Warnings, fmt.Sprintf("pack %s is not in any index and its header cannot be read; nothing refers to it through the index", id))
		}
	}
	present, err := r.packSizes(ctx)
	if err != nil {
		return nil, err
	}
	packs := r.idx.Packs()
	res.Packs = len(packs)
	res.Blobs = r.idx.Len()
	damaged := map[ID]string{} // pack → why
	for _, p := range packs {
		if _, ok := present[p]; !ok {
			damaged[p] = "pack is missing from storage"
		}
	}

	// Structure: every snapshot's trees load and every blob they name is
	// indexed in a pack that exists. Who uses which blob is not kept: at a
	// million messages that map was most of check's memory; it is built
	// below for the blobs of damaged packs only.
	if _, err := r.walkSnapshots(ctx, res, nil); err != nil {
		return nil, err
	}

	if opt.ReadData {
		toRead := packs
		if opt.ReadSubset > 0 && opt.ReadSubset < 1 {
			toRead = subset(packs, opt.ReadSubset, opt.Seed)
		}
		// A count per pack, not every blob's place per pack: each blob of
		// a header is looked up in the index instead.
		counts := r.idx.packBlobCounts()
		var mu sync.Mutex
		sem := make(chan struct{}, 2)
		var wg sync.WaitGroup
		done := 0
		for _, p := range toRead {
			mu.Lock() // the pack readers write damaged
			_, missing := damaged[p]
			mu.Unlock()
			if missing {
				continue
			}
			wg.Add(1)
			sem <- struct{}{}
			go func(p ID) {
				defer wg.Done()
				defer func() { <-sem }()
				var indexed uint32
				if ord, ok := r.idx.packOrd(p); ok {
					indexed = counts[ord]
				}
				err := r.checkPack(ctx, p, present[p], indexed)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					damaged[p] = err.Error()
				}
				res.PacksRead++
				done++
				if opt.Progress != nil {
					opt.Progress(done, len(toRead))
				}
			}(p)
		}
		wg.Wait()
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
	if len(damaged) > 0 {
		// Name what each damaged pack takes with it: a second walk of the
		// snapshots, noting who uses the blobs of those packs only.
		set := make(map[ID]bool, len(damaged))
		ids := make([]ID, 0, len(damaged))
		for p := range damaged {
			ids = append(ids, p)
			set[p] = true
		}
		byPack := r.idx.blobsInPacks(set)
		want := map[ID]bool{}
		for _, blobs := range byPack {
			for _, b := range blobs {
				want[b.ID] = true
			}
		}
		refs, err := r.walkSnapshots(ctx, &CheckResult{}, want)
		if err != nil {
			return nil, err
		}
		sort.Slice(ids, func(i, j int) bool { return ids[i].String() < ids[j].String() })
		for _, p := range ids {
			var affected []string
			seen := map[string]bool{}
			for _, b := range byPack[p] {
				for _, who := range refs[b.ID] {
					if !seen[who] {
						seen[who] = true
						affected = append(affected, who)
					}
				}
			}
			sort.Strings(affected)
			res.Errors = append(res.Errors, Problem{Object: "pack " + p.String(), Err: damaged[p], Affected: affected})
		}
	}
	return res, nil
}

// walkSnapshots loads every snapshot and tree, records problems in res,
// and returns for every blob of want the messages and files that use it
// (for none when want is nil).
func (r *Repository) walkSnapshots(ctx context.Context, res *CheckResult, want map[ID]bool) (map[ID][]string, error) {
	refs := map[ID][]string{}
	// ref notes who uses a blob of want; who is made only then (a string
	// per message and blob otherwise).
	ref := func(id ID, who func() string) {
		if want[id] {
			refs[id] = append(refs[id], who())
		}
	}
	is := func(s string) func() string { return func() string { return s } }
	var (
		verify *msgIndexVerifier // the first walk only
		blobs  *refSet           // the first walk only: the blobs trees name, looked up at the end
	)
	if want == nil {
		verify = newMsgIndexVerifier(r)
		blobs = newRefSet(r.idx.spill.dir)
		defer blobs.close()
	}
	// uses notes that a tree names a blob: on the first walk, to be
	// looked up with the others once all are known (Index.missingOf).
	uses := func(id ID) {
		if blobs != nil {
			blobs.add(id)
		}
	}
	ids, err := r.List(ctx, SnapshotFile)
	if err != nil {
		return nil, err
	}
	res.Snapshots = len(ids)
	loadedTrees := map[ID]bool{}
	for _, sid := range ids {
		snap, err := r.LoadSnapshot(ctx, sid)
		if err != nil {
			res.Errors = append(res.Errors, Problem{Object: "snapshot " + sid.String(), Err: err.Error()})
			continue
		}
		for ri := range snap.Roots {
			root := &snap.Roots[ri]
			indexRead := false
			if idx := root.MessageIndex; idx != nil {
				where := fmt.Sprintf("snapshot %s Message-ID index of %s", sid.Short(), root.Path)
				indexRead = loadedTrees[*idx]
				if !indexRead {
					ids, err := r.msgIndexAll(ctx, *idx)
					if err != nil {
						res.Errors = append(res.Errors, Problem{Object: "message index " + idx.String(), Err: err.Error(), Affected: []string{where}})
					} else {
						loadedTrees[*idx], indexRead = true, true
					}
					for _, id := range ids {
						ref(id, is(where))
					}
				}
			}
			for _, f := range root.Folders {
				where := fmt.Sprintf("snapshot %s %s/%s", sid.Short(), f.User, f.Folder)
				ref(f.Tree, func() string { return where + " (folder list)" })
				if loadedTrees[f.Tree] {
					continue
				}
				t, err := r.LoadFolderTree(ctx, f.Tree)
				if err != nil {
					res.Errors = append(res.Errors, Problem{Object: "tree " + f.Tree.String(), Err: err.Error(), Affected: []string{where}})
					continue
				}
				loadedTrees[f.Tree] = true
				if verify != nil && root.MessageIndex != nil {
					verify.noteTree(&f, t)
				}
				for _, p := range t.Pages {
					ref(p.ID, func() string { return where + " (folder list page)" })
				}
				for i := range t.Messages {
					m := &t.Messages[i]
					who := func() string { return where + "/" + m.Unique + describeMessage(m) }
					for _, b := range m.Blobs {
						ref(b, who)
						uses(b)
					}
				}
			}
			if verify != nil && indexRead {
				if p := verify.verifyRoot(ctx, sid, root); p != nil {
					res.Errors = append(res.Errors, *p)
				}
			}
			if root.Files.IsNull() {
				continue
			}
			where := fmt.Sprintf("snapshot %s files of %s", sid.Short(), root.Path)
			ref(root.Files, is(where))
			if loadedTrees[root.Files] {
				continue
			}
			ft, err := r.LoadFilesTree(ctx, root.Files)
			if err != nil {
				res.Errors = append(res.Errors, Problem{Object: "tree " + root.Files.String(), Err: err.Error(), Affected: []string{where}})
				continue
			}
			loadedTrees[root.Files] = true
			for _, e := range ft.Entries {
				who := func() string { return fmt.Sprintf("snapshot %s file %s", sid.Short(), e.Path) }
				for _, b := range e.Blobs {
					ref(b, who)
					uses(b)
				}
			}
		}
	}
	if blobs == nil {
		return refs, nil
	}
	// The blobs no pack holds, and then (a second walk, only when there
	// are some) who uses them.
	lost := map[ID]bool{}
	var order []ID
	if err := r.idx.missingOf(blobs, func(id ID) { lost[id] = true; order = append(order, id) }); err != nil {
		return nil, err
	}
	if len(lost) == 0 {
		return refs, nil
	}
	users, err := r.walkSnapshots(ctx, &CheckResult{}, lost)
	if err != nil {
		return nil, err
	}
	for _, id := range order {
		if len(users[id]) == 0 {
			res.Errors = append(res.Errors, Problem{Object: "blob " + id.String(), Err: "not in any pack"})
		}
		for _, who := range users[id] {
			res.Errors = append(res.Errors, Problem{Object: "blob " + id.String(), Err: "not in any pack", Affected: []string{who}})
		}
	}
	return refs, nil
}

// describeMessage is what check says of a message after its unique name,
// so that an admin can tell which mail a damaged pack takes with it: its
// Message-ID in angle brackets and its subject quoted (Go syntax, so that
// a hostile subject keeps to one line).
func describeMessage(m *Message) string {
	var s string
	if m.MessageID != "" {
		s += " <" + m.MessageID + ">"
	}
	if m.Subject != "" {
		s += " " + strconv.Quote(m.Subject)
	}
	return s
}

// verifyPack downloads a pack and checks everything about it: its name
// against its SHA-256, the age authentication of every chunk, its header
// against the index entries given (indexed), and every blob against its
// keyed ID.
func (r *Repository) verifyPack(ctx context.Context, id ID, indexed []PackedBlob) error {
	hdr, err := r.readCheckedPack(ctx, id, 0)
	if err != nil {
		return err
	}
	inPack := make(map[ID]PackedBlob, len(hdr))
	for _, b := range hdr {
		inPack[b.ID] = b
	}
	for _, b := range indexed {
		if got, ok := inPack[b.ID]; !ok || got != b {
			return fmt.Errorf("pack %s: index entry for blob %s does not match the pack header", id, b.ID)
		}
	}
	return nil
}

// checkPack is verifyPack for check --read-data, given only the number of
// blobs the index places in the pack (Index.packBlobCounts) rather than
// their list: each header blob is looked up in the index, and those placed
// here must match the header and be as many as the index places here.
func (r *Repository) checkPack(ctx context.Context, id ID, size int64, indexed uint32) error {
	hdr, err := r.readCheckedPack(ctx, id, size)
	if err != nil {
		return err
	}
	var matched uint32
	for _, b := range hdr {
		// The index holds a blob once: placed here, it must be placed
		// as the header says; placed in another pack (a copy stored
		// twice), this one is spare.
		if p, ib, ok := r.idx.Lookup(b.ID); ok && p == id {
			if ib != b {
				return fmt.Errorf("pack %s: index entry for blob %s does not match the pack header", id, b.ID)
			}
			matched++
		}
	}
	if matched == indexed {
		return nil
	}
	// An indexed blob the header lacks: the pack's index entries, to
	// name it (only for a pack found wanting).
	return r.verifyPack(ctx, id, r.idx.blobsInPacks(map[ID]bool{id: true})[id])
}

// readCheckedPack reads a pack whole, checking its name and age
// authentication, and every blob of its header against its keyed ID;
// size is the pack file's, if known (readPack).
func (r *Repository) readCheckedPack(ctx context.Context, id ID, size int64) ([]PackedBlob, error) {
	plain, err := r.readPack(ctx, id, size)
	if err != nil {
		return nil, err
	}
	hdr, err := ParsePack(plain)
	if err != nil {
		return nil, fmt.Errorf("pack %s: %w", id, err)
	}
	for _, b := range hdr {
		if _, err := r.DecodeBlob(id, b, plain[b.Offset:b.Offset+b.Length]); err != nil {
			return nil, err
		}
	}
	return hdr, nil
}

// subset picks about frac of the packs, stable for a given seed.
func subset(packs []ID, frac float64, seed uint64) []ID {
	var out []ID
	limit := uint64(frac * float64(^uint64(0)))
	for _, p := range packs {
		h := seed*0x9e3779b97f4a7c15 ^ (uint64(p[0]) | uint64(p[1])<<8 | uint64(p[2])<<16 | uint64(p[3])<<24 | uint64(p[4])<<32 | uint64(p[5])<<40 | uint64(p[6])<<48 | uint64(p[7])<<56)
		h ^= h >> 33
		h *= 0xff51afd7ed558ccd
		h ^= h >> 33
		if h <= limit {
			out = append(out, p)
		}
	}
	if len(out) == 0 && len(packs) > 0 {
		out = append(out, packs[seed%uint64(len(packs))])
	}
	return out
}
