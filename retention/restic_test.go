package retention

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// resticCases are the policies compared with restic's forget: each as
// restic's flags and as a Policy.
var resticCases = []struct {
	args []string
	p    Policy
}{
	{[]string{"--keep-last", "5"}, Policy{Last: 5}},
	{[]string{"--keep-hourly", "40"}, Policy{Hourly: 40}},
	{[]string{"--keep-daily", "30"}, Policy{Daily: 30}},
	{[]string{"--keep-weekly", "30"}, Policy{Weekly: 30}},
	{[]string{"--keep-weekly", "200"}, Policy{Weekly: 200}},
	{[]string{"--keep-monthly", "18"}, Policy{Monthly: 18}},
	{[]string{"--keep-yearly", "10"}, Policy{Yearly: 10}},
	{[]string{"--keep-daily", "14", "--keep-weekly", "8", "--keep-monthly", "24", "--keep-yearly", "7"},
		Policy{Daily: 14, Weekly: 8, Monthly: 24, Yearly: 7}},
	{[]string{"--keep-last", "3", "--keep-hourly", "10", "--keep-daily", "7", "--keep-weekly", "5", "--keep-monthly", "3", "--keep-yearly", "1"},
		Policy{Last: 3, Hourly: 10, Daily: 7, Weekly: 5, Monthly: 3, Yearly: 1}},
	{[]string{"--keep-within", "1y2m3d4h"}, Policy{Within: Duration{1, 2, 3, 4}}},
	{[]string{"--keep-within", "5m"}, Policy{Within: Duration{Months: 5}}},
	{[]string{"--keep-within-hourly", "3d", "--keep-within-daily", "1m", "--keep-within-weekly", "6m",
		"--keep-within-monthly", "2y", "--keep-within-yearly", "3y"},
		Policy{WithinHourly: Duration{Days: 3}, WithinDaily: Duration{Months: 1}, WithinWeekly: Duration{Months: 6},
			WithinMonthly: Duration{Years: 2}, WithinYearly: Duration{Years: 3}}},
	{[]string{"--keep-within-weekly", "1y", "--keep-weekly", "4", "--keep-within", "36h"},
		Policy{WithinWeekly: Duration{Years: 1}, Weekly: 4, Within: Duration{Hours: 36}}},
	{[]string{"--keep-tag", "a,b", "--keep-tag", "c", "--keep-last", "2"},
		Policy{Tags: []TagList{{"a", "b"}, {"c"}}, Last: 2}},
	{[]string{"--group-by", "host,paths,tags", "--keep-last", "1", "--keep-monthly", "3"},
		Policy{Last: 1, Monthly: 3, GroupBy: &GroupBy{Host: true, Paths: true, Tags: true}}},
	{[]string{"--group-by", "", "--keep-daily", "10", "--keep-tag", "a"},
		Policy{Daily: 10, Tags: []TagList{{"a"}}, GroupBy: &GroupBy{}}},
}

