package main

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/mailvault/mailvault/archive"
)

// otherRepo names a second repository (copy's source, init's
// --copy-params-from) and the credentials that open it: its own
// --from-password-file/--from-identity when given, else the global ones.
type otherRepo struct {
	loc          string
	passwordFile string
	identities   []string
}

func (o *otherRepo) flags(cmd *cobra.Command) {
	cmd.Flags().StringVar(&o.passwordFile, "from-password-file", "", "file holding the source repository's passphrase (default: the global credentials)")
	cmd.Flags().StringArrayVar(&o.identities, "from-identity", nil, "age identity file that opens the source repository; repeatable (default: the global credentials)")
}

// open opens the other repository and loads nothing.
func (o *otherRepo) open(ctx context.Context, g *globals) (*archive.Repository, error) {
	h := *g
	h.repo = o.loc
	be, err := h.backend()
	if err != nil {
		return nil, err
	}
	var creds archive.Credentials
	if o.passwordFile == "" && len(o.identities) == 0 {
		if creds, err = h.credentials(); err != nil {
			return nil, err
		}
	} else {
		for _, path := range o.identities {
			ids, err := archive.LoadIdentities(path)
			if err != nil {
				return nil, err
			}
			creds.Identities = append(creds.Identities, ids...)
		}
		if o.passwordFile != "" {
			raw, err := os.ReadFile(o.passwordFile)
			if err != nil {
				return nil, fmt.Errorf("source password file: %w", err)
			}
			creds.Passphrase = strings.TrimRight(string(raw), "\r\n")
		}
	}
	level, err := g.compressionLevel()
	if err != nil {
		return nil, err
	}
	repo, err := archive.Open(ctx, be, creds, archive.Options{Compression: level})
	if err != nil {
		return nil, fmt.Errorf("source repository %s: %w", be.Location(), err)
	}
	return repo, nil
}

func newCopyCmd(g *globals) *cobra.Command {
	var from otherRepo
	var to string
	cmd := &cobra.Command{
		Use:   "copy --from SOURCE [--to TARGET] [snapshot...]",
		Short: "Copy snapshots and the data they need into another repository",
		Long: `Copy snapshots (default: all) from the source repository into the target
(--to, default --repo), with only the blobs the target lacks. The target must
share the source's blob-ID key and chunker parameters: create it with
"mailvault init --repo TARGET --copy-params-from SOURCE". Snapshots already
in the target are skipped, so a rerun copies nothing new and an interrupted
copy resumes. The global credentials open the target; --from-password-file
and --from-identity, when given, open the source.`,
		RunE: func(cmd *cobra.Command, refs []string) error {
			ctx := cmd.Context()
			if from.loc == "" {
				return fmt.Errorf("%w: --from is required", errUsage)
			}
			if to != "" {
				g.repo = to
			}
			src, err := from.open(ctx, g)
			if err != nil {
				return err
			}
			defer src.Close()
			unlockSrc, err := src.Lock(ctx, false)
			if err != nil {
				return err
			}
			defer unlockSrc()
			if err := g.loadIndex(ctx, src); err != nil {
				return err
			}
			var ids []archive.ID
			for _, ref := range refs {
				s, err := src.FindSnapshot(ctx, ref)
				if err != nil {
					return err
				}
				ids = append(ids, s.ID)
			}

			dst, done, err := g.openLocked(ctx)
			if err != nil {
				return err
			}
			defer done()
			unindexed, err := dst.LoadIndex(ctx)
			if err != nil {
				return err
			}
			for _, err := range dst.DamagedIndexes() {
				fmt.Fprintln(g.stderr, "warning: skipping damaged index file in the target (run `mailvault repair index`):", err)
			}
			if n, err := dst.AdoptPacks(ctx, unindexed); err != nil {
				return err
			} else if n > 0 {
				g.logger().Info("adopted packs of an interrupted copy or backup", "packs", n)
			}
			st, err := archive.Copy(ctx, src, dst, ids, nil)
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(st)
			}
			for _, c := range st.Copied {
				g.printf("snapshot %s copied as %s\n", c.From.Short(), c.To.Short())
			}
			g.printf("%d snapshots copied, %d already present; %d blobs (%d bytes) copied, %d already present\n",
				st.Snapshots, st.SnapshotsPresent, st.Blobs, st.Bytes, st.BlobsPresent)
			return nil
		},
	}
	cmd.Flags().StringVar(&from.loc, "from", "", "source repository location")
	cmd.Flags().StringVar(&to, "to", "", "target repository location (default --repo)")
	from.flags(cmd)
	return cmd
}
