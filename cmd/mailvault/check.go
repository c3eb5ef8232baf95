package main

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/mailvault/mailvault/archive"
)

func newCheckCmd(g *globals) *cobra.Command {
	var readData bool
	var subset string
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Verify the repository's structure, and with --read-data its content",
		Long: `Verify that every snapshot's trees load and every blob they name is
stored. --read-data also downloads every pack and verifies its SHA-256,
its encryption and every blob's keyed hash; --read-data-subset=N% does that
for a share of the packs. Damage is reported with the messages it affects;
exit code 13 means damage was found.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			opt := archive.CheckOptions{ReadData: readData}
			if subset != "" {
				pct, err := parsePercent(subset)
				if err != nil {
					return err
				}
				opt.ReadData, opt.ReadSubset, opt.Seed = true, pct, uint64(time.Now().UnixNano())
			}
			repo, done, err := g.openLocked(ctx)
			if err != nil {
				return err
			}
			defer done()
			var bar *progressBar
			if g.stdoutIsTerminal() && opt.ReadData {
				bar = newProgressBar(g.stdout)
				opt.Progress = func(done, total int) { bar.update("read packs", int64(done), int64(total), int64(done), int64(total)) }
			}
			res, err := repo.Check(ctx, opt)
			if bar != nil {
				bar.done()
			}
			if err != nil {
				return err
			}
			if g.json {
				if err := g.printJSON(res); err != nil {
					return err
				}
			} else {
				for _, w := range res.Warnings {
					g.printf("warning: %s\n", w)
				}
				for _, p := range res.Errors {
					fmt.Fprintf(g.stdout, "error: %s: %s\n", p.Object, p.Err)
					for _, a := range p.Affected {
						fmt.Fprintf(g.stdout, "  affects %s\n", a)
					}
				}
				g.printf("checked %d snapshots, %d packs (%d read), %d blobs: %d errors\n", res.Snapshots, res.Packs, res.PacksRead, res.Blobs, len(res.Errors))
			}
			if !res.OK() {
				return withCode(exitCheckFailed, errors.New("the repository is damaged (see above)"))
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&readData, "read-data", false, "read and verify all packs")
	cmd.Flags().StringVar(&subset, "read-data-subset", "", "read and verify this share of the packs, e.g. 10%")
	return cmd
}

func parsePercent(s string) (float64, error) {
	var v float64
	if _, err := fmt.Sscanf(strings.TrimSuffix(s, "%"), "%g", &v); err != nil || v <= 0 || v > 100 {
		return 0, fmt.Errorf("%w: --read-data-subset wants a percentage in (0,100], e.g. 10%%", errUsage)
	}
	return v / 100, nil
}