// TestSameAsRestic makes the 200 snapshots of testSnapshots with the
// installed restic's `backup --time` (in Europe/Berlin) and checks that
// for every policy of resticCases, `restic forget --dry-run --json` and
// Plan keep the same snapshots for the same reasons.
func TestSameAsRestic(t *testing.T) {
	restic, err := exec.LookPath("restic")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("restic is not installed (scripts/test.sh installs it)")
		}
		t.Skip("restic is not installed")
	}
	if testing.Short() && os.Getenv("CI") != "true" {
		t.Skip("200 restic backups take a minute or two")
	}
	loc := berlin(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	if err := os.Mkdir(data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(data, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), "RESTIC_REPOSITORY="+filepath.Join(dir, "repo"), "RESTIC_PASSWORD=test",
		"RESTIC_CACHE_DIR="+filepath.Join(dir, "cache"), "TZ=Europe/Berlin")
	run := func(args ...string) []byte {
		cmd := exec.Command(restic, append([]string{"--no-cache"}, args...)...)
		cmd.Env = env
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Errorf("restic %s: %v\n%s", strings.Join(args, " "), err, stderr.Bytes())
		}
		return out
	}
	run("init", "-q")

	want := testSnapshots(t)
	// Backups take shared locks, so several run at once: most of each
	// one's time is restic's start-up and key derivation.
	var wg sync.WaitGroup
	jobs := make(chan Snapshot)
	for range 4 {
		wg.Go(func() {
			for s := range jobs {
				args := []string{"backup", "-q", "--host", s.Host, "--time", s.Time.In(loc).Format(time.DateTime)}
				if len(s.Tags) > 0 {
					args = append(args, "--tag", strings.Join(s.Tags, ","))
				}
				run(append(args, data)...)
			}
		})
	}
	for _, s := range want {
		jobs <- s
	}
	close(jobs)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}

	var listed []struct {
		ID       string    `json:"id"`
		Time     time.Time `json:"time"`
		Hostname string    `json:"hostname"`
		Paths    []string  `json:"paths"`
		Tags     []string  `json:"tags"`
	}
	if err := json.Unmarshal(run("snapshots", "--json"), &listed); err != nil {
		t.Fatal(err)
	}
	var snaps []Snapshot
	for _, s := range listed {
		snaps = append(snaps, Snapshot{ID: s.ID, Time: s.Time, Host: s.Hostname, Paths: s.Paths, Tags: s.Tags})
	}
	if !sameTimes(snaps, want) {
		t.Fatalf("restic recorded %d snapshots, not the %d times asked for", len(snaps), len(want))
	}

	for _, c := range resticCases {
		name := strings.Join(c.args, " ")
		var groups []struct {
			Keep    []struct{ ID string } `json:"keep"`
			Remove  []struct{ ID string } `json:"remove"`
			Reasons []struct {
				Matches []string `json:"matches"`
			} `json:"reasons"`
		}
		if err := json.Unmarshal(run(append([]string{"forget", "--dry-run", "--json"}, c.args...)...), &groups); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		ours := map[string]Decision{}
		plan := Plan(snaps, c.p, Options{Location: loc})
		for _, g := range plan {
			for _, d := range g.Decisions {
				ours[d.Snapshot.ID] = d
			}
		}
		kept := 0
		for _, g := range groups {
			if len(g.Reasons) != len(g.Keep) {
				t.Fatalf("%s: restic gave %d reasons for %d kept snapshots", name, len(g.Reasons), len(g.Keep))
			}
			for i, k := range g.Keep {
				kept++
				if d := ours[k.ID]; !d.Keep || !slices.Equal(d.Reasons, g.Reasons[i].Matches) {
					t.Errorf("%s: %s at %s: restic keeps it for %q, we: keep %v for %q",
						name, k.ID[:8], d.Snapshot.Time.In(loc), g.Reasons[i].Matches, d.Keep, d.Reasons)
				}
			}
			for _, r := range g.Remove {
				if d := ours[r.ID]; d.Keep {
					t.Errorf("%s: %s at %s: restic removes it, we keep it for %q", name, r.ID[:8], d.Snapshot.Time.In(loc), d.Reasons)
				}
			}
		}
		ourKept := 0
		for _, d := range ours {
			if d.Keep {
				ourKept++
			}
		}
		if ourKept != kept || len(plan) != len(groups) {
			t.Errorf("%s: restic keeps %d in %d groups, we keep %d in %d", name, kept, len(groups), ourKept, len(plan))
		}
		t.Logf("%-40s restic and retention keep %3d of %d snapshots in %d groups", name, kept, len(snaps), len(groups))
	}
}

func sameTimes(a, b []Snapshot) bool {
	ts := func(ss []Snapshot) []int64 {
		var out []int64
		for _, s := range ss {
			out = append(out, s.Time.Unix())
		}
		slices.Sort(out)
		return out
	}
	return slices.Equal(ts(a), ts(b))
}
