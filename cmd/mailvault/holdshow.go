package main

import (
	"context"
	"fmt"
	"slices"

	"github.com/spf13/cobra"

	"github.com/mailvault/mailvault/archive"
	"github.com/mailvault/mailvault/retention"
)

func newHoldShowCmd(g *globals) *cobra.Command {
	var name string
	var noVerify bool
	cmd := &cobra.Command{
		Use:   "show --case NAME",
		Short: "Prove a hold: the messages it holds, their bytes, snapshots and packs, and that each one's data is there and verifies",
		Long: `Show what a hold holds: the count of messages (one per mailbox user and
Maildir unique name, however many snapshots have it), their bytes, which
snapshots and packs hold them, and that every blob of every held message is
in the index and, read back, hashes to its ID (--no-verify: the index only).
Exit 13 when a held message's data is missing or damaged.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := retention.ValidCase(name); err != nil {
				return fmt.Errorf("%w: --case: %v", errUsage, err)
			}
			ctx := cmd.Context()
			repo, done, err := g.openLocked(ctx)
			if err != nil {
				return err
			}
			defer done()
			_, h, err := activeHold(ctx, repo, name)
			if err != nil {
				return err
			}
			rep, err := g.holdReport(ctx, repo, h, !noVerify)
			if err != nil {
				return err
			}
			var bad error
			if len(rep.BlobsMissing)+len(rep.BlobsDamaged) > 0 {
				bad = withCode(exitCheckFailed, fmt.Errorf("case %q: %d held blobs missing from the index, %d damaged", name, len(rep.BlobsMissing), len(rep.BlobsDamaged)))
			}
			if g.json {
				if err := g.printJSON(rep); err != nil {
					return err
				}
				return bad
			}
			g.printf("%s\n", describeHold(h))
			g.printf("holds %d messages (%s) in %d snapshots, %d blobs in %d packs\n", rep.Messages, humanBytes(rep.Bytes), len(rep.Snapshots), rep.Blobs, len(rep.Packs))
			for _, s := range rep.Snapshots {
				g.printf("  snapshot %s\n", s)
			}
			if repo.LegalHolder() != nil && !noVerify {
				g.printf("%d of %d packs carry an S3 legal hold\n", rep.LegalHolds, len(rep.Packs))
			}
			switch {
			case bad != nil:
			case rep.Verified:
				g.printf("every held blob is in the index and verifies (hash)\n")
			default:
				g.printf("every held blob is in the index (not read: --no-verify)\n")
			}
			return bad
		},
	}
	cmd.Flags().StringVar(&name, "case", "", "the case (required)")
	cmd.Flags().BoolVar(&noVerify, "no-verify", false, "check the index only: neither read and hash the held blobs nor read the packs' S3 legal holds")
	return cmd
}

// packsToLift returns the packs whose legal hold h's release lifts: the
// packs of h's messages that no other active hold's messages use. None
// when the repository has no Object Lock.
func (g *globals) packsToLift(ctx context.Context, repo *archive.Repository, hs *retention.Holds, h *retention.Hold) ([]archive.ID, error) {
	if repo.LegalHolder() == nil {
		return nil, nil
	}
	rep, err := g.holdReport(ctx, repo, h, false)
	if err != nil {
		return nil, err
	}
	still := map[string]bool{}
	for i := range hs.Holds {
		o := &hs.Holds[i]
		if o == h || !o.Active() {
			continue
		}
		orep, err := g.holdReport(ctx, repo, o, false)
		if err != nil {
			return nil, err
		}
		for _, p := range orep.Packs {
			still[p] = true
		}
	}
	var lift []string
	for _, p := range rep.Packs {
		if !still[p] {
			lift = append(lift, p)
		}
	}
	return parseIDs(lift), nil
}

// parseIDs parses IDs this program printed.
func parseIDs(s []string) []archive.ID {
	ids := make([]archive.ID, 0, len(s))
	for _, x := range s {
		if id, err := archive.ParseID(x); err == nil {
			ids = append(ids, id)
		}
	}
	return ids
}

// holdReport is what hold show (and add) says of a hold.
type holdReport struct {
	Hold      retention.Hold `json:"hold"`
	Messages  int            `json:"messages"` // distinct by user and unique name
	Bytes     int64          `json:"bytes"`
	Snapshots []string       `json:"snapshots"`
	Packs     []string       `json:"packs"`
	Blobs     int            `json:"blobs"`
	// BlobsMissing are held blobs no index lists; BlobsDamaged those
	// that could not be read or do not hash to their ID.
	BlobsMissing []string `json:"blobs_missing"`
	BlobsDamaged []string `json:"blobs_damaged"`
	Verified     bool     `json:"verified"` // every held blob was read and hashed
	// LegalHolds counts the packs carrying an S3 legal hold (Object
	// Lock repositories); PacksNotHeld are held packs without one, such
	// as packs written since by a backup or prune's repacking.
	LegalHolds   int      `json:"legal_holds"`
	PacksNotHeld []string `json:"packs_not_legally_held,omitempty"`
}

// holdReport finds what h holds in every snapshot and checks its blobs.
func (g *globals) holdReport(ctx context.Context, repo *archive.Repository, h *retention.Hold, verify bool) (*holdReport, error) {
	rep := &holdReport{Hold: *h, Snapshots: []string{}, Packs: []string{}, BlobsMissing: []string{}, BlobsDamaged: []string{}}
	m, err := h.Matcher()
	if err != nil {
		return nil, err
	}
	if err := g.loadIndex(ctx, repo); err != nil {
		return nil, err
	}
	snaps, damaged, err := repo.Snapshots(ctx)
	if err != nil {
		return nil, err
	}
	for _, err := range damaged {
		fmt.Fprintln(g.stderr, "warning: skipping damaged snapshot:", err)
	}
	type msgKey struct{ user, unique string }
	msgs := map[msgKey]bool{}
	blobs := map[archive.ID]bool{}
	var order []archive.ID
	err = scanHolds(ctx, repo, snaps, []*retention.Matcher{m}, func(hm heldMessage) {
		if id := hm.snap.ID.String(); !slices.Contains(rep.Snapshots, id) {
			rep.Snapshots = append(rep.Snapshots, id)
		}
		k := msgKey{hm.folder.User, hm.msg.Unique}
		if msgs[k] {
			return
		}
		msgs[k] = true
		rep.Bytes += hm.msg.Size
		for _, b := range hm.msg.Blobs {
			if !blobs[b] {
				blobs[b] = true
				order = append(order, b)
			}
		}
	})
	if err != nil {
		return nil, err
	}
	rep.Messages, rep.Blobs = len(msgs), len(order)
	packs := map[archive.ID]bool{}
	for _, b := range order {
		pack, _, ok := repo.Index().Lookup(b)
		if !ok {
			rep.BlobsMissing = append(rep.BlobsMissing, b.String())
			continue
		}
		if !packs[pack] {
			packs[pack] = true
			rep.Packs = append(rep.Packs, pack.String())
		}
		if verify {
			data, err := repo.LoadBlob(ctx, b)
			if err != nil || repo.BlobID(data) != b {
				rep.BlobsDamaged = append(rep.BlobsDamaged, b.String())
			}
		}
	}
	slices.Sort(rep.Snapshots)
	slices.Sort(rep.Packs)
	if lh := repo.LegalHolder(); lh != nil && verify {
		for _, p := range rep.Packs {
			on, err := lh.LegalHold(ctx, archive.PackFile, p)
			if err != nil {
				return nil, err
			}
			if on {
				rep.LegalHolds++
			} else {
				rep.PacksNotHeld = append(rep.PacksNotHeld, p)
			}
		}
	}
	rep.Verified = verify && len(rep.BlobsMissing)+len(rep.BlobsDamaged) == 0
	return rep, nil
}

// legalHoldResult is what maintain did about the packs' legal holds.
type legalHoldResult struct {
	Packs  int  `json:"packs"`  // packs holding held mail
	Placed int  `json:"placed"` // of them, given the legal hold they lacked
	DryRun bool `json:"dry_run,omitempty"`
}

// placeLegalHolds puts the S3 legal hold on every pack holding mail an
// active hold selects that lacks one: packs written after the hold was
// placed (a later backup of a custodian's new mail, prune's repacking).
// Nil when the repository has no Object Lock or no active hold.
func (g *globals) placeLegalHolds(ctx context.Context, repo *archive.Repository, dryRun bool) (*legalHoldResult, error) {
	lh := repo.LegalHolder()
	if lh == nil {
		return nil, nil
	}
	ms, err := activeMatchers(ctx, repo)
	if err != nil || len(ms) == 0 {
		return nil, err
	}
	snaps, _, err := repo.Snapshots(ctx)
	if err != nil {
		return nil, err
	}
	blobs := map[archive.ID]bool{}
	packs := map[archive.ID]bool{}
	err = scanHolds(ctx, repo, snaps, ms, func(hm heldMessage) {
		for _, b := range hm.msg.Blobs {
			if blobs[b] {
				continue
			}
			blobs[b] = true
			if p, _, ok := repo.Index().Lookup(b); ok {
				packs[p] = true
			}
		}
	})
	if err != nil {
		return nil, err
	}
	res := &legalHoldResult{Packs: len(packs), DryRun: dryRun}
	var missing []archive.ID
	for p := range packs {
		on, err := lh.LegalHold(ctx, archive.PackFile, p.String())
		if err != nil {
			return nil, err
		}
		if !on {
			missing = append(missing, p)
		}
	}
	res.Placed = len(missing)
	if dryRun {
		return res, nil
	}
	return res, repo.SetLegalHolds(ctx, missing, true)
}
