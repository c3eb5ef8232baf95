// Package s3 is the archive backend for a repository in an S3 bucket (AWS
// S3, MinIO or any other S3-compatible store), built on minio-go.
//
// A repository is addressed restic-style as
//
//	s3:https://host[:port]/bucket[/prefix]
//	s3:http://127.0.0.1:9000/bucket/prefix
//	s3:host/bucket[/prefix]            (https)
//
// and its objects use the same layout as a local repository below the
// prefix: <prefix>/config, <prefix>/keys/<id>, <prefix>/data/<id[0:2]>/<id>,
// <prefix>/index/<id>, <prefix>/snapshots/<id>, <prefix>/locks/<id>.
//
// Durability: an S3 PUT (single or multipart) is atomic — the object is
// either absent, the old version or the whole new one — and durable when
// the server acknowledges it.
package s3

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/mailvault/mailvault/archive"
)

// Config describes where a repository lives and how to reach it.
type Config struct {
	Endpoint string // host[:port]
	Secure   bool   // https
	Bucket   string
	Prefix   string // may be empty; no leading or trailing slash
	Region   string // empty: AWS_DEFAULT_REGION, else asked from the server

	// AccessKey and SecretKey, when set, override the environment
	// (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN) and
	// the shared credentials file (~/.aws/credentials).
	AccessKey    string
	SecretKey    string
	SessionToken string

	// Attempts is how often Put and Get try on a transient failure
	// (connection reset, 5xx) beyond what minio-go retries itself;
	// 0 means 3.
	Attempts int
	// MaxRetries is how often minio-go tries each request itself; 0
	// means its default (10), 1 no retries.
	MaxRetries int
	// StallTimeout is how long a connection may move no byte — while
	// sending a request body or waiting for or reading a response —
	// before it is closed and the request fails as a timeout (which is
	// retried); 0 means DefaultStallTimeout. It bounds stalls, not
	// transfers: an upload that keeps moving never times out.
	StallTimeout time.Duration
	// Connections is how many requests the repository keeps in flight at
	// once (packs uploaded, packs read by a restore); 0 means
	// DefaultConnections.
	Connections int
}

// DefaultConnections is Config.Connections' default, as restic's for S3:
// one connection at a time leaves a remote link idle for a round trip
// per pack, while each pack in flight costs only its temporary file.
const DefaultConnections = 5

// DefaultStallTimeout is Config.StallTimeout's default: far longer than
// any S3 server takes to answer a PUT it has received, short enough that
// a black-holed connection costs a backup minutes, not hours.
const DefaultStallTimeout = 2 * time.Minute

// ParseLocation parses an s3: repository location into a Config (without
// credentials).
func ParseLocation(loc string) (Config, error) {
	var cfg Config
	rest, ok := strings.CutPrefix(loc, "s3:")
	if !ok {
		return cfg, fmt.Errorf("s3 location %q: must start with s3:", loc)
	}
	cfg.Secure = true
	switch {
	case strings.HasPrefix(rest, "https://"):
		rest = strings.TrimPrefix(rest, "https://")
	case strings.HasPrefix(rest, "http://"):
		rest = strings.TrimPrefix(rest, "http://")
		cfg.Secure = false
	case strings.Contains(rest, "://"):
		return cfg, fmt.Errorf("s3 location %q: scheme must be http or https", loc)
	}
	host, p, _ := strings.Cut(rest, "/")
	if host == "" {
		return cfg, fmt.Errorf("s3 location %q: no endpoint", loc)
	}
	p = strings.Trim(p, "/")
	bucket, prefix, _ := strings.Cut(p, "/")
	if bucket == "" {
		return cfg, fmt.Errorf("s3 location %q: no bucket", loc)
	}
	var segs []string
	for _, seg := range strings.Split(prefix, "/") {
		switch seg {
		case "":
		case ".", "..":
			return cfg, fmt.Errorf("s3 location %q: invalid prefix", loc)
		default:
			segs = append(segs, seg)
		}
	}
	prefix = strings.Join(segs, "/")
	cfg.Endpoint, cfg.Bucket, cfg.Prefix = host, bucket, prefix
	return cfg, nil
}

