package archive

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
)

// ErrParamsDiffer means two repositories do not share a blob-ID key and
// chunker parameters, so blobs cannot move between them under their IDs.
var ErrParamsDiffer = errors.New("the repositories do not share a blob-ID key and chunker parameters (create the target with `mailvault init --copy-params-from`)")

// InitCopyParams creates a repository in an empty backend that shares
// src's blob-ID key, chunker polynomial and chunk bounds, so the same
// content gets the same blob IDs in both and Copy can move blobs as they
// are. Its age identities (data and index) are its own; see docs/FORMAT.md
// "Copies between repositories".
func InitCopyParams(ctx context.Context, be Backend, kr KeyRecipients, src *Repository) (ID, error) {
	if src == nil {
		return ID{}, errors.New("init: no source repository for the parameters")
	}
	return initRepo(ctx, be, kr, src)
}

// SameParams reports whether blobs of r and other have the same IDs: both
// use one blob-ID key and chunker polynomial.
func (r *Repository) SameParams(other *Repository) bool {
	return bytes.Equal(r.key.Secrets.BlobIDKey, other.key.Secrets.BlobIDKey) && r.pol == other.pol &&
		r.cfg.ChunkMin == other.cfg.ChunkMin && r.cfg.ChunkMax == other.cfg.ChunkMax
}

// CopiedSnapshot pairs a snapshot with its copy.
type CopiedSnapshot struct {
	From ID `json:"from"`
	To   ID `json:"to"`
}

// CopyStats counts what Copy did.
type CopyStats struct {
	Snapshots        int              `json:"snapshots"`         // snapshots copied
	SnapshotsPresent int              `json:"snapshots_present"` // already in the target, skipped
	Blobs            int64            `json:"blobs"`             // blobs stored in the target
	BlobsPresent     int64            `json:"blobs_present"`     // blobs the target already had
	Bytes            int64            `json:"bytes"`             // plaintext bytes of the blobs stored
	PacksRead        int64            `json:"packs_read"`        // source packs read
	Copied           []CopiedSnapshot `json:"copied,omitempty"`
}

// copiedSnapshot is the JSON of a snapshot written by Copy: the snapshot
// as it was, plus the ID it has in the repository it came from.
type copiedSnapshot struct {
	*Snapshot
	Original ID `json:"original"`
}

// loadSnapshotOriginal loads a snapshot and the "original" field a copy
// carries (nil for a snapshot made by a backup).
func (r *Repository) loadSnapshotOriginal(ctx context.Context, id ID) (*Snapshot, *ID, error) {
	plain, err := r.LoadFile(ctx, SnapshotFile, id)
	if err != nil {
		return nil, nil, err
	}
	s, err := decodeSnapshot(plain)
	if err != nil {
		return nil, nil, fmt.Errorf("snapshot %s: %w: %v", id.Short(), ErrCorrupt, err)
	}
	s.ID = id
	var o struct {
		Original *ID `json:"original"`
	}
	if err := json.Unmarshal(plain, &o); err != nil {
		return nil, nil, fmt.Errorf("snapshot %s: %w: %v", id.Short(), ErrCorrupt, err)
	}
	return s, o.Original, nil
}

// snapshotKey is what makes two snapshots the same backup whatever their
// file IDs: time, host, paths and every tree they refer to.
func snapshotKey(s *Snapshot) string {
	var b strings.Builder
	b.WriteString(s.Time.UTC().Format(time.RFC3339Nano))
	b.WriteString("\x00" + s.Host + "\x00" + strings.Join(s.Paths, "\x01"))
	for _, root := range s.Roots {
		b.WriteString("\x00" + root.Path + "\x01" + root.Name + "\x01" + root.Files.String())
		for _, f := range root.Folders {
			b.WriteString("\x01" + f.Dir + "=" + f.Tree.String())
		}
	}
	return b.String()
}

