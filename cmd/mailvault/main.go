// Command mailvault is a mail server bundled with the backup, archival and
// disaster-recovery engine that protects it. This package only parses
// flags and calls the packages that do the work.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/mailvault/mailvault/archive"
)

// Exit codes; documented in README.md ("Exit codes").
const (
	exitOK          = 0
	exitError       = 1
	exitUsage       = 2
	exitPartial     = 3  // backup made, but some source entries were unreadable
	exitNoRepo      = 10 // the repository does not exist
	exitLocked      = 11 // the repository is locked by another process
	exitWrongKey    = 12 // no key file opens with the given password or identity
	exitCheckFailed = 13 // check found damaged or missing data
	exitIncomplete  = 14 // restore finished, but the messages and files it lists could not be restored (damaged or missing packs)
	exitNoHold      = 15 // hold show/release: no active hold of that case
	exitHeld        = 16 // forget: a named snapshot holds messages under legal hold; erase: a picked message is held
	exitRuleFails   = 30 // status: the 3-2-1 rule does not hold
)

// exitError carries an exit code through cobra's error return.
type exitCodeError struct {
	code int
	err  error
}

func (e *exitCodeError) Error() string { return e.err.Error() }
func (e *exitCodeError) Unwrap() error { return e.err }

func withCode(code int, err error) error { return &exitCodeError{code, err} }

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	asJSON := jsonRequested(args)
	out := &countingWriter{w: stdout}
	if asJSON {
		// Only then: progress bars must see a terminal without --json.
		stdout = out
	}
	root := newRootCmd(stdin, stdout, stderr)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	if strings.HasPrefix(err.Error(), "unknown command ") {
		// cobra finds no subcommand of the root before any validator
		// runs (argsAreUsage covers the rest).
		err = fmt.Errorf("%w: %v (see mailvault --help)", errUsage, err)
	}
	code := exitCodeOf(err)
	fmt.Fprintln(stderr, "mailvault:", err)
	if asJSON && out.n == 0 {
		// With --json, every failure is a JSON object on stdout too, so
		// that a script reads one document whatever happened. A command
		// that printed its result before failing (backup's partial
		// snapshot, check's damage, status's rule) has said it there:
		// one document, and the exit code.
		enc := json.NewEncoder(out.w)
		enc.SetIndent("", "  ")
		enc.Encode(jsonError{Error: err.Error(), ExitCode: code})
	}
	return code
}

// jsonError is what a command run with --json prints on stdout when it
// fails without having printed its result.
type jsonError struct {
	Error    string `json:"error"`
	ExitCode int    `json:"exit_code"`
}

// jsonRequested says whether args ask for --json. It looks at the
// arguments themselves rather than the parsed flag, because an error can
// come before or from flag parsing (an unknown flag, a bad value).
func jsonRequested(args []string) bool {
	on := false
	for _, a := range args {
		if a == "--" {
			break
		}
		if a == "--json" {
			on = true
		} else if v, ok := strings.CutPrefix(a, "--json="); ok {
			on, _ = strconv.ParseBool(v)
		}
	}
	return on
}

// countingWriter counts the bytes written through it.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func exitCodeOf(err error) int {
	var ec *exitCodeError
	switch {
	case errors.As(err, &ec):
		return ec.code
	case errors.Is(err, archive.ErrNoRepository):
		return exitNoRepo
	case errors.Is(err, archive.ErrLocked):
		return exitLocked
	case errors.Is(err, archive.ErrWrongKey):
		return exitWrongKey
	case errors.Is(err, errUsage):
		return exitUsage
	}
	return exitError
}

var errUsage = errors.New("usage")

// globals are the flags every command shares.
type globals struct {
	repo         string
	passwordFile string
	identities   []string
	json         bool
	quiet        bool
	verbose      bool
	compression  string
	noCache      bool
	cacheDir     string
	cleanupCache bool
	waitLock     time.Duration

	stdin          io.Reader
	stdout, stderr io.Writer
}