// Backend is a repository in an S3 bucket.
type Backend struct {
	client   *minio.Client
	cfg      Config
	attempts int
	backoff  time.Duration // first delay between attempts
	// lock is the repository's Object Lock policy (objectlock.go), set
	// when the repository opens; nil for an unlocked repository.
	lock atomic.Pointer[archive.ObjectLock]
	// noConditional is set once the server has rejected If-None-Match
	// (nooverwrite.go).
	noConditional atomic.Bool
	// cache serves small ranged reads of packs (packcache.go).
	cache *packCache
	// resumes counts the re-requests of broken response bodies
	// (resume.go).
	resumes atomic.Int64
}

// New returns a backend for an existing or future repository. It does not
// contact the server.
func New(ctx context.Context, cfg Config) (*Backend, error) {
	if cfg.Endpoint == "" || cfg.Bucket == "" {
		return nil, errors.New("s3: endpoint and bucket are required")
	}
	cfg.Prefix = strings.Trim(cfg.Prefix, "/")
	if cfg.Region == "" {
		cfg.Region = os.Getenv("AWS_DEFAULT_REGION")
	}
	var creds *credentials.Credentials
	if cfg.AccessKey != "" {
		creds = credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, cfg.SessionToken)
	} else {
		creds = credentials.NewChainCredentials([]credentials.Provider{
			&credentials.EnvAWS{},
			&credentials.FileAWSCredentials{}, // ~/.aws/credentials, AWS_PROFILE
		})
	}
	if cfg.StallTimeout <= 0 {
		cfg.StallTimeout = DefaultStallTimeout
	}
	if cfg.Connections <= 0 {
		cfg.Connections = DefaultConnections
	}
	tr, err := minio.DefaultTransport(cfg.Secure)
	if err != nil {
		return nil, fmt.Errorf("s3 %s: %w", cfg.Endpoint, err)
	}
	stallDialer(tr, cfg.StallTimeout)
	client, err := minio.New(cfg.Endpoint, &minio.Options{
		Creds:        creds,
		Secure:       cfg.Secure,
		Region:       cfg.Region,
		BucketLookup: minio.BucketLookupAuto,
		MaxRetries:   cfg.MaxRetries,
		Transport:    tr,
		// minio-go refuses an x-amz-checksum-* header (putOptions)
		// without it; no request of ours uses a trailer, since each
		// carries its checksum up front.
		TrailingHeaders: true,
	})
	if err != nil {
		return nil, fmt.Errorf("s3 %s: %w", cfg.Endpoint, err)
	}
	attempts := cfg.Attempts
	if attempts <= 0 {
		attempts = 3
	}
	return &Backend{client: client, cfg: cfg, attempts: attempts, backoff: 100 * time.Millisecond, cache: newPackCache()}, nil
}

// Connections implements archive's optional parallel-backend interface.
func (b *Backend) Connections() int { return b.cfg.Connections }

// Location implements archive.Backend.
func (b *Backend) Location() string {
	scheme := "https"
	if !b.cfg.Secure {
		scheme = "http"
	}
	loc := "s3:" + scheme + "://" + b.cfg.Endpoint + "/" + b.cfg.Bucket
	if b.cfg.Prefix != "" {
		loc += "/" + b.cfg.Prefix
	}
	return loc
}

