package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailvault/mailvault/archive"
	"github.com/mailvault/mailvault/archive/s3/s3test"
	"github.com/mailvault/mailvault/snapshot"
	"github.com/mailvault/mailvault/targets"
)

// targetsFile writes a targets file with the live mail at src and returns
// its path; each target is a YAML flow mapping.
func targetsFile(t *testing.T, src string, entries ...string) string {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "live: {paths: [%q]}\ntargets:\n", src)
	for _, e := range entries {
		fmt.Fprintf(&b, "  - %s\n", e)
	}
	p := filepath.Join(t.TempDir(), "targets.yaml")
	if err := os.WriteFile(p, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// repoTarget is a targets file entry for e.
func repoTarget(name string, e *cliEnv, extra string) string {
	return fmt.Sprintf("{name: %s, repo: %q, identity: %q, %s}", name, e.repo, e.identity, extra)
}

func status(t *testing.T, file string) (statusReport, string, int) {
	t.Helper()
	stdout, stderr, code := runCLI(t, "--json", "status", "--targets", file)
	var rep statusReport
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("status: exit %d: %v\n%s\n%s", code, err, stdout, stderr)
	}
	return rep, stderr, code
}

func statusRow(t *testing.T, rep statusReport, name string) targetStatus {
	t.Helper()
	for _, st := range rep.Targets {
		if st.Name == name {
			return st
		}
	}
	t.Fatalf("no status row for %s: %+v", name, rep.Targets)
	return targetStatus{}
}

type backupReplicas struct {
	Snapshot archive.ID `json:"snapshot"`
	Replicas []replica  `json:"replicas"`
}

func backupTargets(t *testing.T, file, src string) (backupReplicas, string, int) {
	t.Helper()
	stdout, stderr, code := runCLI(t, "--json", "backup", "--targets", file, src)
	var res backupReplicas
	if code == exitOK || code == exitPartial {
		if err := json.Unmarshal([]byte(stdout), &res); err != nil {
			t.Fatalf("backup: exit %d: %v\n%s\n%s", code, err, stdout, stderr)
		}
	}
	return res, stderr, code
}

// TestCLIStatusRuleFails: the live mail and one local repository are two
// copies on one medium, all onsite; status says which parts of the rule
// fail and exits 30; targets that cannot count say why.
func TestCLIStatusRuleFails(t *testing.T) {
	src := genCorpus(t, 51, 3e5)
	a := newCLIEnv(t)
	a.backup(t, src)
	empty := newCLIEnv(t)
	old := newCLIEnv(t) // its snapshot is older than its max_age of 1ns
	old.backup(t, src)
	file := targetsFile(t, src,
		repoTarget("local", a, "medium: disk, location: onsite, primary: true"),
		repoTarget("empty", empty, "medium: nas, location: onsite"),
		fmt.Sprintf("{name: gone, repo: %q, identity: %q, medium: s3, location: offsite}", filepath.Join(t.TempDir(), "none"), a.identity),
		repoTarget("stale", old, "medium: disk, location: offsite, max_age: 1ns"),
	)
	rep, stderr, code := status(t, file)
	if code != exitRuleFails {
		t.Errorf("exit %d, want %d: %s", code, exitRuleFails, stderr)
	}
	for _, want := range []string{"only 2 copies (need 3)", "only one medium (disk) (need 2)", "no offsite copy"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr does not say %q: %s", want, stderr)
		}
	}
	if rep.Rule.Holds || rep.Rule.Copies != 2 {
		t.Errorf("rule = %+v", rep.Rule)
	}
	if live := statusRow(t, rep, "live"); !live.Counts || live.Kind != "live" {
		t.Errorf("live = %+v", live)
	}
	local := statusRow(t, rep, "local")
	if !local.Counts || !local.Primary || local.Snapshots != 1 || local.Bytes == 0 || local.Newest == nil || local.AgeSeconds == nil {
		t.Errorf("local = %+v", local)
	}
	if packs := a.files(t, "data"); local.Bytes != sumSizes(t, packs) {
		t.Errorf("local bytes = %d, the packs hold %d", local.Bytes, sumSizes(t, packs))
	}
	if e := statusRow(t, rep, "empty"); e.Counts || !e.Reachable || e.WhyNot != "no snapshots" {
		t.Errorf("empty = %+v", e)
	}
	if g := statusRow(t, rep, "gone"); g.Counts || g.Reachable || !strings.Contains(g.WhyNot, "no repository") {
		t.Errorf("gone = %+v", g)
	}
	if s := statusRow(t, rep, "stale"); s.Counts || !s.Reachable || !strings.HasPrefix(s.WhyNot, "stale: ") {
		t.Errorf("stale = %+v", s)
	}

	// The human table says the same.
	stdout, _, code := runCLI(t, "status", "--targets", file)
	if code != exitRuleFails || !strings.Contains(stdout, "3-2-1 DOES NOT HOLD: only 2 copies (need 3)") || !strings.Contains(stdout, "local (primary)") {
		t.Errorf("status: exit %d:\n%s", code, stdout)
	}

	// Errors in the file are usage errors that name the problem.
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("targets: [{name: x, repo: /r, medium: tape, location: onsite}]\n"), 0o600)
	if _, stderr, code := runCLI(t, "status", "--targets", bad); code != exitUsage || !strings.Contains(stderr, `unknown medium "tape"`) {
		t.Errorf("bad file: exit %d: %s", code, stderr)
	}
	if _, stderr, code := runCLI(t, "status"); code != exitUsage || !strings.Contains(stderr, "no targets file") {
		t.Errorf("no file: exit %d: %s", code, stderr)
	}
}

