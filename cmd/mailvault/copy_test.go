package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/mailvault/mailvault/archive"
	"github.com/mailvault/mailvault/archive/local"
	"github.com/mailvault/mailvault/archive/s3/s3test"
)

// newCopyTargetEnv creates repository loc with the parameters of src, opened
// by a new identity of its own.
func newCopyTargetEnv(t *testing.T, src *cliEnv, loc string) *cliEnv {
	t.Helper()
	e := &cliEnv{repo: loc, identity: filepath.Join(t.TempDir(), "target-key.txt")}
	id := newIdentityFile(t, e.identity)
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

// killCopy starts `mailvault copy` from src into e as a process and kills
// it with SIGKILL once packs pack files are stored in e. It reports false
// if the copy got as far as writing its index first.
func killCopy(t *testing.T, e, src *cliEnv, packs int) bool {
	t.Helper()
	stored := func() bool { return len(e.files(t, "data")) >= packs }
	return killWhen(t, e, stored, "--quiet", "copy", "--compression", "off", "--from", src.repo, "--from-identity", src.identity) &&
		len(e.files(t, "index")) == 0 && len(e.files(t, "snapshots")) == 0
}

// unindexedBlobs counts the blobs in e's packs that no index lists: what
// a killed copy stored.
func unindexedBlobs(t *testing.T, e *cliEnv) int64 {
	t.Helper()
	ids, err := archive.LoadIdentities(e.identity)
	if err != nil {
		t.Fatal(err)
	}
	repo, err := archive.Open(t.Context(), local.New(e.repo), archive.Credentials{Identities: ids}, archive.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer repo.Close()
	unindexed, err := repo.LoadIndex(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for id, size := range unindexed {
		blobs, err := repo.ReadPackHeader(t.Context(), id, size)
		if err != nil {
			t.Fatal(err)
		}
		n += int64(len(blobs))
	}
	return n
}

// TestCLIKillDuringCopy kills `mailvault copy` with SIGKILL halfway: the
// target holds no snapshot, and the next copy adopts the packs the killed
// one stored — moving exactly the blobs that are still missing — after
// which the target checks clean, reading every pack, and restores.
func TestCLIKillDuringCopy(t *testing.T) {
	srcTree := genCorpus(t, 53, 30e6)
	a := newCLIEnv(t)
	a.backup(t, "--compression", "off", srcTree)

	// What a copy moves from scratch.
	fresh := newCopyTargetEnv(t, a, filepath.Join(t.TempDir(), "fresh"))
	fresh.setPackSize(t, 1<<20)
	full, code, stderr := fresh.copyFrom(t, a, "--compression", "off")
	if code != 0 || full.Snapshots != 1 || full.BlobsPresent != 0 {
		t.Fatalf("fresh copy: exit %d %s: %+v", code, stderr, full)
	}
	totalPacks := len(fresh.files(t, "data"))
	if totalPacks < 6 {
		t.Fatalf("a full copy writes only %d packs; the corpus is too small to kill it midway", totalPacks)
	}

	var b *cliEnv
	// A copy that gets as far as its index before the signal lands is a
	// miss (the machine was slow to poll), and the attempt is repeated.
	killAt := max(1, totalPacks/3)
	for attempt := 1; ; attempt++ {
		b = newCopyTargetEnv(t, a, filepath.Join(t.TempDir(), "target"))
		b.setPackSize(t, 1<<20)
		if killCopy(t, b, a, killAt) {
			break
		}
		if attempt == 5 {
			t.Fatalf("the copy always finished before it could be killed after %d packs", killAt)
		}
	}
	orphans := unindexedBlobs(t, b)
	if orphans == 0 {
		t.Fatal("the killed copy left no blobs")
	}
	if res, code := b.check(t, true); code != 0 || !res.OK() || res.Snapshots != 0 {
		t.Fatalf("check after the kill: exit %d: %+v", code, res)
	}

	st, code, stderr := b.copyFrom(t, a, "--compression", "off")
	if code != 0 || st.Snapshots != 1 {
		t.Fatalf("copy after the kill: exit %d %s: %+v", code, stderr, st)
	}
	t.Logf("full copy: %d blobs in %d packs; killed copy stored %d blobs; resumed copy moved %d, found %d present",
		full.Blobs, totalPacks, orphans, st.Blobs, st.BlobsPresent)
	// Only what the killed copy had not stored moved.
	if st.BlobsPresent != orphans || st.Blobs+st.BlobsPresent != full.Blobs {
		t.Errorf("resumed copy moved %d blobs and found %d present; the killed one stored %d, a full copy moves %d",
			st.Blobs, st.BlobsPresent, orphans, full.Blobs)
	}
	res, code := b.check(t, true)
	if code != 0 || !res.OK() || len(res.Warnings) != 0 || res.Snapshots != 1 {
		t.Fatalf("check --read-data after the resumed copy: exit %d: %+v", code, res)
	}
	target := filepath.Join(t.TempDir(), "restored")
	if _, stderr, code := b.cli(t, "restore", "latest", "--target", target); code != 0 {
		t.Fatalf("restore: exit %d: %s", code, stderr)
	}
	sameTree(t, srcTree, target)
}
