package main

import (
	"encoding/base64"
	"encoding/json"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/mailvault/mailvault/archive"
)

// eraseEnv is a repository with two snapshots of alice's mail, both
// holding the victim (Message-ID <victim@example.com>, a random body of
// its own); src no longer holds the victim, so a restore after the
// erasure must equal it.
func eraseEnv(t *testing.T) (e *cliEnv, src string) {
	t.Helper()
	e = newCLIEnv(t)
	e.setPackSize(t, 1<<20)
	src = filepath.Join(t.TempDir(), "mail")
	writeMessages(t, src, 0, 16, 160<<10)
	raw := make([]byte, 120<<10)
	rng := mrand.New(mrand.NewPCG(99, 7))
	for i := range raw {
		raw[i] = byte(rng.Uint32())
	}
	victim := filepath.Join(src, "example.com", "alice", "Maildir", "cur", "1690000000.M1P1.testhost:2,S")
	msg := "From: eve@example.com\r\nTo: alice@example.com\r\nSubject: erase me\r\nMessage-ID: <victim@example.com>\r\n\r\n" + base64.StdEncoding.EncodeToString(raw) + "\r\n"
	if err := os.WriteFile(victim, []byte(msg), 0o600); err != nil {
		t.Fatal(err)
	}
	e.backup(t, "--compression", "off", src)
	writeMessages(t, src, 16, 16, 160<<10)
	e.backup(t, "--compression", "off", src)
	if err := os.Remove(victim); err != nil {
		t.Fatal(err)
	}
	return e, src
}

// erase runs `mailvault --json erase args...` and decodes its result.
func (e *cliEnv) erase(t *testing.T, args ...string) archive.EraseResult {
	t.Helper()
	stdout, stderr, code := e.cli(t, append([]string{"--json", "erase"}, args...)...)
	if code != 0 {
		t.Fatalf("erase %v: exit %d: %s", args, code, stderr)
	}
	var res archive.EraseResult
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatalf("erase --json: %v: %s", err, stdout)
	}
	return res
}

// allFiles lists every repository file but locks.
func (e *cliEnv) allFiles(t *testing.T) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	for _, kind := range []string{"data", "index", "snapshots", "keys"} {
		for _, f := range e.files(t, kind) {
			out[f] = true
		}
	}
	return out
}

// TestCLIErase: a dry run and selectors matching nothing change nothing;
// erase removes the victim from both snapshots, leaves nothing unused for
// prune to find, and every other message restores.
func TestCLIErase(t *testing.T) {
	e, src := eraseEnv(t)
	before := e.allFiles(t)
	for _, tc := range []struct {
		args []string
		code int
		text string
	}{
		{[]string{"erase"}, exitUsage, "--message-id or --user"},
		{[]string{"erase", "--message-id", "<nobody@example.com>"}, exitError, "no message in any snapshot matches"},
		{[]string{"erase", "--user", "nobody@example.com"}, exitError, "no message in any snapshot matches"},
	} {
		if _, stderr, code := e.cli(t, tc.args...); code != tc.code || !strings.Contains(stderr, tc.text) {
			t.Errorf("%v: exit %d, %q; want exit %d, %q", tc.args, code, stderr, tc.code, tc.text)
		}
	}
	dry := e.erase(t, "--message-id", "victim@example.com", "--dry-run")
	if len(dry.Removed) != 2 || len(dry.Snapshots) != 2 {
		t.Errorf("dry run: %+v", dry)
	}
	if after := e.allFiles(t); len(after) != len(before) {
		t.Fatalf("refused and dry runs changed the repository: %d files, then %d", len(before), len(after))
	}

	res := e.erase(t, "--message-id", "<victim@example.com>")
	if len(res.Removed) != 2 || len(res.Forgotten) != 2 || len(res.PacksRewritten)+len(res.PacksDeleted) == 0 {
		t.Fatalf("erase: %+v", res)
	}
	if p := e.prune(t, "--dry-run", "--max-unused", "0%"); p.BlobsUnused != 0 {
		t.Errorf("after erase prune finds %d unused blobs", p.BlobsUnused)
	}
	e.checkClean(t, 2)
	sameTree(t, src, e.restoreLatest(t))
}

