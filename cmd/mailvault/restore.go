package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/mailvault/mailvault/restore"
)

func newRestoreCmd(g *globals) *cobra.Command {
	var opt restore.Options
	var cpuProfile string
	cmd := &cobra.Command{
		Use:   "restore latest|ID --target DIR",
		Short: "Restore a snapshot, a user, a folder or one message as a Maildir",
		Long: `Restore a snapshot, a user, a folder or one message as a Maildir.

Each file is written under a temporary name and renamed into place once all
its content was read, verified and is on disk: no partial file appears under
a message's name, even if the restore is killed. A damaged or missing pack
does not stop the restore: the messages and files that need it are listed
(user, folder, Maildir name, Message-ID, subject), everything else is
restored, and the exit code is 14.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if opt.Target == "" {
				return fmt.Errorf("%w: --target is required", errUsage)
			}
			if cmd.Flags().Changed("message") && strings.Trim(opt.Message, "<>") == "" {
				return fmt.Errorf("%w: --message %q names no message", errUsage, opt.Message)
			}
			if cpuProfile != "" {
				stop, err := startToFile(cpuProfile, pprof.StartCPUProfile, pprof.StopCPUProfile)
				if err != nil {
					return err
				}
				defer stop()
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
			if err != nil && !errors.Is(err, restore.ErrIncomplete) {
				return err
			}
			if g.json {
				if jerr := g.printJSON(map[string]any{"snapshot": snap.ID, "target": opt.Target, "result": res}); jerr != nil {
					return jerr
				}
			} else {
				g.printf("restored snapshot %s to %s: %d messages, %d files, %s\n", snap.ID.Short(), opt.Target, res.Messages, res.Files, humanBytes(res.Bytes))
				// Printed even with --quiet: they are errors.
				printFailures(g.stdout, res)
			}
			if err != nil {
				return withCode(exitIncomplete, err)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&opt.Target, "target", "t", "", "directory to restore into (must not exist or be empty unless --overwrite)")
	f.StringVar(&opt.User, "user", "", "restore only this user (e.g. alice@example.com)")
	f.StringVar(&opt.Folder, "folder", "", "restore only this folder (e.g. INBOX, Sent, Archive.2024)")
	f.StringVar(&opt.Message, "message", "", "restore only this message (Maildir unique name or Message-ID)")
	f.BoolVar(&opt.Overwrite, "overwrite", false, "write into an existing target, replacing files")
	f.StringVar(&cpuProfile, "cpuprofile", os.Getenv("MAILVAULT_CPUPROFILE"), "write a CPU profile of the restore to this file (env MAILVAULT_CPUPROFILE)")
	_ = f.MarkHidden("cpuprofile")
	return cmd
}

// printFailures lists the damaged packs and what a restore could not
// write because of them, one message or file a line.
func printFailures(w io.Writer, res *restore.Result) {
	for _, p := range res.DamagedPacks {
		if strings.Contains(p.Err, p.Pack.String()) {
			fmt.Fprintf(w, "error: %s\n", p.Err)
		} else {
			fmt.Fprintf(w, "error: pack %s: %s\n", p.Pack, p.Err)
		}
	}
	if len(res.Failed) == 0 {
		return
	}
	fmt.Fprintf(w, "not restored (%d):\n", len(res.Failed))
	for _, f := range res.Failed {
		switch f.Kind {
		case "message":
			id := "(no Message-ID)"
			if f.MessageID != "" {
				id = word("<" + f.MessageID + ">")
			}
			fmt.Fprintf(w, "  message %s %s %s %s %q: %s\n", word(f.User), word(f.Folder), word(f.Unique), id, f.Subject, f.Err)
		case "folder":
			fmt.Fprintf(w, "  folder %s %s (all its messages; at %s): %s\n", word(f.User), word(f.Folder), word(f.Path), f.Err)
		case "folder page":
			fmt.Fprintf(w, "  folder %s %s (some of its messages; at %s): %s\n", word(f.User), word(f.Folder), word(f.Path), f.Err)
		case "files":
			fmt.Fprintf(w, "  the other files (not messages) below %s: %s\n", word(f.Path), f.Err)
		default:
			fmt.Fprintf(w, "  file %s: %s\n", word(f.Path), f.Err)
		}
	}
}

// word returns s as it is if it is printable and has no spaces, and
// quoted otherwise, so that a hostile or odd name (Maildir names may hold
// any byte but '/' and NUL) keeps one entry on one line.
func word(s string) string {
	for _, r := range s {
		if !unicode.IsPrint(r) || unicode.IsSpace(r) || r == '"' {
			return strconv.Quote(s)
		}
	}
	if s == "" || !utf8.ValidString(s) {
		return strconv.Quote(s)
	}
	return s
}
