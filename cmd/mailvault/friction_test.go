package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// linesWith returns the lines of s that contain sub.
func linesWith(s, sub string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return out
}

// TestPartialBackupWarnsOnce: an unreadable entry is reported once, not
// once by the archive's log and again in the list at the end (issue 9).
func TestPartialBackupWarnsOnce(t *testing.T) {
	e := newCLIEnv(t)
	dir := filepath.Join(t.TempDir(), "src")
	os.MkdirAll(dir, 0o700)
	bad := unreadableEntry(t, dir)
	_, stderr, code := e.cli(t, "backup", dir)
	if code != exitPartial {
		t.Fatalf("exit %d, want %d", code, exitPartial)
	}
	if got := linesWith(stderr, filepath.Base(bad)); len(got) != 1 || !strings.HasPrefix(got[0], "warning: "+bad) {
		t.Errorf("the unreadable entry is reported on %d lines, want one \"warning: %s…\" line:\n%s", len(got), filepath.Base(bad), strings.Join(got, "\n"))
	}
	// --json: the warning is in the JSON output, and not on stderr.
	stdout, stderr, code := e.cli(t, "--json", "backup", dir)
	if code != exitPartial {
		t.Fatalf("--json: exit %d, want %d", code, exitPartial)
	}
	var res backupJSON
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatalf("--json output: %v\n%s", err, stdout)
	}
	if len(res.Warnings) != 1 || len(linesWith(stderr, filepath.Base(bad))) != 0 {
		t.Errorf("--json: %d warnings in the output, %d lines of stderr name the entry; want 1 and 0", len(res.Warnings), len(linesWith(stderr, filepath.Base(bad))))
	}
	// --verbose still logs it as it happens.
	_, stderr, _ = e.cli(t, "--verbose", "backup", dir)
	if len(linesWith(stderr, "skipped unreadable entry")) != 1 {
		t.Errorf("--verbose does not log the unreadable entry as met:\n%.2000s", stderr)
	}
}

// TestSnapshotAutoSaysWhich: --snapshot auto says which kind of view it
// took, on stderr and in --json (issue 9).
func TestSnapshotAutoSaysWhich(t *testing.T) {
	e := newCLIEnv(t)
	src := genCorpus(t, 3, 50e3)
	stdout, stderr, code := e.cli(t, "--json", "backup", "--snapshot", "auto", src)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var res struct {
		Mode string `json:"snapshot_mode"`
	}
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatal(err)
	}
	// The temporary directory is not on ZFS.
	if res.Mode != "hardlink" {
		t.Errorf("snapshot_mode = %q, want hardlink", res.Mode)
	}
	if !strings.Contains(stderr, "snapshot: --snapshot auto chose hardlink (") {
		t.Errorf("stderr does not say which view auto chose:\n%s", stderr)
	}
	stdout, stderr, _ = e.cli(t, "--json", "backup", src)
	if !strings.Contains(stdout, `"snapshot_mode": "none"`) || strings.Contains(stderr, "auto chose") {
		t.Errorf("without --snapshot: stdout %s\nstderr %s", stdout, stderr)
	}
}

