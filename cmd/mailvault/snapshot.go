package main

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/mailvault/mailvault/mailserver/control"
	"github.com/mailvault/mailvault/snapshot"
)

// Exit codes of "snapshot status"; documented in docs/SNAPSHOTS.md.
const (
	exitSnapshotStale = 20 // the newest snapshot is older than --max-age
	exitPoolFull      = 21 // the pool is fuller than --max-capacity
	exitStaleAndFull  = 22 // both
)

// snapshotFlags are the backup command's options for taking a view.
type snapshotFlags struct {
	mode     string
	pre      []string
	post     []string
	keep     bool
	linksDir string
	data     string
}

func (f *snapshotFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.mode, "snapshot", "none", "read the paths through a point-in-time view: auto, zfs, hardlink or none (see docs/SNAPSHOTS.md)")
	fl.StringArrayVar(&f.pre, "snapshot-pre", nil, "shell command run just before the view is taken (pause an external mail server); repeatable")
	fl.StringArrayVar(&f.post, "snapshot-post", nil, "shell command run just after the view is taken (always, once --snapshot-pre ran); repeatable")
	fl.BoolVar(&f.keep, "snapshot-keep", false, "zfs: keep the snapshot after the backup, for 'mailvault snapshot prune'")
	fl.StringVar(&f.linksDir, "snapshot-dir", "", "hardlink: directory for the link tree, on the same file system as the paths (default: beside each path)")
	fl.StringVar(&f.data, "data", "", "data directory of a running `mailvault serve` to pause for the instant of the view (default: the one whose control.sock is in or above the paths)")
}

// take returns a view of paths as the flags ask; its Paths are the
// ReadFrom of archive.BackupOptions.
func (f *snapshotFlags) take(ctx context.Context, g *globals, paths []string) (*snapshot.View, error) {
	c := snapshot.Consistency{Hooks: snapshot.Hooks{Pre: f.pre, Post: f.post}, Logger: g.logger()}
	var servers control.Group
	if snapshot.Mode(f.mode) != snapshot.ModeNone {
		var err error
		if servers, err = runningServers(ctx, g, f.data, paths); err != nil {
			return nil, err
		}
		defer servers.Close()
		c = consistencyWith(c, servers)
	}
	src, err := snapshot.New(ctx, snapshot.Mode(f.mode), paths, c)
	if err != nil {
		if strings.Contains(err.Error(), "unknown mode") {
			return nil, fmt.Errorf("%w: %v", errUsage, err)
		}
		return nil, err
	}
	switch s := src.(type) {
	case *snapshot.ZFS:
		s.Keep = f.keep
	case *snapshot.Hardlink:
		s.Dir = f.linksDir
	}
	v, err := src.Take(ctx)
	if err != nil {
		return nil, err
	}
	if err := servers.Err(); err != nil {
		v.Release(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("the mail server's writers did not stay paused while the view was taken: %w", err)
	}
	if v.Mode != snapshot.ModeNone {
		g.logger().Info("backing up a point-in-time view", "mode", v.Mode, "time", v.Time, "names", v.Names, "pause", v.Pause, "servers_paused", pausedDirs(servers))
	}
	if snapshot.Mode(f.mode) == snapshot.ModeAuto && !g.quiet {
		// The choice decides what the backup shows (one instant of a
		// dataset, or a link tree) and what it leaves behind if killed:
		// say it (--json: "snapshot_mode").
		fmt.Fprintf(g.stderr, "snapshot: --snapshot auto chose %s%s\n", v.Mode, autoReason(v))
	}
	return v, nil
}

// autoReason says why --snapshot auto chose v's mode.
func autoReason(v *snapshot.View) string {
	switch v.Mode {
	case snapshot.ModeZFS:
		return " (every path is on a mounted ZFS dataset): " + strings.Join(v.Names, ", ")
	case snapshot.ModeHardlink:
		if _, err := exec.LookPath("zfs"); err != nil {
			return " (no zfs command found)"
		}
		return " (not every path is on a mounted ZFS dataset)"
	}
	return ""
}

func newSnapshotCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "snapshot",
		Short: "Manage mailvault's local ZFS snapshots of the mail data",
		Long: `Take, list, hold and prune the ZFS snapshots mailvault makes of the
dataset holding the mail data (named ` + snapshot.Prefix + `<UTC time>), and check their
age and the pool's fill level. Snapshots without that prefix are listed but
never pruned. See docs/SNAPSHOTS.md.`,
	}
	cmd.AddCommand(newSnapshotListCmd(g), newSnapshotTakeCmd(g), newSnapshotPruneCmd(g),
		newSnapshotStatusCmd(g), newSnapshotHoldCmd(g, true), newSnapshotHoldCmd(g, false), newSnapshotSendCmd(g))
	return cmd
}

