package targets

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mailvault/mailvault/retention"
)

// TestParseKeep: a target's keep: block is a retention policy.
func TestParseKeep(t *testing.T) {
	c, err := Parse([]byte(`targets:
  - {name: a, repo: /r, medium: disk, location: onsite, keep: {last: 2, weekly: 8, within_daily: 10d, tags: ["a,b", c], group_by: "host,tags"}}
  - {name: b, repo: /s, medium: nas, location: offsite}
`))
	if err != nil {
		t.Fatal(err)
	}
	want := retention.Policy{Last: 2, Weekly: 8, WithinDaily: retention.Duration{Days: 10},
		Tags: []retention.TagList{{"a", "b"}, {"c"}}, GroupBy: &retention.GroupBy{Host: true, Tags: true}}
	if k := c.Targets[0].Keep; k == nil || !reflect.DeepEqual(*k, want) {
		t.Errorf("keep %+v, want %+v", k, want)
	}
	if c.Targets[1].Keep != nil {
		t.Errorf("no keep: %+v", c.Targets[1].Keep)
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		yaml    string
		wantErr string // "" for valid
	}{
		{"valid", `
live: {paths: [/var/mail], medium: zfs}
targets:
  - {name: local, repo: /srv/backup, medium: disk, location: onsite, primary: true, identity: k.txt}
  - {name: offsite, repo: "s3:https://s3.example.com/b/mail", medium: s3, location: offsite, password_env: S3_PASS, max_age: 26h}
  - {name: pool2, zfs: backup/mail, location: onsite}
`, ""},
		{"empty", ``, "no targets"},
		{"unknown key", `targets: [{name: a, repo: /r, medium: disk, location: onsite, max-age: 1h}]`, "max-age"},
		{"no name", `targets: [{repo: /r, medium: disk, location: onsite}]`, "target 1: no name"},
		{"duplicate name", `targets: [{name: a, repo: /r, medium: disk, location: onsite}, {name: a, repo: /s, medium: disk, location: onsite}]`, "used twice"},
		{"same repo twice", `targets: [{name: a, repo: /r, medium: disk, location: onsite}, {name: b, repo: /r, medium: nas, location: offsite}]`, `"a" and "b" are the same repo /r`},
		{"no repo", `targets: [{name: a, medium: disk, location: onsite}]`, "give repo"},
		{"repo and zfs", `targets: [{name: a, repo: /r, zfs: p/d, location: onsite}]`, "not both"},
		{"no medium", `targets: [{name: a, repo: /r, location: onsite}]`, "no medium"},
		{"bad medium", `targets: [{name: a, repo: /r, medium: tape, location: onsite}]`, `unknown medium "tape"`},
		{"no location", `targets: [{name: a, repo: /r, medium: disk}]`, "no location"},
		{"bad location", `targets: [{name: a, repo: /r, medium: disk, location: moon}]`, `unknown location "moon"`},
		{"zfs on disk", `targets: [{name: a, zfs: p/d, medium: disk, location: onsite}]`, "medium zfs"},
		{"zfs primary", `targets: [{name: a, zfs: p/d, location: onsite, primary: true}]`, "primary must be a repository"},
		{"zfs credentials", `targets: [{name: a, zfs: p/d, location: onsite, identity: k}]`, "no password"},
		{"two primaries", `targets: [{name: a, repo: /r, medium: disk, location: onsite, primary: true}, {name: b, repo: /s, medium: disk, location: onsite, primary: true}]`, "more than one"},
		{"two passwords", `targets: [{name: a, repo: /r, medium: disk, location: onsite, password_file: f, password_env: E}]`, "not both"},
		{"negative max_age", `targets: [{name: a, repo: /r, medium: disk, location: onsite, max_age: -1h}]`, "negative"},
		{"keep", `targets: [{name: a, repo: /r, medium: disk, location: onsite, keep: {daily: 14, monthly: -1, within: 1y2m, tags: ["a,b", c], group_by: host}}]`, ""},
		{"keep unknown key", `targets: [{name: a, repo: /r, medium: disk, location: onsite, keep: {dayly: 14}}]`, "dayly"},
		{"keep bad duration", `targets: [{name: a, repo: /r, medium: disk, location: onsite, keep: {within: 3w}}]`, "unknown unit"},
		{"keep bad count", `targets: [{name: a, repo: /r, medium: disk, location: onsite, keep: {daily: -2}}]`, "keep daily -2"},
		{"keep bad group_by", `targets: [{name: a, repo: /r, medium: disk, location: onsite, keep: {group_by: user}}]`, "unknown field"},
		{"keep on zfs", `targets: [{name: a, zfs: p/d, location: onsite, keep: {daily: 3}}]`, "snapshot prune"},
		{"bad live medium", "live: {medium: paper}\ntargets: [{name: a, repo: /r, medium: disk, location: onsite}]", "live: unknown medium"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.yaml))
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Parse = %+v, %v; want error containing %q", c, err, tt.wantErr)
			}
		})
	}
}

