package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/mailvault/mailvault/archive"
)

func newRepairCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "repair",
		Short: "Repair the index, damaged packs and snapshots",
		Long: `Repair a damaged repository. After check reports damage, in this order:

  mailvault repair index                       rebuild the index from the packs' headers
  mailvault repair packs [PACK...]             salvage what still reads from damaged packs
  mailvault repair snapshots --forget          drop the messages whose data is gone

Each takes an exclusive lock and needs a full key: a write-only key removes
nothing and is refused (exit code 12).`,
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "index",
		Short: "Rebuild all index files from the packs' own headers",
		Long: `Rebuild the index from the packs. Index files are only a cache of what the
packs' headers say; use this when check reports a damaged or missing index.
Takes an exclusive lock: no backup may run meanwhile.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			repo, done, err := g.openRepair(ctx)
			if err != nil {
				return err
			}
			defer done()
			res, err := repo.RebuildIndex(ctx)
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(res)
			}
			for _, u := range res.Unreadable {
				fmt.Fprintln(g.stderr, "warning: unreadable pack", u)
			}
			for _, w := range res.Waiting {
				// Object Lock: harmless duplicates until then.
				fmt.Fprintln(g.stderr, "note: old index file", w.String()+"; run repair index again after that to remove it")
			}
			g.printf("index rebuilt: %d packs, %d blobs in %d new index files; %d old index files removed\n",
				res.Packs, res.Blobs, res.IndexesWritten, res.IndexesRemoved)
			return nil
		},
	})
	return cmd
}

// openRepair opens the repository for a repair: refused for a write-only
// key before any lock is taken (a repair deletes, and a write-only key
// deletes nothing), then under the exclusive lock; done unlocks and
// closes it.
func (g *globals) openRepair(ctx context.Context) (*archive.Repository, func(), error) {
	repo, err := g.openRepo(ctx)
	if err != nil {
		return nil, nil, err
	}
	if repo.WriteOnly() {
		repo.Close()
		return nil, nil, fmt.Errorf("repair: %w", archive.ErrWriteOnly)
	}
	unlock, err := repo.Lock(ctx, true)
	if err != nil {
		repo.Close()
		return nil, nil, err
	}
	return repo, func() { unlock(); repo.Close() }, nil
}
