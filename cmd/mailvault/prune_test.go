package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/mailvault/mailvault/archive"
	"github.com/mailvault/mailvault/archive/s3/s3test"
)

// writeMessages adds n messages of about size bytes, each with a random
// body of its own, to one Maildir below src, numbered from first. (The
// generated corpus shares bodies between mailboxes; here deleting a
// message makes its blobs unused.)
func writeMessages(t *testing.T, src string, first, n, size int) {
	t.Helper()
	md := filepath.Join(src, "example.com", "alice", "Maildir")
	for _, sub := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(md, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	raw := make([]byte, size*3/4)
	for i := first; i < first+n; i++ {
		rng := mrand.New(mrand.NewPCG(uint64(i), 7))
		for j := range raw {
			raw[j] = byte(rng.Uint32())
		}
		msg := fmt.Sprintf("From: a@example.com\r\nTo: alice@example.com\r\nSubject: message %d\r\n\r\n%s\r\n", i, base64.StdEncoding.EncodeToString(raw))
		name := fmt.Sprintf("%d.M%dP1.testhost:2,S", 1700000000+i, i)
		if err := os.WriteFile(filepath.Join(md, "cur", name), []byte(msg), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// deleteEveryOther removes every other message below src.
func deleteEveryOther(t *testing.T, src string) {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(src, "example.com", "alice", "Maildir", "cur", "*"))
	if err != nil {
		t.Fatal(err)
	}
	for i, n := range names {
		if i%2 == 0 {
			if err := os.Remove(n); err != nil {
				t.Fatal(err)
			}
		}
	}
}

type forgetJSON struct {
	DryRun bool                 `json:"dry_run"`
	Forget archive.ForgetResult `json:"forget"`
	Prune  *archive.PruneResult `json:"prune"`
}

func (e *cliEnv) prune(t *testing.T, args ...string) archive.PruneResult {
	t.Helper()
	stdout, stderr, code := e.cli(t, append([]string{"--json", "prune"}, args...)...)
	if code != 0 {
		t.Fatalf("prune: exit %d: %s", code, stderr)
	}
	var res archive.PruneResult
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatalf("prune output: %v\n%s", err, stdout)
	}
	return res
}

func (e *cliEnv) checkClean(t *testing.T, snapshots int) {
	t.Helper()
	res, code := e.check(t, true)
	if code != 0 || !res.OK() || len(res.Warnings) != 0 || res.Snapshots != snapshots || res.PacksRead != res.Packs {
		t.Fatalf("check --read-data: exit %d: %+v", code, res)
	}
}

// TestCLIForgetPrune: forget --prune --dry-run changes nothing and plans
// what forget --prune then does; the repository checks clean and
// restores; bad flags are usage errors.
func TestCLIForgetPrune(t *testing.T) {
	e := newCLIEnv(t)
	e.setPackSize(t, 1<<20)
	src := filepath.Join(t.TempDir(), "mail")
	writeMessages(t, src, 0, 24, 96<<10)
	s1 := e.backup(t, "--compression", "off", src)
	deleteEveryOther(t, src)
	e.backup(t, "--compression", "off", src)
	packs := len(e.files(t, "data"))

	stdout, stderr, code := e.cli(t, "--json", "forget", "--prune", "--dry-run", "--max-unused", "0%", s1.Snapshot.String()[:8])
	if code != 0 {
		t.Fatalf("forget --dry-run: exit %d: %s", code, stderr)
	}
	var dry forgetJSON
	if err := json.Unmarshal([]byte(stdout), &dry); err != nil {
		t.Fatal(err)
	}
	if !dry.DryRun || len(dry.Forget.Removed) != 1 || dry.Prune == nil || len(dry.Prune.Repack) == 0 || dry.Prune.Snapshots != 1 {
		t.Fatalf("forget --prune --dry-run: %s", stdout)
	}
	if len(e.files(t, "snapshots")) != 2 || len(e.files(t, "data")) != packs {
		t.Fatal("the dry run changed the repository")
	}

	stdout, stderr, code = e.cli(t, "--json", "forget", "--prune", "--max-unused", "0%", s1.Snapshot.String(), s1.Snapshot.String()[:10])
	if code != 0 {
		t.Fatalf("forget --prune: exit %d: %s", code, stderr)
	}
	var done forgetJSON
	if err := json.Unmarshal([]byte(stdout), &done); err != nil {
		t.Fatal(err)
	}
	p := done.Prune
	if len(done.Forget.Removed) != 1 || p == nil || p.PacksDeleted != len(dry.Prune.Delete)+len(dry.Prune.Repack)+len(dry.Prune.Unindexed) ||
		p.BlobsRepacked != dry.Prune.BlobsRepacked || p.BytesFreed <= 0 {
		t.Fatalf("forget --prune did %s; the dry run planned %+v", stdout, dry.Prune)
	}
	if got := len(e.files(t, "data")); got != packs-p.PacksDeleted+p.PacksWritten {
		t.Errorf("%d packs left; %d before, %d deleted, %d written", got, packs, p.PacksDeleted, p.PacksWritten)
	}
	e.checkClean(t, 1)
	target := filepath.Join(t.TempDir(), "restored")
	if _, stderr, code := e.cli(t, "restore", "latest", "--target", target); code != 0 {
		t.Fatalf("restore: exit %d: %s", code, stderr)
	}
	sameTree(t, src, target)

	// Nothing left to do, said in words.
	stdout, _, code = e.cli(t, "prune")
	if code != 0 || !strings.Contains(stdout, "deleted 0 packs") {
		t.Errorf("second prune: exit %d: %s", code, stdout)
	}
	for _, args := range [][]string{{"prune", "--max-unused", "5"}, {"prune", "--max-unused", "100%"}, {"prune", "--max-repack-size", "lots"}} {
		if _, _, code := e.cli(t, args...); code != exitUsage {
			t.Errorf("%v: exit %d, want %d", args, code, exitUsage)
		}
	}
	if _, _, code := e.cli(t, "forget", "ffffffff"); code != exitError {
		t.Errorf("forget of an unknown snapshot: exit %d, want %d", code, exitError)
	}

	// A write-only key deletes nothing.
	wo := &cliEnv{repo: e.repo, identity: filepath.Join(t.TempDir(), "wo.txt")}
	id := newIdentityFile(t, wo.identity)
	if _, stderr, code := e.cli(t, "key", "add", "--write-only", "--recipient", id.Recipient().String()); code != 0 {
		t.Fatalf("key add --write-only: exit %d: %s", code, stderr)
	}
	for _, args := range [][]string{{"prune"}, {"forget", "latest"}} {
		if _, stderr, code := wo.cli(t, args...); code != exitWrongKey {
			t.Errorf("%v with a write-only key: exit %d, want %d: %s", args, code, exitWrongKey, stderr)
		}
	}
	if n := len(e.files(t, "snapshots")); n != 1 {
		t.Errorf("%d snapshots after the write-only key's attempts, want 1", n)
	}
}

// TestCLIKillDuringPrune kills `mailvault prune` with SIGKILL at several
// points — while it repacks, after it wrote the new index, after it began
// removing the old index files, and after it began deleting packs — and
// checks each time that the repository checks clean reading every pack,
// restores, and that the next prune, backup and prune work and leave no
// warning.
func TestCLIKillDuringPrune(t *testing.T) {
	base := newCLIEnv(t)
	base.setPackSize(t, 1<<20)
	src := filepath.Join(t.TempDir(), "mail")
	// Six backups, each adding messages: six index files and snapshots.
	var snaps []archive.ID
	for i := range 6 {
		writeMessages(t, src, i*16, 16, 160<<10)
		snaps = append(snaps, base.backup(t, "--compression", "off", src).Snapshot)
	}
	deleteEveryOther(t, src)
	base.backup(t, "--compression", "off", src)
	args := []string{"forget"}
	for _, id := range snaps {
		args = append(args, id.String())
	}
	if _, stderr, code := base.cli(t, args...); code != 0 {
		t.Fatalf("forget: exit %d: %s", code, stderr)
	}

	initial := func(kind string) map[string]bool {
		m := map[string]bool{}
		for _, f := range base.files(t, kind) {
			m[filepath.Base(f)] = true
		}
		return m
	}
	oldPacks, oldIndexes := initial("data"), initial("index")
	t.Logf("before prune: %d packs, %d index files", len(oldPacks), len(oldIndexes))

	for _, point := range []struct {
		name  string
		ready func(e *cliEnv) bool
	}{
		{"repacking", func(e *cliEnv) bool { return countNew(e.files(t, "data"), oldPacks) > 0 }},
		{"new index written", func(e *cliEnv) bool { return countNew(e.files(t, "index"), oldIndexes) > 0 }},
		{"old index files going", func(e *cliEnv) bool { return countOld(e.files(t, "index"), oldIndexes) < len(oldIndexes) }},
		{"packs going", func(e *cliEnv) bool { return countOld(e.files(t, "data"), oldPacks) < len(oldPacks) }},
	} {
		t.Run(point.name, func(t *testing.T) {
			e := killedCopy(t, base, point.name, point.ready, "--quiet", "prune", "--max-unused", "0%")
			t.Logf("killed with %d of %d old packs and %d of %d old index files left, %d new packs, %d new index files",
				countOld(e.files(t, "data"), oldPacks), len(oldPacks), countOld(e.files(t, "index"), oldIndexes), len(oldIndexes),
				countNew(e.files(t, "data"), oldPacks), countNew(e.files(t, "index"), oldIndexes))
			res, code := e.check(t, true)
			if code != 0 || !res.OK() || res.Snapshots != 1 {
				t.Fatalf("check --read-data after the kill: exit %d: %+v", code, res)
			}
			target := filepath.Join(t.TempDir(), "restored")
			if _, stderr, code := e.cli(t, "restore", "latest", "--target", target); code != 0 {
				t.Fatalf("restore after the kill: exit %d: %s", code, stderr)
			}
			sameTree(t, src, target)

			e.prune(t, "--max-unused", "0%")
			e.checkClean(t, 1)
			writeMessages(t, src, 1000, 4, 64<<10)
			e.backup(t, "--compression", "off", src)
			if again := e.prune(t, "--max-unused", "0%"); again.BlobsUnused != 0 || again.PacksDeleted != 0 {
				t.Errorf("prune after a full prune and a backup: %+v", again)
			}
			e.checkClean(t, 2)
			target = filepath.Join(t.TempDir(), "restored2")
			if _, stderr, code := e.cli(t, "restore", "latest", "--target", target); code != 0 {
				t.Fatalf("restore: exit %d: %s", code, stderr)
			}
			sameTree(t, src, target)
			// Later points start from the same source.
			for i := 1000; i < 1004; i++ {
				os.Remove(filepath.Join(src, "example.com", "alice", "Maildir", "cur", fmt.Sprintf("%d.M%dP1.testhost:2,S", 1700000000+i, i)))
			}
		})
	}
}

// countNew counts the files whose names are not in old; countOld those
// that are.
func countNew(files []string, old map[string]bool) (n int) {
	for _, f := range files {
		if !old[filepath.Base(f)] {
			n++
		}
	}
	return n
}

func countOld(files []string, old map[string]bool) (n int) {
	for _, f := range files {
		if old[filepath.Base(f)] {
			n++
		}
	}
	return n
}

// TestCLIPruneObjectLock: in a repository with Object Lock (MinIO,
// governance, one day) forget and prune exit 0 and say what waits until
// when. The snapshot's retention is cut short by the test setup, as an
// administrator allowed to bypass governance could (MinIO's clock cannot
// be moved): then forget removes it, and prune lists every pack it would
// delete or repack as waiting, deleting nothing.
func TestCLIPruneObjectLock(t *testing.T) {
	srv, bucket, e, id := s3CLIEnv(t, "mail")
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	ctx := t.Context()
	if _, stderr, code := runCLI(t, "--repo", e.repo, "init", "--recipient", id.Recipient().String(), "--object-lock-days", "1"); code != 0 {
		t.Fatalf("init: exit %d: %s", code, stderr)
	}
	src := filepath.Join(t.TempDir(), "mail")
	writeMessages(t, src, 0, 12, 64<<10)
	s1 := e.backup(t, src)
	deleteEveryOther(t, src)
	e.backup(t, src)

	stdout, stderr, code := e.cli(t, "forget", s1.Snapshot.String())
	if code != 0 || !strings.Contains(stdout, "is waiting until") || !strings.Contains(stdout, "it stays") {
		t.Fatalf("forget inside retention: exit %d: %s%s", code, stdout, stderr)
	}

	admin, err := minio.New(srv.Addr, &minio.Options{Creds: credentials.NewStaticV4(s3test.User, s3test.Password, "")})
	if err != nil {
		t.Fatal(err)
	}
	soon := time.Now().Add(2 * time.Second).Truncate(time.Second).Add(time.Second)
	gov := minio.Governance
	key := "mail/snapshots/" + s1.Snapshot.String()
	if err := admin.PutObjectRetention(ctx, bucket, key, minio.PutObjectRetentionOptions{Mode: &gov, RetainUntilDate: &soon, GovernanceBypass: true}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Until(soon) + 200*time.Millisecond)
	if stdout, stderr, code := e.cli(t, "forget", s1.Snapshot.String()); code != 0 || !strings.Contains(stdout, "removed snapshot") {
		t.Fatalf("forget after retention: exit %d: %s%s", code, stdout, stderr)
	}

	objects := func() int {
		n := 0
		for o := range admin.ListObjects(ctx, bucket, minio.ListObjectsOptions{Prefix: "mail/", Recursive: true, WithVersions: true}) {
			if o.Err != nil {
				t.Fatal(o.Err)
			}
			if !strings.HasPrefix(o.Key, "mail/locks/") {
				n++
			}
		}
		return n
	}
	before := objects()
	stdout, stderr, code = e.cli(t, "prune")
	if code != 0 || !strings.Contains(stdout, "files wait for their object-lock retention") || !strings.Contains(stdout, "data/") || !strings.Contains(stdout, "deleted 0 packs") {
		t.Fatalf("prune inside retention: exit %d: %s%s", code, stdout, stderr)
	}
	t.Logf("prune inside retention:\n%s", stdout)
	if after := objects(); after != before {
		t.Errorf("prune inside retention: %d objects before, %d after", before, after)
	}
	e.checkClean(t, 1)
}
