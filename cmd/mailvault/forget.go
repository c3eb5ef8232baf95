package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/mailvault/mailvault/archive"
	"github.com/mailvault/mailvault/mailserver"
	"github.com/mailvault/mailvault/retention"
	"github.com/mailvault/mailvault/targets"
)

const forgetLong = `Remove snapshots: the ones named (IDs, unique ID prefixes, or "latest"),
or those a keep-* policy does not keep. This frees no space by itself:
prune deletes the data no remaining snapshot uses; --prune runs it right
after. In an Object Lock repository a snapshot whose retention has not run
out stays (it is listed as waiting, with its date), is still restorable,
and prune keeps all it uses; forget it again after that date. Takes an
exclusive lock (--wait-lock waits for a backup's to go); needs a full key.
--dry-run only says what would be removed (and, with --prune, what prune
would do without those snapshots).

Legal holds (mailvault hold) come first: a snapshot that holds a message
an active hold selects is kept whatever the policy says, with the reason
"held by case NAME", and naming it by ID is refused (exit 16) with the
case named.

Policies are restic's forget (0.14.0, the version Debian ships): the
snapshots are divided into groups (--group-by, default host,paths) and in
each group, newest first, a snapshot is kept when any rule keeps it:
  --keep-last N          the N newest snapshots
  --keep-hourly/-daily/-weekly/-monthly/-yearly N
                         the newest snapshot of each of the N most recent
                         hours/days/ISO weeks/months/years that have one,
                         on this machine's local calendar (TZ)
  --keep-within D        every snapshot newer than D before the group's
                         newest (D in restic's form 1y2m3d4h: calendar
                         years, months and days, then hours)
  --keep-within-hourly/-daily/-weekly/-monthly/-yearly D
                         the newest of each period, of the snapshots newer
                         than D before the group's newest
  --keep-tag a,b         every snapshot with all of the tags (repeatable:
                         any of the lists); an empty tag is "no tags"
"The group's newest" is its newest snapshot that is not in the future.
--host and --tag pick the snapshots the policy looks at; the others stay.
Every kept snapshot is listed with the rules that keep it ("daily
snapshot", "within 1y", ...); --dry-run --json lists keep or remove and
the reasons per snapshot, per group.

A policy that would remove every snapshot of a group is refused (exit 2)
unless --force. Which policy applies, first match:
  1. keep-* flags, when any is given: that policy, to --repo, or with
     --targets to every repository target;
  2. else with --targets (env MAILVAULT_TARGETS): each target's own
     "keep:" block to its own repository (targets without one are left
     alone), e.g.  keep: {daily: 14, weekly: 8, monthly: 24, yearly: 7}
  3. else the "keep:" block of the server's configuration (--config, env
     MAILVAULT_CONFIG), to --repo;
  4. else nothing is removed, and forget says so (restic too removes
     nothing for an empty policy).
--group-by on the command line overrides a configured group_by.
A "keep:" block takes last, hourly, daily, weekly, monthly, yearly (counts),
within, within_hourly, ... within_yearly (durations), tags (a list of
"a,b" lists) and group_by ("host,paths").

Where mailvault differs from restic 0.14.0:
  - -1 (or "unlimited") keeps every period's newest snapshot, as restic
    documents and later versions do; restic 0.14.0 removes them instead;
    counts below -1 are errors.
  - Durations are strict: "-1d", "1d2d" and units other than y, m, d, h
    are errors (restic 0.14.0 accepts the first two).
  - Periods are taken on the local calendar of the machine running forget
    (snapshots record UTC); restic uses the zone each snapshot recorded,
    which is the same unless backups ran in other zones.
  - Like 0.14.0 and unlike restic 0.17 and later, the oldest snapshot is
    not kept merely because a count was not used up.
  - A policy that removes a whole group needs --force; restic does it.
  - --path is not offered: mailvault backs up one set of Maildir trees.`

