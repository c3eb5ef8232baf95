package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"filippo.io/age"

	"github.com/mailvault/mailvault/archive"
	"github.com/mailvault/mailvault/archive/s3/s3test"
)

// newCopyTargetEnv creates repository loc with the parameters of src, opened
// by a new identity of its own.
func newCopyTargetEnv(t *testing.T, src *cliEnv, loc string) *cliEnv {
	t.Helper()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	e := &cliEnv{repo: loc, identity: filepath.Join(t.TempDir(), "target-key.txt")}
	if err := os.WriteFile(e.identity, []byte(id.String()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, stderr, code := runCLI(t, "--repo", loc, "init", "--recipient", id.Recipient().String(),
		"--copy-params-from", src.repo, "--from-identity", src.identity); code != 0 {
		t.Fatalf("init --copy-params-from: exit %d: %s", code, stderr)
	}
	return e
}

func (e *cliEnv) copyFrom(t *testing.T, src *cliEnv, args ...string) (archive.CopyStats, int, string) {
	t.Helper()
	stdout, stderr, code := e.cli(t, append([]string{"--json", "copy", "--from", src.repo, "--from-identity", src.identity}, args...)...)
	var st archive.CopyStats
	if code == 0 {
		if err := json.Unmarshal([]byte(stdout), &st); err != nil {
			t.Fatalf("copy output: %v: %s", err, stdout)
		}
	}
	return st, code, stderr
}

func testCLICopy(t *testing.T, targetLoc string) {
	a := newCLIEnv(t)
	src := genCorpus(t, 41, 1e6)
	a.backup(t, src)
	if err := os.WriteFile(filepath.Join(src, "note.txt"), []byte("second snapshot"), 0o600); err != nil {
		t.Fatal(err)
	}
	a.backup(t, src)

	b := newCopyTargetEnv(t, a, targetLoc)
	st, code, stderr := b.copyFrom(t, a)
	if code != 0 {
		t.Fatalf("copy: exit %d: %s", code, stderr)
	}
	if st.Snapshots != 2 || st.Blobs == 0 {
		t.Errorf("first copy: %+v", st)
	}
	st, code, stderr = b.copyFrom(t, a)
	if code != 0 || st.Snapshots != 0 || st.SnapshotsPresent != 2 || st.Blobs != 0 {
		t.Errorf("second copy: exit %d %s: %+v", code, stderr, st)
	}
	target := filepath.Join(t.TempDir(), "restored")
	if _, stderr, code := b.cli(t, "restore", "latest", "--target", target); code != 0 {
		t.Fatalf("restore from the copy: exit %d: %s", code, stderr)
	}
	sameTree(t, src, target)
	if res, code := b.check(t, true); code != 0 || !res.OK() {
		t.Errorf("check the copy: exit %d: %+v", code, res)
	}

	// A repository with parameters of its own is refused.
	other := newCLIEnv(t)
	if _, code, stderr := other.copyFrom(t, a); code == 0 || stderr == "" {
		t.Errorf("copy into a repository with other parameters: exit %d: %s", code, stderr)
	}
	if files := other.files(t, "snapshots"); len(files) != 0 {
		t.Errorf("refused copy wrote snapshots: %v", files)
	}
}

func TestCLICopyLocal(t *testing.T) {
	testCLICopy(t, filepath.Join(t.TempDir(), "copy"))
}

func TestCLICopyS3(t *testing.T) {
	srv := s3test.StartT(t)
	t.Setenv("AWS_ACCESS_KEY_ID", s3test.User)
	t.Setenv("AWS_SECRET_ACCESS_KEY", s3test.Password)
	t.Setenv("HOME", t.TempDir())
	testCLICopy(t, "s3:http://"+srv.Addr+"/"+s3test.NewBucketName()+"/copy")
}
