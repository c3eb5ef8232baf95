package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/mailvault/mailvault/bench/corpus"
)

// newDevCmd returns the "dev" command: tools for developing and
// benchmarking mailvault, not for running it.
func newDevCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Developer tools (benchmark corpora)",
	}
	cmd.AddCommand(newGenCorpusCmd(), newMutateCorpusCmd(), newEvictCmd())
	return cmd
}

func newGenCorpusCmd() *cobra.Command {
	var (
		out, size       string
		seed            uint64
		users, domains  int
		attachmentShare float64
		asJSON          bool
	)
	cmd := &cobra.Command{
		Use:   "gen-corpus --out DIR",
		Short: "Generate a deterministic Maildir++ mail corpus",
		Long: `Generate a Maildir++ tree of realistic mail for benchmarks: the same
seed and size always give the same files, names and times.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			target, err := parseSize(size)
			if err != nil {
				return err
			}
			if err := checkEmptyDir(out); err != nil {
				return err
			}
			start := time.Now()
			st, err := corpus.Generate(cmd.Context(), out, corpus.Options{
				Seed:               seed,
				TargetBytes:        target,
				Domains:            domains,
				UsersPerDomain:     users,
				AttachmentFraction: attachmentShare,
			})
			if err != nil {
				return fmt.Errorf("generate corpus: %w", err)
			}
			elapsed := time.Since(start)
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), struct {
					corpus.Stats
					Dir     string  `json:"dir"`
					Seed    uint64  `json:"seed"`
					Seconds float64 `json:"seconds"`
				}{st, out, seed, elapsed.Seconds()})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "generated %s: %d messages in %d files (%d fan-out copies, %d with attachments), %s, %d users, %d folders, %d metadata files in %.1fs (%s/s)\n",
				out, st.Messages, st.Files, st.FanOut, st.Attachments, formatSize(st.Bytes), st.Users, st.Folders, st.MetaFiles,
				elapsed.Seconds(), formatSize(int64(float64(st.Bytes)/max(elapsed.Seconds(), 1e-3))))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&out, "out", "", "directory to create the corpus in (must be empty or absent)")
	f.StringVar(&size, "size", "2.5GB", "total size of the message files (e.g. 2.5GB, 20MB)")
	f.Uint64Var(&seed, "seed", 1, "seed selecting the corpus")
	f.IntVar(&users, "users", 20, "mailboxes per domain")
	f.IntVar(&domains, "domains", 3, "number of mail domains")
	f.Float64Var(&attachmentShare, "attachments", 0.12, "share of messages with an attachment")
	f.BoolVar(&asJSON, "json", false, "print the statistics as JSON")
	_ = cmd.MarkFlagRequired("out") // only fails for an unknown flag
	return cmd
}

func newMutateCorpusCmd() *cobra.Command {
	var (
		dir    string
		opt    corpus.MutateOptions
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "mutate-corpus --dir DIR",
		Short: "Apply a deterministic day of mail traffic to a corpus",
		Long: `Deliver new mail, change flags, move and delete messages in a corpus made
by gen-corpus, as clients and the server would between two backups. The
same seed on the same corpus makes the same changes.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := corpus.Mutate(cmd.Context(), dir, opt)
			if err != nil {
				return fmt.Errorf("mutate corpus: %w", err)
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), st)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "mutated %s: %d new messages (%d files, %s), %d flag changes, %d new→cur, %d moves, %d deletes (%s)\n",
				dir, st.NewMessages, st.NewFiles, formatSize(st.NewBytes), st.FlagChanges, st.NewToCur, st.Moves, st.Deletes, formatSize(st.DeletedBytes))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "dir", "", "corpus directory to change")
	f.Uint64Var(&opt.Seed, "seed", 1, "seed selecting the changes")
	f.IntVar(&opt.NewMessages, "new", 200, "new messages to deliver (each may go to several mailboxes)")
	f.IntVar(&opt.FlagChanges, "flag-changes", 500, "messages whose flags change (about half new/→cur/ moves)")
	f.IntVar(&opt.Moves, "moves", 100, "messages to move to another folder")
	f.IntVar(&opt.Deletes, "deletes", 50, "messages to delete")
	f.BoolVar(&asJSON, "json", false, "print the statistics as JSON")
	_ = cmd.MarkFlagRequired("dir") // only fails for an unknown flag
	return cmd
}

func newEvictCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "evict DIR",
		Short: "Drop a tree's files from the page cache (for cold-read benchmarks)",
		Long: `Drop the cached pages of every file under DIR (posix_fadvise DONTNEED),
so that the next backup of it reads from disk. Unlike writing to
/proc/sys/vm/drop_caches it needs no privileges and leaves the rest of
the machine's cache alone.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			n, size, err := corpus.Evict(args[0])
			if err != nil {
				return fmt.Errorf("evict: %w", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "evicted %d files (%s) of %s from the page cache\n", n, formatSize(size), args[0])
			return nil
		},
	}
}

// checkEmptyDir refuses to generate into a directory that already has
// content: the generator never overwrites, so a half-filled directory would
// fail midway.
func checkEmptyDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("check output directory: %w", err)
	}
	if len(entries) > 0 {
		return fmt.Errorf("output directory %s is not empty", dir)
	}
	return nil
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("write JSON: %w", err)
	}
	return nil
}

// sizeUnits are the suffixes parseSize accepts, longest first so that
// "MiB" is not read as "B".
var sizeUnits = []struct {
	suffix string
	mult   float64
}{
	{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30}, {"tib", 1 << 40},
	{"kb", 1e3}, {"mb", 1e6}, {"gb", 1e9}, {"tb", 1e12},
	{"k", 1e3}, {"m", 1e6}, {"g", 1e9}, {"t", 1e12},
	{"b", 1},
}

// parseSize parses a human size such as "2.5GB", "20MB", "512KiB" or
// "1000" (bytes). Decimal units are powers of 1000, binary ones of 1024.
func parseSize(s string) (int64, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	mult := 1.0
	for _, u := range sizeUnits {
		if num, ok := strings.CutSuffix(t, u.suffix); ok {
			t, mult = strings.TrimSpace(num), u.mult
			break
		}
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || v <= 0 || v*mult > 1<<62 {
		return 0, fmt.Errorf("invalid size %q (want e.g. 2.5GB, 20MB)", s)
	}
	return int64(v * mult), nil
}

// formatSize prints a byte count in decimal units.
func formatSize(n int64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.2f GB", float64(n)/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.1f MB", float64(n)/1e6)
	case n >= 1e3:
		return fmt.Sprintf("%.1f kB", float64(n)/1e3)
	}
	return fmt.Sprintf("%d B", n)
}
