package archive_test

import (
	"strings"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/mailvault/mailvault/archive"
	"github.com/mailvault/mailvault/archive/s3"
	"github.com/mailvault/mailvault/archive/s3/s3test"
)

// lockedS3 is a repository in MinIO under governance Object Lock of one
// day, opened with a fresh age identity, and a client of the server for
// what only an administrator may do.
type lockedS3 struct {
	t      *testing.T
	be     *s3.Backend
	bucket string
	creds  archive.Credentials
	admin  *minio.Client
}

func newLockedS3(t *testing.T) *lockedS3 {
	t.Helper()
	ctx := t.Context()
	srv := s3test.StartT(t)
	cfg := s3.Config{Endpoint: srv.Addr, Bucket: s3test.NewBucketName(), Prefix: "vault", AccessKey: s3test.User, SecretKey: s3test.Password}
	be, err := s3.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := archive.InitObjectLock(ctx, be, archive.KeyRecipients{Recipients: []string{id.Recipient().String()}}, archive.ObjectLock{Mode: archive.Governance, Days: 1}, nil); err != nil {
		t.Fatal(err)
	}
	admin, err := minio.New(srv.Addr, &minio.Options{Creds: credentials.NewStaticV4(s3test.User, s3test.Password, "")})
	if err != nil {
		t.Fatal(err)
	}
	return &lockedS3{t: t, be: be, bucket: cfg.Bucket, creds: archive.Credentials{Identities: []age.Identity{id}}, admin: admin}
}

// open opens the repository, closed when the test ends.
func (l *lockedS3) open() *archive.Repository {
	l.t.Helper()
	r, err := archive.Open(l.t.Context(), l.be, l.creds, archive.Options{Compression: 2})
	if err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(func() { r.Close() })
	return r
}

// objects lists every version below the prefix's sub but lock files.
func (l *lockedS3) objects(sub string) []minio.ObjectInfo {
	l.t.Helper()
	var out []minio.ObjectInfo
	for o := range l.admin.ListObjects(l.t.Context(), l.bucket, minio.ListObjectsOptions{Prefix: "vault/" + sub, Recursive: true, WithVersions: true}) {
		if o.Err != nil {
			l.t.Fatal(o.Err)
		}
		if !strings.HasPrefix(o.Key, "vault/locks/") {
			out = append(out, o)
		}
	}
	return out
}

// letGo is the administrator's step (s3:BypassGovernanceRetention, never
// mailvault's): the retention of sub's objects but the config ends in a
// moment, and the test waits for it.
func (l *lockedS3) letGo(sub string) {
	l.t.Helper()
	soon := time.Now().Add(2 * time.Second).Truncate(time.Second).Add(time.Second)
	gov := minio.Governance
	for _, o := range l.objects(sub) {
		if o.Key == "vault/config" {
			continue
		}
		if err := l.admin.PutObjectRetention(l.t.Context(), l.bucket, o.Key, minio.PutObjectRetentionOptions{Mode: &gov, RetainUntilDate: &soon, GovernanceBypass: true, VersionID: o.VersionID}); err != nil {
			l.t.Fatal(err)
		}
	}
	time.Sleep(time.Until(soon) + 200*time.Millisecond)
}
