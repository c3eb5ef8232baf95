package s3

import (
	"context"
	"fmt"
	"net/http"
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
