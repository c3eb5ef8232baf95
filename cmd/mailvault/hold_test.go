package main

import (
	"bytes"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/mailvault/mailvault/archive"
	"github.com/mailvault/mailvault/archive/local"
)

// holdMail writes one message into user's Maildir below src and returns
// its path.
func holdMail(t *testing.T, src, user, name, subject string) string {
	t.Helper()
	local, domain, _ := strings.Cut(user, "@")
	md := filepath.Join(src, domain, local, "Maildir")
	for _, sub := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(md, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	p := filepath.Join(md, "cur", name+":2,S")
	msg := "From: someone@example.org\r\nTo: " + user + "\r\nSubject: " + subject +
		"\r\nDate: Fri, 15 Mar 2024 10:00:00 +0000\r\nMessage-ID: <" + name + "@example.org>\r\n\r\n" +
		strings.Repeat(name+" body line\r\n", 200)
	if err := os.WriteFile(p, []byte(msg), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// findRestored returns the content of the restored file named base.
func findRestored(t *testing.T, dir, base string) []byte {
	t.Helper()
	var got []byte
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Name() == base {
			got, _ = os.ReadFile(p)
		}
		return nil
	})
	return got
}

type holdShowJSON struct {
	Messages     int      `json:"messages"`
	Bytes        int64    `json:"bytes"`
	Snapshots    []string `json:"snapshots"`
	Packs        []string `json:"packs"`
	BlobsMissing []string `json:"blobs_missing"`
	Verified     bool     `json:"verified"`
}

type auditJSON struct {
	Records []struct {
		Seq    int64  `json:"seq"`
		Actor  string `json:"actor"`
		Act    string `json:"act"`
		Case   string `json:"case"`
		Reason string `json:"reason"`
		Prev   string `json:"prev"`
		Hash   string `json:"hash"`
	} `json:"records"`
	Breaks   []string `json:"breaks"`
	Verified bool     `json:"verified"`
}

// TestHoldForgetPrune: holds by custodian and by query keep, through
// forget --keep-last 1 --prune, every snapshot with a held message, and
// the held messages restore byte for byte; released, they go.
func TestHoldForgetPrune(t *testing.T) {
	e := newCLIEnv(t)
	src := filepath.Join(t.TempDir(), "mail")
	// Three snapshots; each deletes the previous messages of both users.
	held := map[string][]byte{} // file name → content, of held messages
	var paths []string
	for i, day := range []string{"2026-01-01T12:00:00Z", "2026-01-02T12:00:00Z", "2026-01-03T12:00:00Z"} {
		for _, p := range paths {
			os.Remove(p)
		}
		subject := "weekly report"
		if i == 0 {
			subject = "Merger plans"
		}
		a := holdMail(t, src, "alice@example.com", "a"+string(rune('0'+i)), subject)
		b := holdMail(t, src, "bob@example.com", "b"+string(rune('0'+i)), "lunch")
		paths = []string{a, b}
		for _, p := range []string{a, b} {
			if i == 0 && p == a || strings.Contains(p, "/bob/") {
				data, _ := os.ReadFile(p)
				held[filepath.Base(p)] = data
			}
		}
		e.backup(t, "--host", "h", "--time", day, src)
	}

	// Bad input first: nothing is recorded.
	for _, c := range []struct {
		args []string
		code int
	}{
		{[]string{"hold", "add", "--query", "x"}, exitUsage},                            // no case
		{[]string{"hold", "add", "--case", "X"}, exitUsage},                             // selects nothing
		{[]string{"hold", "add", "--case", "X", "--from", "2024-13-01"}, exitUsage},     // bad date
		{[]string{"hold", "add", "--case", "X", "--query", `subject:"open`}, exitUsage}, // bad query
		{[]string{"hold", "add", "--case", "X", "--query", "nosuch:field"}, exitUsage},  // unknown field
		{[]string{"hold", "show", "--case", "nosuch"}, exitNoHold},                      // unknown case
		{[]string{"hold", "release", "--case", "nosuch", "--reason", "r"}, exitNoHold},  // unknown case
		{[]string{"hold", "release", "--case", "nosuch"}, exitUsage},                    // no reason
		{[]string{"hold", "add", "--case", "X", "--from", "2024-02-01", "--to", "2024-01-01"}, exitUsage},
	} {
		stdout, stderr, code := e.cli(t, append([]string{"--json"}, c.args...)...)
		if code != c.code || !strings.Contains(stdout, `"exit_code"`) {
			t.Errorf("%v: exit %d, want %d: %s %s", c.args, code, c.code, stdout, stderr)
		}
	}
	if stdout, _, _ := e.cli(t, "--json", "hold", "list", "--all"); strings.TrimSpace(stdout) != "[]" {
		t.Fatalf("bad input recorded holds: %s", stdout)
	}

	// A query that matches nothing is placed, with a warning.
	_, stderr, code := e.cli(t, "hold", "add", "--case", "empty", "--query", "subject:nomatch", "--actor", "clerk@court")
	if code != 0 || !strings.Contains(stderr, "matches no message") {
		t.Errorf("hold add matching nothing: exit %d: %s", code, stderr)
	}
	if _, stderr, code := e.cli(t, "hold", "add", "--case", "empty", "--query", "x"); code != exitUsage || !strings.Contains(stderr, "already has an active hold") {
		t.Errorf("second hold of a case: exit %d: %s", code, stderr)
	}

	// By query: alice's first message only; by custodian: bob's three.
	stdout, stderr, code := e.cli(t, "--json", "hold", "add", "--case", "merger", "--query", "subject:merger", "--reason", "SEC inquiry", "--actor", "counsel@example.com")
	var q holdShowJSON
	if code != 0 || json.Unmarshal([]byte(stdout), &q) != nil || q.Messages != 1 || len(q.Snapshots) != 1 {
		t.Fatalf("hold add --query: exit %d: %s %s", code, stdout, stderr)
	}
	if _, stderr, code := e.cli(t, "hold", "add", "--case", "bob", "--custodian", "bob@example.com", "--reason", "custodian of case 2"); code != 0 {
		t.Fatalf("hold add --custodian: exit %d: %s", code, stderr)
	}
	stdout, stderr, code = e.cli(t, "--json", "hold", "show", "--case", "bob")
	var b holdShowJSON
	if code != 0 || json.Unmarshal([]byte(stdout), &b) != nil || b.Messages != 3 || len(b.Snapshots) != 3 || !b.Verified || len(b.Packs) == 0 || len(b.BlobsMissing) != 0 {
		t.Fatalf("hold show --case bob: exit %d: %+v %s", code, b, stderr)
	}
	if b.Bytes != int64(len(held["b0:2,S"])+len(held["b1:2,S"])+len(held["b2:2,S"])) {
		t.Errorf("hold show: %d bytes", b.Bytes)
	}

	// Forgetting a held snapshot by ID is refused, with the case named.
	if _, stderr, code := e.cli(t, "forget", q.Snapshots[0]); code != exitHeld || !strings.Contains(stderr, "case bob, case merger") {
		t.Errorf("forget of a held snapshot: exit %d: %s", code, stderr)
	}

	// A policy keeps every held snapshot, and says why.
	stdout, stderr, code = e.cli(t, "--json", "forget", "--keep-last", "1", "--prune")
	if code != 0 {
		t.Fatalf("forget --keep-last 1 --prune: exit %d: %s", code, stderr)
	}
	res := forgetPolicy(t, stdout)
	var reasons []string
	for _, s := range res.Groups[0].Snapshots {
		reasons = append(reasons, s.Action+": "+strings.Join(s.Reasons, ", "))
	}
	want := []string{"keep: last snapshot", "keep: held by case bob", "keep: held by case bob, held by case merger"}
	if !slices.Equal(reasons, want) {
		t.Errorf("decisions %q, want %q", reasons, want)
	}
	restored := map[string]int{}
	for _, id := range b.Snapshots {
		dir := filepath.Join(t.TempDir(), "r")
		if _, stderr, code := e.cli(t, "restore", id, "--target", dir); code != 0 {
			t.Fatalf("restore %s: exit %d: %s", id, code, stderr)
		}
		for name, data := range held {
			if got := findRestored(t, dir, name); got != nil {
				restored[name]++
				if !bytes.Equal(got, data) {
					t.Errorf("snapshot %s: %s restored differently", id[:8], name)
				}
			}
		}
		if id == q.Snapshots[0] && !bytes.Equal(findRestored(t, dir, "a0:2,S"), held["a0:2,S"]) {
			t.Errorf("the message held by query does not restore")
		}
	}
	if len(restored) != len(held) {
		t.Errorf("restored %v of the held messages %d", restored, len(held))
	}
	if r, _ := e.check(t, true); !r.OK() {
		t.Errorf("check after forget --prune: %+v", r)
	}

	// Released, a hold keeps nothing.
	for _, c := range []string{"merger", "bob", "empty"} {
		if _, stderr, code := e.cli(t, "hold", "release", "--case", c, "--reason", "case closed", "--actor", "judge@court"); code != 0 {
			t.Fatalf("hold release %s: exit %d: %s", c, code, stderr)
		}
	}
	if stdout, stderr, code := e.cli(t, "--json", "forget", "--keep-last", "1"); code != 0 || forgetPolicy(t, stdout).Forget == nil || len(forgetPolicy(t, stdout).Forget.Removed) != 2 {
		t.Errorf("forget after release: exit %d: %s %s", code, stdout, stderr)
	}

	// The audit chain has every act, who and why, and verifies.
	stdout, stderr, code = e.cli(t, "--json", "hold", "log")
	var log auditJSON
	if code != 0 || json.Unmarshal([]byte(stdout), &log) != nil || !log.Verified || len(log.Records) != 6 {
		t.Fatalf("hold log: exit %d: %s %s", code, stdout, stderr)
	}
	var acts []string
	for _, r := range log.Records {
		acts = append(acts, strings.Join([]string{r.Act, r.Case, r.Actor, r.Reason}, "|"))
	}
	if acts[1] != "hold add|merger|counsel@example.com|SEC inquiry" || acts[5] != "hold release|empty|judge@court|case closed" || log.Records[0].Prev != "" || log.Records[1].Prev != log.Records[0].Hash || len(log.Records[0].Hash) != 64 {
		t.Errorf("audit records: %q", acts)
	}
}

// TestHoldAuditTamper: a record changed and re-encrypted by someone with
// the full key is found, by the record after it.
func TestHoldAuditTamper(t *testing.T) {
	e := newCLIEnv(t)
	src := filepath.Join(t.TempDir(), "mail")
	holdMail(t, src, "alice@example.com", "a0", "hello")
	e.backup(t, src)
	for _, args := range [][]string{
		{"hold", "add", "--case", "c", "--custodian", "alice@example.com", "--reason", "the true reason"},
		{"hold", "release", "--case", "c", "--reason", "closed"},
	} {
		if _, stderr, code := e.cli(t, args...); code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, stderr)
		}
	}
	repo := openRepo(t, e)
	log, err := repo.AuditLog(t.Context())
	if err != nil || len(log.Records) != 2 || len(log.Breaks) != 0 {
		t.Fatalf("audit log: %v %+v", err, log)
	}
	rec := log.Records[0]
	rec.Reason = "a convenient reason"
	if _, err := repo.SaveJSONFile(t.Context(), archive.AuditFile, rec); err != nil {
		t.Fatal(err)
	}
	if err := local.New(e.repo).Remove(t.Context(), archive.AuditFile, rec.ID.String()); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code := e.cli(t, "--json", "hold", "log")
	var out auditJSON
	if code != exitCheckFailed || json.Unmarshal([]byte(stdout), &out) != nil || out.Verified || len(out.Breaks) == 0 ||
		!strings.Contains(out.Breaks[0], "record 2") || !strings.Contains(stderr, "audit chain is broken") {
		t.Errorf("hold log of a tampered chain: exit %d: %s %s", code, stdout, stderr)
	}
	// check reports the break as well.
	if stdout, stderr, code := e.cli(t, "check"); code != exitCheckFailed || !strings.Contains(stdout+stderr, "audit chain") || !strings.Contains(stdout+stderr, "record 2") {
		t.Errorf("check of a tampered chain: exit %d: %s %s", code, stdout, stderr)
	}
}

