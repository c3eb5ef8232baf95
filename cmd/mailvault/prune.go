package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/mailvault/mailvault/archive"
)

// pruneFlags are the flags prune and forget --prune share.
type pruneFlags struct {
	dryRun    bool
	maxUnused string
	maxRepack string
}

func (f *pruneFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.maxUnused, "max-unused", "5%", "unused space to tolerate rather than repack, as a share of the repository (e.g. 5%, 0%)")
	cmd.Flags().StringVar(&f.maxRepack, "max-repack-size", "", "repack at most this much per run (e.g. 10GB; packs holding unused trees are repacked regardless)")
}

func (f *pruneFlags) options() (archive.PruneOptions, error) {
	s := strings.TrimSpace(f.maxUnused)
	pct, isPct := strings.CutSuffix(s, "%")
	v, err := strconv.ParseFloat(pct, 64)
	if err != nil || !isPct || v < 0 || v >= 100 {
		return archive.PruneOptions{}, fmt.Errorf("%w: --max-unused %q: want a percentage from 0%% to below 100%%", errUsage, f.maxUnused)
	}
	opt := archive.PruneOptions{DryRun: f.dryRun, MaxUnused: v / 100}
	if f.maxRepack != "" {
		if opt.MaxRepackBytes, err = parseSize(f.maxRepack); err != nil {
			return opt, fmt.Errorf("%w: --max-repack-size: %v", errUsage, err)
		}
	}
	return opt, nil
}

func newPruneCmd(g *globals) *cobra.Command {
	var pf pruneFlags
	cmd := &cobra.Command{
		Use:   "prune",
		Short: "Delete the data no snapshot uses",
		Long: `Delete what no snapshot uses: packs holding only unused data are deleted,
packs holding some are repacked (their used blobs, verified, move to new
packs) when more than --max-unused of the repository would otherwise stay
unused, and packs no index lists (left by interrupted backups) are deleted.
Refuses to delete anything when a snapshot, tree or index file cannot be
read (run check, and repair index). Safe to kill at any point: run it
again. In an Object Lock repository nothing under retention is deleted or
repacked; such files are listed as waiting with their dates (exit code 0):
run prune again after them. Takes an exclusive lock (--wait-lock waits for a
backup's to go); needs a full key.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			popt, err := pf.options()
			if err != nil {
				return err
			}
			repo, done, err := g.openExclusive(ctx)
			if err != nil {
				return err
			}
			defer done()
			res, err := runPrune(ctx, g, repo, popt)
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(res)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&pf.dryRun, "dry-run", false, "change nothing; print the plan")
	pf.add(cmd)
	return cmd
}

// openExclusive opens the repository and takes the exclusive lock; done
// unlocks and closes it.
func (g *globals) openExclusive(ctx context.Context) (*archive.Repository, func(), error) {
	repo, err := g.openRepo(ctx)
	return lockExclusive(ctx, repo, err)
}

// lockExclusive takes the exclusive lock of repo, just opened (or not:
// err); done unlocks and closes it.
func lockExclusive(ctx context.Context, repo *archive.Repository, err error) (*archive.Repository, func(), error) {
	if err != nil {
		return nil, nil, err
	}
	unlock, err := repo.Lock(ctx, true)
	if err != nil {
		repo.Close()
		return nil, nil, err
	}
	return repo, func() { unlock(); repo.Close() }, nil
}

// runPrune prunes with a progress bar on a terminal and prints the
// summary unless --json.
func runPrune(ctx context.Context, g *globals, repo *archive.Repository, opt archive.PruneOptions) (*archive.PruneResult, error) {
	var bar *progressBar
	if g.stdoutIsTerminal() {
		bar = newProgressBar(g.stdout)
		opt.Progress = func(p archive.PruneProgress) {
			switch p.Phase {
			case "repack":
				bar.update("repacking", p.Done, p.Total, p.Bytes, p.Size)
			case "delete":
				bar.update("deleting ", p.Done, p.Total, p.Done, p.Total)
			default:
				bar.update("snapshots", p.Done, p.Total, p.Done, p.Total)
			}
		}
	}
	res, err := repo.Prune(ctx, opt)
	if bar != nil {
		bar.done()
	}
	if err != nil || g.json {
		return res, err
	}
	printPrune(g, res)
	return res, nil
}

func printPrune(g *globals, res *archive.PruneResult) {
	g.printf("%d snapshots use %d blobs (%s); %d blobs (%s) are unused\n",
		res.Snapshots, res.BlobsUsed, humanBytes(res.BytesUsed), res.BlobsUnused, humanBytes(res.BytesUnused))
	if res.DryRun {
		g.printf("would delete %d packs, repack %d (moving %d blobs, %s), keep %d; would delete %d unindexed packs\n",
			len(res.Delete), len(res.Repack), res.BlobsRepacked, humanBytes(res.BytesWritten), res.PacksKept, len(res.Unindexed))
		for _, id := range res.Delete {
			g.printf("  delete %s\n", id)
		}
		for _, id := range res.Repack {
			g.printf("  repack %s\n", id)
		}
		for _, id := range res.Unindexed {
			g.printf("  delete %s (unindexed)\n", id)
		}
		g.printf("would free about %s; %.1f%% of the repository would stay unused\n", humanBytes(res.BytesFreed), 100*res.UnusedAfter)
	} else {
		g.printf("deleted %d packs (%d wholly unused, %d repacked into %d new, %d unindexed), kept %d; %d index files written, %d removed\n",
			res.PacksDeleted, len(res.Delete), len(res.Repack), res.PacksWritten, len(res.Unindexed), res.PacksKept, res.IndexesWritten, res.IndexesRemoved)
		g.printf("freed %s (deleted %s, wrote %s); %.1f%% of the repository is unused\n",
			humanBytes(res.BytesFreed), humanBytes(res.BytesDeleted), humanBytes(res.BytesWritten), 100*res.UnusedAfter)
	}
	if len(res.Waiting) > 0 {
		g.printf("%d files wait for their object-lock retention (run prune again after their dates):\n", len(res.Waiting))
		for _, w := range res.Waiting {
			g.printf("  %s\n", w.String())
		}
	}
}