func zfsDataset(ctx context.Context, path string) (*snapshot.ZFSTool, *snapshot.Location, error) {
	tool, err := snapshot.NewZFSTool(ctx)
	if err != nil {
		return nil, nil, err
	}
	loc, err := tool.Locate(ctx, path)
	if err != nil {
		return nil, nil, err
	}
	return tool, loc, nil
}

type snapRow struct {
	Name    string    `json:"name"`
	Dataset string    `json:"dataset"`
	Time    time.Time `json:"time"`
	Ours    bool      `json:"mailvault"`
	Holds   int       `json:"holds"`
	Tags    []string  `json:"hold_tags,omitempty"`
	Clones  []string  `json:"clones,omitempty"`
	Members []string  `json:"members"`
}

func rowOf(s snapshot.Snap) snapRow {
	return snapRow{s.Name, s.Dataset, s.Time, s.Ours, s.Holds, s.HoldTags, s.Clones, s.Members}
}

func newSnapshotListCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "list PATH",
		Short: "List the snapshots of the dataset holding PATH (newest first)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			tool, loc, err := zfsDataset(ctx, args[0])
			if err != nil {
				return err
			}
			snaps, err := tool.Snapshots(ctx, loc.Dataset.Name)
			if err != nil {
				return err
			}
			if g.json {
				rows := []snapRow{}
				for _, s := range snaps {
					rows = append(rows, rowOf(s))
				}
				return g.printJSON(rows)
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "Snapshot\tTime (UTC)\tOurs\tHolds\tDatasets")
			for _, s := range snaps {
				holds := fmt.Sprint(s.Holds)
				if len(s.HoldTags) > 0 {
					holds += " (" + strings.Join(s.HoldTags, ",") + ")"
				}
				fmt.Fprintf(tw, "%s\t%s\t%v\t%s\t%d\n", s.FullName(), s.Time.Format("2006-01-02 15:04:05"), s.Ours, holds, len(s.Members))
			}
			return tw.Flush()
		},
	}
}

func newSnapshotTakeCmd(g *globals) *cobra.Command {
	var pre, post []string
	var recursive bool
	var dataDir, linksDir string
	cmd := &cobra.Command{
		Use:   "take PATH",
		Short: "Take a snapshot of the dataset holding PATH (recursive when datasets are mounted below PATH)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			tool, loc, err := zfsDataset(ctx, args[0])
			if err != nil {
				return err
			}
			left := cleanLeftovers(ctx, g, tool, loc, args[0], linksDir)
			servers, err := runningServers(ctx, g, dataDir, args)
			if err != nil {
				return err
			}
			defer servers.Close()
			c := consistencyWith(snapshot.Consistency{Hooks: snapshot.Hooks{Pre: pre, Post: post}, Logger: g.logger()}, servers)
			var name string
			at := time.Now()
			err = runFrozen(ctx, c, func(ctx context.Context) error {
				var err error
				name, err = tool.Take(ctx, loc.Dataset.Name, recursive || len(loc.Below) > 0, at)
				return err
			})
			if err != nil {
				return err
			}
			full := loc.Dataset.Name + "@" + name
			if err := servers.Err(); err != nil {
				// The snapshot stays: it is still crash-consistent.
				return fmt.Errorf("snapshot %s taken, but the mail server's writers did not stay paused while it was: %w", full, err)
			}
			if g.json {
				return g.printJSON(map[string]any{"snapshot": full, "time": at.UTC(), "leftovers_cleaned": left})
			}
			g.printf("snapshot %s taken\n", full)
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&pre, "pre", nil, "shell command run just before the snapshot; repeatable")
	cmd.Flags().StringArrayVar(&post, "post", nil, "shell command run just after the snapshot (always, once --pre ran); repeatable")
	cmd.Flags().BoolVar(&recursive, "recursive", false, "snapshot the datasets below the dataset too, even if not mounted below PATH")
	cmd.Flags().StringVar(&dataDir, "data", "", "data directory of a running `mailvault serve` to pause for the instant of the snapshot (default: the one whose control.sock is in or above PATH)")
	linksDirFlag(cmd, &linksDir)
	return cmd
}

// linksDirFlag registers --snapshot-dir on take and prune: where killed
// backups' link trees may be, beside PATH and its parent.
func linksDirFlag(cmd *cobra.Command, dir *string) {
	cmd.Flags().StringVar(dir, "snapshot-dir", "", "also remove killed backups' hardlink trees from this directory (the --snapshot-dir of backup); PATH and its parent are always searched")
}

