package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// policyJSON is forget's --json output by policy for one repository.
type policyJSON struct {
	Target  string `json:"target"`
	DryRun  bool   `json:"dry_run"`
	Source  string `json:"source"`
	Policy  string `json:"policy"`
	Message string `json:"message"`
	Groups  []struct {
		Group struct {
			Host  string   `json:"host"`
			Paths []string `json:"paths"`
		} `json:"group"`
		Keep, Remove int
		Snapshots    []struct {
			ShortID string    `json:"short_id"`
			Time    time.Time `json:"time"`
			Action  string    `json:"action"`
			Reasons []string  `json:"reasons"`
		} `json:"snapshots"`
	} `json:"groups"`
	Forget *struct {
		Removed []string `json:"removed"`
	} `json:"forget"`
	Error string `json:"error"`
}

// backupsAt makes one snapshot of src per time (RFC 3339), host h.
func (e *cliEnv) backupsAt(t *testing.T, src string, times ...string) {
	t.Helper()
	for _, tm := range times {
		e.backup(t, "--host", "h", "--time", tm, src)
	}
}

func (e *cliEnv) snapshotTimes(t *testing.T) []time.Time {
	t.Helper()
	stdout, stderr, code := e.cli(t, "--json", "snapshots")
	if code != 0 {
		t.Fatalf("snapshots: exit %d: %s", code, stderr)
	}
	var rows []struct{ Time time.Time }
	if err := json.Unmarshal([]byte(stdout), &rows); err != nil {
		t.Fatal(err)
	}
	var out []time.Time
	for _, r := range rows {
		out = append(out, r.Time.UTC())
	}
	slices.SortFunc(out, time.Time.Compare)
	return out
}

func forgetPolicy(t *testing.T, stdout string) policyJSON {
	t.Helper()
	var res policyJSON
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatalf("forget output: %v\n%s", err, stdout)
	}
	return res
}

// The times of TestForgetPolicy: noon UTC, so the same calendar day in
// any zone the test runs in.
var forgetTimes = []string{
	"2026-01-01T12:00:00Z", "2026-01-02T11:00:00Z", "2026-01-02T12:00:00Z",
	"2026-01-10T12:00:00Z", "2026-02-01T12:00:00Z", "2026-03-01T12:00:00Z",
}