// TestCLIKillDuringErase kills `mailvault erase` with SIGKILL at several
// points — its intent written, new snapshots written, old snapshots
// going, packs going — and checks each time that the repository checks
// clean reading every pack, that erase run again finishes (nothing left
// unused for prune to find) and that every other message restores.
func TestCLIKillDuringErase(t *testing.T) {
	base, src := eraseEnv(t)
	initial := func(kind string) map[string]bool {
		m := map[string]bool{}
		for _, f := range base.files(t, kind) {
			m[filepath.Base(f)] = true
		}
		return m
	}
	oldPacks, oldIndexes, oldSnaps := initial("data"), initial("index"), initial("snapshots")
	for _, point := range []struct {
		name  string
		ready func(e *cliEnv) bool
	}{
		{"intent written", func(e *cliEnv) bool { return countNew(e.files(t, "index"), oldIndexes) > 0 }},
		{"new snapshots written", func(e *cliEnv) bool { return countNew(e.files(t, "snapshots"), oldSnaps) > 0 }},
		{"old snapshots going", func(e *cliEnv) bool { return countOld(e.files(t, "snapshots"), oldSnaps) < len(oldSnaps) }},
		{"packs going", func(e *cliEnv) bool { return countOld(e.files(t, "data"), oldPacks) < len(oldPacks) }},
	} {
		t.Run(point.name, func(t *testing.T) {
			e := killedCopy(t, base, point.name, point.ready, "--quiet", "erase", "--message-id", "victim@example.com")
			if res, code := e.check(t, true); code != 0 || !res.OK() {
				t.Fatalf("check --read-data after the kill: exit %d: %+v", code, res)
			}
			// Killed as its last pack went, the erasure was done: the
			// rerun finds nothing to do, which the checks below confirm.
			stdout, stderr, code := e.cli(t, "--json", "erase", "--message-id", "victim@example.com")
			switch {
			case code == exitError && strings.Contains(stderr, "no message in any snapshot matches"):
				t.Log("rerun: nothing left to do")
			case code == 0:
				var res archive.EraseResult
				if err := json.Unmarshal([]byte(stdout), &res); err != nil {
					t.Fatal(err)
				}
				t.Logf("rerun: resumed %v, %d removed, %d packs rewritten, %d deleted", res.Resumed, len(res.Removed), len(res.PacksRewritten), len(res.PacksDeleted))
			default:
				t.Fatalf("rerun: exit %d: %s", code, stderr)
			}
			if p := e.prune(t, "--dry-run", "--max-unused", "0%"); p.BlobsUnused != 0 || len(p.Unindexed) != 0 {
				t.Errorf("after the rerun prune finds %d unused blobs, %d unindexed packs", p.BlobsUnused, len(p.Unindexed))
			}
			e.checkClean(t, 2)
			sameTree(t, src, e.restoreLatest(t))
			if _, stderr, code := e.cli(t, "erase", "--message-id", "victim@example.com"); code != exitError || !strings.Contains(stderr, "no message") {
				t.Errorf("a third erase: exit %d: %s", code, stderr)
			}
		})
	}
}

