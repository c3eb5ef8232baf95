package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/mailvault/mailvault/archive"
	"github.com/mailvault/mailvault/archive/s3/s3test"
)

// TestCLIObjectLock: init --object-lock-days on S3, backup, maintain with
// --json (nothing due; then everything due with a wide --window), repair
// index and key remove waiting for the retention, check clean.
func TestCLIObjectLock(t *testing.T) {
	srv, bucket, e, id := s3CLIEnv(t, "mail")
	stdout, stderr, code := runCLI(t, "--repo", e.repo, "--json", "init", "--recipient", id.Recipient().String(),
		"--object-lock-days", "2", "--object-lock-mode", "governance")
	if code != 0 {
		t.Fatalf("init: exit %d: %s", code, stderr)
	}
	var initOut struct {
		ObjectLock *archive.ObjectLock `json:"object_lock"`
	}
	if err := json.Unmarshal([]byte(stdout), &initOut); err != nil || initOut.ObjectLock == nil || *initOut.ObjectLock != (archive.ObjectLock{Mode: archive.Governance, Days: 2}) {
		t.Fatalf("init --json: %v %s", err, stdout)
	}

	src := genCorpus(t, 9, 5e5)
	if b := e.backup(t, src); b.Summary.Messages == 0 {
		t.Fatalf("backup: %+v", b)
	}

	maintain := func(args ...string) archive.MaintainResult {
		t.Helper()
		stdout, stderr, code := e.cli(t, append([]string{"--json", "maintain"}, args...)...)
		if code != 0 {
			t.Fatalf("maintain %v: exit %d: %s", args, code, stderr)
		}
		var res archive.MaintainResult
		if err := json.Unmarshal([]byte(stdout), &res); err != nil {
			t.Fatalf("maintain --json: %v\n%s", err, stdout)
		}
		return res
	}
	// Fresh files have nearly two days left, more than the default
	// window of one day.
	res := maintain()
	if res.Mode != archive.Governance || res.Days != 2 || res.Total.Checked == 0 || res.Total.Extended != 0 || res.Total.Current != res.Total.Checked {
		t.Fatalf("maintain on a fresh repository: %+v", res)
	}
	if res.Config.Checked != 1 || res.Keys.Checked != 1 || res.Snapshots.Checked != 1 || res.Indexes.Checked != 1 || res.Packs.Checked == 0 {
		t.Errorf("maintain counts: %+v", res)
	}
	// With a three-day window everything is due.
	if res := maintain("--window", "3d", "--dry-run"); res.Total.Extended != res.Total.Checked || !res.DryRun {
		t.Errorf("maintain --window 3d --dry-run: %+v", res)
	}
	if res := maintain("--window", "72h"); res.Total.Extended != res.Total.Checked || res.Total.Checked == 0 {
		t.Errorf("maintain --window 72h: %+v", res)
	}
	// The human form names every kind.
	stdout, stderr, code = e.cli(t, "maintain")
	if code != 0 {
		t.Fatalf("maintain: exit %d: %s", code, stderr)
	}
	for _, want := range []string{"governance, 2 days", "index files", "packs", "total", "unreferenced packs"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("maintain output lacks %q:\n%s", want, stdout)
		}
	}

	// repair index writes a new index file and leaves the old one until
	// its retention runs out.
	stdout, stderr, code = e.cli(t, "--json", "repair", "index")
	if code != 0 {
		t.Fatalf("repair index: exit %d: %s", code, stderr)
	}
	var rb archive.RebuildResult
	if err := json.Unmarshal([]byte(stdout), &rb); err != nil {
		t.Fatal(err)
	}
	if rb.IndexesRemoved != 0 || len(rb.Waiting) != 1 || rb.Waiting[0].Until.IsZero() {
		t.Errorf("repair index --json: %+v", rb)
	}
	if _, stderr, code = e.cli(t, "repair", "index"); code != 0 || !strings.Contains(stderr, "waiting until") {
		t.Errorf("repair index: exit %d, stderr %q; want the old index files named as waiting", code, stderr)
	}

	// key remove of a locked key file fails and says until when.
	pwFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte("second\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code = e.cli(t, "--json", "key", "add", "--new-password-file", pwFile)
	if code != 0 {
		t.Fatalf("key add: exit %d: %s", code, stderr)
	}
	var added struct {
		Added []archive.ID `json:"added"`
	}
	if err := json.Unmarshal([]byte(stdout), &added); err != nil || len(added.Added) != 1 {
		t.Fatalf("key add --json: %v %s", err, stdout)
	}
	_, stderr, code = e.cli(t, "key", "remove", added.Added[0].String())
	if code != exitError || !strings.Contains(stderr, "waiting until") || !strings.Contains(stderr, "governance") {
		t.Errorf("key remove of a locked key: exit %d, %q", code, stderr)
	}

	if res, code := e.check(t, true); code != 0 || !res.OK() || res.PacksRead == 0 {
		t.Errorf("check --read-data: exit %d: %+v", code, res)
	}

	// Someone with the bucket's credentials deletes config: the
	// repository is gone until undelete brings the locked version back.
	c, err := minio.New(srv.Addr, &minio.Options{Creds: credentials.NewStaticV4(s3test.User, s3test.Password, "")})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.RemoveObject(t.Context(), bucket, "mail/config", minio.RemoveObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, _, code := e.cli(t, "snapshots"); code != exitNoRepo {
		t.Fatalf("snapshots after config was deleted: exit %d, want %d", code, exitNoRepo)
	}
	stdout, stderr, code = runCLI(t, "--repo", e.repo, "--json", "undelete") // no key needed
	if code != 0 {
		t.Fatalf("undelete: exit %d: %s", code, stderr)
	}
	var ud struct {
		Files    int      `json:"files"`
		Restored []string `json:"restored"`
	}
	if err := json.Unmarshal([]byte(stdout), &ud); err != nil || len(ud.Restored) != 1 || ud.Restored[0] != "config" || ud.Files < 5 {
		t.Fatalf("undelete --json: %v %s", err, stdout)
	}
	if res, code := e.check(t, true); code != 0 || !res.OK() {
		t.Errorf("check after undelete: exit %d: %+v", code, res)
	}
}

// TestCLIObjectLockRefused: the lock flags need S3; maintain needs a
// locked repository; bad values are usage errors.
func TestCLIObjectLockRefused(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "repo")
	_, stderr, code := runCLI(t, "--repo", dir, "init", "--recipient", "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p", "--object-lock-days", "7")
	if code != exitUsage || !strings.Contains(stderr, "S3") {
		t.Errorf("init --object-lock-days on a directory: exit %d, %q", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "config")); err == nil {
		t.Error("a repository was created")
	}
	for _, args := range [][]string{
		{"--object-lock-days", "7", "--object-lock-mode", "strict"},
		{"--object-lock-days", "-1"},
		{"--object-lock-mode", "compliance"}, // no days
	} {
		if _, stderr, code := runCLI(t, append([]string{"--repo", dir, "init", "--recipient", "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"}, args...)...); code != exitUsage {
			t.Errorf("init %v: exit %d, %q; want %d", args, code, stderr, exitUsage)
		}
	}

	e := newCLIEnv(t)
	if _, stderr, code := e.cli(t, "maintain"); code != exitError || !strings.Contains(stderr, "no object lock") {
		t.Errorf("maintain without object lock: exit %d, %q", code, stderr)
	}
	if _, stderr, code := e.cli(t, "maintain", "--window", "soon"); code != exitUsage {
		t.Errorf("maintain --window soon: exit %d, %q", code, stderr)
	}
	if _, stderr, code := e.cli(t, "undelete"); code != exitUsage || !strings.Contains(stderr, "S3") {
		t.Errorf("undelete on a directory: exit %d, %q", code, stderr)
	}
}
