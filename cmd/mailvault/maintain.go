package main

import (
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/mailvault/mailvault/archive"
)

func newMaintainCmd(g *globals) *cobra.Command {
	var window string
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "maintain",
		Short: "Extend the Object Lock retention of everything the repository still needs",
		Long: `For a repository created with init --object-lock-days: extend the retention
of every file still needed — config, key files, snapshots, the index files
that list the packs snapshots use, and those packs — whose retention runs
out within the window (default: half the lock period) to now + the period.
Packs no snapshot uses and index files that list nothing the kept ones do
not are left to run out, so that they can be deleted later.

Run it regularly (daily from cron is good); a file whose retention has run
out is not lost, but can then be deleted by anyone holding the storage
credentials. Takes a shared lock; backups may run meanwhile. Needs a full
key (it reads every snapshot). Exit code 1 if some file could not be
extended (they are listed).

With active legal holds (mailvault hold), it also puts the S3 legal hold
on every pack holding held mail that lacks one: packs written since the
hold was placed, by a backup of a custodian's new mail or by prune.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			w, err := parseWindow(window)
			if err != nil {
				return fmt.Errorf("%w: --window: %v", errUsage, err)
			}
			repo, done, err := g.openLocked(ctx)
			if err != nil {
				return err
			}
			defer done()
			if err := g.loadIndex(ctx, repo); err != nil {
				return err
			}
			res, err := repo.Maintain(ctx, archive.MaintainOptions{Window: w, DryRun: dryRun})
			if err != nil {
				return err
			}
			held, err := g.placeLegalHolds(ctx, repo, dryRun)
			if err != nil {
				return err
			}
			var failed error
			if len(res.Failed) > 0 {
				failed = fmt.Errorf("the retention of %d files could not be extended", len(res.Failed))
			}
			if g.json {
				out := struct {
					*archive.MaintainResult
					LegalHolds *legalHoldResult `json:"legal_holds,omitempty"`
				}{res, held}
				if err := g.printJSON(out); err != nil {
					return err
				}
				return failed
			}
			for _, p := range res.Problems {
				fmt.Fprintln(g.stderr, "warning:", p)
			}
			if res.AllPacks {
				fmt.Fprintln(g.stderr, "warning: not every snapshot could be read, so every pack is kept (run `mailvault check`)")
			}
			for _, f := range res.Failed {
				fmt.Fprintln(g.stderr, "error:", f)
			}
			verb := "extended"
			if res.DryRun {
				verb = "would extend"
			}
			g.printf("object lock: %s, %d days; extending files with less than %s left to %s\n",
				res.Mode, res.Days, res.Window, res.NewUntil.Format(time.RFC3339))
			if !g.quiet && !g.json {
				tw := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
				fmt.Fprintf(tw, "\tchecked\t%s\tlocked long enough\t\n", verb)
				for _, row := range []struct {
					name string
					c    archive.MaintainCounts
				}{{"config", res.Config}, {"keys", res.Keys}, {"snapshots", res.Snapshots}, {"index files", res.Indexes}, {"packs", res.Packs}, {"total", res.Total}} {
					fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t\n", row.name, row.c.Checked, row.c.Extended, row.c.Current)
				}
				if err := tw.Flush(); err != nil {
					return err
				}
			}
			g.printf("left to run out: %d unreferenced packs, %d superseded and %d damaged index files\n",
				res.UnreferencedPacks, res.SupersededIndexes, res.DamagedIndexes)
			if held != nil {
				verb := "placed"
				if held.DryRun {
					verb = "would place"
				}
				g.printf("legal holds: %d packs hold held mail; %s the legal hold on %d that lacked it\n", held.Packs, verb, held.Placed)
			}
			return failed
		},
	}
	cmd.Flags().StringVar(&window, "window", "", "extend files with less than this much retention left, e.g. 7d or 36h (default: half the lock period)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "only count what would be extended")
	return cmd
}

// parseWindow parses a duration that may also be given in days ("7d"),
// since lock periods are counted in days.
func parseWindow(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	if n, ok := strings.CutSuffix(s, "d"); ok {
		d, err := strconv.Atoi(n)
		if err != nil || d <= 0 {
			return 0, fmt.Errorf("%q: want a positive number of days, e.g. 7d", s)
		}
		return time.Duration(d) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%q: want a positive duration, e.g. 7d or 36h", s)
	}
	return d, nil
}

// halfPeriod is how often maintain must run at the least with the default
// window, for messages.
func halfPeriod(p archive.ObjectLock) string {
	h := p.Period() / 2
	if h%(24*time.Hour) == 0 {
		if h == 24*time.Hour {
			return "day"
		}
		return fmt.Sprintf("%d days", h/(24*time.Hour))
	}
	return h.String()
}
