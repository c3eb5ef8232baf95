// Package snapshot gives the backup a point-in-time view of live mail
// data, so that a backup is consistent: taken at one instant, with no
// half-delivered message and no message counted twice because it moved
// while the backup walked the tree.
//
// A Source takes a View. Three kinds exist:
//
//   - ZFS snapshots the dataset(s) holding the paths and reads them through
//     .zfs/snapshot or a read-only clone (crash-consistent at one instant;
//     application-consistent when quiesced).
//   - Hardlink builds a tree of hard links to the Maildir message files
//     (which Maildir never modifies in place) while writers are paused, so
//     it is consistent on any POSIX file system that has hard links.
//   - None reads the live tree (no guarantee beyond per-message atomicity).
//
// Writers are paused for the instant of the snapshot by a Quiescer (the
// bundled server's store implements it) and/or by Hooks, shell commands
// run before and after, for an external mail server.
package snapshot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Quiescer pauses writers: Quiesce returns once no write is in flight and
// new writes wait; resume lets them go on. mailserver/store.Store
// implements it.
type Quiescer interface {
	Quiesce(ctx context.Context) (resume func(), err error)
}

// Hooks are shell commands (run with /bin/sh -c) for a mail server that is
// not the bundled one: Pre runs before the snapshot (e.g. "doveadm
// mailbox cache purge" or stopping the MTA's delivery queue), Post after it.
// Post runs whenever Pre was started, even if Pre or the snapshot failed,
// so that a failure never leaves the server paused.
type Hooks struct {
	Pre  []string
	Post []string
}

// Consistency says how writers are paused while a view is taken. The zero
// value pauses nothing.
type Consistency struct {
	Quiescer Quiescer
	Hooks    Hooks
	Logger   *slog.Logger
}

// Mode names a kind of Source.
type Mode string

// The modes New accepts.
const (
	ModeAuto     Mode = "auto"
	ModeZFS      Mode = "zfs"
	ModeHardlink Mode = "hardlink"
	ModeNone     Mode = "none"
)

// Source takes point-in-time views of a fixed set of paths.
type Source interface {
	Take(ctx context.Context) (*View, error)
}

// View is a point-in-time image of some paths. It must be released.
type View struct {
	// Mode is the kind of source that made it.
	Mode Mode
	// Time is the instant the view shows.
	Time time.Time
	// Paths maps each original absolute path to the directory to read
	// its content from.
	Paths map[string]string
	// Pause is how long writers were held up (hooks included).
	Pause time.Duration
	// Names are what the view is made of: ZFS snapshot names, or the
	// hardlink directory.
	Names []string
	// Leftovers are what views of killed processes had left behind, as
	// found (and mostly removed) before this view was taken.
	Leftovers []Leftover

	release func(ctx context.Context) error
}

// Path returns the directory to read original from (original itself when
// the view does not cover it).
func (v *View) Path(original string) string {
	if p, ok := v.Paths[original]; ok {
		return p
	}
	return original
}

// Release frees what the view holds (clones, holds, temporary snapshots,
// link trees). It is safe to call more than once.
func (v *View) Release(ctx context.Context) error {
	if v == nil || v.release == nil {
		return nil
	}
	f := v.release
	v.release = nil
	return f(ctx)
}

// New returns the Source of a mode for paths. ModeAuto picks ZFS when
// every path lies on a mounted ZFS dataset and the zfs tool answers, and
// a hardlink tree otherwise.
func New(ctx context.Context, mode Mode, paths []string, c Consistency) (Source, error) {
	abs, err := absPaths(paths)
	if err != nil {
		return nil, err
	}
	switch mode {
	case ModeNone, "":
		return &None{Paths: abs, Consistency: c}, nil
	case ModeHardlink:
		return &Hardlink{Paths: abs, Consistency: c}, nil
	case ModeZFS:
		tool, err := NewZFSTool(ctx)
		if err != nil {
			return nil, err
		}
		return &ZFS{Tool: tool, Paths: abs, Consistency: c}, nil
	case ModeAuto:
		if onZFS(ctx, abs) {
			if tool, err := NewZFSTool(ctx); err == nil {
				return &ZFS{Tool: tool, Paths: abs, Consistency: c}, nil
			}
		}
		return &Hardlink{Paths: abs, Consistency: c}, nil
	}
	return nil, fmt.Errorf("snapshot: unknown mode %q (want auto, zfs, hardlink or none)", mode)
}

func absPaths(paths []string) ([]string, error) {
	if len(paths) == 0 {
		return nil, errors.New("snapshot: no paths")
	}
	abs := make([]string, len(paths))
	for i, p := range paths {
		a, err := filepath.Abs(p)
		if err != nil {
			return nil, fmt.Errorf("snapshot: %w", err)
		}
		abs[i] = a
	}
	return abs, nil
}

func (c Consistency) logger() *slog.Logger {
	if c.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return c.Logger
}

// Freeze runs take while writers are paused: Pre hooks, then Quiesce,
// then take, then resume, then Post hooks. It returns how long writers
// were held up.
func (c Consistency) Freeze(ctx context.Context, take func(ctx context.Context) error) (time.Duration, error) {
	start := time.Now()
	var errs []error
	preStarted := len(c.Hooks.Pre) > 0
	err := c.runHooks(ctx, "pre", c.Hooks.Pre)
	if err == nil {
		err = c.quiesced(ctx, take)
	}
	errs = append(errs, err)
	if preStarted || len(c.Hooks.Post) > 0 {
		// Post runs even when ctx ended: the server must not stay paused.
		errs = append(errs, c.runHooks(context.WithoutCancel(ctx), "post", c.Hooks.Post))
	}
	pause := time.Since(start)
	c.logger().Debug("snapshot: writers paused", "pause", pause)
	return pause, errors.Join(errs...)
}

func (c Consistency) quiesced(ctx context.Context, take func(ctx context.Context) error) error {
	if c.Quiescer == nil {
		return take(ctx)
	}
	resume, err := c.Quiescer.Quiesce(ctx)
	if err != nil {
		return fmt.Errorf("snapshot: quiesce: %w", err)
	}
	defer resume()
	return take(ctx)
}

func (c Consistency) runHooks(ctx context.Context, which string, cmds []string) error {
	for _, h := range cmds {
		out, err := exec.CommandContext(ctx, "/bin/sh", "-c", h).CombinedOutput()
		c.logger().Info("snapshot: hook ran", "hook", which, "command", h, "output", strings.TrimSpace(string(out)), "err", err)
		if err != nil {
			return fmt.Errorf("snapshot: %s hook %q: %w: %s", which, h, err, bytes.TrimSpace(out))
		}
	}
	return nil
}

// None reads the live tree. Quiescing would not help (the backup reads
// long after the pause), so it pauses nothing; it exists so that callers
// handle every mode alike.
type None struct {
	Paths       []string
	Consistency Consistency
}

// Take returns a view of the live paths.
func (n *None) Take(ctx context.Context) (*View, error) {
	v := &View{Mode: ModeNone, Time: time.Now().UTC(), Paths: map[string]string{}}
	for _, p := range n.Paths {
		v.Paths[p] = p
	}
	return v, nil
}
