package s3

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/mailvault/mailvault/archive"
)

// The Object Lock side of the backend (archive.ObjectLocker). Retention
// is set per object version at upload (x-amz-object-lock-mode and
// -retain-until-date on the PUT, S3 API PutObject), never as a bucket
// default, because lock files must stay deletable.

var _ archive.ObjectLocker = (*Backend)(nil)

// EnableObjectLock implements archive.ObjectLocker: it creates the bucket
// with Object Lock enabled (which turns on versioning; S3 cannot switch
// a bucket back to unversioned), or checks that an existing bucket has
// Object Lock and no default retention rule.
func (b *Backend) EnableObjectLock(ctx context.Context) error {
	var exists bool
	err := b.retry(ctx, func() error {
		ok, err := b.client.BucketExists(ctx, b.cfg.Bucket)
		if err != nil {
			return err
		}
		if ok {
			exists = true
			return nil
		}
		err = b.client.MakeBucket(ctx, b.cfg.Bucket, minio.MakeBucketOptions{Region: b.cfg.Region, ObjectLocking: true})
		if minio.ToErrorResponse(err).Code == "BucketAlreadyOwnedByYou" {
			exists = true
			return nil
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("create repository: bucket %s with object lock: %w", b.cfg.Bucket, err)
	}
	if !exists {
		return nil
	}
	var enabled string
	var mode *minio.RetentionMode
	err = b.retry(ctx, func() error {
		var err error
		enabled, mode, _, _, err = b.client.GetObjectLockConfig(ctx, b.cfg.Bucket)
		return err
	})
	if err != nil && minio.ToErrorResponse(err).Code != "ObjectLockConfigurationNotFoundError" {
		return fmt.Errorf("bucket %s: object lock configuration: %w", b.cfg.Bucket, err)
	}
	if enabled != "Enabled" {
		return fmt.Errorf("bucket %s exists without Object Lock, which can only be enabled when a bucket is created: use a new bucket", b.cfg.Bucket)
	}
	if mode != nil && *mode != "" {
		return fmt.Errorf("bucket %s has a default retention rule (%s), which would also lock the repository's lock files; remove it — mailvault sets retention on each durable file itself", b.cfg.Bucket, *mode)
	}
	return nil
}

// SetObjectLock implements archive.ObjectLocker.
func (b *Backend) SetObjectLock(p archive.ObjectLock) { b.lock.Store(&p) }

// Retention implements archive.ObjectLocker: the retention of the current
// version, from the HEAD response (one request, as Stat).
func (b *Backend) Retention(ctx context.Context, t archive.FileType, name string) (archive.Retention, error) {
	k, err := b.key(t, name)
	if err != nil {
		return archive.Retention{}, err
	}
	var info minio.ObjectInfo
	err = b.retry(ctx, func() error {
		var err error
		info, err = b.client.StatObject(ctx, b.cfg.Bucket, k, minio.StatObjectOptions{})
		return err
	})
	if err != nil {
		return archive.Retention{}, wrapErr(t, name, err)
	}
	return retentionOf(info.Metadata)
}

// retentionOf reads the Object Lock headers of a HEAD or GET response.
func retentionOf(h http.Header) (archive.Retention, error) {
	var r archive.Retention
	mode := minio.RetentionMode(h.Get("X-Amz-Object-Lock-Mode"))
	if mode == "" {
		return r, nil
	}
	switch mode {
	case minio.Governance:
		r.Mode = archive.Governance
	case minio.Compliance:
		r.Mode = archive.Compliance
	default:
		return r, fmt.Errorf("unknown object lock mode %q", mode)
	}
	until, err := time.Parse(time.RFC3339, h.Get("X-Amz-Object-Lock-Retain-Until-Date"))
	if err != nil {
		return r, fmt.Errorf("object lock retain-until date: %w", err)
	}
	r.Until = until
	return r, nil
}

// ExtendRetention implements archive.ObjectLocker (S3 API
// PutObjectRetention on the current version). Lengthening needs no
// bypass permission in either mode.
func (b *Backend) ExtendRetention(ctx context.Context, t archive.FileType, name string, r archive.Retention) error {
	k, err := b.key(t, name)
	if err != nil {
		return err
	}
	mode := s3Mode(r.Mode)
	until := r.Until.UTC()
	err = b.retry(ctx, func() error {
		return b.client.PutObjectRetention(ctx, b.cfg.Bucket, k, minio.PutObjectRetentionOptions{Mode: &mode, RetainUntilDate: &until})
	})
	if err != nil {
		return wrapErr(t, name, err)
	}
	return nil
}

func s3Mode(m archive.RetentionMode) minio.RetentionMode {
	if m == archive.Compliance {
		return minio.Compliance
	}
	return minio.Governance
}

// removeVersions deletes every version of an object (and its delete
// markers) by version ID, so that the bytes are really gone. A version
// under retention is refused by the server; that is reported as an
// archive.RetainedError with its date, and the versions after it are
// still tried.
func (b *Backend) removeVersions(ctx context.Context, t archive.FileType, name, k string) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var versions []minio.ObjectInfo
	for obj := range b.client.ListObjects(ctx, b.cfg.Bucket, minio.ListObjectsOptions{Prefix: k, WithVersions: true}) {
		if obj.Err != nil {
			return fmt.Errorf("remove %s/%s: list versions: %w", t, name, obj.Err)
		}
		if obj.Key == k {
			versions = append(versions, obj)
		}
	}
	var retained *archive.RetainedError
	for _, v := range versions {
		err := b.retry(ctx, func() error {
			return b.client.RemoveObject(ctx, b.cfg.Bucket, k, minio.RemoveObjectOptions{VersionID: v.VersionID})
		})
		if err == nil {
			continue
		}
		// MinIO answers AccessDenied, AWS AccessDenied or
		// InvalidRequest; the version's own retention says whether
		// that was the lock or a missing permission.
		var info minio.ObjectInfo
		if serr := b.retry(ctx, func() error {
			var err error
			info, err = b.client.StatObject(ctx, b.cfg.Bucket, k, minio.StatObjectOptions{VersionID: v.VersionID})
			return err
		}); serr != nil || v.IsDeleteMarker {
			return wrapErr(t, name, err)
		}
		ret, rerr := retentionOf(info.Metadata)
		held := info.Metadata.Get("X-Amz-Object-Lock-Legal-Hold") == "ON"
		if rerr != nil || (!ret.Active(time.Now()) && !held) {
			return wrapErr(t, name, err)
		}
		re := &archive.RetainedError{Retention: ret, Err: fmt.Errorf("%s/%s version %s: %w", t, name, v.VersionID, err)}
		if retained == nil || re.Until.After(retained.Until) {
			retained = re
		}
	}
	if retained != nil {
		return retained
	}
	return nil
}

// UndeleteResult says what Undelete did.
type UndeleteResult struct {
	DryRun bool `json:"dry_run,omitempty"`
	// Files is how many repository files the bucket holds versions of.
	Files int `json:"files"`
	// Restored are the files (type/name) whose first version was made
	// current again: they had been deleted or overwritten.
	Restored []string `json:"restored"`
}

// Undelete brings back repository files that were deleted or overwritten
// in a versioned (Object Lock) bucket — by an attacker holding the
// storage credentials, say. A delete without a version ID only adds a
// delete marker, and a PUT only adds a version; the locked first version
// is still there. Every repository file is written once (content-named,
// and config at init), so its first version is the right one: where the
// current version is a delete marker or differs from the first (by ETag),
// the first is copied over it, server-side, with the repository's
// retention. Lock and temporary files are left alone. It needs no key:
// it works on objects, so it also helps when config or key files are
// what was deleted.
func (b *Backend) Undelete(ctx context.Context, dryRun bool) (*UndeleteResult, error) {
	type file struct {
		key            string
		latest, oldest *minio.ObjectInfo
	}
	files := map[string]*file{}
	prefix := ""
	if b.cfg.Prefix != "" {
		prefix = b.cfg.Prefix + "/"
	}
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for obj := range b.client.ListObjects(lctx, b.cfg.Bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true, WithVersions: true}) {
		if obj.Err != nil {
			return nil, fmt.Errorf("undelete: list versions: %w", obj.Err)
		}
		if _, _, ok := b.repoFile(strings.TrimPrefix(obj.Key, prefix)); !ok {
			continue
		}
		f := files[obj.Key]
		if f == nil {
			f = &file{key: obj.Key}
			files[obj.Key] = f
		}
		o := obj
		if o.IsLatest {
			f.latest = &o
		}
		if !o.IsDeleteMarker && (f.oldest == nil || o.LastModified.Before(f.oldest.LastModified)) {
			f.oldest = &o
		}
	}
	keys := make([]string, 0, len(files))
	for k := range files {
		keys = append(keys, k)
	}
	// config first: once it is back, its policy gives the copies their
	// retention.
	sort.Slice(keys, func(i, j int) bool {
		ci, cj := keys[i] == b.join("config"), keys[j] == b.join("config")
		if ci != cj {
			return ci
		}
		return keys[i] < keys[j]
	})
	res := &UndeleteResult{DryRun: dryRun, Files: len(keys), Restored: []string{}}
	for _, k := range keys {
		f := files[k]
		if f.oldest == nil || f.latest == nil {
			continue // only delete markers: nothing to bring back
		}
		if k == b.join("config") && b.lock.Load() == nil {
			// The first config holds the policy; read it before
			// anything is copied, config included.
			b.loadLockPolicy(ctx, k, f.oldest.VersionID)
		}
		if !f.latest.IsDeleteMarker && (f.latest.VersionID == f.oldest.VersionID || f.latest.ETag == f.oldest.ETag) {
			continue
		}
		t, name, _ := b.repoFile(strings.TrimPrefix(k, prefix))
		rel := string(t) + "/" + name
		if t == archive.ConfigFile {
			rel = name
		}
		res.Restored = append(res.Restored, rel)
		if dryRun {
			continue
		}
		dst := minio.CopyDestOptions{Bucket: b.cfg.Bucket, Object: k}
		if p := b.lock.Load(); p != nil {
			dst.Mode = s3Mode(p.Mode)
			dst.RetainUntilDate = time.Now().Add(p.Period()).UTC()
		}
		src := minio.CopySrcOptions{Bucket: b.cfg.Bucket, Object: k, VersionID: f.oldest.VersionID}
		if err := b.retry(ctx, func() error {
			_, err := b.client.CopyObject(ctx, dst, src)
			return err
		}); err != nil {
			return res, fmt.Errorf("undelete %s/%s: %w", t, name, err)
		}
	}
	return res, nil
}