// TestHoldWriteOnly: a write-only key can neither read nor change holds
// (exit 12), and its refusal records nothing.
func TestHoldWriteOnly(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	e := newCLIEnv(t)
	src := filepath.Join(t.TempDir(), "mail")
	holdMail(t, src, "alice@example.com", "a0", "hello")
	e.backup(t, src)
	woKey := filepath.Join(t.TempDir(), "wo.txt")
	id := newIdentityFile(t, woKey)
	if _, stderr, code := e.cli(t, "key", "add", "--write-only", "--recipient", id.Recipient().String()); code != 0 {
		t.Fatalf("key add --write-only: exit %d: %s", code, stderr)
	}
	wo := &cliEnv{repo: e.repo, identity: woKey}
	for _, args := range [][]string{
		{"hold", "add", "--case", "c", "--custodian", "alice@example.com"},
		{"hold", "list"}, {"hold", "log"}, {"hold", "show", "--case", "c"},
		{"hold", "release", "--case", "c", "--reason", "r"},
	} {
		if _, stderr, code := wo.cli(t, args...); code != exitWrongKey || !strings.Contains(stderr, "write-only") {
			t.Errorf("%v with a write-only key: exit %d: %s", args, code, stderr)
		}
	}
	if len(e.files(t, "audit"))+len(e.files(t, "policy")) != 0 {
		t.Error("a refused hold wrote policy or audit files")
	}
}