func sumSizes(t *testing.T, files []string) int64 {
	var n int64
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		n += fi.Size()
	}
	return n
}

// fakeZFS is a dataset listing.
type fakeZFS map[string][]snapshot.Snap

func (f fakeZFS) Snapshots(_ context.Context, dataset string) ([]snapshot.Snap, error) {
	s, ok := f[dataset]
	if !ok {
		return nil, errors.New("dataset does not exist")
	}
	return s, nil
}

// Used makes up a size: 1 MiB a snapshot.
func (f fakeZFS) Used(_ context.Context, dataset string) (int64, error) {
	s, ok := f[dataset]
	if !ok {
		return 0, errors.New("dataset does not exist")
	}
	return int64(len(s)) << 20, nil
}

// TestStatusZFSTarget: a ZFS target counts mailvault's snapshots only, and
// its newest one's age is what max_age is held against.
func TestStatusZFSTarget(t *testing.T) {
	now := time.Now()
	zfs := fakeZFS{
		"backup/mail": {
			{Name: "by-hand", Time: now, Ours: false},
			{Name: snapshot.SnapshotName(now.Add(-2 * time.Hour)), Time: now.Add(-2 * time.Hour), Ours: true},
			{Name: snapshot.SnapshotName(now.Add(-50 * time.Hour)), Time: now.Add(-50 * time.Hour), Ours: true},
		},
		"old/mail": {{Name: snapshot.SnapshotName(now.Add(-50 * time.Hour)), Time: now.Add(-50 * time.Hour), Ours: true}},
	}
	cfg, err := targets.Parse([]byte(`
targets:
  - {name: pool, zfs: backup/mail, location: offsite, max_age: 3h}
  - {name: old, zfs: old/mail, location: offsite, max_age: 3h}
  - {name: missing, zfs: none/mail, location: onsite}
`))
	if err != nil {
		t.Fatal(err)
	}
	g := &globals{stdout: os.Stdout, stderr: os.Stderr}
	rep := g.status(t.Context(), cfg, time.Minute, zfs)
	pool := statusRow(t, rep, "pool")
	if !pool.Counts || pool.Kind != "zfs" || pool.Snapshots != 2 || pool.Newest == nil || !pool.Newest.Equal(now.Add(-2*time.Hour).UTC()) || pool.Bytes != 3<<20 {
		t.Errorf("pool = %+v", pool)
	}
	if old := statusRow(t, rep, "old"); old.Counts || !strings.HasPrefix(old.WhyNot, "stale") {
		t.Errorf("old = %+v", old)
	}
	if m := statusRow(t, rep, "missing"); m.Counts || m.Reachable || !strings.Contains(m.Error, "does not exist") {
		t.Errorf("missing = %+v", m)
	}
	// live (disk, onsite) + pool (zfs, offsite): two copies.
	if v := rep.Rule; v.Holds || v.Copies != 2 || len(v.Media) != 2 || v.Offsite != 1 || len(v.Failures) != 1 {
		t.Errorf("rule = %+v", v)
	}
}

