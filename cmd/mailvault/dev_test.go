package main

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailvault/mailvault/bench/corpus"
)

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"2.5GB", 2_500_000_000, true},
		{"20MB", 20_000_000, true},
		{"20mb", 20_000_000, true},
		{"1GiB", 1 << 30, true},
		{"512KiB", 512 << 10, true},
		{"100k", 100_000, true},
		{"1000", 1000, true},
		{"42B", 42, true},
		{" 3 MB ", 3_000_000, true},
		{"", 0, false},
		{"GB", 0, false},
		{"-1MB", 0, false},
		{"1XB", 0, false},
	}
	for _, tc := range tests {
		got, err := parseSize(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseSize(%q) = %d, %v; want %d, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestDevCorpusCommands(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "corpus")
	run := func(args ...string) string {
		t.Helper()
		cmd := newDevCmd()
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetErr(&out)
		cmd.SetArgs(args)
		if err := cmd.Execute(); err != nil {
			t.Fatalf("dev %s: %v\n%s", strings.Join(args, " "), err, out.String())
		}
		return out.String()
	}

	var gen corpus.Stats
	if err := json.Unmarshal([]byte(run("gen-corpus", "--out", dir, "--size", "3MB", "--users", "3", "--domains", "2", "--json")), &gen); err != nil {
		t.Fatal(err)
	}
	if gen.Bytes < 3e6 || gen.Users != 6 {
		t.Errorf("gen-corpus stats = %+v, want >= 3 MB for 6 users", gen)
	}

	var mut corpus.MutateStats
	if err := json.Unmarshal([]byte(run("mutate-corpus", "--dir", dir, "--new", "5", "--flag-changes", "4", "--moves", "3", "--deletes", "2", "--json")), &mut); err != nil {
		t.Fatal(err)
	}
	if mut.NewMessages != 5 || mut.FlagChanges+mut.NewToCur != 4 || mut.Moves != 3 || mut.Deletes != 2 {
		t.Errorf("mutate-corpus stats = %+v", mut)
	}
	if out := run("mutate-corpus", "--dir", dir, "--seed", "2"); !strings.Contains(out, "200 new messages") {
		t.Errorf("mutate-corpus summary = %q", out)
	}

	// Generating into a non-empty directory must fail rather than mix
	// two corpora.
	cmd := newDevCmd()
	cmd.SetOut(new(bytes.Buffer))
	cmd.SetErr(new(bytes.Buffer))
	cmd.SetArgs([]string{"gen-corpus", "--out", dir, "--size", "1MB"})
	if err := cmd.Execute(); err == nil {
		t.Errorf("gen-corpus into a non-empty directory succeeded")
	}
}