func newForgetCmd(g *globals) *cobra.Command {
	var pf pruneFlags
	var kf keepFlags
	var prune, force bool
	var targetsFile, configFile string
	cmd := &cobra.Command{
		Use:   "forget [SNAPSHOT...]",
		Short: "Remove snapshots, named or by a keep-* policy (and with --prune, the data only they used)",
		Long:  forgetLong,
		RunE: func(cmd *cobra.Command, refs []string) error {
			ctx := cmd.Context()
			popt, err := pf.options()
			if err != nil {
				return err
			}
			p, err := kf.policy(cmd)
			if err != nil {
				return err
			}
			policyFlags := kf.given(cmd) || cmd.Flags().Changed("group-by") ||
				cmd.Flags().Changed("host") || cmd.Flags().Changed("tag")
			if len(refs) > 0 {
				if policyFlags || cmd.Flags().Changed("targets") || force {
					return fmt.Errorf("%w: give snapshot IDs or a policy (--keep-*, --group-by, --host, --tag, --targets, --force), not both", errUsage)
				}
				return g.forgetIDs(ctx, refs, pf.dryRun, prune, popt)
			}
			fr := forgetRun{g: g, filter: kf.selection(), force: force, dryRun: pf.dryRun, prune: prune, popt: popt}
			if cmd.Flags().Changed("group-by") {
				fr.groupBy = p.GroupBy
			}
			if targetsFile != "" {
				if cmd.Flags().Changed("repo") {
					return fmt.Errorf("%w: give --repo or --targets, not both (with --targets, forget works on every repository target)", errUsage)
				}
				tcfg, err := loadTargets(targetsFile)
				if err != nil {
					return err
				}
				var flags *retention.Policy
				if kf.given(cmd) {
					flags = &p
				}
				return fr.targets(ctx, tcfg, flags)
			}
			source := "keep-* flags"
			if !kf.given(cmd) {
				source = "no policy"
				p = retention.Policy{}
				if configFile != "" {
					cfg := mailserver.DefaultConfig()
					if err := cfg.LoadFile(configFile); err != nil {
						return fmt.Errorf("%w: %w", errUsage, err)
					}
					if cfg.Keep != nil {
						p, source = *cfg.Keep, "keep: in "+configFile
					}
				}
			}
			res, err := fr.repo(ctx, g.repo, nil, p, source)
			if g.json {
				if res == nil {
					return err
				}
				if jerr := g.printJSON(res); jerr != nil {
					return jerr
				}
			}
			return err
		},
	}
	cmd.Flags().BoolVar(&prune, "prune", false, "prune right after forgetting")
	cmd.Flags().BoolVarP(&pf.dryRun, "dry-run", "n", false, "change nothing; print what would be done")
	cmd.Flags().BoolVar(&force, "force", false, "apply a policy even where it removes every snapshot of a group")
	cmd.Flags().StringVar(&targetsFile, "targets", os.Getenv("MAILVAULT_TARGETS"), "targets file: apply each repository target's keep: policy (or the keep-* flags) to it (env MAILVAULT_TARGETS)")
	cmd.Flags().StringVarP(&configFile, "config", "c", os.Getenv("MAILVAULT_CONFIG"), "the server's YAML configuration, whose keep: policy applies when no keep-* flag is given (env MAILVAULT_CONFIG)")
	kf.add(cmd)
	pf.add(cmd)
	return cmd
}

// forgetIDs is forget SNAPSHOT...: those snapshots, no policy.
func (g *globals) forgetIDs(ctx context.Context, refs []string, dryRun, prune bool, popt archive.PruneOptions) error {
	repo, done, err := g.openExclusive(ctx)
	if err != nil {
		return err
	}
	defer done()
	var ids []archive.ID
	var snaps []*archive.Snapshot
	for _, ref := range refs {
		s, err := repo.FindSnapshot(ctx, ref)
		if err != nil {
			return err
		}
		if !slices.Contains(ids, s.ID) {
			ids = append(ids, s.ID)
			snaps = append(snaps, s)
		}
	}
	held, err := g.heldSnapshots(ctx, repo, snaps)
	if err != nil {
		return err
	}
	if len(held) > 0 {
		var what []string
		for _, s := range snaps {
			if cs := held[s.ID.String()]; len(cs) > 0 {
				what = append(what, fmt.Sprintf("snapshot %s holds messages under legal hold (case %s)", s.ID.Short(), strings.Join(cs, ", case ")))
			}
		}
		return withCode(exitHeld, fmt.Errorf("%s; nothing removed: a hold must be released first (mailvault hold release)", strings.Join(what, "; ")))
	}
	out := struct {
		DryRun bool                  `json:"dry_run,omitempty"`
		Forget *archive.ForgetResult `json:"forget"`
		Prune  *archive.PruneResult  `json:"prune,omitempty"`
	}{DryRun: dryRun}
	if out.Forget, out.Prune, err = g.forgetAndPrune(ctx, repo, ids, dryRun, prune, popt); err != nil {
		return err
	}
	if g.json {
		return g.printJSON(out)
	}
	return nil
}