// TestCLIEraseHeld: a message an active legal hold selects is not erased
// (exit 16, the case named, the repository unchanged); once the hold is
// released it is.
func TestCLIEraseHeld(t *testing.T) {
	e, _ := eraseEnv(t)
	if _, stderr, code := e.cli(t, "hold", "add", "--case", "fraud-7", "--query", "subject:\"erase me\"", "--reason", "litigation"); code != 0 {
		t.Fatalf("hold add: exit %d: %s", code, stderr)
	}
	before := e.allFiles(t)
	for _, args := range [][]string{{"--message-id", "victim@example.com"}, {"--user", "alice@example.com"}, {"--dry-run", "--user", "alice@example.com"}} {
		_, stderr, code := e.cli(t, append([]string{"erase"}, args...)...)
		if code != exitHeld || !strings.Contains(stderr, `case "fraud-7"`) {
			t.Fatalf("erase %v of a held message: exit %d: %s", args, code, stderr)
		}
	}
	after := e.allFiles(t)
	for f := range after {
		if !before[f] {
			t.Fatalf("a refused erasure wrote %s", f)
		}
	}
	if len(after) != len(before) {
		t.Fatalf("a refused erasure removed files: %d before, %d after", len(before), len(after))
	}
	if _, stderr, code := e.cli(t, "hold", "release", "--case", "fraud-7", "--reason", "settled"); code != 0 {
		t.Fatalf("hold release: exit %d: %s", code, stderr)
	}
	if res := e.erase(t, "--message-id", "victim@example.com", "--reason", "GDPR request 42", "--actor", "dpo@example.com"); len(res.Removed) != 2 {
		t.Fatalf("erase after the release removed %d messages, want 2 (one per snapshot)", len(res.Removed))
	}
	// The audit chain: the hold, its release, the three refused attempts
	// and the erasure, each start recorded before anything was removed,
	// and the erasure's record naming what went but not its subject.
	stdout, stderr, code := e.cli(t, "--json", "hold", "log")
	if code != 0 {
		t.Fatalf("hold log: exit %d: %s", code, stderr)
	}
	var log archive.AuditLog
	if err := json.Unmarshal([]byte(stdout), &log); err != nil {
		t.Fatalf("hold log --json: %v: %s", err, stdout)
	}
	var acts []string
	for _, r := range log.Records {
		acts = append(acts, r.Act)
	}
	want := []string{"hold add", "erase start", "erase start", "hold release", "erase start", "erase"}
	if !slices.Equal(acts, want) || len(log.Breaks) > 0 {
		t.Fatalf("audit chain: acts %q, breaks %q; want %q and none", acts, log.Breaks, want)
	}
	last := log.Records[len(log.Records)-1]
	var detail erasure
	if err := json.Unmarshal(last.Detail, &detail); err != nil {
		t.Fatal(err)
	}
	if last.Actor != "dpo@example.com" || last.Reason != "GDPR request 42" ||
		!slices.Equal(detail.MessageIDs, []string{"victim@example.com"}) || detail.Messages != 2 || len(detail.Snapshots) != 2 ||
		len(detail.PacksRewritten)+len(detail.PacksDeleted) == 0 || strings.Contains(string(last.Detail), "erase me") {
		t.Fatalf("the erasure's record: %+v, detail %s", last, last.Detail)
	}
}

// TestCLIMessageIDAsRecorded: a Message-ID given as the header holds it —
// quotes, a control character, brackets — names the message the backup
// recorded without the control character, for restore --message and
// erase --message-id alike; one that is empty once cleaned names nothing.
func TestCLIMessageIDAsRecorded(t *testing.T) {
	e := newCLIEnv(t)
	src := filepath.Join(t.TempDir(), "mail")
	maildir := filepath.Join(src, "example.com", "bob", "Maildir")
	for _, d := range []string{"", ".\xffodd folder"} {
		for _, sub := range []string{"cur", "new", "tmp"} {
			if err := os.MkdirAll(filepath.Join(maildir, d, sub), 0o700); err != nil {
				t.Fatal(err)
			}
		}
	}
	dir := filepath.Join(maildir, ".\xffodd folder", "cur")
	raw := "<odd \"id\"\x01@example.com>"
	msg := "From: a@example.com\r\nTo: bob@example.com\r\nSubject: odd\r\nMessage-ID: " + raw + "\r\n\r\nODD-BODY-7\r\n"
	if err := os.WriteFile(filepath.Join(dir, "1700000001.M2P2.h:2,S"), []byte(msg), 0o600); err != nil {
		t.Fatal(err)
	}
	e.backup(t, src)
	target := filepath.Join(t.TempDir(), "out")
	if _, stderr, code := e.cli(t, "restore", "latest", "--target", target, "--message", raw); code != 0 {
		t.Fatalf("restore --message %q: exit %d: %s", raw, code, stderr)
	}
	got, err := os.ReadFile(filepath.Join(target, "example.com", "bob", "Maildir", ".\xffodd folder", "cur", "1700000001.M2P2.h:2,S"))
	if err != nil || string(got) != msg {
		t.Fatalf("restored %q, %v; want the message", got, err)
	}
	for _, args := range [][]string{{"erase", "--message-id", "<>"}, {"restore", "latest", "--target", t.TempDir(), "--message", "<>"}} {
		if _, stderr, code := e.cli(t, args...); code != exitUsage || !strings.Contains(stderr, "<>") {
			t.Errorf("%v: exit %d: %s", args, code, stderr)
		}
	}
	if res := e.erase(t, "--message-id", raw); len(res.Removed) != 1 {
		t.Fatalf("erase --message-id %q removed %d messages, want 1", raw, len(res.Removed))
	}
}