// setGCPercent picks the garbage collector's target for the command about
// to run, unless GOGC is set in the environment. Backups, restores, copies
// and checks hold a few large, pointer-free buffers (packs, chunks) and
// churn through many more; collecting at 25% growth keeps their peak memory
// near the live set at a small CPU cost (docs/PERFORMANCE.md). The
// long-running server is the opposite case: many small short-lived
// allocations per IMAP command and message, where GOGC=25 made the
// collector take a quarter of the CPU of an IMAP FETCH session for no
// lower peak (the peak is the argon2id check at LOGIN), so serve keeps
// Go's default of 100 (docs/PERFORMANCE.md, "Mail server").
//
// 25% of a small live heap is a few MiB, though: an incremental backup of
// 300,000 messages (~60 MB live) collected every ~15 MB allocated, and the
// collector was a sixth of its CPU. So backups let the heap grow by at
// least gcHeadroom between collections (gcTune), which costs at most that
// much more memory, and by 25% once the live heap is larger than four
// times that (docs/PERFORMANCE.md, "incr1pct"). So does check: since the
// index left the heap for the mapped table (docs/PERFORMANCE.md,
// "mem10m"), its live heap is a few MB and 25% of it had the collector
// run five times as often as before. The other batch commands keep 25%.
func setGCPercent(c *cobra.Command) {
	if os.Getenv("GOGC") != "" {
		return
	}
	for p := c; p != nil; p = p.Parent() {
		if p.Name() == "serve" && p.Parent() != nil && !p.Parent().HasParent() {
			gcTuned.Store(false)
			debug.SetGCPercent(100)
			return
		}
	}
	debug.SetGCPercent(gcFloor)
	gcTuned.Store(c.Name() == "backup" || c.Name() == "check")
	gcTuneOnce.Do(armGCTune)
}

const (
	// gcFloor is the batch commands' least GOGC.
	gcFloor = 25
	// gcHeadroom is the least the heap of a batch command grows by
	// between two collections.
	gcHeadroom = 64 << 20
)

var (
	gcTuned    atomic.Bool // gcTune sets GOGC (a backup runs)
	gcTuneOnce sync.Once
)

// gcSentinel is garbage whose finalizer runs once after each collection.
// Its pointer keeps it out of the tiny allocator, whose objects'
// finalizers may never run.
type gcSentinel struct{ _ *byte }

// armGCTune has gcTune run after the next collection, and so after every
// one.
func armGCTune() {
	runtime.SetFinalizer(&gcSentinel{}, func(*gcSentinel) {
		if gcTuned.Load() {
			gcTune()
		}
		armGCTune()
	})
}

// gcTune sets GOGC from the live heap the last collection left: the
// larger of gcFloor and gcHeadroom's share of it (capped at 1000%).
func gcTune() {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return
	}
	pct := gcFloor
	if live := s[0].Value.Uint64(); live > 0 {
		pct = int(max(uint64(gcFloor), min(gcHeadroom*100/live, 1000)))
	}
	debug.SetGCPercent(pct)
}