// cleanLeftovers removes what views and sends of killed processes left in
// the pool of loc (see snapshot.ZFSTool.CleanLeftovers); held snapshots
// among them would otherwise stay unprunable. It also removes the
// hardlink trees of killed backups (snapshot.CleanLinkTreesIn) beside
// path (a backup of path puts its tree in path's parent, one of a
// directory in path puts it in path) and in linksDir: they hold links to
// messages deleted since, whose space they keep in the snapshots taken
// and on the file system. A failure is only logged: it stands in the way
// of nothing the command does.
func cleanLeftovers(ctx context.Context, g *globals, tool *snapshot.ZFSTool, loc *snapshot.Location, path, linksDir string) []snapshot.Leftover {
	left, err := tool.CleanLeftovers(ctx, loc.Dataset.Pool(), "")
	if abs, aerr := filepath.Abs(path); aerr == nil {
		dirs := []string{filepath.Dir(abs), abs}
		if linksDir != "" {
			dirs = append(dirs, linksDir)
		}
		left = append(left, snapshot.CleanLinkTreesIn(dirs...)...)
	}
	if left == nil {
		left = []snapshot.Leftover{} // [] in --json output, not null
	}
	for _, lo := range left {
		g.logger().Info("cleaned up after a killed backup or send", "kind", lo.Kind, "name", lo.Name, "action", lo.Action, "reason", lo.Reason, "err", lo.Err)
	}
	if err != nil {
		g.logger().Warn("cleaning up after a killed backup or send", "err", err)
	}
	return left
}

// runFrozen runs fn between the hooks of c.
func runFrozen(ctx context.Context, c snapshot.Consistency, fn func(context.Context) error) error {
	_, err := c.Freeze(ctx, fn)
	return err
}

