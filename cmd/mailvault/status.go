package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/mailvault/mailvault/archive"
	"github.com/mailvault/mailvault/snapshot"
	"github.com/mailvault/mailvault/targets"
)

// targetStatus is one row of `mailvault status`: the live mail or a target.
type targetStatus struct {
	Name          string           `json:"name"`
	Kind          string           `json:"kind"` // live, repository or zfs
	Repo          string           `json:"repo,omitempty"`
	Dataset       string           `json:"dataset,omitempty"`
	Paths         []string         `json:"paths,omitempty"`
	Medium        targets.Medium   `json:"medium"`
	Location      targets.Location `json:"location"`
	Primary       bool             `json:"primary,omitempty"`
	Reachable     bool             `json:"reachable"`
	Error         string           `json:"error,omitempty"`
	Snapshots     int              `json:"snapshots"`
	Newest        *time.Time       `json:"newest,omitempty"`
	AgeSeconds    *int64           `json:"age_seconds,omitempty"`
	MaxAgeSeconds int64            `json:"max_age_seconds,omitempty"`
	Bytes         int64            `json:"bytes"` // pack bytes stored (repositories), the dataset's used bytes (zfs)
	Counts        bool             `json:"counts"`
	WhyNot        string           `json:"why_not,omitempty"`
}

type statusReport struct {
	Time    time.Time       `json:"time"`
	Targets []targetStatus  `json:"targets"` // the live mail first
	Rule    targets.Verdict `json:"rule"`
}

// zfsLister lists a dataset's snapshots and tells its size
// (snapshot.ZFSTool).
type zfsLister interface {
	Snapshots(ctx context.Context, dataset string) ([]snapshot.Snap, error)
	Used(ctx context.Context, dataset string) (int64, error)
}

func newStatusCmd(g *globals) *cobra.Command {
	var targetsFile string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show every backup target's newest snapshot and whether the 3-2-1 rule holds",
		Long: `Look at every target of the targets file (--targets or MAILVAULT_TARGETS):
whether it can be reached, its snapshot count, its newest snapshot and that
snapshot's age, and the bytes it takes (a repository's packs, a ZFS
dataset's used bytes with its snapshots and descendants). A target counts as a copy when
it is reachable, holds a snapshot, and that snapshot is no older than its
max_age (when set). The live mail counts as one copy.

The 3-2-1 rule holds with at least 3 copies, on at least 2 media, at least 1
of them offsite. Exit code 0 means it holds; 30 means it does not, and the
last line says which part fails ("only 2 copies (need 3)", "no offsite copy").

A targets file (YAML; relative paths are relative to the file):

  live:                       # the live mail; default medium disk, onsite
    paths: [/var/mail]
  targets:
    - name: local
      repo: /srv/backup/mail
      medium: disk            # disk, nas, s3 or zfs
      location: onsite        # onsite or offsite
      primary: true           # the repository "backup --targets" writes
      max_age: 26h            # optional: older newest snapshot = no copy
      keep: {daily: 14, weekly: 8}   # optional: "forget --targets" policy
    - name: offsite
      repo: s3:https://s3.example.com/bucket/mail
      medium: s3
      location: offsite
      identity: /etc/mailvault/offsite.key   # or password_file, password_env
      keep: {daily: 14, weekly: 8, monthly: 24, yearly: 7}
    - name: pool2             # a ZFS dataset receiving mailvault- snapshots
      zfs: backup/mail
      location: onsite

A repository target without identity, password_file or password_env opens
with the global credentials. keep: is the snapshot retention "mailvault
forget --targets" applies to that repository (see "mailvault forget --help").`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if targetsFile == "" {
				return fmt.Errorf("%w: no targets file (use --targets or MAILVAULT_TARGETS)", errUsage)
			}
			cfg, err := loadTargets(targetsFile)
			if err != nil {
				return err
			}
			rep := g.status(cmd.Context(), cfg, timeout, lazyZFS{})
			if g.json {
				if err := g.printJSON(rep); err != nil {
					return err
				}
			} else {
				printStatus(g, rep)
			}
			if !rep.Rule.Holds {
				return withCode(exitRuleFails, fmt.Errorf("the 3-2-1 rule does not hold: %s", strings.Join(rep.Rule.Failures, "; ")))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&targetsFile, "targets", os.Getenv("MAILVAULT_TARGETS"), "targets file (env MAILVAULT_TARGETS)")
	cmd.Flags().DurationVar(&timeout, "timeout", time.Minute, "how long to try each target before calling it unreachable")
	return cmd
}

// lazyZFS finds the zfs command only when a zfs target is looked at, so
// that a machine without ZFS can watch repository targets.
type lazyZFS struct{}

func (lazyZFS) Snapshots(ctx context.Context, dataset string) ([]snapshot.Snap, error) {
	t, err := snapshot.NewZFSTool(ctx)
	if err != nil {
		return nil, err
	}
	return t.Snapshots(ctx, dataset)
}

func (lazyZFS) Used(ctx context.Context, dataset string) (int64, error) {
	t, err := snapshot.NewZFSTool(ctx)
	if err != nil {
		return 0, err
	}
	return t.Used(ctx, dataset)
}

