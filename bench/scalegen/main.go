// Command scalegen writes Maildir++ trees of N small messages, fast, for
// the scale benchmark (bench/scale.sh, issue 11), and applies the change
// between two backups that the benchmark measures.
//
//	scalegen gen -out DIR -n 100000 [-seed 1] [-headers-only] [-workers W]
//	scalegen mutate -dir DIR -seed 2 [-flag-changes 1000] [-new 1000] [-delete 0] [-keep REL]
//
// Both print a JSON summary on stdout. The tree is benchmark input: no file
// is fsynced (the script syncs once), and everything is drawn from seeded
// generators, never the clock.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var out any
	var err error
	switch os.Args[1] {
	case "gen":
		fs := flag.NewFlagSet("gen", flag.ExitOnError)
		dir := fs.String("out", "", "directory to create (must not exist or be empty)")
		n := fs.Int("n", 0, "number of messages")
		seed := fs.Uint64("seed", 1, "seed")
		headersOnly := fs.Bool("headers-only", false, "write header blocks without bodies (for 10 M runs)")
		workers := fs.Int("workers", 0, "writer goroutines (default 2 × cores; does not change the output)")
		end := fs.String("end", defaultEnd.Format(time.RFC3339), "newest delivery time; mail spans the year before")
		_ = fs.Parse(os.Args[2:])
		if *dir == "" || *n <= 0 {
			fmt.Fprintln(os.Stderr, "scalegen gen: -out and a positive -n are required")
			os.Exit(2)
		}
		if err = emptyOrMissing(*dir); err != nil {
			break
		}
		var t time.Time
		if t, err = time.Parse(time.RFC3339, *end); err != nil {
			break
		}
		out, err = Generate(*dir, Options{Messages: *n, Seed: *seed, HeadersOnly: *headersOnly, Workers: *workers, End: t})
	case "mutate":
		fs := flag.NewFlagSet("mutate", flag.ExitOnError)
		dir := fs.String("dir", "", "tree written by gen")
		seed := fs.Uint64("seed", 2, "seed of the change (use another than the tree's)")
		flags := fs.Int("flag-changes", 1000, "messages whose flags change (renames)")
		newMsgs := fs.Int("new", 1000, "new messages delivered to new/")
		deletions := fs.Int("delete", 0, "messages removed (others than the renamed ones)")
		keep := fs.String("keep", "", "path relative to -dir never to rename (the probe)")
		headersOnly := fs.Bool("headers-only", false, "new messages without bodies")
		_ = fs.Parse(os.Args[2:])
		if *dir == "" {
			fmt.Fprintln(os.Stderr, "scalegen mutate: -dir is required")
			os.Exit(2)
		}
		out, err = Mutate(*dir, MutateOptions{Seed: *seed, FlagChanges: *flags, NewMessages: *newMsgs, Deletions: *deletions, Keep: *keep, HeadersOnly: *headersOnly})
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "scalegen:", err)
		os.Exit(1)
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	_ = enc.Encode(out)
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: scalegen gen -out DIR -n N [-seed S] [-headers-only]\n       scalegen mutate -dir DIR [-seed S] [-flag-changes N] [-new N] [-delete N] [-keep REL]")
	os.Exit(2)
}

// emptyOrMissing refuses to write into a directory that holds anything, so
// that a tree is never a mix of two runs.
func emptyOrMissing(dir string) error {
	ents, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if len(ents) > 0 {
		return fmt.Errorf("%s is not empty", dir)
	}
	return nil
}