// Copy copies snapshots (all of from's when the list is empty) into to,
// with every blob they need that to lacks. Both repositories must share a
// blob-ID key (InitCopyParams); blobs are read and verified in from and
// stored as they are in to. Both indexes must be loaded (LoadIndex, and
// AdoptPacks on to so that an interrupted copy's packs are reused).
// Snapshots already in to — made by an earlier copy ("original") or
// identical in time, host, paths and trees — are skipped. Each snapshot
// is written only after Flush has stored the packs and index it needs, so
// an interrupted copy leaves no snapshot referring to missing data.
// progress, if set, is called after each source pack.
func Copy(ctx context.Context, from, to *Repository, snapshots []ID, progress func(CopyStats)) (CopyStats, error) {
	var st CopyStats
	if from.cfg.ID == to.cfg.ID {
		return st, errors.New("copy: source and target are the same repository")
	}
	if !from.SameParams(to) {
		return st, fmt.Errorf("copy: %w", ErrParamsDiffer)
	}
	// What the target already holds, and where the source's snapshots went.
	existing, err := to.List(ctx, SnapshotFile)
	if err != nil {
		return st, err
	}
	present := map[string]ID{} // snapshot key or original ID → ID in to
	for _, id := range existing {
		s, orig, err := to.loadSnapshotOriginal(ctx, id)
		if errors.Is(err, ErrCorrupt) {
			continue // check reports it; a damaged file does not block a copy
		}
		if err != nil {
			return st, fmt.Errorf("target: %w", err)
		}
		present[snapshotKey(s)] = id
		if orig != nil {
			present[orig.String()] = id
		}
	}

	if len(snapshots) == 0 {
		if snapshots, err = from.List(ctx, SnapshotFile); err != nil {
			return st, err
		}
	}
	type source struct {
		s    *Snapshot
		orig *ID
	}
	var srcs []source
	for _, id := range snapshots {
		s, orig, err := from.loadSnapshotOriginal(ctx, id)
		if err != nil {
			return st, fmt.Errorf("source: %w", err)
		}
		srcs = append(srcs, source{s, orig})
	}
	// Oldest first, so that a parent is copied before its children.
	sort.SliceStable(srcs, func(i, j int) bool { return srcs[i].s.Time.Before(srcs[j].s.Time) })

	mapped := map[ID]ID{} // source snapshot ID → target snapshot ID
	walked := map[ID]struct{}{}
	for _, src := range srcs {
		s := src.s
		orig := s.ID
		if src.orig != nil {
			orig = *src.orig
		}
		if id, ok := present[orig.String()]; ok {
			mapped[s.ID], st.SnapshotsPresent = id, st.SnapshotsPresent+1
			continue
		}
		if id, ok := present[s.ID.String()]; ok {
			mapped[s.ID], st.SnapshotsPresent = id, st.SnapshotsPresent+1
			continue
		}
		if id, ok := present[snapshotKey(s)]; ok {
			mapped[s.ID], st.SnapshotsPresent = id, st.SnapshotsPresent+1
			continue
		}
		need, err := from.snapshotBlobs(ctx, s, walked)
		if err != nil {
			return st, fmt.Errorf("snapshot %s: %w", s.ID.Short(), err)
		}
		if err := copyBlobs(ctx, from, to, need, &st, progress); err != nil {
			return st, fmt.Errorf("snapshot %s: %w", s.ID.Short(), err)
		}
		if err := to.Flush(ctx); err != nil {
			return st, fmt.Errorf("snapshot %s: %w", s.ID.Short(), err)
		}
		cp := *s
		cp.Parent = nil
		if s.Parent != nil {
			if p, ok := mapped[*s.Parent]; ok {
				cp.Parent = &p
			}
		}
		id, err := to.SaveJSONFile(ctx, SnapshotFile, copiedSnapshot{Snapshot: &cp, Original: orig})
		if err != nil {
			return st, fmt.Errorf("snapshot %s: store: %w", s.ID.Short(), err)
		}
		mapped[s.ID] = id
		present[orig.String()] = id
		present[snapshotKey(s)] = id
		st.Snapshots++
		st.Copied = append(st.Copied, CopiedSnapshot{From: s.ID, To: id})
	}
	return st, nil
}