// forgetAndPrune removes ids (or with dryRun says it would) and prunes
// when asked, printing unless --json.
func (g *globals) forgetAndPrune(ctx context.Context, repo *archive.Repository, ids []archive.ID, dryRun, prune bool, popt archive.PruneOptions) (*archive.ForgetResult, *archive.PruneResult, error) {
	var res *archive.ForgetResult
	if dryRun {
		res = &archive.ForgetResult{Removed: append([]archive.ID{}, ids...)}
	} else {
		var err error
		if res, err = repo.Forget(ctx, ids); err != nil {
			return nil, nil, err
		}
	}
	if !g.json {
		verb := "removed"
		if dryRun {
			verb = "would remove"
		}
		for _, id := range res.Removed {
			g.printf("%s snapshot %s\n", verb, id.Short())
		}
		for _, w := range res.Waiting {
			g.printf("snapshot %s; it stays, and so does its data\n", w.String())
		}
	}
	if !prune {
		return res, nil, nil
	}
	if dryRun {
		popt.Without = ids
	}
	pr, err := runPrune(ctx, g, repo, popt)
	return res, pr, err
}

// forgetRun is one forget by policy, over one repository or a targets
// file's.
type forgetRun struct {
	g       *globals
	filter  retention.Filter
	groupBy *retention.GroupBy // --group-by, overriding the policy's
	force   bool
	dryRun  bool
	prune   bool
	popt    archive.PruneOptions
}

// policyResult is forget's --json output for one repository.
type policyResult struct {
	Target  string                `json:"target,omitempty"`
	Repo    string                `json:"repo,omitempty"`
	DryRun  bool                  `json:"dry_run,omitempty"`
	Source  string                `json:"source"` // where the policy came from
	Policy  string                `json:"policy"` // in words; "" when there is none
	Message string                `json:"message,omitempty"`
	Groups  []policyGroup         `json:"groups"`
	Forget  *archive.ForgetResult `json:"forget,omitempty"`
	Prune   *archive.PruneResult  `json:"prune,omitempty"`
	Error   string                `json:"error,omitempty"` // with --targets, this target's failure
}

type policyGroup struct {
	Group     retention.GroupKey `json:"group"`
	Keep      int                `json:"keep"`
	Remove    int                `json:"remove"`
	Snapshots []policyRow        `json:"snapshots"` // newest first
}

type policyRow struct {
	ID       archive.ID         `json:"id"`
	ShortID  string             `json:"short_id"`
	Time     time.Time          `json:"time"`
	Host     string             `json:"host"`
	Paths    []string           `json:"paths"`
	Tags     []string           `json:"tags"`
	Action   string             `json:"action"`  // "keep" or "remove"
	Reasons  []string           `json:"reasons"` // the rules that keep it; [] when removed
	Counters retention.Counters `json:"counters"`
}

// errRemovesAll is the refusal of a policy that leaves a group empty.
var errRemovesAll = errors.New("the policy would remove every snapshot of a group")

