package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/mailvault/mailvault/restore"
)

func newRestoreCmd(g *globals) *cobra.Command {
	var opt restore.Options
	cmd := &cobra.Command{
		Use:   "restore latest|ID --target DIR",
		Short: "Restore a snapshot, a user, a folder or one message as a Maildir",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if opt.Target == "" {
				return fmt.Errorf("%w: --target is required", errUsage)
			}
			repo, done, err := g.openLocked(ctx)
			if err != nil {
				return err
			}
			defer done()
			if err := g.loadIndex(ctx, repo); err != nil {
				return err
			}
			snap, err := repo.FindSnapshot(ctx, args[0])
			if err != nil {
				return err
			}
			var bar *progressBar
			if g.stdoutIsTerminal() {
				bar = newProgressBar(g.stdout)
				opt.Progress = func(p restore.Progress) {
					bar.update("restore", p.FilesDone, p.FilesTotal, p.BytesDone, p.BytesTotal)
				}
			}
			res, err := restore.Restore(ctx, repo, snap, opt)
			if bar != nil {
				bar.done()
			}
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(map[string]any{"snapshot": snap.ID, "target": opt.Target, "result": res})
			}
			g.printf("restored snapshot %s to %s: %d messages, %d files, %s\n", snap.ID.Short(), opt.Target, res.Messages, res.Files, humanBytes(res.Bytes))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&opt.Target, "target", "t", "", "directory to restore into (must not exist or be empty unless --overwrite)")
	f.StringVar(&opt.User, "user", "", "restore only this user (e.g. alice@example.com)")
	f.StringVar(&opt.Folder, "folder", "", "restore only this folder (e.g. INBOX, Sent, Archive.2024)")
	f.StringVar(&opt.Message, "message", "", "restore only this message (Maildir unique name or Message-ID)")
	f.BoolVar(&opt.Overwrite, "overwrite", false, "write into an existing target, replacing files")
	return cmd
}