func TestForgetPolicy(t *testing.T) {
	e := newCLIEnv(t)
	src := filepath.Join(t.TempDir(), "mail")
	writeMessages(t, src, 0, 2, 1<<10)
	e.backupsAt(t, src, forgetTimes...)
	if got := e.snapshotTimes(t); len(got) != 6 || !got[0].Equal(time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)) {
		t.Fatalf("backup --time recorded %v", got)
	}

	// Dry run: per snapshot, keep or remove and why.
	stdout, stderr, code := e.cli(t, "--json", "forget", "--dry-run", "--keep-daily", "3", "--keep-monthly", "2")
	if code != 0 {
		t.Fatalf("forget --dry-run: exit %d: %s", code, stderr)
	}
	res := forgetPolicy(t, stdout)
	if !res.DryRun || res.Policy != "keep 3 daily, 2 monthly snapshots" || res.Source != "keep-* flags" || len(res.Groups) != 1 {
		t.Fatalf("forget --dry-run: %+v", res)
	}
	gr := res.Groups[0]
	if gr.Group.Host != "h" || gr.Keep != 3 || gr.Remove != 3 || len(gr.Snapshots) != 6 {
		t.Fatalf("group %+v: keep %d remove %d", gr.Group, gr.Keep, gr.Remove)
	}
	// Newest first: 1 March, 1 February, 10 January, 2 January twice,
	// 1 January.
	want := []string{"daily snapshot, monthly snapshot", "daily snapshot, monthly snapshot", "daily snapshot", "", "", ""}
	for i, s := range gr.Snapshots {
		action := "keep"
		if want[i] == "" {
			action = "remove"
		}
		if s.Action != action || strings.Join(s.Reasons, ", ") != want[i] {
			t.Errorf("%s (%s): %s for %q, want %s for %q", s.ShortID, s.Time, s.Action, s.Reasons, action, want[i])
		}
	}
	if len(e.snapshotTimes(t)) != 6 {
		t.Fatal("--dry-run removed snapshots")
	}

	// The text output names the rules too.
	stdout, _, code = e.cli(t, "forget", "--dry-run", "--keep-last", "1")
	if code != 0 || !strings.Contains(stdout, "keep   ") || !strings.Contains(stdout, "last snapshot") || !strings.Contains(stdout, "would remove snapshot") {
		t.Errorf("forget --dry-run --keep-last 1: exit %d:\n%s", code, stdout)
	}

	// Bad input is a usage error (exit 2), as a JSON object with --json.
	for _, args := range [][]string{
		{"--keep-within", "1x"}, {"--keep-within", "-1d"}, {"--keep-within", "5"}, {"--keep-daily", "-2"},
		{"--keep-daily", "x"}, {"--group-by", "host,user", "--keep-last", "1"}, {"--keep-last", "1", "latest"},
	} {
		stdout, stderr, code := e.cli(t, append([]string{"--json", "forget"}, args...)...)
		if code != exitUsage || !strings.Contains(stdout, `"exit_code": 2`) {
			t.Errorf("forget %v: exit %d, %s %s", args, code, stdout, stderr)
		}
	}

	// An empty policy removes nothing, and says so.
	for _, args := range [][]string{{}, {"--keep-daily", "0"}} {
		stdout, stderr, code := e.cli(t, append([]string{"forget"}, args...)...)
		if code != 0 || !strings.Contains(stdout, "nothing removed") {
			t.Errorf("forget %v: exit %d: %s %s", args, code, stdout, stderr)
		}
	}

	// A policy that keeps nothing of a group is refused without --force.
	stdout, stderr, code = e.cli(t, "forget", "--keep-tag", "nosuch")
	if code != exitUsage || !strings.Contains(stderr, "every snapshot of a group") || !strings.Contains(stderr, "--force") {
		t.Errorf("forget --keep-tag nosuch: exit %d: %s %s", code, stdout, stderr)
	}
	if len(e.snapshotTimes(t)) != 6 {
		t.Fatal("a refused policy removed snapshots")
	}
	if stdout, stderr, code := e.cli(t, "--json", "forget", "--dry-run", "--force", "--keep-tag", "nosuch"); code != 0 || forgetPolicy(t, stdout).Groups[0].Remove != 6 {
		t.Errorf("forget --force --dry-run: exit %d: %s %s", code, stdout, stderr)
	}

	// --host picks the snapshots looked at: another host's stay.
	other := e.backup(t, "--host", "other", "--time", "2025-06-01T12:00:00Z", src)
	stdout, stderr, code = e.cli(t, "--json", "forget", "--host", "h", "--keep-last", "2", "--prune")
	if code != 0 {
		t.Fatalf("forget --keep-last 2 --prune: exit %d: %s", code, stderr)
	}
	if res := forgetPolicy(t, stdout); res.Forget == nil || len(res.Forget.Removed) != 4 {
		t.Errorf("removed %+v", res.Forget)
	}
	got := e.snapshotTimes(t)
	if len(got) != 3 || !got[0].Equal(time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)) {
		t.Errorf("left %v, want other's and the 2 newest of h (%s)", got, other.Snapshot.Short())
	}
}

func TestBackupTime(t *testing.T) {
	e := newCLIEnv(t)
	src := filepath.Join(t.TempDir(), "mail")
	writeMessages(t, src, 0, 1, 1<<10)
	if _, stderr, code := e.cli(t, "backup", "--time", "yesterday", src); code != exitUsage || !strings.Contains(stderr, "RFC 3339") {
		t.Errorf("--time yesterday: exit %d: %s", code, stderr)
	}
	e.backup(t, "--time", "2020-02-29 13:14:15", src)
	want := time.Date(2020, 2, 29, 13, 14, 15, 0, time.Local)
	if got := e.snapshotTimes(t); len(got) != 1 || !got[0].Equal(want) {
		t.Errorf("recorded %v, want %v", got, want)
	}
}

