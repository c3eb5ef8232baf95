package main

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/mailvault/mailvault/archive"
	"github.com/mailvault/mailvault/retention"
)

// loadHolds reads the repository's holds document (empty when there is
// none yet).
func loadHolds(ctx context.Context, repo *archive.Repository) (*retention.Holds, error) {
	head, err := repo.PolicyHead(ctx, retention.HoldsKind)
	if err != nil {
		return nil, fmt.Errorf("legal holds: %w", err)
	}
	hs := &retention.Holds{}
	if head == nil {
		return hs, nil
	}
	if err := json.Unmarshal(head.Body, hs); err != nil {
		return nil, fmt.Errorf("legal holds: policy/%s: %w: %v", head.ID, archive.ErrCorrupt, err)
	}
	return hs, nil
}

// activeMatchers loads the holds and compiles the active ones.
func activeMatchers(ctx context.Context, repo *archive.Repository) ([]*retention.Matcher, error) {
	hs, err := loadHolds(ctx, repo)
	if err != nil {
		return nil, err
	}
	return hs.Active()
}

// activeHold loads the holds and finds the active one of case name
// (exit 15 when there is none).
func activeHold(ctx context.Context, repo *archive.Repository, name string) (*retention.Holds, *retention.Hold, error) {
	hs, err := loadHolds(ctx, repo)
	if err != nil {
		return nil, nil, err
	}
	h := hs.Find(name)
	if h == nil {
		return nil, nil, withCode(exitNoHold, fmt.Errorf("%w of case %q (hold list --all shows every case)", errNoHold, name))
	}
	return hs, h, nil
}

// heldMessage is a message that active holds select, in one snapshot.
type heldMessage struct {
	snap   *archive.Snapshot
	folder *archive.FolderEntry
	msg    *archive.Message
	cases  []string
}

// scanHolds calls fn for every message of snaps that a hold of ms
// selects. A folder tree several snapshots share is read and matched
// once. The index must be loaded.
func scanHolds(ctx context.Context, repo *archive.Repository, snaps []*archive.Snapshot, ms []*retention.Matcher, fn func(heldMessage)) error {
	if len(ms) == 0 {
		return nil
	}
	type treeKey struct {
		user string
		tree archive.ID
	}
	type match struct {
		msg   archive.Message
		cases []string
	}
	seen := map[treeKey][]match{}
	for _, s := range snaps {
		for ri := range s.Roots {
			for fi := range s.Roots[ri].Folders {
				f := &s.Roots[ri].Folders[fi]
				k := treeKey{f.User, f.Tree}
				found, ok := seen[k]
				if !ok {
					t, err := repo.LoadFolderTree(ctx, f.Tree)
					if err != nil {
						return fmt.Errorf("snapshot %s, %s/%s: %w", s.ID.Short(), f.User, f.Folder, err)
					}
					for _, m := range t.Messages {
						rm := holdView(f, &m)
						var cases []string
						for _, h := range ms {
							if h.Match(&rm) && !slices.Contains(cases, h.Case) {
								cases = append(cases, h.Case)
							}
						}
						if len(cases) > 0 {
							found = append(found, match{m, cases})
						}
					}
					seen[k] = found
				}
				for i := range found {
					fn(heldMessage{snap: s, folder: f, msg: &found[i].msg, cases: found[i].cases})
				}
			}
		}
	}
	return nil
}

// holdView is what a hold sees of a message: its mailbox and recorded
// headers, dated by its Date header or else its delivery time.
func holdView(f *archive.FolderEntry, m *archive.Message) retention.Message {
	rm := retention.Message{User: f.User, Folder: f.Folder, From: m.From, To: m.To, Cc: m.Cc,
		Subject: m.Subject, MessageID: m.MessageID}
	if t, err := time.Parse(time.RFC3339, m.Date); err == nil {
		rm.Date = t
	} else if m.MTime != 0 {
		rm.Date = time.Unix(0, m.MTime)
	}
	return rm
}

// heldSnapshots returns, for each of snaps that holds a message an
// active hold selects, the cases (sorted); nil when no hold is active.
func (g *globals) heldSnapshots(ctx context.Context, repo *archive.Repository, snaps []*archive.Snapshot) (map[string][]string, error) {
	ms, err := activeMatchers(ctx, repo)
	if err != nil || len(ms) == 0 || len(snaps) == 0 {
		return nil, err
	}
	if err := g.loadIndex(ctx, repo); err != nil {
		return nil, err
	}
	held := map[string][]string{}
	err = scanHolds(ctx, repo, snaps, ms, func(h heldMessage) {
		id := h.snap.ID.String()
		for _, c := range h.cases {
			if !slices.Contains(held[id], c) {
				held[id] = append(held[id], c)
			}
		}
	})
	for _, cs := range held {
		slices.Sort(cs)
	}
	return held, err
}
