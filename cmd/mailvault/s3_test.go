package main

import (
	"path/filepath"
	"testing"

	"filippo.io/age"
	"github.com/mailvault/mailvault/archive/s3/s3test"
)

// TestCLIS3 runs init, backup, restore and check against a repository in
// MinIO, with the credentials taken from the AWS environment variables.
func TestCLIS3(t *testing.T) {
	_, _, e, id := s3CLIEnv(t, "backups/mail")
	if _, stderr, code := runCLI(t, "--repo", e.repo, "init", "--recipient", id.Recipient().String()); code != 0 {
		t.Fatalf("init: exit %d: %s", code, stderr)
	}
	if _, _, code := runCLI(t, "--repo", e.repo, "init", "--recipient", id.Recipient().String()); code == 0 {
		t.Error("a second init of the same repository succeeded")
	}

	src := genCorpus(t, 3, 1e6)
	if b := e.backup(t, src); len(b.Warnings) != 0 || b.Summary.Messages == 0 {
		t.Fatalf("backup: %+v", b)
	}
	target := filepath.Join(t.TempDir(), "restored")
	if _, stderr, code := e.cli(t, "restore", "latest", "--target", target); code != 0 {
		t.Fatalf("restore: exit %d: %s", code, stderr)
	}
	sameTree(t, src, target)
	res, code := e.check(t, true)
	if code != 0 || !res.OK() || res.PacksRead == 0 {
		t.Errorf("check: exit %d: %+v", code, res)
	}
}

func TestCLIS3BadLocation(t *testing.T) {
	for _, loc := range []string{"s3:", "s3:http://127.0.0.1:9", "s3:ftp://h/b"} {
		if _, stderr, code := runCLI(t, "--repo", loc, "snapshots"); code == 0 {
			t.Errorf("--repo %s: exit 0", loc)
		} else if stderr == "" {
			t.Errorf("--repo %s: no message", loc)
		}
	}
}

// s3CLIEnv starts MinIO (once per test binary), gives the CLI its
// credentials through the AWS environment variables (HOME elsewhere: no
// ~/.aws/credentials to get in the way) and returns an environment whose
// repository is at prefix in a new bucket, not yet initialised, with a
// new identity.
func s3CLIEnv(t *testing.T, prefix string) (srv *s3test.Server, bucket string, e *cliEnv, id *age.X25519Identity) {
	t.Helper()
	srv = s3test.StartT(t)
	t.Setenv("AWS_ACCESS_KEY_ID", s3test.User)
	t.Setenv("AWS_SECRET_ACCESS_KEY", s3test.Password)
	t.Setenv("HOME", t.TempDir())
	bucket = s3test.NewBucketName()
	e = &cliEnv{repo: "s3:http://" + srv.Addr + "/" + bucket + "/" + prefix, identity: filepath.Join(t.TempDir(), "key.txt")}
	return srv, bucket, e, newIdentityFile(t, e.identity)
}
