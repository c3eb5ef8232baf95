package main

import (
	"context"
	"fmt"
	"os"
	"slices"

	"github.com/spf13/cobra"

	"github.com/mailvault/mailvault/archive"
	"github.com/mailvault/mailvault/targets"
)

func newRepairCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "repair",
		Short: "Repair the index, damaged packs and snapshots",
		Long: `Repair a damaged repository. After check reports damage, in this order:

  mailvault repair index                       rebuild the index from the packs' headers
  mailvault repair packs [PACK...]             salvage what still reads from damaged packs
  mailvault repair snapshots --forget          drop the messages whose data is gone

Each takes an exclusive lock and needs a full key: a write-only key removes
nothing and is refused (exit code 12).`,
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "index",
		Short: "Rebuild all index files from the packs' own headers",
		Long: `Rebuild the index from the packs. Index files are only a cache of what the
packs' headers say; use this when check reports a damaged or missing index.
Takes an exclusive lock: no backup may run meanwhile.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			repo, done, err := g.openRepair(ctx)
			if err != nil {
				return err
			}
			defer done()
			res, err := repo.RebuildIndex(ctx)
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(res)
			}
			for _, u := range res.Unreadable {
				fmt.Fprintln(g.stderr, "warning: unreadable pack", u)
			}
			for _, w := range res.Waiting {
				// Object Lock: harmless duplicates until then.
				fmt.Fprintln(g.stderr, "note: old index file", w.String()+"; run repair index again after that to remove it")
			}
			g.printf("index rebuilt: %d packs, %d blobs in %d new index files; %d old index files removed\n",
				res.Packs, res.Blobs, res.IndexesWritten, res.IndexesRemoved)
			return nil
		},
	})
	cmd.AddCommand(newRepairPacksCmd(g), newRepairSnapshotsCmd(g))
	return cmd
}

func newRepairPacksCmd(g *globals) *cobra.Command {
	var from otherRepo
	var target, targetsFile string
	cmd := &cobra.Command{
		Use:   "packs [PACK...]",
		Short: "Salvage what still reads from damaged packs, or take it from a copy",
		Long: `Repair damaged packs, as restic's "repair packs" does. For each damaged pack
(the packs named, or with none every pack that fails verification as
"check --read-data" verifies it, and every indexed pack missing from
storage), every blob that still decrypts and matches its ID is stored again
in a new pack, the index stops listing the damaged pack and the pack is
deleted (on Object Lock storage it waits for its retention to run out,
listed in the index with no blobs). New packs are written before the new
index and the index before anything is deleted, so the repair can be killed
anywhere and run again.

A blob that cannot be read is lost unless a copy of the repository has it:
--from TARGET names a target of the targets file (--targets), --from-repo a
repository location (opened with --from-password-file/--from-identity, else
the global credentials). A copy shares the blob IDs: made with "init
--copy-params-from" and "copy" or "backup --targets". With a sound copy
nothing is lost. With a copy, every blob a snapshot uses that no pack holds
(a pack lost before "repair index" rebuilt the index) is taken from it too.

