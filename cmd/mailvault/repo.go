package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"strings"

	"golang.org/x/term"

	"github.com/mailvault/mailvault/archive"
	"github.com/mailvault/mailvault/archive/cache"
	"github.com/mailvault/mailvault/archive/local"
	"github.com/mailvault/mailvault/archive/s3"
)

// backend turns a --repo location into a storage backend.
func (g *globals) backend() (archive.Backend, error) {
	if g.repo == "" {
		return nil, fmt.Errorf("%w: no repository given (use --repo or MAILVAULT_REPO)", errUsage)
	}
	loc := g.repo
	switch {
	case strings.HasPrefix(loc, "local:"):
		loc = strings.TrimPrefix(loc, "local:")
	case strings.HasPrefix(loc, "s3:"):
		cfg, err := s3.ParseLocation(loc)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", errUsage, err)
		}
		// New only builds the client; requests take the commands' contexts.
		return s3.New(context.Background(), cfg)
	case strings.Contains(loc, ":") && !strings.HasPrefix(loc, "/") && !strings.HasPrefix(loc, "."):
		scheme, _, _ := strings.Cut(loc, ":")
		return nil, fmt.Errorf("repository type %q is not supported yet (only local directories and s3:)", scheme)
	}
	return local.New(loc), nil
}

// cacheRoot is the directory of every local cache: --cache-dir, else
// cache.DefaultDir.
func (g *globals) cacheRoot() (string, error) {
	if g.cacheDir != "" {
		return g.cacheDir, nil
	}
	return cache.DefaultDir()
}

// cached puts the local metadata cache (archive/cache) in front of a
// remote backend, so that a command does not download every index file,
// snapshot and key file again. A local directory's files are not copied
// (the copy would sit on a disk as fast as the original), but its index
// is kept as a table all the same: decoding every index file is each
// command's fixed cost. --no-cache turns both off.
func (g *globals) cached(be archive.Backend) archive.Backend {
	if g.noCache {
		return be
	}
	dir, err := g.cacheRoot()
	if err != nil {
		g.logger().Warn("not using the local metadata cache", "err", err)
		return be
	}
	if _, isLocal := be.(*local.Backend); isLocal {
		return cache.NewIndexTable(be, dir, g.logger())
	}
	return cache.New(be, dir, g.logger())
}

// parentCacheDir is where a write-only host keeps its parent snapshots
// for the repository id: its directory in the cache root, beside the
// metadata cache. --no-cache does not turn it off: it is not a copy of
// anything the host could download again (a write-only key cannot read
// snapshots or trees), and without it every backup reads all mail.
func (g *globals) parentCacheDir(id archive.ID) (string, error) {
	root, err := g.cacheRoot()
	if err != nil {
		return "", err
	}
	return cache.ParentDir(root, id, g.logger())
}

// oldCaches finds the cache directories of repositories unused for
// cache.MaxAge (not repo's) and, with --cleanup-cache, removes them; as
// restic does, without the flag it only says how many there are. Nothing
// here fails the command.
func (g *globals) oldCaches(repo archive.ID) {
	if g.noCache {
		return
	}
	root, err := g.cacheRoot()
	if err != nil {
		return
	}
	old, err := cache.OldDirs(root, cache.MaxAge, repo)
	if err != nil {
		g.logger().Warn("cannot look for old cache directories", "dir", root, "err", err)
		return
	}
	if len(old) == 0 {
		return
	}
	if !g.cleanupCache {
		if !g.quiet {
			fmt.Fprintf(g.stderr, "found %d old cache directories in %s, run with --cleanup-cache to remove them\n", len(old), root)
		}
		return
	}
	n, err := cache.RemoveDirs(old)
	if err != nil {
		g.logger().Warn("cannot remove an old cache directory", "err", err)
	}
	if !g.quiet {
		fmt.Fprintf(g.stderr, "removed %d old cache directories from %s\n", n, root)
	}
}

// password returns the passphrase from MAILVAULT_PASSWORD, the password
// file, or (for interactive use) the terminal.
func (g *globals) password(prompt bool, confirm bool) (string, error) {
	if v := os.Getenv("MAILVAULT_PASSWORD"); v != "" {
		return v, nil
	}
	if g.passwordFile != "" {
		pw, err := readPasswordFile(g.passwordFile)
		if err != nil {
			return "", fmt.Errorf("password file: %w", err)
		}
		return pw, nil
	}
	if !prompt || len(g.identities) > 0 {
		return "", nil
	}
	f, ok := g.stdin.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return "", nil
	}
	fmt.Fprint(g.stderr, "repository password: ")
	pw, err := term.ReadPassword(int(f.Fd()))
	fmt.Fprintln(g.stderr)
	if err != nil {
		return "", err
	}
	if confirm {
		fmt.Fprint(g.stderr, "enter the password again: ")
		again, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(g.stderr)
		if err != nil {
			return "", err
		}
		if string(again) != string(pw) {
			return "", errors.New("passwords do not match")
		}
	}
	return string(pw), nil
}

