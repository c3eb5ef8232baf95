package s3

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/minio/minio-go/v7/pkg/lifecycle"

	"github.com/mailvault/mailvault/archive"
	"github.com/mailvault/mailvault/archive/s3/s3test"
	"github.com/mailvault/mailvault/bench/corpus"
	"github.com/mailvault/mailvault/restore"
)

// writeOnlyPolicy is the policy of README.md "Offsite copies and write-only
// hosts", for the bucket and prefix given: get, put and list, and an
// explicit deny of everything that deletes, rewrites history or loosens
// the bucket's protection. Keep the two the same.
func writeOnlyPolicy(bucket, prefix string) string {
	return strings.NewReplacer("BUCKET", bucket, "PREFIX", prefix).Replace(`{
  "Version": "2012-10-17",
  "Statement": [
    {"Effect": "Allow",
     "Action": ["s3:GetObject", "s3:PutObject"],
     "Resource": ["arn:aws:s3:::BUCKET/PREFIX/*"]},
    {"Effect": "Allow",
     "Action": ["s3:DeleteObject"],
     "Resource": ["arn:aws:s3:::BUCKET/PREFIX/locks/*"]},
    {"Effect": "Allow",
     "Action": ["s3:ListBucket", "s3:GetBucketLocation"],
     "Resource": ["arn:aws:s3:::BUCKET"]},
    {"Effect": "Deny",
     "Action": ["s3:DeleteObjectVersion", "s3:DeleteBucket",
                "s3:PutBucketVersioning", "s3:PutObjectRetention", "s3:PutObjectLegalHold",
                "s3:BypassGovernanceRetention", "s3:PutBucketObjectLockConfiguration",
                "s3:PutLifecycleConfiguration", "s3:PutBucketPolicy", "s3:DeleteBucketPolicy"],
     "Resource": ["arn:aws:s3:::BUCKET", "arn:aws:s3:::BUCKET/*"]}
  ]
}`)
}

// restrictedCreds asks MinIO's STS (AssumeRole, with the root user's
// credentials) for temporary credentials limited by the session policy:
// the effective permissions are the intersection of the two.
func restrictedCreds(t *testing.T, policy string) credentials.Value {
	t.Helper()
	sts, err := credentials.NewSTSAssumeRole("http://"+testServer.Addr, credentials.STSAssumeRoleOptions{
		AccessKey: s3test.User, SecretKey: s3test.Password, Policy: policy, DurationSeconds: 3600,
	})
	if err != nil {
		t.Fatal(err)
	}
	v, err := sts.GetWithContext(nil)
	if err != nil {
		t.Fatalf("STS AssumeRole: %v", err)
	}
	return v
}

// accessDenied reports whether err is (or wraps) S3's AccessDenied.