func newRootCmd(stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	g := &globals{stdin: stdin, stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:   "mailvault",
		Short: "Secure mail server with built-in backup, archival and disaster recovery",
		Long: `mailvault is a mail server (SMTP, IMAP, POP3 over Maildir++: "mailvault serve")
bundled with the engine that protects it: consistent snapshots of the live mail,
backups into a deduplicating, compressed, age-encrypted repository (local or S3,
with Object Lock and write-only keys), copies to other targets for the 3-2-1
rule, and restores of anything from one message to everything.

The repository and secrets can also come from the environment:
  MAILVAULT_REPO            repository location (same as --repo)
  MAILVAULT_PASSWORD        repository passphrase
  MAILVAULT_PASSWORD_FILE   file holding the passphrase
  MAILVAULT_IDENTITY        age identity file (same as --identity)
  MAILVAULT_CACHE_DIR       local caches: S3 metadata, write-only parents (same as --cache-dir)`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentPreRun = func(c *cobra.Command, _ []string) { setGCPercent(c) }
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return fmt.Errorf("%w: %v (see %s --help)", errUsage, err, c.CommandPath())
	})
	pf := root.PersistentFlags()
	pf.StringVarP(&g.repo, "repo", "r", os.Getenv("MAILVAULT_REPO"), "repository location (env MAILVAULT_REPO)")
	pf.StringVar(&g.passwordFile, "password-file", os.Getenv("MAILVAULT_PASSWORD_FILE"), "file holding the repository passphrase (env MAILVAULT_PASSWORD_FILE)")
	var idDefault []string
	if v := os.Getenv("MAILVAULT_IDENTITY"); v != "" {
		idDefault = []string{v}
	}
	pf.StringArrayVar(&g.identities, "identity", idDefault, "age identity file that opens the repository (env MAILVAULT_IDENTITY; repeatable)")
	pf.BoolVar(&g.json, "json", false, "print results as JSON (for scripts)")
	pf.BoolVarP(&g.quiet, "quiet", "q", false, "print only errors")
	pf.BoolVarP(&g.verbose, "verbose", "v", false, "log more detail to stderr")
	pf.StringVar(&g.compression, "compression", "auto", "zstd level for new data: off, auto (= fastest), default, better, max")
	pf.BoolVar(&g.noCache, "no-cache", false, "do not use the local cache of an S3 repository's key, index and snapshot files (a write-only key's parent cache stays in use)")
	pf.StringVar(&g.cacheDir, "cache-dir", os.Getenv("MAILVAULT_CACHE_DIR"), "directory of the local caches: metadata and write-only parents (env MAILVAULT_CACHE_DIR; default $XDG_CACHE_HOME/mailvault)")
	pf.BoolVar(&g.cleanupCache, "cleanup-cache", false, "remove the cache directories of repositories not used for 30 days")
	pf.DurationVar(&g.waitLock, "wait-lock", 0, "when another process holds a conflicting lock, keep trying this long (e.g. 10m; for scheduled runs) before exit code 11")

	root.AddCommand(
		newInitCmd(g), newBackupCmd(g), newSnapshotsCmd(g), newLsCmd(g), newRestoreCmd(g),
		newCheckCmd(g), newRepairCmd(g), newKeyCmd(g), newCatCmd(g), newDevCmd(),
		newServeCmd(), newUserCmd(), newDomainCmd(), newAuditCmd(),
		newSnapshotCmd(g), newCopyCmd(g), newStatusCmd(g), newMaintainCmd(g), newUndeleteCmd(g),
		newForgetCmd(g), newPruneCmd(g), newEraseCmd(g), newHoldCmd(g),
	)
	for _, c := range root.Commands() {
		if noRepository[c.Name()] {
			hideRepositoryFlags(c)
		}
	}
	argsAreUsage(root)
	return root
}

// argsAreUsage makes a wrong number of arguments, or an unknown
// subcommand, exit with exitUsage like a bad flag: cobra returns those
// errors from each command's Args validator as plain errors.
func argsAreUsage(c *cobra.Command) {
	if validate := c.Args; validate != nil {
		c.Args = func(cmd *cobra.Command, args []string) error {
			if err := validate(cmd, args); err != nil {
				return fmt.Errorf("%w: %v (see %s --help)", errUsage, err, cmd.CommandPath())
			}
			return nil
		}
	}
	for _, sub := range c.Commands() {
		argsAreUsage(sub)
	}
}

// noRepository names the commands (with their subcommands) that never
// open a repository: the mail server and its administration, the local
// ZFS snapshots, the developer tools.
var noRepository = map[string]bool{"serve": true, "user": true, "domain": true, "audit": true, "snapshot": true, "dev": true}

// generalFlags are the root's persistent flags that every command uses;
// the others (--repo, --password-file, --identity, --cache-dir, …, and any
// added later) are about a repository.
var generalFlags = map[string]bool{"json": true, "quiet": true, "verbose": true, "help": true}

// hideRepositoryFlags leaves the repository flags out of the help of cmd
// and its subcommands. They stay defined on the root, hence accepted
// anywhere on the command line (and their MAILVAULT_* defaults read), so
// that `mailvault --no-cache check` parses: cobra finds the subcommand
// before it knows its flags, and can only skip a flag it does not know by
// taking the next word as its value.
func hideRepositoryFlags(cmd *cobra.Command) {
	cmd.SetHelpFunc(func(c *cobra.Command, args []string) {
		var hidden []*pflag.Flag
		c.Root().PersistentFlags().VisitAll(func(f *pflag.Flag) {
			if !generalFlags[f.Name] && !f.Hidden {
				f.Hidden = true
				hidden = append(hidden, f)
			}
		})
		defer func() {
			for _, f := range hidden {
				f.Hidden = false
			}
		}()
		c.Root().HelpFunc()(c, args)
	})
}

func (g *globals) logger() *slog.Logger {
	level := slog.LevelWarn
	if g.verbose {
		level = slog.LevelDebug
	}
	if g.quiet {
		level = slog.LevelError
	}
	return slog.New(slog.NewTextHandler(g.stderr, &slog.HandlerOptions{Level: level}))
}