// TestCLIBackupReplicates: with a targets file, backup writes the primary
// and copies the snapshot to a second local repository and to MinIO
// (offsite); status then finds 3-2-1 holding. A later backup moves only
// the new blobs; a target that cannot take the copy makes the backup exit
// 3 without undoing the primary's snapshot or the other copies.
func TestCLIBackupReplicates(t *testing.T) {
	srv := s3test.StartT(t)
	t.Setenv("AWS_ACCESS_KEY_ID", s3test.User)
	t.Setenv("AWS_SECRET_ACCESS_KEY", s3test.Password)
	t.Setenv("HOME", t.TempDir())

	src := genCorpus(t, 52, 2e6)
	a := newCLIEnv(t)
	b := newCopyTargetEnv(t, a, filepath.Join(t.TempDir(), "second"))
	c := newCopyTargetEnv(t, a, "s3:http://"+srv.Addr+"/"+s3test.NewBucketName()+"/offsite")
	entries := []string{
		repoTarget("local", a, "medium: disk, location: onsite, primary: true"),
		repoTarget("second", b, "medium: disk, location: onsite"),
		repoTarget("offsite", c, "medium: s3, location: offsite, max_age: 24h"),
	}
	file := targetsFile(t, src, entries...)

	// Before any backup only the live mail counts.
	if rep, _, code := status(t, file); code != exitRuleFails || rep.Rule.Copies != 1 {
		t.Fatalf("status before backup: exit %d, %+v", code, rep.Rule)
	}

	res, stderr, code := backupTargets(t, file, src)
	if code != exitOK {
		t.Fatalf("backup --targets: exit %d: %s", code, stderr)
	}
	if len(res.Replicas) != 2 {
		t.Fatalf("replicas = %+v", res.Replicas)
	}
	for _, r := range res.Replicas {
		if r.Error != "" || r.Snapshot == nil || r.Copy == nil || r.Copy.Snapshots != 1 || r.Copy.Blobs == 0 {
			t.Errorf("replica %s: %+v %+v", r.Target, r, r.Copy)
		}
	}

	rep, stderr, code := status(t, file)
	if code != exitOK || !rep.Rule.Holds || rep.Rule.Copies != 4 || rep.Rule.Offsite != 1 ||
		strings.Join([]string{string(rep.Rule.Media[0]), string(rep.Rule.Media[1])}, ",") != "disk,s3" {
		t.Fatalf("status after backup: exit %d %s: %+v", code, stderr, rep.Rule)
	}
	primary := statusRow(t, rep, "local")
	for _, name := range []string{"second", "offsite"} {
		st := statusRow(t, rep, name)
		if !st.Counts || st.Snapshots != 1 || st.Bytes == 0 || st.Newest == nil || !st.Newest.Equal(*primary.Newest) {
			t.Errorf("%s = %+v (primary's newest %v)", name, st, primary.Newest)
		}
	}
	if stdout, _, code := runCLI(t, "status", "--targets", file); code != exitOK || !strings.Contains(stdout, "3-2-1 holds: 4 copies, 2 media (disk, s3), 1 offsite") {
		t.Errorf("status: exit %d:\n%s", code, stdout)
	}
	for _, e := range []*cliEnv{b, c} {
		if chk, code := e.check(t, true); code != 0 || !chk.OK() || len(chk.Warnings) != 0 || chk.Snapshots != 1 {
			t.Errorf("check --read-data %s: exit %d: %+v", e.repo, code, chk)
		}
	}
	target := filepath.Join(t.TempDir(), "restored")
	if _, stderr, code := c.cli(t, "restore", "latest", "--target", target); code != 0 {
		t.Fatalf("restore from the offsite copy: exit %d: %s", code, stderr)
	}
	sameTree(t, src, target)

	// A new message: the next copies move its blobs and the new trees,
	// nothing else.
	msg := filepath.Join(src, "extra.eml")
	if err := os.WriteFile(msg, []byte("Subject: one more\r\n\r\nnew content for the second snapshot\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	res2, stderr, code := backupTargets(t, file, src)
	if code != exitOK {
		t.Fatalf("second backup: exit %d: %s", code, stderr)
	}
	for i, r := range res2.Replicas {
		if r.Error != "" || r.Copy.Snapshots != 1 || r.Copy.Blobs == 0 || r.Copy.Blobs*10 > res.Replicas[i].Copy.Blobs || r.Copy.BlobsPresent == 0 {
			t.Errorf("second copy to %s moved %d blobs (%d already there); the first moved %d", r.Target, r.Copy.Blobs, r.Copy.BlobsPresent, res.Replicas[i].Copy.Blobs)
		}
	}

	// A target with parameters of its own cannot take copies.
	foreign := newCLIEnv(t)
	file = targetsFile(t, src, append(entries, repoTarget("foreign", foreign, "medium: nas, location: offsite"))...)
	res3, stderr, code := backupTargets(t, file, src)
	if code != exitPartial || !strings.Contains(stderr, "copying it failed to: foreign") || !strings.Contains(stderr, "do not share") {
		t.Fatalf("backup with a foreign target: exit %d: %s", code, stderr)
	}
	if n := len(a.files(t, "snapshots")); n != 3 {
		t.Errorf("primary holds %d snapshots after the partial backup, want 3", n)
	}
	for _, r := range res3.Replicas {
		if (r.Target == "foreign") != (r.Error != "") {
			t.Errorf("replica %s: error %q", r.Target, r.Error)
		}
	}
	if n := len(b.files(t, "snapshots")); n != 3 {
		t.Errorf("second holds %d snapshots, want 3", n)
	}

	// A target added late (or unreachable for a while) catches up: the
	// next backup copies every snapshot it lacks, parents first, so each
	// copy keeps its parent link; the others take only the new snapshot.
	late := newCopyTargetEnv(t, a, filepath.Join(t.TempDir(), "late"))
	file = targetsFile(t, src, append(entries, repoTarget("late", late, "medium: nas, location: offsite"))...)
	res4, stderr, code := backupTargets(t, file, src)
	if code != exitOK {
		t.Fatalf("backup with a late target: exit %d: %s", code, stderr)
	}
	for _, r := range res4.Replicas {
		want := 1
		if r.Target == "late" {
			want = 4
		}
		if r.Error != "" || r.Copy == nil || r.Copy.Snapshots != want || r.Snapshot == nil {
			t.Errorf("replica %s: %+v %+v, want %d snapshots copied", r.Target, r, r.Copy, want)
		}
	}
	stdout, stderr, code := late.cli(t, "snapshots", "--json")
	if code != 0 {
		t.Fatalf("snapshots of the late target: exit %d: %s", code, stderr)
	}
	var lateSnaps []archive.Snapshot
	if err := json.Unmarshal([]byte(stdout), &lateSnaps); err != nil {
		t.Fatalf("snapshots --json: %v\n%s", err, stdout)
	}
	withParent := 0
	for _, s := range lateSnaps {
		if s.Parent != nil {
			withParent++
		}
	}
	if len(lateSnaps) != 4 || withParent != 3 {
		t.Errorf("late target: %d snapshots, %d with a parent; want 4 and 3", len(lateSnaps), withParent)
	}

	// --repo naming another repository than the primary is refused.
	if _, stderr, code := runCLI(t, "--repo", b.repo, "backup", "--targets", file, src); code != exitUsage || !strings.Contains(stderr, "not the primary") {
		t.Errorf("backup --repo other --targets: exit %d: %s", code, stderr)
	}
}
