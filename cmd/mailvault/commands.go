package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/mailvault/mailvault/archive"
	"github.com/mailvault/mailvault/archive/local"
	"github.com/mailvault/mailvault/restore"
)

func newInitCmd(g *globals) *cobra.Command {
	var recipients []string
	var recipientsFile string
	var paramsFrom otherRepo
	var lockDays int
	var lockMode string
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Create a new repository",
		Long: `Create a new repository. Its secrets are wrapped for a passphrase
(MAILVAULT_PASSWORD, --password-file or a prompt) and/or age recipients
(--recipient age1..., --recipients-file), each in its own key file.

With --object-lock-days N (S3 only) the bucket is created with S3 Object
Lock and every file but lock files is written with retention of N days in
--object-lock-mode (governance: removable early only with the
s3:BypassGovernanceRetention permission; compliance: by no one). Run
"mailvault maintain" regularly to extend what is still needed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			be, err := g.backend()
			if err != nil {
				return err
			}
			var lock *archive.ObjectLock
			if lockDays != 0 || cmd.Flags().Changed("object-lock-mode") {
				lock = &archive.ObjectLock{Mode: archive.RetentionMode(lockMode), Days: lockDays}
				if err := lock.Validate(); err != nil {
					return fmt.Errorf("%w: --object-lock-days/--object-lock-mode: %v", errUsage, err)
				}
				if _, ok := be.(archive.ObjectLocker); !ok {
					return fmt.Errorf("%w: --object-lock-days needs an S3 repository: %s cannot make files immutable (root can delete any file)", errUsage, be.Location())
				}
			}
			if recipientsFile != "" {
				raw, err := os.ReadFile(recipientsFile)
				if err != nil {
					return fmt.Errorf("recipients file: %w", err)
				}
				for _, line := range strings.Split(string(raw), "\n") {
					if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
						recipients = append(recipients, line)
					}
				}
			}
			pw, err := g.password(len(recipients) == 0, true)
			if err != nil {
				return err
			}
			if lb, ok := be.(*local.Backend); ok {
				if err := lb.Create(); err != nil {
					return err
				}
			} else if c, ok := be.(interface{ Create(context.Context) error }); ok && lock == nil {
				if err := c.Create(cmd.Context()); err != nil {
					return err
				}
			}
			kr := archive.KeyRecipients{Passphrase: pw, Recipients: recipients}
			var id archive.ID
			if lock != nil {
				// Creates the bucket with Object Lock itself.
				var src *archive.Repository
				if paramsFrom.loc != "" {
					if src, err = paramsFrom.open(cmd.Context(), g); err != nil {
						return err
					}
				}
				id, err = archive.InitObjectLock(cmd.Context(), be, kr, *lock, src)
				if src != nil {
					src.Close()
				}
			} else if paramsFrom.loc != "" {
				src, oerr := paramsFrom.open(cmd.Context(), g)
				if oerr != nil {
					return oerr
				}
				id, err = archive.InitCopyParams(cmd.Context(), be, kr, src)
				src.Close()
			} else {
				id, err = archive.Init(cmd.Context(), be, kr)
			}
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(map[string]any{"id": id, "repository": be.Location(), "object_lock": lock})
			}
			g.printf("created mailvault repository %s at %s\n", id.Short(), be.Location())
			if lock != nil {
				g.printf("Object Lock: every file is kept %d days (%s mode). Run `mailvault maintain` at least every %s (daily is best) to keep what is still needed locked.\n", lock.Days, lock.Mode, halfPeriod(*lock))
			}
			g.printf("Keep the password or identity safe: without it the data cannot be recovered.\n")
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&recipients, "recipient", nil, "age recipient (age1...) whose identity opens the repository; repeatable")
	cmd.Flags().StringVar(&recipientsFile, "recipients-file", "", "file of age recipients, one per line")
	cmd.Flags().StringVar(&paramsFrom.loc, "copy-params-from", "", "repository whose blob-ID key and chunker parameters the new one shares (for `mailvault copy`)")
	paramsFrom.flags(cmd)
	cmd.Flags().IntVar(&lockDays, "object-lock-days", 0, "S3 only: lock every repository file for this many days (S3 Object Lock)")
	cmd.Flags().StringVar(&lockMode, "object-lock-mode", string(archive.Governance), "object lock retention mode: governance or compliance")
	return cmd
}

func newBackupCmd(g *globals) *cobra.Command {
	var host string
	var tags []string
	var parent string
	var snap snapshotFlags
	var targetsFile string
	cmd := &cobra.Command{
		Use:   "backup PATH...",
		Short: "Back up Maildir trees (and the files beside them) into a new snapshot",
		Long: `Back up one or more Maildir++ trees, e.g. /var/mail holding
<domain>/<user>/Maildir. Messages already in the parent snapshot (same
unique name and size) are not read again, even if their flags changed or
they moved to another folder. Exit code 3 means the snapshot was made but
some entries could not be read (they are listed).

With --targets (or MAILVAULT_TARGETS), the backup goes to the primary
target and the new snapshot is then copied to every other repository
target (only the blobs it lacks move); exit code 3 also means a copy
failed (the primary's snapshot stays). See "mailvault status --help".`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, paths []string) error {
			ctx := cmd.Context()
			tcfg, err := loadTargets(targetsFile)
			if err != nil {
				return err
			}
			repo, done, err := g.openBackupRepo(ctx, tcfg)
			if err != nil {
				return err
			}
			defer done()
			unindexed, err := repo.LoadIndex(ctx)
			if err != nil {
				return err
			}
			for _, err := range repo.DamagedIndexes() {
				fmt.Fprintln(g.stderr, "warning: skipping damaged index file (run `mailvault repair index`):", err)
			}
			if n, err := repo.AdoptPacks(ctx, unindexed); err != nil {
				return err
			} else if n > 0 {
				g.logger().Info("adopted packs of an interrupted backup", "packs", n)
			}
			if tc, ok := repo.Backend().(interface {
				CleanTemp(time.Duration) (int, error)
			}); ok {
				// An hour is far longer than any pack takes to write.
				if n, err := tc.CleanTemp(time.Hour); err == nil && n > 0 {
					g.logger().Info("removed temporary files of an interrupted backup", "files", n)
				}
			}
			view, err := snap.take(ctx, g, paths)
			if err != nil {
				return err
			}
			defer func() {
				if err := view.Release(context.WithoutCancel(ctx)); err != nil {
					g.logger().Error("releasing the snapshot view", "err", err)
				}
			}()
			opt := archive.BackupOptions{Paths: paths, Host: host, Tags: tags, Logger: g.logger(), ReadFrom: view.Paths}
			if repo.WriteOnly() {
				// It cannot read its parent back from the repository, so
				// it keeps one locally; nor can it read packs' headers to
				// adopt an interrupted backup's packs (a full key does).
				if opt.ParentCache, err = g.parentCacheDir(repo.Config().ID); err != nil {
					g.logger().Warn("backing up without a parent", "err", err)
				}
				if len(unindexed) > 0 {
					g.logger().Info("a write-only key cannot adopt unindexed packs; the next backup with a full key does", "packs", len(unindexed))
				}
			}
			if parent != "" {
				s, err := repo.FindSnapshot(ctx, parent)
				if err != nil {
					return err
				}
				opt.Parent = &s.ID
			}
			var bar *progressBar
			if g.stdoutIsTerminal() {
				bar = newProgressBar(g.stdout)
				opt.Progress = func(p archive.Progress) {
					bar.update("backup", p.MessagesDone, p.MessagesTotal, p.BytesDone, p.BytesTotal)
				}
			}
			res, err := repo.Backup(ctx, opt)
			if bar != nil {
				bar.done()
			}
			if err != nil {
				return err
			}
			s := res.Snapshot
			var replicas []replica
			if tcfg != nil {
				replicas = g.replicate(ctx, tcfg, repo, s.ID)
			}
			if g.json {
				out := map[string]any{"snapshot": s.ID, "parent": s.Parent, "summary": s.Summary, "warnings": res.Warnings}
				if tcfg != nil {
					out["replicas"] = replicas
				}
				if err := g.printJSON(out); err != nil {
					return err
				}
			} else {
				for _, w := range res.Warnings {
					fmt.Fprintln(g.stderr, "warning:", w)
				}
				sum := s.Summary
				g.printf("snapshot %s saved\n", s.ID.Short())
				g.printf("messages: %d total, %d new, %d with changed flags or folder; folders: %d (%d unchanged)\n",
					sum.Messages, sum.MessagesNew, sum.MessagesChanged, sum.Folders, sum.FoldersUnchanged)
				g.printf("files:    %d new other files\n", sum.FilesNew)
				g.printf("data:     %s in snapshot, %s read, %s new (%s stored)\n",
					humanBytes(sum.BytesTotal), humanBytes(sum.BytesRead), humanBytes(sum.BytesNew), humanBytes(sum.BytesStored))
				g.printf("ratios:   dedup %.2fx, compression %.2fx; %d packs in %.1fs\n",
					sum.DedupRatio, sum.CompressionRatio, sum.PacksWritten, sum.DurationSeconds)
				printReplicas(g, replicas)
			}
			if len(res.Warnings) > 0 {
				return withCode(exitPartial, fmt.Errorf("snapshot %s is partial: %d entries could not be read", s.ID.Short(), len(res.Warnings)))
			}
			return replicasError(s.ID, replicas)
		},
	}
	h, _ := os.Hostname()
	cmd.Flags().StringVar(&host, "host", h, "host name recorded in the snapshot")
	cmd.Flags().StringArrayVar(&tags, "tag", nil, "tag for the snapshot; repeatable")
	cmd.Flags().StringVar(&parent, "parent", "", "snapshot to compare against (default: newest of this host and paths)")
	cmd.Flags().StringVar(&targetsFile, "targets", os.Getenv("MAILVAULT_TARGETS"), "targets file: back up to its primary, then copy to the other repositories (env MAILVAULT_TARGETS)")
	snap.register(cmd)
	return cmd
}

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
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s%s\n", s.ID.Short(), s.Time.Local().Format("2006-01-02 15:04:05"), s.Host,
					s.Summary.Messages, humanBytes(s.Summary.BytesTotal), strings.Join(s.Paths, ","), mark)
			}
			fmt.Fprintf(tw, "%d snapshots\n", len(snaps))
			return tw.Flush()
		},
	}
}

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

func newKeyCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "key", Short: "Manage the key files that open the repository"}
	list := &cobra.Command{
		Use: "list", Short: "List key files", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			repo, err := g.openRepo(cmd.Context())
			if err != nil {
				return err
			}
			defer repo.Close()
			keys, err := repo.Keys(cmd.Context())
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(keys)
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, " ID\tKind\tHost\tCreated\tOpened by")
			for _, k := range keys {
				mark := " "
				if k.Current {
					mark = "*"
				}
				created := ""
				if !k.Created.IsZero() {
					created = k.Created.Local().Format("2006-01-02 15:04")
				}
				fmt.Fprintf(tw, "%s%s\t%s\t%s\t%s\t%s\n", mark, k.ID.Short(), k.Kind, k.Host, created, k.Label)
			}
			return tw.Flush()
		},
	}
	var recipients []string
	var newPasswordFile string
	var writeOnly bool
	add := &cobra.Command{
		Use: "add", Short: "Add a key file for a new passphrase or age recipients", Args: cobra.NoArgs,
		Long: `Add a key file for a new passphrase or age recipients. With --write-only the
key file lacks the data identity: a host holding it can back up (and
deduplicate against the index) but cannot restore, list or check anything;
such commands exit with code 12. See docs/FORMAT.md "Keys".`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			repo, err := g.openRepo(cmd.Context())
			if err != nil {
				return err
			}
			defer repo.Close()
			kr := archive.KeyRecipients{Recipients: recipients}
			if newPasswordFile != "" {
				if kr.Passphrase, err = readPasswordFile(newPasswordFile); err != nil {
					return fmt.Errorf("new password file: %w", err)
				}
			}
			if kr.Passphrase == "" && len(recipients) == 0 {
				return fmt.Errorf("%w: give --new-password-file or --recipient", errUsage)
			}
			add, kind := repo.AddKey, archive.FullKey
			if writeOnly || repo.WriteOnly() {
				add, kind = repo.AddWriteOnlyKey, archive.WriteOnlyKey
			}
			ids, err := add(cmd.Context(), kr)
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(map[string]any{"added": ids, "kind": kind})
			}
			for _, id := range ids {
				g.printf("added %s key %s\n", kind, id.Short())
			}
			return nil
		},
	}
	add.Flags().StringArrayVar(&recipients, "recipient", nil, "age recipient for the new key file; repeatable")
	add.Flags().StringVar(&newPasswordFile, "new-password-file", "", "file holding the new passphrase")
	add.Flags().BoolVar(&writeOnly, "write-only", false, "a key that can back up but not decrypt mail (no data identity)")
	remove := &cobra.Command{
		Use: "remove ID", Short: "Remove a key file (not the one in use)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			repo, err := g.openRepo(cmd.Context())
			if err != nil {
				return err
			}
			defer repo.Close()
			keys, err := repo.Keys(cmd.Context())
			if err != nil {
				return err
			}
			var match []archive.ID
			for _, k := range keys {
				if strings.HasPrefix(k.ID.String(), args[0]) {
					match = append(match, k.ID)
				}
			}
			if len(match) != 1 {
				return fmt.Errorf("key %q matches %d key files", args[0], len(match))
			}
			if err := repo.RemoveKey(cmd.Context(), match[0]); err != nil {
				return err
			}
			if g.json {
				return g.printJSON(map[string]any{"removed": match[0]})
			}
			g.printf("removed key %s\n", match[0].Short())
			return nil
		},
	}
	cmd.AddCommand(list, add, remove)
	return cmd
}

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
