package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/mailvault/mailvault/archive"
	"github.com/mailvault/mailvault/targets"
)

// repoCreds are the credentials a repository other than --repo's is
// opened with; when none is set, the global ones are used.
type repoCreds struct {
	passwordFile string
	passwordEnv  string // name of a variable holding the passphrase
	identities   []string
}

func (c repoCreds) set() bool {
	return c.passwordFile != "" || c.passwordEnv != "" || len(c.identities) > 0
}

func targetCreds(t targets.Target) repoCreds {
	c := repoCreds{passwordFile: t.PasswordFile, passwordEnv: t.PasswordEnv}
	if t.Identity != "" {
		c.identities = []string{t.Identity}
	}
	return c
}

// credentials returns c's credentials, or the global ones if c names none.
func (c repoCreds) credentials(g *globals) (archive.Credentials, error) {
	if !c.set() {
		return g.credentials()
	}
	creds, err := withIdentities(c.identities)
	if err != nil {
		return creds, err
	}
	switch {
	case c.passwordFile != "":
		if creds.Passphrase, err = readPasswordFile(c.passwordFile); err != nil {
			return creds, fmt.Errorf("password file: %w", err)
		}
	case c.passwordEnv != "":
		creds.Passphrase = os.Getenv(c.passwordEnv)
		if creds.Passphrase == "" {
			return creds, fmt.Errorf("password variable %s is empty or unset", c.passwordEnv)
		}
	}
	return creds, nil
}

// openAt opens the repository at loc with c and loads nothing.
func (g *globals) openAt(ctx context.Context, loc string, c repoCreds) (*archive.Repository, error) {
	creds, err := c.credentials(g)
	if err != nil {
		return nil, err
	}
	return g.openWith(ctx, loc, creds)
}

// openWith opens the repository at loc with creds and loads nothing.
func (g *globals) openWith(ctx context.Context, loc string, creds archive.Credentials) (*archive.Repository, error) {
	h := *g
	h.repo = loc
	be, err := h.backend()
	if err != nil {
		return nil, err
	}
	return g.open(ctx, be, creds)
}

// openForWrite opens the repository at loc with creds, takes a shared
// lock and loads its index, adopting the packs of an interrupted copy or
// backup so that their blobs are not stored again; done unlocks and
// closes it.
func (g *globals) openForWrite(ctx context.Context, loc string, c repoCreds) (repo *archive.Repository, done func(), err error) {
	if repo, err = g.openAt(ctx, loc, c); err != nil {
		return nil, nil, err
	}
	unlock, err := repo.Lock(ctx, false)
	if err != nil {
		repo.Close()
		return nil, nil, err
	}
	done = func() { unlock(); repo.Close() }
	unindexed, err := repo.LoadIndex(ctx)
	if err != nil {
		done()
		return nil, nil, err
	}
	for _, err := range repo.DamagedIndexes() {
		fmt.Fprintf(g.stderr, "warning: skipping damaged index file in %s (run `mailvault repair index`): %v\n", loc, err)
	}
	if n, err := repo.AdoptPacks(ctx, unindexed); err != nil {
		done()
		return nil, nil, err
	} else if n > 0 {
		g.logger().Info("adopted packs of an interrupted copy or backup", "repo", loc, "packs", n)
	}
	return repo, done, nil
}

// otherRepo names a second repository (copy's source, init's
// --copy-params-from) and the credentials that open it: its own
// --from-password-file/--from-identity when given, else the global ones.
type otherRepo struct {
	loc   string
	creds repoCreds
}

func (o *otherRepo) flags(cmd *cobra.Command) {
	cmd.Flags().StringVar(&o.creds.passwordFile, "from-password-file", "", "file holding the source repository's passphrase (default: the global credentials)")
	cmd.Flags().StringArrayVar(&o.creds.identities, "from-identity", nil, "age identity file that opens the source repository; repeatable (default: the global credentials)")
}

// open opens the other repository and loads nothing.
func (o *otherRepo) open(ctx context.Context, g *globals) (*archive.Repository, error) {
	repo, err := g.openAt(ctx, o.loc, o.creds)
	if err != nil {
		return nil, fmt.Errorf("source repository %s: %w", o.loc, err)
	}
	return repo, nil
}