Every message (and other file) that lost content is listed with its
snapshot, user, folder, Message-ID and subject (exit code 0); run
"mailvault repair snapshots --forget" next, before the next backup (which
could otherwise reuse, from a damaged snapshot, a folder whose messages lost
content), to rewrite those snapshots without them. Takes an exclusive lock;
refuses while an index file is damaged (run "repair index" first).`,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			var opt archive.RepairPacksOptions
			for _, a := range args {
				id, err := archive.ParseID(a)
				if err != nil {
					return fmt.Errorf("%w: %v (give packs by their full ID, as check names them)", errUsage, err)
				}
				opt.Packs = append(opt.Packs, id)
			}
			if target != "" && from.loc != "" {
				return fmt.Errorf("%w: give --from TARGET or --from-repo, not both", errUsage)
			}
			repo, done, err := g.openRepair(ctx)
			if err != nil {
				return err
			}
			defer done()
			if target != "" || from.loc != "" {
				src, done, err := g.openRepairSource(ctx, target, targetsFile, from)
				if err != nil {
					return err
				}
				defer done()
				opt.From = src
			}
			var bar *progressBar
			if g.stdoutIsTerminal() {
				bar = newProgressBar(g.stdout)
				opt.Progress = func(done, total int) { bar.update("read packs", int64(done), int64(total), int64(done), int64(total)) }
			}
			res, err := repo.RepairPacks(ctx, opt)
			if bar != nil {
				bar.done()
			}
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(res)
			}
			printPackRepair(g, res)
			return nil
		},
	}
	cmd.Flags().StringVar(&target, "from", "", "take lost blobs from this target of the targets file")
	cmd.Flags().StringVar(&targetsFile, "targets", os.Getenv("MAILVAULT_TARGETS"), "targets file for --from (env MAILVAULT_TARGETS)")
	cmd.Flags().StringVar(&from.loc, "from-repo", "", "take lost blobs from this repository (a copy of this one)")
	from.flags(cmd)
	return cmd
}

// openRepairSource opens the copy repair packs takes lost blobs from: a
// target of the targets file with its credentials, or a location with the
// --from-* credentials. It takes a shared lock (the copy is only read) and
// loads its index; done unlocks and closes it.
func (g *globals) openRepairSource(ctx context.Context, target, targetsFile string, from otherRepo) (*archive.Repository, func(), error) {
	if target != "" {
		if targetsFile == "" {
			return nil, nil, fmt.Errorf("%w: --from %s needs a targets file (use --targets or MAILVAULT_TARGETS)", errUsage, target)
		}
		cfg, err := loadTargets(targetsFile)
		if err != nil {
			return nil, nil, err
		}
		i := slices.IndexFunc(cfg.Targets, func(t targets.Target) bool { return t.Name == target })
		if i < 0 {
			return nil, nil, fmt.Errorf("%w: no target %q in %s", errUsage, target, targetsFile)
		}
		t := cfg.Targets[i]
		if t.Repo == "" {
			return nil, nil, fmt.Errorf("%w: target %q is not a repository", errUsage, target)
		}
		from = otherRepo{loc: t.Repo, creds: targetCreds(t)}
	}
	if sameLocation(from.loc, g.repo) {
		return nil, nil, fmt.Errorf("%w: the copy %s is the repository being repaired", errUsage, from.loc)
	}
	src, err := from.open(ctx, g)
	if err != nil {
		return nil, nil, err
	}
	unlock, err := src.Lock(ctx, false)
	if err != nil {
		src.Close()
		return nil, nil, err
	}
	done := func() { unlock(); src.Close() }
	if err := g.loadIndex(ctx, src); err != nil {
		done()
		return nil, nil, err
	}
	return src, done, nil
}

func printPackRepair(g *globals, res *archive.RepairPacksResult) {
	if res.Missing > 0 {
		g.printf("%d blobs that snapshots use were in no pack: %d taken from the copy\n", res.Missing, res.MissingFromCopy)
	}
	if len(res.Packs) == 0 {
		g.printf("no damaged packs (%d read)\n", res.PacksRead)
		return
	}
	for _, p := range res.Packs {
		fate := "deleted"
		if !p.Deleted {
			fate = "not deleted (missing, or waiting for its retention)"
		}
		g.printf("pack %s: %s\n  %d blobs: %d salvaged, %d from the copy, %d lost; %s\n", p.Pack, p.Err, p.Blobs, p.Salvaged, p.FromCopy, len(p.Lost), fate)
	}
	for _, w := range res.Waiting {
		fmt.Fprintln(g.stderr, "note:", w.String()+"; run repair packs again after that to delete it")
	}
	switch {
	case len(res.Lost) > 0:
		fmt.Fprintf(g.stdout, "%d messages and files lost content:\n", len(res.Lost))
		for _, m := range res.Lost {
			fmt.Fprintf(g.stdout, "  %s\n", m)
		}
	case res.BlobsLost > 0:
		g.printf("no snapshot uses the lost blobs\n")
	}
	g.printf("%d packs repaired: %d blobs salvaged, %d from the copy, %d lost; %d packs and %d index files written, %d index files removed\n",
		len(res.Packs), res.BlobsSalvaged, res.BlobsFromCopy, res.BlobsLost, res.PacksWritten, res.IndexesWritten, res.IndexesRemoved)
	if len(res.Lost) > 0 {
		g.printf("run \"mailvault repair snapshots --forget\" to rewrite the snapshots without them\n")
	}
}

func newRepairSnapshotsCmd(g *globals) *cobra.Command {
	var opt archive.RepairSnapshotsOptions
	cmd := &cobra.Command{
		Use:   "snapshots [--forget] [--dry-run]",
		Short: "Rewrite snapshots without the messages whose data is gone",
		Long: `Rewrite every snapshot that refers to data no longer stored (blobs no index
lists, packs missing from storage, folder lists that cannot be loaded), as
restic's "repair snapshots" does: the new snapshot leaves those messages and
files out, adjusts the folders' and the snapshot's totals, is tagged
"repaired" and records the original's ID. Every message left out is listed
(user, folder, Message-ID, subject). The originals are kept unless --forget
removes them; --dry-run only lists. Then check is clean and the repaired
snapshots restore; the next backup stores again the dropped messages still
on disk. A snapshot that lost nothing but whose Message-ID index does not
match its folder lists (check reports it) is written again without the
index: restores by Message-ID from it read every folder list, and the next
backup builds a new index.

