package s3

import (
	"context"
	"io"
	"net/http"

	"github.com/minio/minio-go/v7"

	"github.com/mailvault/mailvault/archive"
)

// putObject stores one object without ever replacing another: the PUT
// carries If-None-Match: * (RFC 9110 §13.1.2; S3 conditional writes), so
// the server refuses a name that is taken. Every repository file but
// config is named by the SHA-256 of its content (or, for locks, by a
// random ID), so a taken name holds this very file — stored by an earlier
// attempt whose answer was lost, or by a concurrent backup — and the
// refusal (412 Precondition Failed) means success. A host whose
// credentials allow PutObject therefore cannot, through this backend,
// turn a good file into a bad one; with bucket versioning not even a raw
// PUT can (README.md "Offsite copies and write-only hosts").
//
// config is written unconditionally: init refuses an existing repository
// before it writes one, and tests rewrite it. A server that answers the
// condition with 501 Not Implemented gets plain PUTs from then on.
func (b *Backend) putObject(ctx context.Context, t archive.FileType, k string, body func() io.Reader, size int64) error {
	opts := b.putOptions(t, k)
	conditional := t != archive.ConfigFile && !b.noConditional.Load()
	if conditional {
		opts.SetMatchETagExcept("*")
	}
	_, err := b.client.PutObject(ctx, b.cfg.Bucket, k, body(), size, opts)
	if err == nil || !conditional {
		return err
	}
	switch resp := minio.ToErrorResponse(err); {
	case resp.StatusCode == http.StatusPreconditionFailed || resp.Code == "PreconditionFailed":
		return nil
	case resp.StatusCode == http.StatusNotImplemented || resp.Code == "NotImplemented":
		b.noConditional.Store(true)
		_, err = b.client.PutObject(ctx, b.cfg.Bucket, k, body(), size, b.putOptions(t, k))
	}
	return err
}
