package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"runtime/trace"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/mailvault/mailvault/archive"
	"github.com/mailvault/mailvault/snapshot"
)

func newBackupCmd(g *globals) *cobra.Command {
	var host string
	var tags []string
	var parent string
	var snap snapshotFlags
	var targetsFile string
	var timeFlag string
	var cpuProfile, memProfile, traceFile string
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
			moreProcs()
			if cpuProfile != "" {
				stop, err := startToFile(cpuProfile, pprof.StartCPUProfile, pprof.StopCPUProfile)
				if err != nil {
					return err
				}
				defer stop()
			}
			if memProfile != "" {
				stop, err := startPeakHeapProfile(memProfile)
				if err != nil {
					return err
				}
				defer stop()
			}
			if traceFile != "" {
				stop, err := startToFile(traceFile, trace.Start, trace.Stop)
				if err != nil {
					return err
				}
				defer stop()
			}
			recorded, err := parseSnapshotTime(timeFlag)
			if err != nil {
				return err
			}
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
			opt := archive.BackupOptions{Paths: paths, Host: host, Tags: tags, Logger: warnOnce(g.logger()), ReadFrom: view.Paths,
				// A hardlink view's copied files and recreated directories
				// get new inodes and ctimes on every run.
				IgnoreInode: view.Mode == snapshot.ModeHardlink, Time: recorded}
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
				out := map[string]any{"snapshot": s.ID, "parent": s.Parent, "summary": s.Summary, "warnings": res.Warnings,
					"snapshot_mode": view.Mode}
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
	cmd.Flags().StringVar(&timeFlag, "time", "", `time the snapshot records instead of now (imports, tests): RFC 3339, or "2006-01-02 15:04:05" in local time as restic's --time`)
	cmd.Flags().StringVar(&parent, "parent", "", "snapshot to compare against (default: newest of this host and paths)")
	cmd.Flags().StringVar(&targetsFile, "targets", os.Getenv("MAILVAULT_TARGETS"), "targets file: back up to its primary, then copy to the other repositories (env MAILVAULT_TARGETS)")
	// Hidden: for measuring the data path (docs/PERFORMANCE.md, issue 11),
	// not for operators.
	cmd.Flags().StringVar(&cpuProfile, "cpuprofile", os.Getenv("MAILVAULT_CPUPROFILE"), "write a CPU profile of the backup to this file (env MAILVAULT_CPUPROFILE)")
	_ = cmd.Flags().MarkHidden("cpuprofile")
	cmd.Flags().StringVar(&memProfile, "memprofile", os.Getenv("MAILVAULT_MEMPROFILE"), "write a heap profile taken at the backup's peak live heap to this file (env MAILVAULT_MEMPROFILE)")
	_ = cmd.Flags().MarkHidden("memprofile")
	cmd.Flags().StringVar(&traceFile, "trace", os.Getenv("MAILVAULT_TRACE"), "write an execution trace of the backup to this file, for go tool trace (env MAILVAULT_TRACE)")
	_ = cmd.Flags().MarkHidden("trace")
	snap.register(cmd)
	return cmd
}

// parseSnapshotTime reads backup's --time: RFC 3339 (with its offset),
// or restic's "2006-01-02 15:04:05" on the local clock; "" is the zero
// time (now).
func parseSnapshotTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	t, err := time.ParseInLocation(time.DateTime, s, time.Local)
	if err != nil {
		return time.Time{}, fmt.Errorf(`%w: --time %q: want RFC 3339 (2006-01-02T15:04:05+01:00) or "2006-01-02 15:04:05" (local time)`, errUsage, s)
	}
	return t, nil
}

// startToFile creates path and starts writing to it (a CPU profile:
// pprof.StartCPUProfile; an execution trace: trace.Start) until the
// returned stop is called. The trace says, where the CPU profile says what
// the cores did, when one of them had nothing to do, and which goroutine
// was waiting for what.
func startToFile(path string, start func(io.Writer) error, end func()) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := start(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		end()
		f.Close()
	}, nil
}

// startPeakHeapProfile writes to path, when stop is called, the heap
// profile taken when the live heap was largest: peak RSS follows the peak
// live heap, and a profile at the end would show only what survives the
// backup. It polls runtime/metrics, and profiles again after each garbage
// collection that found the live heap a sixteenth above the last peak.
func startPeakHeapProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	quit, finished := make(chan struct{}), make(chan struct{})
	var best bytes.Buffer
	go func() {
		defer close(finished)
		sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
		var peak uint64
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-quit:
				return
			case <-tick.C:
			}
			metrics.Read(sample)
			if live := sample[0].Value.Uint64(); live > peak+peak/16 {
				peak = live
				best.Reset()
				_ = pprof.Lookup("heap").WriteTo(&best, 0)
			}
		}
	}()
	return func() {
		close(quit)
		<-finished
		f.Write(best.Bytes())
		f.Close()
	}, nil
}

// unreadableMsg is the message archive.Backup logs for an entry it could
// not read (archive/backup.go, backup.warn).
const unreadableMsg = "skipped unreadable entry"

// warnOnce returns log with the archive's "skipped unreadable entry"
// warnings lowered to debug level: the archive also returns each one in
// BackupResult.Warnings, which backup prints ("warning: PATH: ERR") or puts
// in its --json output, so at warning level every unreadable entry was
// reported twice. --verbose still shows them as they happen.
func warnOnce(log *slog.Logger) *slog.Logger {
	return slog.New(demoteHandler{log.Handler()})
}

type demoteHandler struct{ slog.Handler }

func (h demoteHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == unreadableMsg && r.Level == slog.LevelWarn {
		r.Level = slog.LevelDebug
		if !h.Handler.Enabled(ctx, r.Level) {
			return nil
		}
	}
	return h.Handler.Handle(ctx, r)
}

func (h demoteHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return demoteHandler{h.Handler.WithAttrs(as)}
}

func (h demoteHandler) WithGroup(name string) slog.Handler {
	return demoteHandler{h.Handler.WithGroup(name)}
}

// moreProcs lets a backup run Go code on twice as many threads as it has
// CPUs (unless GOMAXPROCS is set): its reads — a goroutine's O_DIRECT
// pread of each large file, a worker's read of each small one, the
// packs' fsync — block in the kernel for milliseconds, and a goroutine
// blocked there keeps its P until the scheduler's monitor takes it back.
// A trace of a cold full backup of the large-mail corpus on 2 CPUs showed
// both Ps busy throughout while goroutines ran on 1.3–1.5 of them, the
// rest in system calls, and 8–12 goroutines waiting for a P; CPU use
// stayed near 1.5 cores while the disk was not the bound either
// (docs/PERFORMANCE.md, "overlap"). The kernel shares the CPUs among the
// threads; the CPU-bound work is no more than before.
// Once a process: the tests run many backups in one.
var moreProcs = sync.OnceFunc(func() {
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(2 * runtime.GOMAXPROCS(0))
	}
})
