package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/mailvault/mailvault/archive"
)

func newCatCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "cat config|key|index|snapshot|blob|pack [ID]",
		Short: "Print a repository object decrypted (JSON, or raw bytes for blobs)",
		Long: `Print a repository object after decryption and decompression:
config, key (the current key file's content, including secrets — handle with
care), index ID, snapshot ID|latest, blob ID (raw content), pack ID (its
header as JSON).`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			repo, err := g.openRepo(ctx)
			if err != nil {
				return err
			}
			defer repo.Close()
			arg := ""
			if len(args) == 2 {
				arg = args[1]
			}
			needID := func() (archive.ID, error) {
				if arg == "" {
					return archive.ID{}, fmt.Errorf("%w: cat %s needs an ID", errUsage, args[0])
				}
				return archive.ParseID(arg)
			}
			switch args[0] {
			case "config":
				return g.printJSON(repo.Config())
			case "key":
				return g.printJSON(repo.KeyContent())
			case "index":
				id, err := needID()
				if err != nil {
					return err
				}
				plain, err := repo.LoadFile(ctx, archive.IndexFile, id)
				if err != nil {
					return err
				}
				_, err = g.stdout.Write(append(plain, '\n'))
				return err
			case "snapshot":
				if arg == "" {
					return fmt.Errorf("%w: cat snapshot needs an ID or latest", errUsage)
				}
				s, err := repo.FindSnapshot(ctx, arg)
				if err != nil {
					return err
				}
				return g.printJSON(s)
			case "blob":
				id, err := needID()
				if err != nil {
					return err
				}
				if err := g.loadIndex(ctx, repo); err != nil {
					return err
				}
				data, err := repo.LoadBlob(ctx, id)
				if err != nil {
					return err
				}
				_, err = g.stdout.Write(data)
				return err
			case "pack":
				id, err := needID()
				if err != nil {
					return err
				}
				blobs, err := repo.ReadPackHeader(ctx, id, 0)
				if err != nil {
					return err
				}
				return g.printJSON(blobs)
			}
			return fmt.Errorf("%w: unknown object type %q", errUsage, args[0])
		},
	}
}
