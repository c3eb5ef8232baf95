package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"
)

// waitCmd polls a directory until it holds at least -count files: for
// Postfix + Dovecot a message is delivered when Dovecot's LMTP has put it
// in the Maildir's new/, not when Postfix has queued it.
func waitCmd(fs *flag.FlagSet) func(context.Context) error {
	dir := fs.String("dir", "", "directory to watch (a Maildir's new/)")
	count := fs.Int("count", 0, "number of files to wait for")
	timeout := fs.Duration("timeout", 30*time.Minute, "give up after this long")
	every := fs.Duration("poll", 20*time.Millisecond, "poll interval")
	return func(ctx context.Context) error {
		if *dir == "" || *count <= 0 {
			return fmt.Errorf("-dir and a positive -count are required")
		}
		start := time.Now()
		ctx, cancel := context.WithTimeout(ctx, *timeout)
		defer cancel()
		t := time.NewTicker(*every)
		defer t.Stop()
		last := -1
		for {
			n, err := countFiles(*dir)
			if err != nil && !os.IsNotExist(err) {
				return err
			}
			last = n
			if n >= *count {
				return json.NewEncoder(os.Stdout).Encode(map[string]any{"files": n, "waited_seconds": time.Since(start).Seconds()})
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("%s holds %d of %d files after %s: %w", *dir, last, *count, time.Since(start).Round(time.Millisecond), ctx.Err())
			case <-t.C:
			}
		}
	}
}

// countFiles counts the names in dir that do not start with a dot.
func countFiles(dir string) (int, error) {
	f, err := os.Open(dir)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	n := 0
	for _, name := range names {
		if !strings.HasPrefix(name, ".") {
			n++
		}
	}
	return n, err
}
