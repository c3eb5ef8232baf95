package main

import (
	"bytes"
	"encoding/json"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/mailvault/mailvault/archive"
	"github.com/mailvault/mailvault/archive/local"
	"github.com/mailvault/mailvault/internal/testutil"
	"github.com/mailvault/mailvault/restore"
)

// openRepo opens e's repository through the archive package, index
// loaded, for a test to look inside.
func openRepo(t *testing.T, e *cliEnv) *archive.Repository {
	t.Helper()
	ids, err := archive.LoadIdentities(e.identity)
	if err != nil {
		t.Fatal(err)
	}
	repo, err := archive.Open(t.Context(), local.New(e.repo), archive.Credentials{Identities: ids}, archive.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { repo.Close() })
	if _, err := repo.LoadIndex(t.Context()); err != nil {
		t.Fatal(err)
	}
	return repo
}

// sameOrAbsent asserts that every file below got is the file of the same
// path below want, content and all: nothing partial under a final name.
// Files whose names start with tempPrefix are returned, not compared.
func sameOrAbsent(t *testing.T, want, got string) (restored, temps []string) {
	t.Helper()
	wf, _ := testutil.ReadTree(t, want)
	gf, _ := testutil.ReadTree(t, got)
	for rel, g := range gf {
		if strings.HasPrefix(path.Base(rel), ".mailvault-restore-") {
			temps = append(temps, rel)
			continue
		}
		w, ok := wf[rel]
		switch {
		case !ok:
			t.Errorf("%s: not in the source", rel)
		case !bytes.Equal(w.Content, g.Content):
			t.Errorf("%s: %d bytes differ from the source's %d: partially written", rel, len(g.Content), len(w.Content))
		}
		restored = append(restored, rel)
	}
	return restored, temps
}

// TestCLIRestoreDamagedPack flips a byte at the start of one data pack:
// `restore` must restore everything else, list in --json exactly the
// messages with content in the pack — the ones `check --read-data` names —
// and exit with exitIncomplete; its text output names them with their
// Message-ID and subject.
func TestCLIRestoreDamagedPack(t *testing.T) {
	src := genCorpus(t, 43, 6e6)
	e := newCLIEnv(t)
	e.setPackSize(t, 1<<20)
	e.backup(t, "--compression", "off", src)

	// A pack of data blobs only, whose loss leaves other messages.
	repo := openRepo(t, e)
	var pack archive.ID
	for p, blobs := range repo.Index().PackBlobs() {
		if !slices.ContainsFunc(blobs, func(b archive.PackedBlob) bool { return b.Type != archive.DataBlob }) {
			pack = p
			break
		}
	}
	if pack.IsNull() {
		t.Fatal("no data pack")
	}
	packFile := filepath.Join(e.repo, "data", pack.String()[:2], pack.String())
	sealed, err := os.ReadFile(packFile)
	if err != nil {
		t.Fatal(err)
	}
	// The first age chunk: 16 bytes of nonce after the header.
	hdrEnd := bytes.Index(sealed, []byte("\n--- "))
	hdrEnd += bytes.IndexByte(sealed[hdrEnd+1:], '\n') + 2
	sealed[hdrEnd+16+100] ^= 1
	if err := os.WriteFile(packFile, sealed, 0o600); err != nil {
		t.Fatal(err)
	}

	chk, code := e.check(t, true)
	if code != exitCheckFailed || len(chk.Errors) != 1 {
		t.Fatalf("check --read-data: exit %d, %+v", code, chk.Errors)
	}
	// "snapshot ID user/folder/unique <id> "subject"" or "snapshot ID file PATH".
	var checkNames []string
	for _, a := range chk.Errors[0].Affected {
		f := strings.SplitN(a, " ", 4)
		if f[2] == "file" {
			checkNames = append(checkNames, "file "+f[3])
			continue
		}
		checkNames = append(checkNames, path.Base(f[2])+" "+f[3])
	}
	sort.Strings(checkNames)

	target := filepath.Join(t.TempDir(), "restored")
	stdout, stderr, code := e.cli(t, "--json", "restore", "latest", "--target", target)
	if code != exitIncomplete {
		t.Fatalf("restore: exit %d, want %d\n%s\n%s", code, exitIncomplete, stdout, stderr)
	}
	var out struct {
		Result restore.Result `json:"result"`
	}
	if err := json.Unmarshal([]byte(stdout), &out); err != nil {
		t.Fatalf("restore --json: %v\n%s", err, stdout)
	}
	res := out.Result
	if len(res.DamagedPacks) != 1 || res.DamagedPacks[0].Pack != pack {
		t.Errorf("damaged packs %+v, want %s", res.DamagedPacks, pack)
	}
	var restoreNames []string
	lost := map[string]bool{}
	for _, f := range res.Failed {
		lost[f.Path] = true
		if f.Kind == "file" {
			restoreNames = append(restoreNames, "file "+f.Path)
			continue
		}
		restoreNames = append(restoreNames, f.Unique+" <"+f.MessageID+"> "+strconv.Quote(f.Subject))
	}
	sort.Strings(restoreNames)
	if len(restoreNames) == 0 || !slices.Equal(restoreNames, checkNames) {
		t.Errorf("restore could not restore:\n%s\ncheck names:\n%s", strings.Join(restoreNames, "\n"), strings.Join(checkNames, "\n"))
	}
	restored, temps := sameOrAbsent(t, src, target)
	if len(temps) > 0 {
		t.Errorf("temporary files left: %q", temps)
	}
	wf, _ := testutil.ReadTree(t, src)
	if len(restored)+len(lost) != len(wf) {
		t.Errorf("%d files restored and %d lost of %d", len(restored), len(lost), len(wf))
	}

	// The text output lists the messages with Message-ID and subject.
	target2 := filepath.Join(t.TempDir(), "restored")
	stdout, _, code = e.cli(t, "restore", "latest", "--target", target2)
	if code != exitIncomplete || !strings.Contains(stdout, "error: pack "+pack.String()) {
		t.Errorf("restore: exit %d, output:\n%s", code, stdout)
	}
	for _, f := range res.Failed {
		if f.Kind == "message" && !strings.Contains(stdout, f.Unique+" <"+f.MessageID+"> "+strconv.Quote(f.Subject)) {
			t.Errorf("output does not name %s <%s> %q:\n%s", f.Unique, f.MessageID, f.Subject, stdout)
			break
		}
	}
}