// copyProgress returns a progress callback that draws a bar when stdout
// is a terminal (nil otherwise) and a function that clears it. The total
// is what the source's index holds that the target's lacks: exact when
// the target has every older snapshot, an upper bound otherwise (the bar
// then ends early).
func (g *globals) copyProgress(label string, from, to *archive.Repository) (func(archive.CopyStats), func()) {
	if !g.stdoutIsTerminal() {
		return nil, func() {}
	}
	var blobs, bytes int64
	have := to.Index()
	for _, list := range from.Index().PackBlobs() {
		for _, b := range list {
			if !have.Has(b.ID) {
				blobs++
				bytes += int64(max(b.RawLength, b.Length))
			}
		}
	}
	bar := newProgressBar(g.stdout)
	return func(st archive.CopyStats) {
		bar.update(label, st.Blobs, max(blobs, st.Blobs), st.Bytes, max(bytes, st.Bytes))
	}, bar.done
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
in the target are skipped, so a rerun copies nothing new, and a killed or
failed copy resumes: the packs it stored are adopted, and only what is still
missing moves. The global credentials open the target; --from-password-file
and --from-identity, when given, open the source. A progress bar is drawn
when stdout is a terminal.`,
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
			if g.repo == "" {
				return fmt.Errorf("%w: no target repository given (use --to, --repo or MAILVAULT_REPO)", errUsage)
			}
			dst, done, err := g.openForWrite(ctx, g.repo, repoCreds{})
			if err != nil {
				return err
			}
			defer done()
			progress, clear := g.copyProgress("copy", src, dst)
			st, err := archive.Copy(ctx, src, dst, ids, progress)
			clear()
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(st)
			}
			for _, c := range st.Copied {
				g.printf("snapshot %s copied as %s\n", c.From.Short(), c.To.Short())
			}
			g.printf("%d snapshots copied, %d already present; %d blobs (%s) copied, %d already present\n",
				st.Snapshots, st.SnapshotsPresent, st.Blobs, humanBytes(st.Bytes), st.BlobsPresent)
			return nil
		},
	}
	cmd.Flags().StringVar(&from.loc, "from", "", "source repository location")
	cmd.Flags().StringVar(&to, "to", "", "target repository location (default --repo)")
	from.flags(cmd)
	return cmd
}

// replica is what `backup --targets` did for one secondary target.
type replica struct {
	Target   string             `json:"target"`
	Repo     string             `json:"repo"`
	Snapshot *archive.ID        `json:"snapshot,omitempty"` // the copy's ID in the target
	Copy     *archive.CopyStats `json:"copy,omitempty"`
	Error    string             `json:"error,omitempty"`
}

// loadTargets reads the targets file, if one is given.
func loadTargets(file string) (*targets.Config, error) {
	if file == "" {
		return nil, nil
	}
	cfg, err := targets.Load(file)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errUsage, err)
	}
	return cfg, nil
}

// openBackupRepo opens the repository a backup writes: --repo, or with a
// targets file its primary (with its credentials). A --repo naming
// another repository than the primary is refused rather than guessed at.
func (g *globals) openBackupRepo(ctx context.Context, cfg *targets.Config) (*archive.Repository, func(), error) {
	if cfg == nil {
		return g.openLocked(ctx)
	}
	p, ok := cfg.Primary()
	if !ok {
		return nil, nil, fmt.Errorf("%w: the targets file marks no target primary: true", errUsage)
	}
	if g.repo != "" && !sameLocation(g.repo, p.Repo) {
		return nil, nil, fmt.Errorf("%w: --repo %s is not the primary target %q (%s)", errUsage, g.repo, p.Name, p.Repo)
	}
	g.repo = p.Repo
	repo, err := g.openAt(ctx, p.Repo, targetCreds(p))
	if err != nil {
		return nil, nil, fmt.Errorf("primary target %q: %w", p.Name, err)
	}
	unlock, err := repo.Lock(ctx, false)
	if err != nil {
		repo.Close()
		return nil, nil, err
	}
	return repo, func() { unlock(); repo.Close() }, nil
}

func sameLocation(a, b string) bool {
	if a == b {
		return true
	}
	a, b = strings.TrimPrefix(a, "local:"), strings.TrimPrefix(b, "local:")
	aa, err1 := filepath.Abs(a)
	bb, err2 := filepath.Abs(b)
	return err1 == nil && err2 == nil && aa == bb
}

// replicate copies the primary's snapshots that a target lacks (id, the
// new one, and any an unreachable target missed) to every other repository
// target, one after the other; only the blobs a target lacks move. A
// target that fails is reported and does not stop the others (nor undo
// the primary's snapshot). ZFS targets are filled by `zfs send`, not here.
func (g *globals) replicate(ctx context.Context, cfg *targets.Config, primary *archive.Repository, id archive.ID) []replica {
	var out []replica
	for _, t := range cfg.Targets {
		if t.Primary || t.Repo == "" {
			continue
		}
		r := replica{Target: t.Name, Repo: t.Repo}
		st, err := g.replicateTo(ctx, t, primary)
		if err != nil {
			r.Error = err.Error()
			g.logger().Error("replication failed", "target", t.Name, "err", err)
		} else {
			r.Copy = &st
			for _, c := range st.Copied {
				if c.From == id {
					r.Snapshot = &c.To
				}
			}
		}
		out = append(out, r)
	}
	return out
}

func (g *globals) replicateTo(ctx context.Context, t targets.Target, primary *archive.Repository) (archive.CopyStats, error) {
	dst, done, err := g.openForWrite(ctx, t.Repo, targetCreds(t))
	if err != nil {
		return archive.CopyStats{}, err
	}
	defer done()
	progress, clear := g.copyProgress("copy → "+t.Name, primary, dst)
	defer clear()
	// Every snapshot the target lacks, not only the new one: a target that
	// was unreachable last night catches up, and parents are copied before
	// their children so each copy keeps its parent link.
	return archive.Copy(ctx, primary, dst, nil, progress)
}

// printReplicas prints one line per secondary target.
func printReplicas(g *globals, replicas []replica) {
	for _, r := range replicas {
		switch {
		case r.Error != "":
			fmt.Fprintf(g.stderr, "copy to %s failed: %s\n", r.Target, r.Error)
		case r.Snapshot != nil:
			g.printf("copied to %s as %s: %d blobs (%s) new, %d already there\n",
				r.Target, r.Snapshot.Short(), r.Copy.Blobs, humanBytes(r.Copy.Bytes), r.Copy.BlobsPresent)
		default:
			g.printf("copied to %s: already there\n", r.Target)
		}
	}
}

// replicasError is the partial-success error when a copy failed.
func replicasError(id archive.ID, replicas []replica) error {
	var failed []string
	for _, r := range replicas {
		if r.Error != "" {
			failed = append(failed, fmt.Sprintf("%s (%s)", r.Target, r.Error))
		}
	}
	if len(failed) == 0 {
		return nil
	}
	return withCode(exitPartial, fmt.Errorf("snapshot %s saved in the primary, but copying it failed to: %s", id.Short(), strings.Join(failed, "; ")))
}
