package main

import (
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/mailvault/mailvault/archive"
)

func newSnapshotsCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "snapshots",
		Short: "List snapshots",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			repo, err := g.openRepo(ctx)
			if err != nil {
				return err
			}
			defer repo.Close()
			snaps, damaged, err := repo.Snapshots(ctx)
			if err != nil {
				return err
			}
			for _, err := range damaged {
				fmt.Fprintln(g.stderr, "warning: skipping damaged snapshot:", err)
			}
			if g.json {
				type row struct {
					ID       archive.ID      `json:"id"`
					Time     time.Time       `json:"time"`
					Host     string          `json:"host"`
					Tags     []string        `json:"tags"`
					Paths    []string        `json:"paths"`
					Parent   *archive.ID     `json:"parent,omitempty"`
					Partial  bool            `json:"partial"`
					Summary  archive.Summary `json:"summary"`
					ShortID  string          `json:"short_id"`
					Messages int64           `json:"messages"`
				}
				rows := []row{}
				for _, s := range snaps {
					rows = append(rows, row{s.ID, s.Time, s.Host, s.Tags, s.Paths, s.Parent, s.Partial, s.Summary, s.ID.Short(), s.Summary.Messages})
				}
				return g.printJSON(rows)
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tTime\tHost\tMessages\tSize\tPaths")
			for _, s := range snaps {
				mark := ""
				if s.Partial {
					mark = " (partial)"
				}
				if slices.Contains(s.Tags, "repaired") {
					// repair snapshots left messages out (README "Repair").
					mark += " (repaired)"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s%s\n", s.ID.Short(), s.Time.Local().Format("2006-01-02 15:04:05"), s.Host,
					s.Summary.Messages, humanBytes(s.Summary.BytesTotal), strings.Join(s.Paths, ","), mark)
			}
			fmt.Fprintf(tw, "%d snapshots\n", len(snaps))
			return tw.Flush()
		},
	}
}