// TestCLIRestoreKilled kills `restore` with SIGKILL midway: every file
// under its final name must be complete, temporary files may be left
// (nothing could remove them) but only under their dot names, in a
// folder's tmp/ for messages; a second restore with --overwrite completes
// the target. (A backup keeps a message's blobs in one pack, so the old
// restore showed a partial file only between two writes of one pack's
// read, too briefly for a kill to catch; restore's
// TestRestoreInterruptedLeavesNoPartialFile ends a restore right there.)
func TestCLIRestoreKilled(t *testing.T) {
	src := genCorpus(t, 44, 6e6)
	e := newCLIEnv(t)
	e.setPackSize(t, 1<<20)
	e.backup(t, "--compression", "off", src)
	wf, _ := testutil.ReadTree(t, src)

	var target string
	for attempt := 1; ; attempt++ {
		target = filepath.Join(t.TempDir(), "restored")
		// Killed once a third of the files are in place.
		some := func() bool {
			n := 0
			filepath.WalkDir(target, func(p string, d fs.DirEntry, err error) error {
				if err == nil && d.Type().IsRegular() {
					n++
				}
				return nil
			})
			return n >= len(wf)/3
		}
		if killWhen(t, e, some, "--quiet", "restore", "latest", "--target", target) {
			break
		}
		if attempt == 3 {
			t.Fatal("the restore always finished before it could be killed")
		}
	}
	restored, temps := sameOrAbsent(t, src, target)
	if len(restored) == len(wf) {
		t.Fatal("killed restore restored everything")
	}
	for _, tmp := range temps {
		if dir := path.Base(path.Dir(tmp)); dir == "cur" || dir == "new" {
			t.Errorf("temporary file %s in a message directory", tmp)
		}
	}
	t.Logf("killed after %d of %d files, %d temporary files left", len(restored), len(wf), len(temps))

	if _, stderr, code := e.cli(t, "--quiet", "restore", "latest", "--target", target, "--overwrite"); code != 0 {
		t.Fatalf("restore again: exit %d: %s", code, stderr)
	}
	restored, _ = sameOrAbsent(t, src, target)
	if len(restored) != len(wf) {
		t.Errorf("restore again: %d of %d files", len(restored), len(wf))
	}
}
