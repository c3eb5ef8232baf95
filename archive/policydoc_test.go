package archive_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailvault/mailvault/archive"
)

type testBody struct {
	N int `json:"n"`
}

func headN(t *testing.T, r *archive.Repository) (int, *archive.PolicyDoc) {
	t.Helper()
	head, err := r.PolicyHead(t.Context(), "test")
	if err != nil || head == nil {
		t.Fatalf("PolicyHead: %v, %v", head, err)
	}
	var b testBody
	if err := json.Unmarshal(head.Body, &b); err != nil {
		t.Fatal(err)
	}
	return b.N, head
}

// TestPolicyVersions: each save is a new version naming its parent, the
// newest head wins, every save has its audit record in a verified chain,
// and a repository made before policy/ and audit/ existed takes them.
func TestPolicyVersions(t *testing.T) {
	tr := newTestRepo(t, 0)
	for _, d := range []string{"policy", "audit"} {
		if err := os.Remove(filepath.Join(tr.dir, d)); err != nil {
			t.Fatal(err)
		}
	}
	r := tr.open(t)
	if head, err := r.PolicyHead(t.Context(), "test"); head != nil || err != nil {
		t.Fatalf("head of an empty repository: %v, %v", head, err)
	}
	var prev *archive.PolicyDoc
	for i := 1; i <= 3; i++ {
		doc, rec, err := r.SavePolicy(t.Context(), "test", testBody{i}, archive.AuditRecord{Actor: "a@h", Act: "test set", Reason: "step"})
		if err != nil {
			t.Fatal(err)
		}
		if doc.Seq != int64(i) || rec.Seq != int64(i) || doc.Audit != rec.Hash || (prev == nil) != (doc.Parent == nil) || prev != nil && *doc.Parent != prev.ID {
			t.Fatalf("version %d: %+v, record %+v", i, doc, rec)
		}
		prev = doc
	}
	// Another kind is its own history in the same chain.
	if _, _, err := r.SavePolicy(t.Context(), "other", testBody{9}, archive.AuditRecord{Act: "other set"}); err != nil {
		t.Fatal(err)
	}
	if n, head := headN(t, r); n != 3 || head.ID != prev.ID {
		t.Errorf("head %d (%s), want 3", n, head.ID.Short())
	}
	log, err := r.AuditLog(t.Context())
	if err != nil || len(log.Records) != 4 || len(log.Breaks) != 0 || log.Records[3].Act != "other set" || log.Records[0].Prev != "" || log.Records[1].Prev != log.Records[0].Hash {
		t.Fatalf("audit log: %v %+v", err, log)
	}

	// Two writers that ignored the lock leave two heads of the same Seq:
	// every reader picks the same one.
	head := prev
	fork := *head
	fork.Body, fork.Time = json.RawMessage(`{"n":4}`), head.Time.Add(1)
	fork.Seq, fork.Parent = head.Seq, head.Parent
	if _, err := r.SaveJSONFile(t.Context(), archive.PolicyFile, fork); err != nil {
		t.Fatal(err)
	}
	if n, _ := headN(t, tr.open(t)); n != 4 {
		t.Errorf("of two heads, %d won; want the later (4)", n)
	}
}

// TestPolicyAuditBreaks: a removed record and a damaged one are breaks.
func TestPolicyAuditBreaks(t *testing.T) {
	tr := newTestRepo(t, 0)
	r := tr.open(t)
	var recs []*archive.AuditRecord
	for i := range 3 {
		_, rec, err := r.SavePolicy(t.Context(), "test", testBody{i}, archive.AuditRecord{Act: "test set"})
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, rec)
	}
	if err := tr.be.Remove(t.Context(), archive.AuditFile, recs[1].ID.String()); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(tr.dir, "audit", recs[2].ID.String())
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 1
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	log, err := r.AuditLog(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	all := strings.Join(log.Breaks, "\n")
	for _, want := range []string{"audit/" + recs[2].ID.String(), "version 2): its audit record", "version 3): its audit record"} {
		if !strings.Contains(all, want) {
			t.Errorf("breaks lack %q:\n%s", want, all)
		}
	}
	// The chain is extended all the same: a hold must not be blocked.
	if _, rec, err := r.SavePolicy(t.Context(), "test", testBody{9}, archive.AuditRecord{Act: "test set"}); err != nil || rec.Seq != 2 {
		t.Errorf("save on a broken chain: %v, %+v", err, rec)
	}
}

// TestPolicyWriteOnly: a write-only key neither reads nor writes policy.
func TestPolicyWriteOnly(t *testing.T) {
	tr := newTestRepo(t, 0)
	if _, _, err := tr.open(t).SavePolicy(t.Context(), "test", testBody{1}, archive.AuditRecord{Act: "x"}); err != nil {
		t.Fatal(err)
	}
	creds, _ := tr.writeOnly(t)
	r := tr.openWith(t, creds)
	if _, err := r.PolicyHead(t.Context(), "test"); !errors.Is(err, archive.ErrWriteOnly) || !errors.Is(err, archive.ErrWrongKey) {
		t.Errorf("PolicyHead with a write-only key: %v", err)
	}
	if _, _, err := r.SavePolicy(t.Context(), "test", testBody{2}, archive.AuditRecord{Act: "x"}); !errors.Is(err, archive.ErrWriteOnly) {
		t.Errorf("SavePolicy with a write-only key: %v", err)
	}
	if _, err := r.AuditLog(t.Context()); !errors.Is(err, archive.ErrWriteOnly) {
		t.Errorf("AuditLog with a write-only key: %v", err)
	}
}
