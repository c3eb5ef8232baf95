package main

import (
	"encoding/json"
	"path/filepath"
	"testing"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/mailvault/mailvault/archive/s3/s3test"
)

// TestHoldS3LegalHold: on MinIO with Object Lock, a hold puts an S3
// legal hold on every pack of its messages (read back with the S3 API),
// and its release lifts it only where no other active hold needs it.
func TestHoldS3LegalHold(t *testing.T) {
	srv, bucket, e, id := s3CLIEnv(t, "mail")
	if _, stderr, code := runCLI(t, "--repo", e.repo, "init", "--recipient", id.Recipient().String(),
		"--object-lock-days", "1", "--object-lock-mode", "governance"); code != 0 {
		t.Fatalf("init: exit %d: %s", code, stderr)
	}
	src := filepath.Join(t.TempDir(), "mail")
	holdMail(t, src, "alice@example.com", "a0", "merger")
	holdMail(t, src, "bob@example.com", "b0", "lunch")
	e.backup(t, src)

	client, err := minio.New(srv.Addr, &minio.Options{Creds: credentials.NewStaticV4(s3test.User, s3test.Password, "")})
	if err != nil {
		t.Fatal(err)
	}
	legalHeld := func(pack string) bool {
		t.Helper()
		st, err := client.GetObjectLegalHold(t.Context(), bucket, "mail/data/"+pack[:2]+"/"+pack, minio.GetObjectLegalHoldOptions{})
		if err != nil {
			t.Fatalf("GetObjectLegalHold %s: %v", pack[:8], err)
		}
		return st != nil && *st == minio.LegalHoldEnabled
	}
	type shown = struct {
		holdShowJSON
		LegalHolds int      `json:"legal_holds"`
		NotHeld    []string `json:"packs_not_legally_held"`
	}
	show := func(name string) shown {
		t.Helper()
		stdout, stderr, code := e.cli(t, "--json", "hold", "show", "--case", name)
		var r shown
		if code != 0 || json.Unmarshal([]byte(stdout), &r) != nil || r.LegalHolds+len(r.NotHeld) != len(r.Packs) {
			t.Fatalf("hold show %s: exit %d: %s %s", name, code, stdout, stderr)
		}
		return r
	}

	for _, c := range []string{"one", "two"} {
		if _, stderr, code := e.cli(t, "hold", "add", "--case", c, "--custodian", "alice@example.com"); code != 0 {
			t.Fatalf("hold add %s: exit %d: %s", c, code, stderr)
		}
	}
	packs := show("one").Packs
	if len(packs) == 0 {
		t.Fatal("hold show: no packs")
	}
	for _, p := range packs {
		if !legalHeld(p) {
			t.Errorf("pack %s of held mail has no legal hold", p[:8])
		}
	}
	// A custodian's new mail lands in a new pack, which maintain holds.
	holdMail(t, src, "alice@example.com", "a1", "more")
	e.backup(t, src)
	if r := show("one"); len(r.Packs) <= len(packs) || len(r.NotHeld) == 0 {
		t.Fatalf("after a backup of new mail: %+v", r)
	}
	stdout, stderr, code := e.cli(t, "--json", "maintain")
	var m struct {
		LegalHolds struct{ Packs, Placed int } `json:"legal_holds"`
	}
	if code != 0 || json.Unmarshal([]byte(stdout), &m) != nil || m.LegalHolds.Placed == 0 || m.LegalHolds.Packs <= len(packs) {
		t.Fatalf("maintain: exit %d: %s %s", code, stdout, stderr)
	}
	r := show("one")
	if len(r.NotHeld) != 0 {
		t.Errorf("after maintain, packs without a legal hold: %v", r.NotHeld)
	}
	packs = r.Packs

	// Released by one case, the packs stay held for the other.
	if _, stderr, code := e.cli(t, "hold", "release", "--case", "one", "--reason", "settled"); code != 0 {
		t.Fatalf("hold release: exit %d: %s", code, stderr)
	}
	for _, p := range packs {
		if !legalHeld(p) {
			t.Errorf("pack %s lost its legal hold while case two holds it", p[:8])
		}
	}
	if _, stderr, code := e.cli(t, "hold", "release", "--case", "two", "--reason", "settled"); code != 0 {
		t.Fatalf("hold release: exit %d: %s", code, stderr)
	}
	for _, p := range packs {
		if legalHeld(p) {
			t.Errorf("pack %s keeps its legal hold after every hold's release", p[:8])
		}
	}
}