It reads no mail content: run "repair packs" first if check --read-data
reports damaged packs. Takes an exclusive lock.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			repo, done, err := g.openRepair(ctx)
			if err != nil {
				return err
			}
			defer done()
			res, err := repo.RepairSnapshots(ctx, opt)
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(res)
			}
			for _, u := range res.Unreadable {
				fmt.Fprintln(g.stderr, "warning: unreadable snapshot left as it is:", u)
			}
			for _, m := range res.Dropped {
				fmt.Fprintf(g.stdout, "dropped %s\n", m)
			}
			for _, d := range res.IndexesDropped {
				fmt.Fprintf(g.stdout, "left out %s\n", d)
			}
			verb := "repaired"
			if res.DryRun {
				verb = "would be repaired"
			}
			for _, s := range res.Repaired {
				if s.To.IsNull() {
					g.printf("snapshot %s %s\n", s.From.Short(), verb)
				} else {
					g.printf("snapshot %s repaired as %s\n", s.From.Short(), s.To.Short())
				}
			}
			for _, w := range res.Waiting {
				fmt.Fprintln(g.stderr, "note: snapshot", w.String()+"; forget it after that")
			}
			indexes := ""
			if n := len(res.IndexesDropped); n > 0 {
				indexes = fmt.Sprintf(", %d wrong Message-ID indexes left out", n)
			}
			g.printf("%d of %d snapshots %s, %d messages and files dropped%s, %d originals forgotten\n",
				len(res.Repaired), res.Snapshots, verb, len(res.Dropped), indexes, len(res.Forgotten))
			return nil
		},
	}
	cmd.Flags().BoolVar(&opt.Forget, "forget", false, "remove the original snapshots once repaired")
	cmd.Flags().BoolVarP(&opt.DryRun, "dry-run", "n", false, "only list what would be dropped")
	return cmd
}

// openRepair opens the repository for a repair: refused for a write-only
// key before any lock is taken (a repair deletes, and a write-only key
// deletes nothing), then under the exclusive lock; done unlocks and
// closes it.
func (g *globals) openRepair(ctx context.Context) (*archive.Repository, func(), error) {
	repo, err := g.openRepo(ctx)
	if err != nil {
		return nil, nil, err
	}
	if repo.WriteOnly() {
		repo.Close()
		return nil, nil, fmt.Errorf("repair: %w", archive.ErrWriteOnly)
	}
	unlock, err := repo.Lock(ctx, true)
	if err != nil {
		repo.Close()
		return nil, nil, err
	}
	return repo, func() { unlock(); repo.Close() }, nil
}