// TestWriteOnlyHostRestrictedCredentials: a host holding a write-only key
// and S3 credentials limited by writeOnlyPolicy backs up (incrementally,
// with its lock files left behind), cannot read what it stored, cannot
// delete a pack or loosen the bucket, never overwrites through our
// backend, and an overwrite through its credentials destroys nothing: the
// bucket is versioned, and the original version restores the repository
// byte for byte.
func TestWriteOnlyHostRestrictedCredentials(t *testing.T) {
	ctx := t.Context()
	src := filepath.Join(t.TempDir(), "mail")
	if _, err := corpus.Generate(ctx, src, corpus.Options{Seed: 9, TargetBytes: 2e6, Domains: 2, UsersPerDomain: 2}); err != nil {
		t.Fatal(err)
	}
	const prefix = "mail/offsite"
	admin := newBackend(t, prefix)
	bucket := admin.cfg.Bucket
	if err := admin.client.EnableVersioning(ctx, bucket); err != nil {
		t.Fatal(err)
	}
	adminID, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := archive.Init(ctx, admin, archive.KeyRecipients{Recipients: []string{adminID.Recipient().String()}}); err != nil {
		t.Fatal(err)
	}
	setPackSize(t, admin, 1<<20)
	open := func(be archive.Backend, id age.Identity) *archive.Repository {
		t.Helper()
		r, err := archive.Open(ctx, be, archive.Credentials{Identities: []age.Identity{id}}, archive.Options{Compression: 1})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		if _, err := r.LoadIndex(ctx); err != nil {
			t.Fatal(err)
		}
		return r
	}
	hostID, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := open(admin, adminID).AddWriteOnlyKey(ctx, archive.KeyRecipients{Recipients: []string{hostID.Recipient().String()}}); err != nil {
		t.Fatal(err)
	}

	v := restrictedCreds(t, writeOnlyPolicy(bucket, prefix))
	host, err := New(ctx, Config{Endpoint: testServer.Addr, Bucket: bucket, Prefix: prefix,
		AccessKey: v.AccessKeyID, SecretKey: v.SecretAccessKey, SessionToken: v.SessionToken})
	if err != nil {
		t.Fatal(err)
	}

	// Back up twice as the CLI does: shared lock, backup, unlock.
	cache := t.TempDir()
	var snaps []*archive.Snapshot
	for range 2 {
		r := open(host, hostID)
		unlock, err := r.Lock(ctx, false)
		if err != nil {
			t.Fatalf("lock with restricted credentials: %v", err)
		}
		res, err := r.Backup(ctx, archive.BackupOptions{Paths: []string{src}, Host: "mx1", ParentCache: cache})
		unlock()
		if err != nil {
			t.Fatalf("write-only backup with restricted credentials: %v", err)
		}
		snaps = append(snaps, res.Snapshot)
	}
	if s := snaps[1].Summary; s.BytesRead != 0 || s.BlobsNew != 0 {
		t.Errorf("second backup: %+v, want nothing read or stored", s)
	}
	// It cannot read its own backup back.
	if _, err := restore.Restore(ctx, open(host, hostID), snaps[0], restore.Options{Target: filepath.Join(t.TempDir(), "r")}); !errors.Is(err, archive.ErrWriteOnly) {
		t.Errorf("restore with the write-only key: %v", err)
	}

	// The host removed its own lock files (the one delete the policy
	// allows), so an exclusive lock is free at once.
	locks := 0
	if err := admin.List(ctx, archive.LockFile, func(string, int64) error { locks++; return nil }); err != nil {
		t.Fatal(err)
	}
	if locks != 0 {
		t.Errorf("%d lock files left by the host, want 0", locks)
	}
	adminRepo := open(admin, adminID)
	if unlock, err := adminRepo.Lock(ctx, true); err != nil {
		t.Errorf("exclusive lock after the host's backups: %v", err)
	} else {
		unlock()
	}

	// Deleting is refused, through the backend and directly.
	var pack string
	if err := admin.List(ctx, archive.PackFile, func(name string, _ int64) error { pack = name; return nil }); err != nil || pack == "" {
		t.Fatal("no pack", err)
	}
	if err := host.Remove(ctx, archive.PackFile, pack); !isAccessDenied(err) {
		t.Errorf("remove a pack with restricted credentials: %v, want AccessDenied", err)
	}
	packKey := prefix + "/data/" + pack[:2] + "/" + pack
	versions := objectVersions(t, admin.client, bucket, packKey)
	if len(versions) != 1 {
		t.Fatalf("pack has %d versions, want 1", len(versions))
	}
	for what, op := range map[string]func() error{
		"delete object": func() error { return host.client.RemoveObject(ctx, bucket, packKey, minio.RemoveObjectOptions{}) },
		"delete version": func() error {
			return host.client.RemoveObject(ctx, bucket, packKey, minio.RemoveObjectOptions{VersionID: versions[0]})
		},
		"suspend versioning": func() error { return host.client.SuspendVersioning(ctx, bucket) },
		"expire by lifecycle": func() error {
			cfg := lifecycle.NewConfiguration()
			cfg.Rules = []lifecycle.Rule{{ID: "x", Status: "Enabled", Expiration: lifecycle.Expiration{Days: 1},
				RuleFilter: lifecycle.Filter{Prefix: prefix + "/"}}}
			return host.client.SetBucketLifecycle(ctx, bucket, cfg)
		},
		"bucket policy": func() error {
			return host.client.SetBucketPolicy(ctx, bucket, `{"Version":"2012-10-17","Statement":[]}`)
		},
	} {
		if err := op(); !isAccessDenied(err) {
			t.Errorf("%s with restricted credentials: %v, want AccessDenied", what, err)
		}
	}
	if _, err := admin.Stat(ctx, archive.PackFile, pack); err != nil {
		t.Errorf("pack gone after refused deletes: %v", err)
	}

	// Our backend never overwrites (If-None-Match: *): storing other bytes
	// under a taken name, from memory or from a file (PutFile of more
	// than minio-go's 16 MiB part size, still one PUT: putOptions
	// disables multipart uploads), succeeds without touching the object —
	// as a retried upload of the same file must.
	if err := host.Put(ctx, archive.PackFile, pack, []byte("garbage")); err != nil {
		t.Errorf("Put of a taken name: %v", err)
	}
	big, err := os.CreateTemp(t.TempDir(), "big")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := big.Write(bytes.Repeat([]byte("x"), 17<<20)); err != nil {
		t.Fatal(err)
	}
	if err := host.PutFile(ctx, archive.PackFile, pack, big); err != nil {
		t.Errorf("PutFile of a taken name: %v", err)
	}
	if v := objectVersions(t, admin.client, bucket, packKey); len(v) != 1 || v[0] != versions[0] {
		t.Errorf("pack versions after our backend's puts: %v, want only %s", v, versions[0])
	}

	// An overwrite that skips our backend (a compromised host with the
	// same credentials) makes a new version; the original stays.
	if _, err := host.client.PutObject(ctx, bucket, packKey, strings.NewReader("garbage"), 7, minio.PutObjectOptions{}); err != nil {
		t.Fatalf("raw overwrite: %v", err)
	}
	chk, err := open(admin, adminID).Check(ctx, archive.CheckOptions{ReadData: true})
	if err != nil || chk.OK() {
		t.Fatalf("check after the overwrite: %+v, %v; want the pack reported damaged", chk, err)
	}
	rc, err := admin.client.GetObject(ctx, bucket, packKey, minio.GetObjectOptions{VersionID: versions[0]})
	if err != nil {
		t.Fatal(err)
	}
	orig, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatalf("original version: %v", err)
	}
	if sum := sha256.Sum256(orig); hex.EncodeToString(sum[:]) != pack {
		t.Fatalf("original version does not hash to the pack's name")
	}
	// The admin puts the original back (`mailvault undelete`, which works
	// on any versioned bucket) and the repository is whole.
	und, err := admin.Undelete(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(und.Restored, "data/"+pack) {
		t.Errorf("undelete restored %v, want data/%s among them", und.Restored, pack)
	}
	full := open(admin, adminID)
	if chk, err := full.Check(ctx, archive.CheckOptions{ReadData: true}); err != nil || !chk.OK() {
		t.Fatalf("check after recovering the version: %+v, %v", chk, err)
	}
	target := filepath.Join(t.TempDir(), "restored")
	if _, err := restore.Restore(ctx, full, snaps[1], restore.Options{Target: target}); err != nil {
		t.Fatal(err)
	}
	compareTrees(t, src, target)
}