// repoFile maps an object key below the prefix to a durable repository
// file (key info files included); lock files, temporary files and foreign
// objects are not.
func (b *Backend) repoFile(rel string) (archive.FileType, string, bool) {
	if rel == "config" {
		return archive.ConfigFile, "config", true
	}
	dir, name, ok := strings.Cut(rel, "/")
	if !ok {
		return "", "", false
	}
	t := archive.FileType(dir)
	switch t {
	case archive.KeyFile, archive.IndexFile, archive.SnapshotFile:
	case archive.PackFile:
		sub, id, ok := strings.Cut(name, "/")
		if !ok || len(id) < 2 || sub != id[:2] {
			return "", "", false
		}
		name = id
	default:
		return "", "", false
	}
	id := name
	if t == archive.KeyFile {
		// A key file's description, keys/<id>.info (archive/keyinfo.go).
		id = strings.TrimSuffix(name, ".info")
	}
	if _, err := archive.ParseID(id); err != nil {
		return "", "", false
	}
	return t, name, true
}

// loadLockPolicy reads the object-lock policy from a version of config,
// when it has one, for Undelete's copies.
func (b *Backend) loadLockPolicy(ctx context.Context, k, versionID string) {
	rc, err := b.client.GetObject(ctx, b.cfg.Bucket, k, minio.GetObjectOptions{VersionID: versionID})
	if err != nil {
		return
	}
	defer rc.Close()
	var cfg archive.Config
	if json.NewDecoder(io.LimitReader(rc, 1<<20)).Decode(&cfg) == nil && cfg.ObjectLock != nil && cfg.ObjectLock.Validate() == nil {
		b.SetObjectLock(*cfg.ObjectLock)
	}
}