// snapshotBlobs returns every blob a snapshot needs — its trees and what
// they list — skipping trees already in walked (and adding the rest).
func (r *Repository) snapshotBlobs(ctx context.Context, s *Snapshot, walked map[ID]struct{}) ([]ID, error) {
	var need []ID
	err := r.eachSnapshotBlob(ctx, s, walked, func(ids ...ID) { need = append(need, ids...) })
	return need, err
}

// eachSnapshotBlob is snapshotBlobs calling need with the blobs a tree at
// a time instead of returning them all: prune, whose list of a million
// messages' blobs would be 60 MB and, while it grew, twice that.
func (r *Repository) eachSnapshotBlob(ctx context.Context, s *Snapshot, walked map[ID]struct{}, need func(...ID)) error {
	for _, root := range s.Roots {
		if idx := root.MessageIndex; idx != nil {
			if _, ok := walked[*idx]; !ok {
				ids, err := msgIndexBlobs(ctx, *idx, r.loadTreeBlob, walked)
				if err != nil {
					return err
				}
				walked[*idx] = struct{}{}
				need(ids...)
			}
		}
		if !root.Files.IsNull() {
			if _, ok := walked[root.Files]; !ok {
				t, err := r.LoadFilesTree(ctx, root.Files)
				if err != nil {
					return err
				}
				walked[root.Files] = struct{}{}
				need(root.Files)
				for _, e := range t.Entries {
					need(e.Blobs...)
				}
			}
		}
		for _, f := range root.Folders {
			if _, ok := walked[f.Tree]; ok {
				continue
			}
			t, err := r.LoadFolderTree(ctx, f.Tree)
			if err != nil {
				return err
			}
			walked[f.Tree] = struct{}{}
			need(f.Tree)
			for _, p := range t.Pages {
				need(p.ID)
			}
			for _, m := range t.Messages {
				need(m.Blobs...)
			}
		}
	}
	return nil
}

// copyBlobs stores in to the blobs of need that to lacks, reading them
// from from pack by pack.
func copyBlobs(ctx context.Context, from, to *Repository, need []ID, st *CopyStats, progress func(CopyStats)) error {
	byPack := map[ID][]PackedBlob{}
	seen := make(map[ID]struct{}, len(need))
	for _, id := range need {
		if _, dup := seen[id]; dup {
			continue
		}
		seen[id] = struct{}{}
		if to.idx.Has(id) {
			st.BlobsPresent++
			continue
		}
		pack, b, ok := from.idx.Lookup(id)
		if !ok {
			return fmt.Errorf("blob %s: %w: not in any index of the source", id, ErrCorrupt)
		}
		byPack[pack] = append(byPack[pack], b)
	}
	packs := make([]ID, 0, len(byPack))
	for p := range byPack {
		packs = append(packs, p)
	}
	sort.Slice(packs, func(i, j int) bool { return bytes.Compare(packs[i][:], packs[j][:]) < 0 })
	for _, pack := range packs {
		err := from.ReadBlobs(ctx, pack, byPack[pack], func(b PackedBlob, data []byte) error {
			// data was verified against b.ID with the shared key.
			stored, err := to.saveBlobWithID(ctx, b.Type, b.ID, data)
			if err != nil {
				return err
			}
			if stored {
				st.Blobs++
				st.Bytes += int64(len(data))
			} else {
				st.BlobsPresent++
			}
			return nil
		})
		if err != nil {
			return err
		}
		st.PacksRead++
		if progress != nil {
			progress(*st)
		}
	}
	return nil
}