func TestLoadDefaultsAndRelativePaths(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "targets.yaml")
	os.WriteFile(path, []byte(`
live: {paths: [mail]}
targets:
  - {name: local, repo: backup, medium: disk, location: onsite, primary: true, identity: k.txt, password_file: /abs/pw}
  - {name: s3, repo: "s3:http://127.0.0.1:9000/b", medium: s3, location: offsite}
  - {name: pool, zfs: backup/mail, location: offsite, max_age: 36h}
`), 0o600)
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if c.Live.Medium != Disk || c.Live.Location != Onsite || c.Live.Paths[0] != filepath.Join(dir, "mail") {
		t.Errorf("live = %+v", c.Live)
	}
	p, ok := c.Primary()
	if !ok || p.Name != "local" || p.Repo != filepath.Join(dir, "backup") || p.Identity != filepath.Join(dir, "k.txt") || p.PasswordFile != "/abs/pw" {
		t.Errorf("primary = %+v, %v", p, ok)
	}
	if c.Targets[1].Repo != "s3:http://127.0.0.1:9000/b" {
		t.Errorf("s3 repo rewritten: %q", c.Targets[1].Repo)
	}
	if z := c.Targets[2]; z.Medium != ZFS || z.MaxAge != 36*time.Hour {
		t.Errorf("zfs target = %+v", z)
	}
	if _, err := Load(filepath.Join(dir, "missing.yaml")); err == nil {
		t.Error("Load of a missing file succeeded")
	}
}

func TestCounts(t *testing.T) {
	now := time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name   string
		maxAge time.Duration
		obs    Observed
		want   bool
		why    string
	}{
		{"fresh", 0, Observed{Snapshots: 2, Newest: now.Add(-time.Hour)}, true, ""},
		{"old but no max_age", 0, Observed{Snapshots: 1, Newest: now.Add(-90 * 24 * time.Hour)}, true, ""},
		{"within max_age", 26 * time.Hour, Observed{Snapshots: 1, Newest: now.Add(-25 * time.Hour)}, true, ""},
		{"stale", 26 * time.Hour, Observed{Snapshots: 1, Newest: now.Add(-27 * time.Hour)}, false, "stale: newest snapshot is 1d03h old (max_age 26h0m0s)"},
		{"empty", 0, Observed{}, false, "no snapshots"},
		{"unreachable", 0, Observed{Err: errors.New("connection refused"), Snapshots: 3}, false, "unreachable: connection refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok, why := Target{MaxAge: tt.maxAge}.Counts(tt.obs, now)
			if ok != tt.want || why != tt.why {
				t.Errorf("Counts = %v %q, want %v %q", ok, why, tt.want, tt.why)
			}
		})
	}
}

func TestEvaluate(t *testing.T) {
	live := Copy{"live", Disk, Onsite}
	tests := []struct {
		name   string
		copies []Copy
		want   Verdict
	}{
		{"live, local and s3 offsite", []Copy{live, {"local", Disk, Onsite}, {"s3", S3, Offsite}},
			Verdict{Holds: true, Copies: 3, Media: []Medium{Disk, S3}, Offsite: 1}},
		{"live and local", []Copy{live, {"local", Disk, Onsite}},
			Verdict{Copies: 2, Media: []Medium{Disk}, Failures: []string{"only 2 copies (need 3)", "only one medium (disk) (need 2)", "no offsite copy"}}},
		{"three on disk, one offsite", []Copy{live, {"local", Disk, Onsite}, {"remote", Disk, Offsite}},
			Verdict{Copies: 3, Media: []Medium{Disk}, Offsite: 1, Failures: []string{"only one medium (disk) (need 2)"}}},
		{"three media, all onsite", []Copy{live, {"nas", NAS, Onsite}, {"pool", ZFS, Onsite}},
			Verdict{Copies: 3, Media: []Medium{Disk, NAS, ZFS}, Failures: []string{"no offsite copy"}}},
		{"nothing", nil,
			Verdict{Media: []Medium{}, Failures: []string{"only 0 copies (need 3)", "no medium (need 2)", "no offsite copy"}}},
		{"one", []Copy{live},
			Verdict{Copies: 1, Media: []Medium{Disk}, Failures: []string{"only 1 copy (need 3)", "only one medium (disk) (need 2)", "no offsite copy"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Evaluate(tt.copies); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Evaluate = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestAge(t *testing.T) {
	for d, want := range map[time.Duration]string{
		-time.Second:                  "0s",
		45 * time.Second:              "45s",
		12*time.Minute + time.Second:  "12m",
		3*time.Hour + 12*time.Minute:  "3h12m",
		52*time.Hour + 30*time.Minute: "2d04h",
	} {
		if got := Age(d); got != want {
			t.Errorf("Age(%v) = %q, want %q", d, got, want)
		}
	}
}