// TestForgetConfiguredPolicy: with no keep-* flags, forget applies each
// target's keep: block to its repository, or the server configuration's.
func TestForgetConfiguredPolicy(t *testing.T) {
	a, b := newCLIEnv(t), newCLIEnv(t)
	src := filepath.Join(t.TempDir(), "mail")
	writeMessages(t, src, 0, 1, 1<<10)
	a.backupsAt(t, src, forgetTimes...)
	b.backupsAt(t, src, forgetTimes...)
	dir := t.TempDir()
	tf := filepath.Join(dir, "targets.yaml")
	writeFile(t, tf, `targets:
  - {name: local, repo: `+a.repo+`, identity: `+a.identity+`, medium: disk, location: onsite, primary: true,
     keep: {last: 1}}
  - {name: offsite, repo: `+b.repo+`, identity: `+b.identity+`, medium: nas, location: offsite,
     keep: {daily: 3, monthly: -1, group_by: host}}
`)
	stdout, stderr, code := runCLI(t, "--json", "forget", "--dry-run", "--targets", tf)
	if code != 0 {
		t.Fatalf("forget --targets: exit %d: %s", code, stderr)
	}
	var res []policyJSON
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatal(err, stdout)
	}
	if len(res) != 2 || res[0].Target != "local" || res[0].Groups[0].Keep != 1 || res[0].Source != "keep: of target local" {
		t.Fatalf("local: %+v", res)
	}
	if res[1].Policy != "keep 3 daily, all monthly snapshots" || res[1].Groups[0].Keep != 3 || res[1].Groups[0].Group.Paths != nil {
		t.Errorf("offsite: %+v", res[1])
	}
	// Flags replace the targets' policies, for every target.
	stdout, _, code = runCLI(t, "--json", "forget", "--dry-run", "--targets", tf, "--keep-last", "2")
	if err := json.Unmarshal([]byte(stdout), &res); code != 0 || err != nil || res[0].Groups[0].Keep != 2 || res[1].Groups[0].Keep != 2 {
		t.Errorf("--keep-last 2 --targets: exit %d: %s", code, stdout)
	}

	// The server configuration's keep: for --repo.
	cfg := filepath.Join(dir, "mailvault.yaml")
	writeFile(t, cfg, "keep: {within: 40d, tags: [\"a,b\"]}\n")
	stdout, stderr, code = a.cli(t, "--json", "forget", "--dry-run", "--config", cfg)
	if code != 0 {
		t.Fatalf("forget --config: exit %d: %s", code, stderr)
	}
	if r := forgetPolicy(t, stdout); !strings.HasPrefix(r.Source, "keep: in ") || r.Groups[0].Keep != 2 ||
		r.Policy != "keep all snapshots within 40d of the newest, all snapshots with tags [a, b]" {
		t.Errorf("forget --config: %+v", r)
	}
	// --group-by overrides the configured grouping: one group, no host.
	stdout, _, code = a.cli(t, "--json", "forget", "--dry-run", "--config", cfg, "--group-by", "")
	if r := forgetPolicy(t, stdout); code != 0 || len(r.Groups) != 1 || r.Groups[0].Group.Host != "" || r.Groups[0].Keep != 2 {
		t.Errorf("forget --config --group-by '': exit %d: %+v", code, r)
	}
	// --repo and --targets together are ambiguous.
	if _, stderr, code := a.cli(t, "forget", "--targets", tf); code != exitUsage || !strings.Contains(stderr, "not both") {
		t.Errorf("forget --repo --targets: exit %d: %s", code, stderr)
	}
	writeFile(t, cfg, "keep: {within: 4x}\n")
	if _, stderr, code := a.cli(t, "forget", "--config", cfg); code != exitUsage || !strings.Contains(stderr, "4x") {
		t.Errorf("bad keep: in the config: exit %d: %s", code, stderr)
	}
}

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}