var _ archive.LegalHolder = (*Backend)(nil)

// SetLegalHold implements archive.LegalHolder (S3 API PutObjectLegalHold
// on the current version).
func (b *Backend) SetLegalHold(ctx context.Context, t archive.FileType, name string, on bool) error {
	k, err := b.key(t, name)
	if err != nil {
		return err
	}
	status := minio.LegalHoldDisabled
	if on {
		status = minio.LegalHoldEnabled
	}
	err = b.retry(ctx, func() error {
		return b.client.PutObjectLegalHold(ctx, b.cfg.Bucket, k, minio.PutObjectLegalHoldOptions{Status: &status})
	})
	if err != nil {
		return wrapErr(t, name, err)
	}
	return nil
}

// LegalHold implements archive.LegalHolder from the HEAD response's
// legal hold header: GetObjectLegalHold fails on an object that never
// had one (NoSuchObjectLockConfiguration) instead of answering OFF.
func (b *Backend) LegalHold(ctx context.Context, t archive.FileType, name string) (bool, error) {
	k, err := b.key(t, name)
	if err != nil {
		return false, err
	}
	var info minio.ObjectInfo
	err = b.retry(ctx, func() error {
		var err error
		info, err = b.client.StatObject(ctx, b.cfg.Bucket, k, minio.StatObjectOptions{})
		return err
	})
	if err != nil {
		return false, wrapErr(t, name, err)
	}
	return info.Metadata.Get("X-Amz-Object-Lock-Legal-Hold") == "ON", nil
}
