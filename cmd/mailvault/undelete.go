package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/mailvault/mailvault/archive/s3"
)

// undeleter is the backend side of undelete (archive/s3 on a versioned
// bucket).
type undeleter interface {
	Undelete(ctx context.Context, dryRun bool) (*s3.UndeleteResult, error)
}

func newUndeleteCmd(g *globals) *cobra.Command {
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "undelete",
		Short: "Bring back repository files deleted or overwritten in a versioned S3 bucket",
		Long: `In an S3 bucket with versioning (every repository made with init
--object-lock-days), a delete only hides a file behind a delete marker and
an overwrite only adds a version: the first, locked version is still there.
undelete makes the first version of every repository file (config, keys,
snapshots, index files, packs) current again where it was deleted or
overwritten, by a server-side copy that gets the repository's retention.
It needs no password or identity, so it also works when config or the key
files are what was deleted. Run check --read-data afterwards.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			be, err := g.backend()
			if err != nil {
				return err
			}
			u, ok := be.(undeleter)
			if !ok {
				return fmt.Errorf("%w: undelete is for S3 repositories (versioned buckets); %s keeps no old versions", errUsage, be.Location())
			}
			res, err := u.Undelete(cmd.Context(), dryRun)
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(res)
			}
			verb := "restored"
			if dryRun {
				verb = "would restore"
			}
			for _, f := range res.Restored {
				g.printf("%s %s\n", verb, f)
			}
			g.printf("%s %d of %d repository files\n", verb, len(res.Restored), res.Files)
			return nil
		},
	}
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "only list what would be restored")
	return cmd
}
