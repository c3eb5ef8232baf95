package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/mailvault/mailvault/snapshot"
)

// newSnapshotSendCmd makes "snapshot send": a copy of the local snapshots
// on a second pool (zfs send | zfs receive), one more copy for the 3-2-1
// rule.
func newSnapshotSendCmd(g *globals) *cobra.Command {
	var opt snapshot.SendOptions
	cmd := &cobra.Command{
		Use:   "send PATH|DATASET --to POOL/DATASET",
		Short: "Copy a mailvault snapshot to another pool with zfs send | zfs receive (full, then incremental)",
		Long: `Send a mailvault snapshot of the dataset holding PATH (or of DATASET), with
the datasets below it, to POOL/DATASET, usually on a second pool: in full
the first time, then incrementally (zfs send -i) from the newest mailvault
snapshot both sides have. --snapshot picks the snapshot (default: the
newest mailvault snapshot; take one with 'mailvault snapshot take').

Nothing on the destination is destroyed: a destination that exists without
a snapshot in common, or that has a newer snapshot of its own, is refused.
A destination changed since its newest snapshot (e.g. access times, where
it is mounted) is rolled back to it. The source snapshots are held while
they are sent, and the newest one sent keeps the hold
` + snapshot.SentTag("POOL/DATASET") + ` so that 'snapshot prune' keeps the
base of the next send. A send killed midway leaves nothing in the way of
the next one: that one releases the dead send's holds, removes a partial
dataset its receive left (marked mailvault:receiving, without snapshot)
if ZFS has not discarded it, and mounts the copy's datasets again. See
docs/SNAPSHOTS.md.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if opt.Dest == "" || strings.Contains(opt.Dest, "@") {
				return fmt.Errorf("%w: --to POOL/DATASET is required (a dataset, not a snapshot)", errUsage)
			}
			tool, err := snapshot.NewZFSTool(ctx)
			if err != nil {
				return err
			}
			tool.Logger = g.logger()
			opt.Source = args[0]
			if strings.HasPrefix(args[0], "/") || strings.HasPrefix(args[0], ".") {
				loc, err := tool.Locate(ctx, args[0])
				if err != nil {
					return err
				}
				opt.Source = loc.Dataset.Name
			}
			res, err := tool.Send(ctx, opt)
			if g.json && res != nil {
				if jerr := g.printJSON(res); jerr != nil {
					return jerr
				}
			}
			if err != nil {
				return err
			}
			if g.json {
				return nil
			}
			for _, lo := range res.Leftovers {
				g.printf("cleaned up after a killed process: %s %s %s (%s)\n", lo.Kind, lo.Name, lo.Action, lo.Reason)
			}
			for _, d := range res.Datasets {
				how := "full"
				switch {
				case d.UpToDate:
					how = "up to date"
				case d.From != "":
					how = "incremental from " + d.From
				}
				g.printf("%s -> %s: %s, %s\n", d.Source, d.Dest, how, humanBytes(d.Bytes))
			}
			g.printf("sent %s to %s: %s in %d datasets\n", res.Snapshot, res.Dest, humanBytes(res.Bytes), len(res.Datasets))
			return nil
		},
	}
	cmd.Flags().StringVar(&opt.Dest, "to", "", "dataset to receive into, e.g. backup/mail (created by the first send)")
	cmd.Flags().StringVar(&opt.Snapshot, "snapshot", "", "name of the snapshot to send (the part after @; default: the newest mailvault snapshot)")
	return cmd
}
