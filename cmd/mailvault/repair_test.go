package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// repoListing lists every file of the repository but locks, with its size.
func repoListing(t *testing.T, repo string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(repo, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.Contains(p, string(filepath.Separator)+"locks"+string(filepath.Separator)) {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(repo, p)
		out = append(out, fmt.Sprintf("%s %d", rel, fi.Size()))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

// TestRepairWriteOnlyCLI (issue 9, defect 4): every repair subcommand
// refuses a write-only key with exit code 12 and changes nothing; `repair
// index` used to delete the index files and exit 0.
func TestRepairWriteOnlyCLI(t *testing.T) {
	e := newCLIEnv(t)
	e.backup(t, genCorpus(t, 41, 2e5))
	woKey := filepath.Join(t.TempDir(), "wo.txt")
	id := newIdentityFile(t, woKey)
	if _, stderr, code := e.cli(t, "key", "add", "--write-only", "--recipient", id.Recipient().String()); code != 0 {
		t.Fatalf("key add --write-only: exit %d: %s", code, stderr)
	}
	wo := &cliEnv{repo: e.repo, identity: woKey}
	before := repoListing(t, e.repo)
	for _, args := range [][]string{
		{"repair", "index"},
	} {
		stdout, stderr, code := wo.cli(t, args...)
		if code != exitWrongKey || !strings.Contains(stderr, "write-only") {
			t.Errorf("%v with a write-only key: exit %d, %q %q; want %d naming the write-only key", args, code, stdout, stderr, exitWrongKey)
		}
		if after := repoListing(t, e.repo); !slices.Equal(before, after) {
			t.Fatalf("%v with a write-only key changed the repository:\nbefore %v\nafter  %v", args, before, after)
		}
	}
	if res, code := e.check(t, true); code != 0 || !res.OK() {
		t.Fatalf("check after the refused repairs: exit %d, %+v", code, res)
	}
}
