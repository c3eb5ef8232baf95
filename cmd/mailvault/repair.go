package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func newRepairCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "repair", Short: "Repair repository metadata"}
	cmd.AddCommand(&cobra.Command{
		Use:   "index",
		Short: "Rebuild all index files from the packs' own headers",
		Long: `Rebuild the index from the packs. Index files are only a cache of what the
packs' headers say; use this when check reports a damaged or missing index.
Takes an exclusive lock: no backup may run meanwhile.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			repo, err := g.openRepo(ctx)
			if err != nil {
				return err
			}
			defer repo.Close()
			unlock, err := repo.Lock(ctx, true)
			if err != nil {
				return err
			}
			defer unlock()
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