// status looks at every target, concurrently (an unreachable S3 endpoint
// spends its retries without holding up the others), and applies the
// rule.
func (g *globals) status(ctx context.Context, cfg *targets.Config, timeout time.Duration, zfs zfsLister) statusReport {
	now := time.Now()
	rep := statusReport{Time: now.UTC(), Targets: make([]targetStatus, 1+len(cfg.Targets))}

	live := targetStatus{Name: "live", Kind: "live", Paths: cfg.Live.Paths, Medium: cfg.Live.Medium, Location: cfg.Live.Location, Reachable: true}
	for _, p := range cfg.Live.Paths {
		if _, err := os.Stat(p); err != nil {
			live.Reachable, live.Error = false, err.Error()
			break
		}
	}
	live.Counts = live.Reachable
	if !live.Counts {
		live.WhyNot = "unreachable: " + live.Error
	}
	rep.Targets[0] = live

	// The global credentials are read once, before the targets are
	// looked at side by side: a passphrase prompt cannot be shared.
	var global *archive.Credentials
	var globalErr error
	for _, t := range cfg.Targets {
		if t.Repo != "" && !t.HasCredentials() {
			c, err := g.credentials()
			global, globalErr = &c, err
			break
		}
	}

	var wg sync.WaitGroup
	for i, t := range cfg.Targets {
		wg.Go(func() {
			tctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			var obs targets.Observed
			st := targetStatus{Name: t.Name, Repo: t.Repo, Dataset: t.ZFS, Medium: t.Medium, Location: t.Location,
				Primary: t.Primary, MaxAgeSeconds: int64(t.MaxAge / time.Second)}
			if t.Repo != "" {
				st.Kind = "repository"
				obs = g.observeRepo(tctx, t, global, globalErr)
			} else {
				st.Kind = "zfs"
				obs = observeZFS(tctx, zfs, t.ZFS)
			}
			st.Reachable, st.Snapshots, st.Bytes = obs.Err == nil, obs.Snapshots, obs.Bytes
			if obs.Err != nil {
				st.Error = obs.Err.Error()
			}
			if obs.Snapshots > 0 {
				newest := obs.Newest.UTC()
				age := int64(now.Sub(newest) / time.Second)
				st.Newest, st.AgeSeconds = &newest, &age
			}
			st.Counts, st.WhyNot = t.Counts(obs, now)
			rep.Targets[1+i] = st
		})
	}
	wg.Wait()

	var copies []targets.Copy
	for _, st := range rep.Targets {
		if st.Counts {
			copies = append(copies, targets.Copy{Name: st.Name, Medium: st.Medium, Location: st.Location})
		}
	}
	rep.Rule = targets.Evaluate(copies)
	return rep
}

// observeRepo opens a repository target (with its own credentials, or
// the global ones read before) without locking it (status only
// reads, and must not wait for a running backup) and reads its snapshots
// and pack sizes.
func (g *globals) observeRepo(ctx context.Context, t targets.Target, global *archive.Credentials, globalErr error) targets.Observed {
	var obs targets.Observed
	var creds archive.Credentials
	var err error
	if t.HasCredentials() {
		creds, err = targetCreds(t).credentials(g)
	} else {
		creds, err = *global, globalErr
	}
	if err != nil {
		obs.Err = err
		return obs
	}
	repo, err := g.openWith(ctx, t.Repo, creds)
	if err != nil {
		obs.Err = err
		return obs
	}
	defer repo.Close()
	snaps, damaged, err := repo.Snapshots(ctx)
	if err != nil {
		obs.Err = err
		return obs
	}
	for _, err := range damaged {
		fmt.Fprintf(g.stderr, "warning: target %s: %v\n", t.Name, err)
	}
	obs.Snapshots = len(snaps)
	if len(snaps) > 0 {
		obs.Newest = snaps[len(snaps)-1].Time // oldest first
	}
	err = repo.Backend().List(ctx, archive.PackFile, func(_ string, size int64) error {
		obs.Bytes += size
		return nil
	})
	if err != nil {
		obs.Err = fmt.Errorf("listing packs: %w", err)
	}
	return obs
}

// observeZFS reads a dataset's mailvault- snapshots — others (made by
// hand or by other tools) are not mailvault's copies and are not counted
// — and its used bytes.
func observeZFS(ctx context.Context, zfs zfsLister, dataset string) targets.Observed {
	var obs targets.Observed
	snaps, err := zfs.Snapshots(ctx, dataset)
	if err != nil {
		obs.Err = err
		return obs
	}
	for _, s := range snaps {
		if !s.Ours {
			continue
		}
		obs.Snapshots++
		if s.Time.After(obs.Newest) {
			obs.Newest = s.Time
		}
	}
	if obs.Bytes, err = zfs.Used(ctx, dataset); err != nil {
		obs.Err = err
	}
	return obs
}

func printStatus(g *globals, rep statusReport) {
	if g.quiet {
		return
	}
	tw := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TARGET\tMEDIUM\tLOCATION\tSNAPSHOTS\tNEWEST\tAGE\tSIZE\tCOPY")
	for _, st := range rep.Targets {
		name := st.Name
		if st.Primary {
			name += " (primary)"
		}
		snaps, newest, age, size := "-", "-", "-", "-"
		if st.Kind != "live" && st.Reachable {
			snaps = fmt.Sprint(st.Snapshots)
		}
		if st.Newest != nil {
			newest = st.Newest.Local().Format("2006-01-02 15:04")
			age = targets.Age(time.Duration(*st.AgeSeconds) * time.Second)
		}
		if st.Kind != "live" && st.Reachable {
			size = humanBytes(st.Bytes)
		}
		counts := "yes"
		if !st.Counts {
			counts = "no: " + st.WhyNot
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", name, st.Medium, st.Location, snaps, newest, age, size, counts)
	}
	tw.Flush()
	v := rep.Rule
	media := make([]string, len(v.Media))
	for i, m := range v.Media {
		media[i] = string(m)
	}
	if v.Holds {
		fmt.Fprintf(g.stdout, "3-2-1 holds: %d copies, %d media (%s), %d offsite\n", v.Copies, len(v.Media), strings.Join(media, ", "), v.Offsite)
	} else {
		fmt.Fprintf(g.stdout, "3-2-1 DOES NOT HOLD: %s\n", strings.Join(v.Failures, "; "))
	}
}