// readPasswordFile returns the passphrase in a password file: its content
// without the line end an editor or echo leaves after it.
func readPasswordFile(path string) (string, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	return strings.TrimRight(string(raw), "\r\n"), nil
}

// withIdentities returns credentials holding the identities of the age
// identity files at paths; the caller adds the passphrase.
func withIdentities(paths []string) (archive.Credentials, error) {
	var c archive.Credentials
	for _, path := range paths {
		ids, err := archive.LoadIdentities(path)
		if err != nil {
			return c, err
		}
		c.Identities = append(c.Identities, ids...)
	}
	return c, nil
}

func (g *globals) credentials() (archive.Credentials, error) {
	c, err := withIdentities(g.identities)
	if err != nil {
		return c, err
	}
	pw, err := g.password(true, false)
	if err != nil {
		return c, err
	}
	c.Passphrase = pw
	return c, nil
}

func (g *globals) compressionLevel() (int, error) {
	switch g.compression {
	case "off", "none":
		return 0, nil
	case "auto", "fastest", "":
		// zstd's fastest level: mail compresses only ~3% worse than at
		// the default level for ~25% less CPU (docs/PERFORMANCE.md).
		return 1, nil
	case "default":
		return 2, nil
	case "better":
		return 3, nil
	case "max", "best":
		return 4, nil
	}
	return 0, fmt.Errorf("%w: --compression must be off, auto (= fastest), default, better or max", errUsage)
}

// openRepo opens the repository and loads its index.
func (g *globals) openRepo(ctx context.Context) (*archive.Repository, error) {
	be, err := g.backend()
	if err != nil {
		return nil, err
	}
	creds, err := g.credentials()
	if err != nil {
		return nil, err
	}
	return g.open(ctx, be, creds)
}

// open opens the repository in be with creds at the --compression level;
// openRepo and openWith differ only in where be and creds come from.
func (g *globals) open(ctx context.Context, be archive.Backend, creds archive.Credentials) (*archive.Repository, error) {
	level, err := g.compressionLevel()
	if err != nil {
		return nil, err
	}
	repo, err := archive.Open(ctx, g.cached(be), creds, archive.Options{Compression: level, LockWait: g.lockWait()})
	if err != nil {
		return nil, err
	}
	g.oldCaches(repo.Config().ID)
	if creds.Passphrase != "" {
		// Unwrapping a passphrase key file took 64 MiB of scrypt memory
		// that is garbage now; hand it back before the real work starts
		// so it does not add to the peak.
		debug.FreeOSMemory()
	}
	return repo, nil
}

// lockWait is how every lock a command takes waits for a conflicting one:
// --wait-lock long, saying so once on stderr, since a scheduled run that
// waits minutes should not look hung to whoever reads its log.
func (g *globals) lockWait() archive.LockWait {
	w := archive.LockWait{For: g.waitLock}
	if !g.quiet {
		w.Waiting = func(err error) {
			fmt.Fprintf(g.stderr, "%v; waiting up to %s for it (--wait-lock)\n", err, g.waitLock)
		}
	}
	return w
}

// openLocked opens the repository and takes a shared lock; done unlocks
// and closes it.
func (g *globals) openLocked(ctx context.Context) (repo *archive.Repository, done func(), err error) {
	if repo, err = g.openRepo(ctx); err != nil {
		return nil, nil, err
	}
	unlock, err := repo.Lock(ctx, false)
	if err != nil {
		repo.Close()
		return nil, nil, err
	}
	return repo, func() { unlock(); repo.Close() }, nil
}

// loadIndex loads the index for a command that only reads: packs no
// readable index lists (an interrupted backup's, or a damaged index
// file's) are read from their own headers, without writing anything.
func (g *globals) loadIndex(ctx context.Context, repo *archive.Repository) error {
	unindexed, err := repo.LoadIndex(ctx)
	if err != nil {
		return err
	}
	for _, err := range repo.DamagedIndexes() {
		fmt.Fprintln(g.stderr, "warning: skipping damaged index file (run `mailvault repair index`):", err)
	}
	repo.IndexPacks(ctx, unindexed)
	return nil
}

// printJSON writes v as indented JSON to stdout.
func (g *globals) printJSON(v any) error {
	enc := json.NewEncoder(g.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// printf writes human output unless --quiet or --json.
func (g *globals) printf(format string, args ...any) {
	if g.quiet || g.json {
		return
	}
	fmt.Fprintf(g.stdout, format, args...)
}

// stdoutIsTerminal decides whether to draw progress bars.
func (g *globals) stdoutIsTerminal() bool {
	f, ok := g.stdout.(*os.File)
	return ok && !g.quiet && !g.json && term.IsTerminal(int(f.Fd()))
}