func newSnapshotPruneCmd(g *globals) *cobra.Command {
	var r snapshot.Retention
	var dryRun bool
	var linksDir string
	cmd := &cobra.Command{
		Use:   "prune PATH",
		Short: "Destroy mailvault's snapshots of PATH's dataset that the retention counts do not keep",
		Long: `Keep, for each period with a count n, the newest snapshot of each of the
n most recent periods (UTC) that have one — sanoid's frequent/hourly/daily/
weekly/monthly/yearly counts — and destroy mailvault's other snapshots. The
newest snapshot, held snapshots (zfs hold; e.g. a legal hold) and snapshots
with clones are always kept, and snapshots not named ` + snapshot.Prefix + `* are
never touched. --dry-run prints the plan with the reasons.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			tool, loc, err := zfsDataset(ctx, args[0])
			if err != nil {
				return err
			}
			left := []snapshot.Leftover{}
			if !dryRun {
				left = cleanLeftovers(ctx, g, tool, loc, args[0], linksDir)
			}
			plan, perr := tool.Prune(ctx, loc.Dataset.Name, r, dryRun)
			if g.json {
				type row struct {
					snapRow
					Keep    bool     `json:"keep"`
					Reasons []string `json:"reasons"`
					Error   string   `json:"error,omitempty"`
				}
				rows := []row{}
				for _, d := range plan {
					e := ""
					if d.Err != nil {
						e = d.Err.Error()
					}
					rows = append(rows, row{rowOf(d.Snap), d.Keep, d.Reasons, e})
				}
				if err := g.printJSON(map[string]any{"dry_run": dryRun, "plan": rows, "leftovers_cleaned": left}); err != nil {
					return err
				}
				return perr
			}
			verb := "destroyed"
			if dryRun {
				verb = "would destroy"
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', 0)
			for _, d := range plan {
				action := "keep"
				if !d.Keep {
					action = verb
				}
				if d.Err != nil {
					action = "FAILED"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\n", d.Snap.FullName(), action, strings.Join(d.Reasons, "; "))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			return perr
		},
	}
	f := cmd.Flags()
	f.IntVar(&r.Frequent, "frequent", 0, "keep the newest snapshot of this many 15-minute periods")
	f.IntVar(&r.Hourly, "hourly", 36, "keep the newest snapshot of this many hours")
	f.IntVar(&r.Daily, "daily", 30, "keep the newest snapshot of this many days")
	f.IntVar(&r.Weekly, "weekly", 0, "keep the newest snapshot of this many ISO weeks")
	f.IntVar(&r.Monthly, "monthly", 3, "keep the newest snapshot of this many months")
	f.IntVar(&r.Yearly, "yearly", 0, "keep the newest snapshot of this many years")
	f.BoolVar(&dryRun, "dry-run", false, "print the plan; destroy nothing")
	linksDirFlag(cmd, &linksDir)
	return cmd
}

func newSnapshotStatusCmd(g *globals) *cobra.Command {
	var maxAge time.Duration
	var maxCap int
	cmd := &cobra.Command{
		Use:   "status PATH",
		Short: "Check the age of the newest snapshot (RPO) and how full the pool is",
		Long: fmt.Sprintf(`Report the newest mailvault snapshot of PATH's dataset and the pool's fill
level. Exit code %d: the newest snapshot is older than --max-age (or there is
none); %d: the pool is at least --max-capacity percent full; %d: both.`, exitSnapshotStale, exitPoolFull, exitStaleAndFull),
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			tool, loc, err := zfsDataset(ctx, args[0])
			if err != nil {
				return err
			}
			snaps, err := tool.Snapshots(ctx, loc.Dataset.Name)
			if err != nil {
				return err
			}
			u, err := tool.Usage(ctx, loc.Dataset.Pool())
			if err != nil {
				return err
			}
			var newest *snapshot.Snap
			for i := range snaps {
				if snaps[i].Ours {
					newest = &snaps[i]
					break
				}
			}
			var problems []string
			stale, full := newest == nil, u.Capacity >= maxCap
			var age time.Duration
			if newest != nil {
				age = time.Since(newest.Time)
				stale = age > maxAge
				age = age.Round(time.Second)
			}
			if stale {
				if newest == nil {
					problems = append(problems, "no mailvault snapshot")
				} else {
					problems = append(problems, fmt.Sprintf("newest snapshot is %s old (more than %s)", age, maxAge))
				}
			}
			if full {
				problems = append(problems, fmt.Sprintf("pool %s is %d%% full (at least %d%%)", u.Pool, u.Capacity, maxCap))
			}
			if g.json {
				out := map[string]any{"dataset": loc.Dataset.Name, "pool": u, "snapshots": len(snaps), "stale": stale, "pool_full": full, "problems": problems}
				if newest != nil {
					out["newest"] = rowOf(*newest)
					out["age_seconds"] = age.Seconds()
				}
				if err := g.printJSON(out); err != nil {
					return err
				}
			} else {
				if newest != nil {
					g.printf("newest:   %s (%s old)\n", newest.FullName(), age)
				}
				g.printf("pool:     %s %s, %d%% full, %s used, %s available\n", u.Pool, u.Health, u.Capacity, humanBytes(int64(u.Used)), humanBytes(int64(u.Available)))
				for _, p := range problems {
					fmt.Fprintln(g.stderr, "warning:", p)
				}
			}
			switch {
			case stale && full:
				return withCode(exitStaleAndFull, errors.New(strings.Join(problems, "; ")))
			case stale:
				return withCode(exitSnapshotStale, errors.New(strings.Join(problems, "; ")))
			case full:
				return withCode(exitPoolFull, errors.New(strings.Join(problems, "; ")))
			}
			return nil
		},
	}
	cmd.Flags().DurationVar(&maxAge, "max-age", 25*time.Hour, "warn when the newest snapshot is older (the snapshot-level RPO)")
	cmd.Flags().IntVar(&maxCap, "max-capacity", 80, "warn when the pool is at least this many percent full")
	return cmd
}

// newSnapshotHoldCmd makes "hold" (hold true) or "release".
func newSnapshotHoldCmd(g *globals, hold bool) *cobra.Command {
	use, short := "hold", "Place a hold (e.g. a legal hold) on a snapshot set; prune keeps it until released"
	if !hold {
		use, short = "release", "Remove a hold from a snapshot set"
	}
	var tag string
	cmd := &cobra.Command{
		Use:   use + " DATASET@SNAPSHOT",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			ds, name, ok := strings.Cut(args[0], "@")
			if !ok {
				return fmt.Errorf("%w: want DATASET@SNAPSHOT, got %q", errUsage, args[0])
			}
			tool, err := snapshot.NewZFSTool(ctx)
			if err != nil {
				return err
			}
			snaps, err := tool.Snapshots(ctx, ds)
			if err != nil {
				return err
			}
			for _, s := range snaps {
				if s.Name != name {
					continue
				}
				if hold {
					err = tool.Hold(ctx, s, tag)
				} else {
					err = tool.Release(ctx, s, tag)
				}
				if err != nil {
					return err
				}
				g.printf("%s %s (%s) on %d datasets\n", use, args[0], tag, len(s.Members))
				return nil
			}
			return fmt.Errorf("no snapshot %s", args[0])
		},
	}
	cmd.Flags().StringVar(&tag, "tag", "mailvault-legal", "the hold's tag")
	return cmd
}