// objectVersions lists the version IDs of one key, newest first.
func objectVersions(t *testing.T, c *minio.Client, bucket, key string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	var out []string
	for obj := range c.ListObjects(ctx, bucket, minio.ListObjectsOptions{Prefix: key, WithVersions: true}) {
		if obj.Err != nil {
			t.Fatal(obj.Err)
		}
		if obj.Key == key && !obj.IsDeleteMarker {
			out = append(out, obj.VersionID)
		}
	}
	return out
}

// TestWriteOnlyPolicyDocumented: the policy README.md tells admins to use
// is the one the test above proves.
func TestWriteOnlyPolicyDocumented(t *testing.T) {
	raw, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, sec, ok := strings.Cut(string(raw), "### Offsite copies and write-only hosts")
	_, block, ok2 := strings.Cut(sec, "```json\n")
	block, _, ok3 := strings.Cut(block, "```")
	if !ok || !ok2 || !ok3 {
		t.Fatal("README.md has no policy in \"Offsite copies and write-only hosts\"")
	}
	var doc, tested any
	if err := json.Unmarshal([]byte(block), &doc); err != nil {
		t.Fatalf("README.md policy: %v", err)
	}
	if err := json.Unmarshal([]byte(writeOnlyPolicy("BUCKET", "PREFIX")), &tested); err != nil {
		t.Fatal(err)
	}
	a, _ := json.Marshal(doc)
	b, _ := json.Marshal(tested)
	if !bytes.Equal(a, b) {
		t.Errorf("README.md's policy differs from the tested one:\n%s\n%s", a, b)
	}
}

// TestWriteOnlyHostLockFilesWithObjectLock: in an Object Lock bucket the
// backend deletes files version by version, which the write-only policy
// denies; a lock file is then hidden behind a delete marker instead, so
// the host still leaves no lock behind, and can still delete nothing else.
func TestWriteOnlyHostLockFilesWithObjectLock(t *testing.T) {
	ctx := t.Context()
	admin, creds := lockedRepo(t, archive.ObjectLock{Mode: archive.Governance, Days: 1})
	v := restrictedCreds(t, writeOnlyPolicy(admin.cfg.Bucket, admin.cfg.Prefix))
	host, err := New(ctx, Config{Endpoint: testServer.Addr, Bucket: admin.cfg.Bucket, Prefix: admin.cfg.Prefix,
		AccessKey: v.AccessKeyID, SecretKey: v.SecretAccessKey, SessionToken: v.SessionToken})
	if err != nil {
		t.Fatal(err)
	}
	r := openLocked(t, host, creds)
	for range 2 {
		unlock, err := r.Lock(ctx, false)
		if err != nil {
			t.Fatalf("lock with restricted credentials: %v", err)
		}
		unlock()
	}
	locks := 0
	if err := admin.List(ctx, archive.LockFile, func(string, int64) error { locks++; return nil }); err != nil {
		t.Fatal(err)
	}
	if locks != 0 {
		t.Errorf("%d lock files left by the host, want 0", locks)
	}
	if unlock, err := openLocked(t, admin, creds).Lock(ctx, true); err != nil {
		t.Errorf("exclusive lock after the host's: %v", err)
	} else {
		unlock()
	}
	if err := host.Remove(ctx, archive.ConfigFile, ""); !isAccessDenied(err) {
		t.Errorf("remove the config with restricted credentials: %v, want AccessDenied", err)
	}
}
