package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/mailvault/mailvault/archive"
	"github.com/mailvault/mailvault/archive/local"
	"github.com/mailvault/mailvault/maildir"
)

// repoListing lists every file of the repository but locks, with its size.
func repoListing(t *testing.T, repo string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(repo, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.Contains(p, string(filepath.Separator)+"locks"+string(filepath.Separator)) {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(repo, p)
		out = append(out, fmt.Sprintf("%s %d", rel, fi.Size()))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

// TestRepairWriteOnlyCLI (issue 9, defect 4): every repair subcommand
// refuses a write-only key with exit code 12 and changes nothing; `repair
// index` used to delete the index files and exit 0.
func TestRepairWriteOnlyCLI(t *testing.T) {
	e := newCLIEnv(t)
	e.backup(t, genCorpus(t, 41, 2e5))
	woKey := filepath.Join(t.TempDir(), "wo.txt")
	id := newIdentityFile(t, woKey)
	if _, stderr, code := e.cli(t, "key", "add", "--write-only", "--recipient", id.Recipient().String()); code != 0 {
		t.Fatalf("key add --write-only: exit %d: %s", code, stderr)
	}
	wo := &cliEnv{repo: e.repo, identity: woKey}
	before := repoListing(t, e.repo)
	for _, args := range [][]string{
		{"repair", "index"},
		{"repair", "packs"},
		{"repair", "snapshots", "--forget"},
	} {
		stdout, stderr, code := wo.cli(t, args...)
		if code != exitWrongKey || !strings.Contains(stderr, "write-only") {
			t.Errorf("%v with a write-only key: exit %d, %q %q; want %d naming the write-only key", args, code, stdout, stderr, exitWrongKey)
		}
		if after := repoListing(t, e.repo); !slices.Equal(before, after) {
			t.Fatalf("%v with a write-only key changed the repository:\nbefore %v\nafter  %v", args, before, after)
		}
	}
	if res, code := e.check(t, true); code != 0 || !res.OK() {
		t.Fatalf("check after the refused repairs: exit %d, %+v", code, res)
	}
}

// largestDataPack returns e's data pack with the most bytes of blobs that
// is not in skip, its path and its largest blob (a message body).
func largestDataPack(t *testing.T, e *cliEnv, skip ...archive.ID) (archive.ID, string, archive.PackedBlob) {
	t.Helper()
	ids, err := archive.LoadIdentities(e.identity)
	if err != nil {
		t.Fatal(err)
	}
	r, err := archive.Open(t.Context(), local.New(e.repo), archive.Credentials{Identities: ids}, archive.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := r.LoadIndex(t.Context()); err != nil {
		t.Fatal(err)
	}
	var best archive.ID
	var largest archive.PackedBlob
	var most int64
	for p, blobs := range r.Index().PackBlobs() {
		var n int64
		for _, b := range blobs {
			n += int64(b.Length)
		}
		if blobs[0].Type == archive.DataBlob && n > most && !slices.Contains(skip, p) {
			best, most = p, n
			largest = slices.MaxFunc(blobs, func(a, b archive.PackedBlob) int { return int(a.Length) - int(b.Length) })
		}
	}
	if most == 0 {
		t.Fatal("no data pack")
	}
	return best, filepath.Join(e.repo, "data", best.String()[:2], best.String()), largest
}

// flipInBlob flips a byte in the middle of blob b of the pack at path: its
// plaintext offset mapped into the age file (header, 16-byte nonce, 64 KiB
// chunks with a 16-byte tag each).
func flipInBlob(t *testing.T, path string, b archive.PackedBlob) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(data, []byte("\n--- "))
	if i < 0 {
		t.Fatal("no age header end")
	}
	hdr := int64(i + 1 + bytes.IndexByte(data[i+1:], '\n') + 1)
	const chunk = 64 << 10
	plain := int64(b.Offset) + int64(b.Length)/2
	data[hdr+16+plain/chunk*(chunk+16)+plain%chunk] ^= 0xff
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestRepairCLI: a byte flipped in a data pack; `repair packs --from
// TARGET` takes what it lost from the copy of the targets file (nothing
// lost, check clean, restore equal to the source). Then another pack is
// damaged and repaired without a copy: repair packs lists the messages
// that lost data with their Message-ID and subject, check fails (13) until
// `repair snapshots --forget` drops them, after which check is clean,
// `snapshots` marks the snapshot repaired and the restore equals the
// source without exactly those messages.
func TestRepairCLI(t *testing.T) {
	a := newCLIEnv(t)
	a.setPackSize(t, 1<<20)
	src := genCorpus(t, 43, 4e6)
	a.backup(t, "--compression", "off", src)
	b := newCopyTargetEnv(t, a, filepath.Join(t.TempDir(), "offsite"))
	if _, code, stderr := b.copyFrom(t, a); code != 0 {
		t.Fatalf("copy: exit %d: %s", code, stderr)
	}
	targets := targetsFile(t, src, repoTarget("local", a, "medium: disk, location: onsite, primary: true"), repoTarget("offsite", b, "medium: nas, location: offsite"))

	// Usage errors come before anything is opened or locked.
	for _, args := range [][]string{
		{"repair", "packs", "1234"},
		{"repair", "packs", "--from", "offsite"},
		{"repair", "packs", "--from", "nowhere", "--targets", targets},
		{"repair", "packs", "--from", "offsite", "--from-repo", b.repo, "--targets", targets},
		{"repair", "packs", "--from-repo", a.repo},
	} {
		if _, stderr, code := a.cli(t, args...); code != exitUsage {
			t.Errorf("%v: exit %d (%s), want %d", args, code, stderr, exitUsage)
		}
	}

	bad, path, blob := largestDataPack(t, a)
	flipInBlob(t, path, blob)
	if _, code := a.check(t, true); code != exitCheckFailed {
		t.Fatalf("check after the flip: exit %d, want %d", code, exitCheckFailed)
	}
	stdout, stderr, code := a.cli(t, "--json", "repair", "packs", "--from", "offsite", "--targets", targets)
	var res archive.RepairPacksResult
	if code != 0 || json.Unmarshal([]byte(stdout), &res) != nil {
		t.Fatalf("repair packs --from offsite: exit %d: %s %s", code, stdout, stderr)
	}
	if len(res.Packs) != 1 || res.Packs[0].Pack != bad || !res.Packs[0].Deleted || res.BlobsLost != 0 || res.BlobsFromCopy == 0 || len(res.Lost) != 0 {
		t.Fatalf("repair packs --from offsite: %+v", res)
	}
	if r, code := a.check(t, true); code != 0 {
		t.Fatalf("check after repair packs --from: exit %d: %+v", code, r)
	}
	got := a.restoreLatest(t)
	sameTree(t, src, got)

	// Without a copy.
	bad, path, blob = largestDataPack(t, a, bad)
	flipInBlob(t, path, blob)
	stdout, stderr, code = a.cli(t, "repair", "packs", bad.String())
	if code != 0 || !strings.Contains(stdout, "lost content") || !strings.Contains(stdout, "Message-ID") || !strings.Contains(stdout, "repair snapshots --forget") {
		t.Fatalf("repair packs %s: exit %d:\n%s\n%s", bad.Short(), code, stdout, stderr)
	}
	t.Logf("repair packs:\n%s", stdout)
	if _, code := a.check(t, false); code != exitCheckFailed {
		t.Fatalf("check after losing data: exit %d, want %d", code, exitCheckFailed)
	}
	before := repoListing(t, a.repo)
	stdout, stderr, code = a.cli(t, "repair", "snapshots", "--dry-run")
	if code != 0 || !strings.Contains(stdout, "dropped snapshot") || !strings.Contains(stdout, "would be repaired") {
		t.Fatalf("repair snapshots --dry-run: exit %d:\n%s\n%s", code, stdout, stderr)
	}
	if after := repoListing(t, a.repo); !slices.Equal(before, after) {
		t.Fatal("repair snapshots --dry-run changed the repository")
	}
	stdout, stderr, code = a.cli(t, "--json", "repair", "snapshots", "--forget")
	var rs archive.RepairSnapshotsResult
	if code != 0 || json.Unmarshal([]byte(stdout), &rs) != nil || len(rs.Repaired) != 1 || len(rs.Forgotten) != 1 || len(rs.Dropped) == 0 {
		t.Fatalf("repair snapshots --forget: exit %d: %s %s", code, stdout, stderr)
	}
	if r, code := a.check(t, true); code != 0 {
		t.Fatalf("check after repair snapshots: exit %d: %+v", code, r)
	}
	if stdout, _, _ := a.cli(t, "snapshots"); !strings.Contains(stdout, "(repaired)") {
		t.Errorf("snapshots does not mark the repaired snapshot:\n%s", stdout)
	}
	got = a.restoreLatest(t)
	dropped := map[string]bool{}
	for _, m := range rs.Dropped {
		switch {
		case m.File != "":
			if err := os.Remove(filepath.Join(src, filepath.FromSlash(m.File))); err != nil {
				t.Fatal(err)
			}
		case m.Unique == "":
			t.Fatalf("dropped a whole folder: %s", m)
		default:
			dropped[m.Unique] = true
		}
	}
	// The source without the dropped messages (their copies in other
	// folders share the lost blobs and are dropped too).
	removed := 0
	filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() && (filepath.Base(filepath.Dir(p)) == "cur" || filepath.Base(filepath.Dir(p)) == "new") &&
			dropped[maildir.ParseName(d.Name()).Unique] {
			removed++
			return os.Remove(p)
		}
		return err
	})
	if removed == 0 {
		t.Fatal("no dropped message found in the source")
	}
	sameTree(t, src, got)
}

// TestRepairLockedCLI: a repair needs the exclusive lock; while a backup
// (or anything else) holds a lock, every repair exits 11 and changes
// nothing.
func TestRepairLockedCLI(t *testing.T) {
	e := newCLIEnv(t)
	e.backup(t, genCorpus(t, 47, 2e5))
	ids, err := archive.LoadIdentities(e.identity)
	if err != nil {
		t.Fatal(err)
	}
	r, err := archive.Open(t.Context(), local.New(e.repo), archive.Credentials{Identities: ids}, archive.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	unlock, err := r.Lock(t.Context(), false)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	before := repoListing(t, e.repo)
	for _, args := range [][]string{{"repair", "index"}, {"repair", "packs"}, {"repair", "snapshots", "--forget"}} {
		if _, stderr, code := e.cli(t, args...); code != exitLocked {
			t.Errorf("%v while locked: exit %d (%s), want %d", args, code, stderr, exitLocked)
		}
	}
	if after := repoListing(t, e.repo); !slices.Equal(before, after) {
		t.Fatal("a refused repair changed the repository")
	}
}

// TestRepairFromRepoCLI: a pack file is gone; `repair packs --from-repo`
// with the copy's own identity takes every blob it held from the copy.
func TestRepairFromRepoCLI(t *testing.T) {
	a := newCLIEnv(t)
	a.setPackSize(t, 1<<20)
	src := genCorpus(t, 53, 3e6)
	a.backup(t, "--compression", "off", src)
	b := newCopyTargetEnv(t, a, filepath.Join(t.TempDir(), "copy"))
	if _, code, stderr := b.copyFrom(t, a); code != 0 {
		t.Fatalf("copy: exit %d: %s", code, stderr)
	}
	bad, path, _ := largestDataPack(t, a)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code := a.cli(t, "--json", "repair", "packs", "--from-repo", b.repo, "--from-identity", b.identity)
	var res archive.RepairPacksResult
	if code != 0 || json.Unmarshal([]byte(stdout), &res) != nil {
		t.Fatalf("repair packs --from-repo: exit %d: %s %s", code, stdout, stderr)
	}
	if len(res.Packs) != 1 || res.Packs[0].Pack != bad || res.Packs[0].Deleted || res.BlobsLost != 0 || res.BlobsFromCopy != res.Packs[0].Blobs {
		t.Fatalf("repair packs --from-repo: %+v", res)
	}
	if r, code := a.check(t, true); code != 0 {
		t.Fatalf("check: exit %d: %+v", code, r)
	}
	got := a.restoreLatest(t)
	sameTree(t, src, got)
}