// TestJSONErrors: with --json, a failure is a JSON object on stdout, for
// every kind of command and error; a command that printed its result
// before failing prints no second document (issue 9).
func TestJSONErrors(t *testing.T) {
	e := newCLIEnv(t)
	data := t.TempDir()
	tests := []struct {
		name string
		args []string
		code int
	}{
		{"no repository given", []string{"--json", "snapshots"}, exitUsage},
		{"no repository there", []string{"--json", "--repo", t.TempDir(), "--identity", e.identity, "snapshots"}, exitNoRepo},
		{"unknown flag", e.args("--json", "backup", "--no-such-flag", "x"), exitUsage},
		{"--json after an unknown flag", e.args("backup", "--no-such-flag", "--json", "x"), exitUsage},
		{"--json=true", e.args("--json=true", "ls", "nosuchsnapshot"), exitError},
		{"unknown command", []string{"--json", "nosuch"}, exitUsage},
		{"server side", []string{"--json", "user", "add", "--data", data, "--password-stdin", "x@nowhere.test"}, exitUsage},
		{"domain", []string{"domain", "add", "--data", data, "not a domain", "--json"}, exitError},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			stdout, stderr, code := runCLI(t, tc.args...)
			if code != tc.code {
				t.Errorf("exit %d, want %d; stderr: %s", code, tc.code, stderr)
			}
			var got jsonError
			dec := json.NewDecoder(strings.NewReader(stdout))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&got); err != nil || dec.More() {
				t.Fatalf("stdout is not one JSON error object (%v): %q", err, stdout)
			}
			if got.ExitCode != code || got.Error == "" || !strings.Contains(stderr, got.Error) {
				t.Errorf("JSON error %+v; exit %d, stderr %q", got, code, stderr)
			}
		})
	}
	t.Run("without --json", func(t *testing.T) {
		stdout, stderr, code := runCLI(t, "snapshots")
		if code != exitUsage || stdout != "" || !strings.HasPrefix(stderr, "mailvault: usage:") {
			t.Errorf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
		}
	})
	t.Run("result printed, then the failure", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "src")
		os.MkdirAll(dir, 0o700)
		unreadableEntry(t, dir)
		stdout, _, code := e.cli(t, "--json", "backup", dir)
		var res map[string]any
		if code != exitPartial || json.Unmarshal([]byte(stdout), &res) != nil || res["snapshot"] == nil {
			t.Errorf("partial backup: exit %d, stdout not its one result object: %.500s", code, stdout)
		}
	})
}

// TestRepositoryFlagsOnlyWhereUsed: the help of the server-side commands
// does not list --repo, --password-file, --identity, --cache-dir and the
// other repository flags; the repository commands' help does; the flags
// (before or after the subcommand) and their MAILVAULT_* variables keep
// working (issue 9).
func TestRepositoryFlagsOnlyWhereUsed(t *testing.T) {
	repoFlags := []string{"--repo", "--password-file", "--identity", "--cache-dir", "--no-cache", "--cleanup-cache", "--compression"}
	for _, args := range [][]string{
		{"serve", "--help"}, {"user", "--help"}, {"user", "add", "--help"}, {"domain", "--help"},
		{"domain", "add", "--help"}, {"audit", "verify", "--help"}, {"snapshot", "take", "--help"}, {"dev", "--help"},
	} {
		stdout, _, code := runCLI(t, args...)
		if code != 0 || !strings.Contains(stdout, "--json") {
			t.Errorf("%q: exit %d, or --json missing:\n%s", args, code, stdout)
		}
		for _, f := range repoFlags {
			if strings.Contains(stdout, f+" ") {
				t.Errorf("%q lists the repository flag %s:\n%s", args, f, stdout)
			}
		}
	}
	for _, args := range [][]string{{"backup", "--help"}, {"restore", "--help"}, {"--help"}, {"key", "list", "--help"}} {
		stdout, _, _ := runCLI(t, args...)
		for _, f := range repoFlags {
			if !strings.Contains(stdout, f+" ") {
				t.Errorf("%q does not list %s:\n%s", args, f, stdout)
			}
		}
	}
	// After showing a server-side command's help, the same process (a
	// test's) still shows the flags for a repository command.
	if stdout, _, _ := runCLI(t, "backup", "--help"); !strings.Contains(stdout, "--repo ") {
		t.Error("backup --help lost --repo after user --help")
	}

	e := newCLIEnv(t)
	src := genCorpus(t, 5, 30e3)
	// A boolean repository flag before the subcommand still parses.
	if _, stderr, code := runCLI(t, "--no-cache", "--repo", e.repo, "--identity", e.identity, "backup", src); code != 0 {
		t.Fatalf("--no-cache before backup: exit %d: %s", code, stderr)
	}
	t.Setenv("MAILVAULT_REPO", e.repo)
	t.Setenv("MAILVAULT_IDENTITY", e.identity)
	if stdout, stderr, code := runCLI(t, "snapshots", "--no-cache"); code != 0 || !strings.Contains(stdout, src) {
		t.Fatalf("snapshots from MAILVAULT_REPO and MAILVAULT_IDENTITY: exit %d: %s%s", code, stdout, stderr)
	}
}
