package archive_test

import (
	"bytes"
	"io"
	"testing"

	"filippo.io/age"
	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/mailvault/mailvault/archive"
	"github.com/mailvault/mailvault/archive/s3"
	"github.com/mailvault/mailvault/archive/s3/s3test"
)

// TestRepairPacksS3: a byte flipped in a pack of a repository in MinIO
// (the object overwritten behind mailvault's back) is repaired from a copy
// on a local disk; nothing is lost, check reads every pack clean and the
// snapshot restores equal to the source.
func TestRepairPacksS3(t *testing.T) {
	ctx := t.Context()
	srv := s3test.StartT(t)
	cfg := s3.Config{Endpoint: srv.Addr, Bucket: s3test.NewBucketName(), Prefix: "vault", AccessKey: s3test.User, SecretKey: s3test.Password}
	be, err := s3.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := be.Create(ctx); err != nil {
		t.Fatal(err)
	}
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := archive.Init(ctx, be, archive.KeyRecipients{Recipients: []string{id.Recipient().String()}}); err != nil {
		t.Fatal(err)
	}
	setPackSize(t, be, 1<<20)
	open := func() *archive.Repository {
		t.Helper()
		r, err := archive.Open(ctx, be, archive.Credentials{Identities: []age.Identity{id}}, archive.Options{Compression: 2})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		if _, err := r.LoadIndex(ctx); err != nil {
			t.Fatal(err)
		}
		return r
	}
	src := randomMaildir(t, 51, 48, 48<<10)
	r := open()
	snap := runBackup(t, r, src).Snapshot
	cp := newCopyTarget(t, r)
	if _, err := archive.Copy(ctx, r, cp.open(t), nil, nil); err != nil {
		t.Fatal(err)
	}

	bad := packsOf(r, archive.DataBlob)[0]
	admin, err := minio.New(srv.Addr, &minio.Options{Creds: credentials.NewStaticV4(s3test.User, s3test.Password, "")})
	if err != nil {
		t.Fatal(err)
	}
	key := "vault/data/" + bad.String()[:2] + "/" + bad.String()
	obj, err := admin.GetObject(ctx, cfg.Bucket, key, minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(obj)
	obj.Close()
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0xff
	if _, err := admin.PutObject(ctx, cfg.Bucket, key, bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}

	res, err := open().RepairPacks(ctx, archive.RepairPacksOptions{From: cp.open(t)})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Packs) != 1 || res.Packs[0].Pack != bad || !res.Packs[0].Deleted || res.BlobsLost != 0 || res.BlobsFromCopy == 0 {
		t.Fatalf("repair packs: %+v", res)
	}
	c, err := open().Check(ctx, archive.CheckOptions{ReadData: true})
	if err != nil || !c.OK() || len(c.Warnings) != 0 || c.PacksRead != c.Packs {
		t.Fatalf("check --read-data: %+v, %v", c, err)
	}
	r = open()
	s, err := r.LoadSnapshot(ctx, snap.ID)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := restoreTo(t, r, s, restoreOptions())
	compareTrees(t, src, got)
}
