package main

import (
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/mailvault/mailvault/archive"
)

func newLsCmd(g *globals) *cobra.Command {
	var user, folder string
	cmd := &cobra.Command{
		Use:   "ls latest|ID",
		Short: "Show a snapshot: users → folders → message counts, or one folder's messages",
		Long: `Without --user/--folder, list every user's folders with message counts and
sizes. With --user and --folder, list that folder's messages.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			repo, err := g.openRepo(ctx)
			if err != nil {
				return err
			}
			defer repo.Close()
			if err := g.loadIndex(ctx, repo); err != nil {
				return err
			}
			snap, err := repo.FindSnapshot(ctx, args[0])
			if err != nil {
				return err
			}
			var folders []archive.FolderEntry
			for _, r := range snap.Roots {
				for _, f := range r.Folders {
					if (user == "" || f.User == user) && (folder == "" || strings.EqualFold(f.Folder, folder)) {
						folders = append(folders, f)
					}
				}
			}
			if folder == "" {
				return g.lsFolders(snap, folders)
			}
			var msgs []archive.Message
			for _, f := range folders {
				t, err := repo.LoadFolderTree(ctx, f.Tree)
				if err != nil {
					return err
				}
				msgs = append(msgs, t.Messages...)
			}
			if g.json {
				if msgs == nil {
					msgs = []archive.Message{}
				}
				return g.printJSON(msgs)
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "Unique\tFlags\tSize\tDate\tFrom\tSubject")
			for _, m := range msgs {
				from := ""
				if len(m.From) > 0 {
					from = m.From[0]
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", m.Unique, m.Flags, humanBytes(m.Size), m.Date, truncate(from, 40), truncate(m.Subject, 60))
			}
			fmt.Fprintf(tw, "%d messages\n", len(msgs))
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&user, "user", "", "only this user")
	cmd.Flags().StringVar(&folder, "folder", "", "list the messages of this folder")
	return cmd
}

func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

func (g *globals) lsFolders(snap *archive.Snapshot, folders []archive.FolderEntry) error {
	if g.json {
		type folderRow struct {
			Folder   string `json:"folder"`
			Messages int64  `json:"messages"`
			Bytes    int64  `json:"bytes"`
		}
		users := map[string][]folderRow{}
		for _, f := range folders {
			users[f.User] = append(users[f.User], folderRow{f.Folder, f.Messages, f.Bytes})
		}
		return g.printJSON(map[string]any{"snapshot": snap.ID, "users": users})
	}
	sort.SliceStable(folders, func(i, j int) bool { return folders[i].User < folders[j].User })
	tw := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "snapshot %s of %s at %s\n", snap.ID.Short(), snap.Host, snap.Time.Local().Format(time.RFC3339))
	last := "\x00"
	var total int64
	for _, f := range folders {
		if f.User != last {
			name := f.User
			if name == "" {
				name = "(root Maildir)"
			}
			fmt.Fprintf(tw, "%s\n", name)
			last = f.User
		}
		fmt.Fprintf(tw, "  %s\t%d messages\t%s\n", f.Folder, f.Messages, humanBytes(f.Bytes))
		total += f.Messages
	}
	fmt.Fprintf(tw, "%d messages in %d folders\n", total, len(folders))
	return tw.Flush()
}