// repo applies p (from source, for the messages) to the repository at
// loc, opened with creds (nil: the global ones, and loc is --repo). The
// result is returned even with an error, for --json.
func (fr *forgetRun) repo(ctx context.Context, loc string, creds *repoCreds, p retention.Policy, source string) (*policyResult, error) {
	g := fr.g
	res := &policyResult{DryRun: fr.dryRun, Source: source, Groups: []policyGroup{}}
	if fr.groupBy != nil {
		p.GroupBy = fr.groupBy
	}
	if p.Empty() {
		res.Message = "no keep-* policy (no keep-* flag, no keep: in the targets file or server configuration): nothing removed"
		if !g.json {
			g.printf("%s\n", res.Message)
		}
		return res, nil
	}
	res.Policy = p.String()
	var repo *archive.Repository
	var done func()
	var err error
	if creds == nil {
		repo, done, err = g.openExclusive(ctx)
	} else {
		repo, done, err = g.openExclusiveAt(ctx, loc, *creds)
	}
	if err != nil {
		return res, err
	}
	defer done()
	snaps, damaged, err := repo.Snapshots(ctx)
	if err != nil {
		return res, err
	}
	for _, err := range damaged {
		fmt.Fprintln(g.stderr, "warning: skipping damaged snapshot:", err)
	}
	byID := map[string]*archive.Snapshot{}
	var picked []retention.Snapshot
	for _, s := range snaps {
		rs := retention.Snapshot{ID: s.ID.String(), Time: s.Time, Host: s.Host, Paths: s.Paths, Tags: s.Tags}
		if fr.filter.Match(rs) {
			byID[rs.ID] = s
			picked = append(picked, rs)
		}
	}
	groups := retention.Plan(picked, p, retention.Options{})
	// Only the snapshots the policy would remove are searched for held
	// messages: a hold is a reason to keep, needed where no rule keeps.
	var candidates []*archive.Snapshot
	for _, gr := range groups {
		for _, d := range gr.Decisions {
			if !d.Keep {
				candidates = append(candidates, byID[d.Snapshot.ID])
			}
		}
	}
	held, err := g.heldSnapshots(ctx, repo, candidates)
	if err != nil {
		return res, err
	}
	if len(held) > 0 {
		groups = retention.Plan(picked, p, retention.Options{Held: held})
	}
	var remove []archive.ID
	var emptied []string
	for _, gr := range groups {
		pg := policyGroup{Group: gr.Key, Snapshots: []policyRow{}}
		for _, d := range gr.Decisions {
			s := byID[d.Snapshot.ID]
			row := policyRow{ID: s.ID, ShortID: s.ID.Short(), Time: s.Time, Host: s.Host, Paths: s.Paths, Tags: s.Tags,
				Action: "keep", Reasons: d.Reasons, Counters: d.Counters}
			if d.Keep {
				pg.Keep++
			} else {
				row.Action, row.Reasons = "remove", []string{}
				pg.Remove++
				remove = append(remove, s.ID)
			}
			pg.Snapshots = append(pg.Snapshots, row)
		}
		if gr.RemovesAll() {
			emptied = append(emptied, gr.Key.String())
		}
		res.Groups = append(res.Groups, pg)
	}
	if !g.json {
		printPolicy(g, res)
	}
	if len(emptied) > 0 && !fr.force {
		return res, fmt.Errorf("%w: %w (%s); nothing removed: check the policy, or give --force", errUsage, errRemovesAll, strings.Join(emptied, "; "))
	}
	if len(remove) == 0 {
		if !g.json {
			g.printf("nothing to remove\n")
		}
		if !fr.prune {
			return res, nil
		}
	}
	res.Forget, res.Prune, err = g.forgetAndPrune(ctx, repo, remove, fr.dryRun, fr.prune, fr.popt)
	return res, err
}

// printPolicy prints a policy's decisions, per group, restic-like.
func printPolicy(g *globals, res *policyResult) {
	g.printf("applying policy (%s): %s\n", res.Source, res.Policy)
	for _, pg := range res.Groups {
		g.printf("%s: keep %d, remove %d\n", pg.Group, pg.Keep, pg.Remove)
		for _, r := range pg.Snapshots {
			line := fmt.Sprintf("  %-6s %s  %s  %s", r.Action, r.ShortID, r.Time.Local().Format(time.DateTime), strings.Join(r.Reasons, ", "))
			g.printf("%s\n", strings.TrimRight(line, " "))
		}
	}
}

// targets applies the flags' policy (when given) or each target's own
// to every repository target, one after the other; a target that fails
// does not stop the others.
func (fr *forgetRun) targets(ctx context.Context, cfg *targets.Config, flags *retention.Policy) error {
	g := fr.g
	var out []*policyResult
	var errs []error
	for _, t := range cfg.Targets {
		if t.Repo == "" {
			continue // a zfs dataset: `snapshot prune` keeps its snapshots
		}
		var p retention.Policy
		source := "no keep: for this target"
		switch {
		case flags != nil:
			p, source = *flags, "keep-* flags"
		case t.Keep != nil:
			p, source = *t.Keep, "keep: of target "+t.Name
		}
		if !g.json {
			g.printf("target %s (%s):\n", t.Name, t.Repo)
		}
		creds := targetCreds(t)
		res, err := fr.repo(ctx, t.Repo, &creds, p, source)
		res.Target, res.Repo = t.Name, t.Repo
		if err != nil {
			res.Error = err.Error()
			errs = append(errs, fmt.Errorf("target %q: %w", t.Name, err))
			if !g.json {
				fmt.Fprintf(g.stderr, "target %s: %v\n", t.Name, err)
			}
		}
		out = append(out, res)
	}
	if g.json {
		if err := g.printJSON(out); err != nil {
			return err
		}
	}
	return errors.Join(errs...)
}

// openExclusiveAt opens the repository at loc with c and takes the
// exclusive lock; done unlocks and closes it.
func (g *globals) openExclusiveAt(ctx context.Context, loc string, c repoCreds) (*archive.Repository, func(), error) {
	repo, err := g.openAt(ctx, loc, c)
	return lockExclusive(ctx, repo, err)
}