// Create makes the bucket unless it exists. Objects need no directories.
func (b *Backend) Create(ctx context.Context) error {
	err := b.retry(ctx, func() error {
		ok, err := b.client.BucketExists(ctx, b.cfg.Bucket)
		if err != nil || ok {
			return err
		}
		err = b.client.MakeBucket(ctx, b.cfg.Bucket, minio.MakeBucketOptions{Region: b.cfg.Region})
		if minio.ToErrorResponse(err).Code == "BucketAlreadyOwnedByYou" {
			return nil
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("create repository: bucket %s: %w", b.cfg.Bucket, err)
	}
	return nil
}

// key returns the object key of a file.
func (b *Backend) key(t archive.FileType, name string) (string, error) {
	var k string
	switch {
	case t == archive.ConfigFile:
		k = "config"
	case name == "" || strings.ContainsAny(name, `/\`) || name == "." || name == "..":
		// Names come from the repository itself; refuse anything that
		// could address another object.
		return "", fmt.Errorf("invalid file name %q", name)
	case t == archive.PackFile:
		if len(name) < 2 {
			return "", fmt.Errorf("invalid pack name %q", name)
		}
		k = string(t) + "/" + name[:2] + "/" + name
	default:
		k = string(t) + "/" + name
	}
	return b.join(k), nil
}

func (b *Backend) join(k string) string {
	if b.cfg.Prefix == "" {
		return k
	}
	return b.cfg.Prefix + "/" + k
}

// Put implements archive.Backend.
func (b *Backend) Put(ctx context.Context, t archive.FileType, name string, data []byte) error {
	k, err := b.key(t, name)
	if err != nil {
		return err
	}
	err = b.retry(ctx, func() error {
		return b.putObject(ctx, t, k, func() io.Reader { return bytes.NewReader(data) }, int64(len(data)))
	})
	if err != nil {
		return fmt.Errorf("put %s/%s: %w", t, name, err)
	}
	return nil
}

// putOptions are the options of the PUT of key k, a file of type t.
//
// The body's integrity: every repository file but config and lock files
// is named by the SHA-256 of its bytes (docs/FORMAT.md), so that hash is
// sent as x-amz-checksum-sha256 and the server refuses a body that does
// not match it (BadDigest) — end to end, for free. minio-go would
// otherwise hash every body twice more (Content-MD5, and the SHA-256 of a
// signed payload over plain HTTP): 14 % of a backup's CPU in a profile.
// config and lock files (small) get Content-MD5 instead.
func (b *Backend) putOptions(t archive.FileType, k string) minio.PutObjectOptions {
	// One PUT, never a multipart upload: repository files are far below
	// S3's 5 GiB limit for one (packs, the largest, below 1.1 GiB with the
	// largest pack_size and chunk_max a config may set), and minio-go
	// would upload a default 16 MiB pack of a few KiB more as two parts
	// through a 16 MiB buffer, in four requests.
	opts := minio.PutObjectOptions{ContentType: "application/octet-stream", DisableMultipart: true, DisableContentSha256: true}
	if sum, err := hex.DecodeString(path.Base(k)); err == nil && len(sum) == sha256.Size && t != archive.ConfigFile && t != archive.LockFile {
		opts.UserMetadata = map[string]string{"x-amz-checksum-sha256": base64.StdEncoding.EncodeToString(sum)}
	}
	if p := b.lock.Load(); p != nil && t != archive.LockFile {
		// Counted from each attempt, so a retried upload is not
		// locked for less than the period.
		opts.Mode = s3Mode(p.Mode)
		opts.RetainUntilDate = time.Now().Add(p.Period()).UTC()
	}
	if opts.UserMetadata == nil {
		// config and lock files: small, and S3 requires a checksum
		// header of a PUT with retention (config's). Content-MD5, not
		// minio-go's CRC32C trailer, which older S3 servers lack.
		opts.SendContentMd5 = true
	}
	return opts
}

// PutFile implements archive.FilePutter: the finished file is streamed to
// the bucket in one PUT of known size (nothing buffered), then closed and
// removed either way.
func (b *Backend) PutFile(ctx context.Context, t archive.FileType, name string, f *os.File) error {
	defer func() {
		f.Close()
		os.Remove(f.Name())
	}()
	k, err := b.key(t, name)
	if err != nil {
		return err
	}
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("put %s/%s: %w", t, name, err)
	}
	err = b.retry(ctx, func() error {
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return err
		}
		// A section reader, not f, so that minio-go sees a seekable
		// ReaderAt of known size: it reads it once for Content-MD5,
		// then again for the body, and can resend it on its own.
		return b.putObject(ctx, t, k, func() io.Reader { return io.NewSectionReader(f, 0, fi.Size()) }, fi.Size())
	})
	if err != nil {
		return fmt.Errorf("put %s/%s: %w", t, name, err)
	}
	return nil
}

// Get implements archive.Backend.
func (b *Backend) Get(ctx context.Context, t archive.FileType, name string) (io.ReadCloser, error) {
	return b.GetRange(ctx, t, name, 0, 0)
}

// GetRange implements archive.Backend.
func (b *Backend) GetRange(ctx context.Context, t archive.FileType, name string, offset, length int64) (io.ReadCloser, error) {
	k, err := b.key(t, name)
	if err != nil {
		return nil, err
	}
	if offset < 0 {
		return nil, fmt.Errorf("%s/%s: negative offset %d", t, name, offset)
	}
	if t == archive.PackFile {
		if rc, ok, err := b.cachedRange(ctx, t, name, k, offset, length); ok {
			return rc, err
		}
	}
	end := int64(-1)
	if length > 0 {
		end = offset + length
	}
	// The body is resumed where it breaks (resume.go); the resumes ask
	// for the ETag the first response had (If-Match, RFC 9110 section
	// 13.1.1), so that bytes of two versions of an object (a config or
	// lock file rewritten meanwhile) are never joined.
	var etag string
	open := func(ctx context.Context, off, end int64, resume bool) (io.ReadCloser, int64, error) {
		var opts minio.GetObjectOptions
		var err error
		switch {
		case end > 0:
			err = opts.SetRange(off, end-1)
		case off > 0:
			err = opts.SetRange(off, 0)
		}
		if err == nil && resume && etag != "" {
			err = opts.SetMatchETag(etag)
		}
		if err != nil {
			return nil, 0, fmt.Errorf("%s/%s: %w", t, name, err)
		}
		core := minio.Core{Client: b.client}
		var rc io.ReadCloser
		var info minio.ObjectInfo
		err = b.retry(ctx, func() error {
			var err error
			rc, info, _, err = core.GetObject(ctx, b.cfg.Bucket, k, opts)
			return err
		})
		if err != nil {
			return nil, 0, err
		}
		if !resume {
			etag = info.ETag
		}
		return rc, info.Size, nil
	}
	rc, err := b.openResuming(ctx, open, offset, end)
	if err != nil {
		if minio.ToErrorResponse(err).Code == "InvalidRange" {
			// Reading at or past the end gives nothing, as a file
			// would — but only if the object exists.
			if _, serr := b.Stat(ctx, t, name); serr != nil {
				return nil, serr
			}
			return io.NopCloser(strings.NewReader("")), nil
		}
		return nil, wrapErr(t, name, err)
	}
	return rc, nil
}

// Stat implements archive.Backend.
func (b *Backend) Stat(ctx context.Context, t archive.FileType, name string) (int64, error) {
	k, err := b.key(t, name)
	if err != nil {
		return 0, err
	}
	if t == archive.PackFile {
		// Packs never change (packcache.go); other files, such as
		// locks, are asked every time.
		if n, ok := b.cache.size(k); ok {
			return n, nil
		}
	}
	var info minio.ObjectInfo
	err = b.retry(ctx, func() error {
		var err error
		info, err = b.client.StatObject(ctx, b.cfg.Bucket, k, minio.StatObjectOptions{})
		return err
	})
	if err != nil {
		return 0, wrapErr(t, name, err)
	}
	if t == archive.PackFile {
		b.cache.setSize(k, info.Size)
	}
	return info.Size, nil
}

// List implements archive.Backend.
func (b *Backend) List(ctx context.Context, t archive.FileType, fn func(string, int64) error) error {
	dir := b.join(string(t)) + "/"
	if t == archive.ConfigFile {
		dir = b.join("config")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // stops the listing goroutine when fn fails
	for obj := range b.client.ListObjects(ctx, b.cfg.Bucket, minio.ListObjectsOptions{Prefix: dir, Recursive: true}) {
		if obj.Err != nil {
			if minio.ToErrorResponse(obj.Err).Code == "NoSuchBucket" {
				return nil
			}
			return fmt.Errorf("list %s: %w", t, obj.Err)
		}
		name := path.Base(obj.Key)
		if t == archive.ConfigFile {
			if obj.Key != dir {
				continue
			}
			name = "config"
		} else if rel := strings.TrimPrefix(obj.Key, dir); t == archive.PackFile {
			// data/<id[0:2]>/<id>; anything else is not ours.
			sub, id, ok := strings.Cut(rel, "/")
			if !ok || strings.Contains(id, "/") || len(id) < 2 || sub != id[:2] {
				continue
			}
		} else if strings.Contains(rel, "/") {
			continue
		}
		if err := fn(name, obj.Size); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// Remove implements archive.Backend. S3 deletes of missing objects
// succeed, so Remove asks first to report ErrNotExist like the local
// backend does.
func (b *Backend) Remove(ctx context.Context, t archive.FileType, name string) error {
	k, err := b.key(t, name)
	if err != nil {
		return err
	}
	// Ask the server whether it is there, and forget it once gone.
	b.cache.forget(k)
	defer b.cache.forget(k)
	if _, err := b.Stat(ctx, t, name); err != nil {
		return err
	}
	if b.lock.Load() != nil {
		// A versioned (Object Lock) bucket: a plain delete would only
		// add a delete marker and keep the bytes forever.
		err := b.removeVersions(ctx, t, name, k)
		if err == nil || t != archive.LockFile || !isAccessDenied(err) {
			return err
		}
		// A write-only host may delete its lock files but no version
		// (README's policy): hide the lock behind a delete marker, the
		// admin's next cleanup of versions takes its bytes.
	}
	err = b.retry(ctx, func() error {
		return b.client.RemoveObject(ctx, b.cfg.Bucket, k, minio.RemoveObjectOptions{})
	})
	if err != nil {
		return wrapErr(t, name, err)
	}
	return nil
}

// stallDialer makes tr's connections stall-detecting (stallConn) and
// its timeouts agree with the stall timeout: a response's headers may
// take as long, and an idle connection is dropped by the transport before
// its deadline could fail a request that picks it up.
func stallDialer(tr *http.Transport, timeout time.Duration) {
	d := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &stallConn{Conn: c, timeout: timeout}, nil
	}
	tr.ResponseHeaderTimeout = timeout
	tr.IdleConnTimeout = timeout / 2
}

// stallConn fails a Read or Write once no byte has moved either way for
// timeout. net/http has no such timeout for a request body (a peer that
// stops reading blocks the upload forever) nor for a response body, and
// its ResponseHeaderTimeout only starts once the body is sent. Every byte
// moved, in either direction, pushes both deadlines on — the transport's
// reader waits on the connection for the whole of an upload — and writes
// go out in pieces so that a long one shows progress.
type stallConn struct {
	net.Conn
	timeout time.Duration
}

// stallChunk is the most a single write sends before the deadline moves.
const stallChunk = 64 << 10

func (c *stallConn) alive() { c.Conn.SetDeadline(time.Now().Add(c.timeout)) }

func (c *stallConn) Read(p []byte) (int, error) {
	c.alive()
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.alive()
	}
	return n, err
}

func (c *stallConn) Write(p []byte) (int, error) {
	var done int
	for done < len(p) {
		c.alive()
		n, err := c.Conn.Write(p[done:min(len(p), done+stallChunk)])
		done += n
		if err != nil {
			return done, err
		}
	}
	c.alive()
	return done, nil
}

// wrapErr names the file and maps a missing object (or bucket) to
// archive.ErrNotExist.
// isAccessDenied reports whether the server refused err's request for
// lack of permission.
func isAccessDenied(err error) bool {
	var resp minio.ErrorResponse
	return errors.As(err, &resp) && resp.Code == "AccessDenied"
}

func wrapErr(t archive.FileType, name string, err error) error {
	switch minio.ToErrorResponse(err).Code {
	case "NoSuchKey", "NoSuchBucket", "NotFound":
		return fmt.Errorf("%s/%s: %w (%v)", t, name, archive.ErrNotExist, err)
	}
	return fmt.Errorf("%s/%s: %w", t, name, err)
}

// retry calls op until it succeeds, fails permanently, or the attempts
// are used up, backing off exponentially between attempts. minio-go
// already retries most requests; this covers what it gives up on or
// does not retry (a connection reset mid-body, a 5xx after its own
// retries, a dropped connection while dialing).
func (b *Backend) retry(ctx context.Context, op func() error) error {
	delay := b.backoff
	var err error
	for i := 0; i < b.attempts; i++ {
		if i > 0 {
			t := time.NewTimer(delay)
			select {
			case <-ctx.Done():
				t.Stop()
				return errors.Join(err, ctx.Err())
			case <-t.C:
			}
			delay *= 2
		}
		if err = op(); err == nil || !transient(ctx, err) {
			return err
		}
	}
	return err
}

// transient reports whether err may go away when tried again.
func transient(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	if resp := minio.ToErrorResponse(err); resp.Code != "" || resp.StatusCode != 0 {
		switch resp.Code {
		case "InternalError", "SlowDown", "ServiceUnavailable", "RequestTimeout", "Throttling",
			"XMinioServerNotInitialized":
			return true
		}
		return resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests
	}
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.ECONNREFUSED),
		errors.Is(err, syscall.EPIPE), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, io.EOF):
		return true
	case errors.As(err, &ne) && ne.Timeout():
		return true
	}
	return false
}
