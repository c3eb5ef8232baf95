package s3

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"
)

// A response body that breaks halfway — a connection reset, a server or
// proxy that closes early (io.ErrUnexpectedEOF against Content-Length),
// a stall caught by stallConn — fails the read, and nothing below us
// tries again: minio-go retries a request until its response headers
// arrive, not a body. (minio.Core.GetObject, which GetRange uses, hands
// over the bare http.Response body; minio.Client.GetObject's *Object
// would not help either: its Read keeps a body error as prevErr and
// returns it on every later call, and it only re-requests after a Seek.)
// Without this, one reset in the middle of a restore's 4 MiB span, or of
// check --read-data's whole-pack GET, failed the command.
//
// The retry is here, in the backend, rather than in archive.ReadBlobs
// (which knows the age chunk boundaries and could re-request from the
// first chunk it has not opened): a ranged GET can be resumed at any
// byte, so a resuming body needs no format knowledge, and doing it here
// covers every reader at once — ReadBlobs' spans, ReadPack's whole-pack
// GETs (check --read-data, copy, repair), index, snapshot, key and lock
// loads — where the archive would need the same loop in each. The bytes
// a caller has read are never delivered again, so ReadBlobs hands no
// blob twice, and nothing is buffered, so its memory bound holds. A
// local backend reads a file and needs none of this.

// resumeProgress is how much a body must deliver between breaks for the
// break to count as progress rather than as a failed try: a link that
// lets a few bytes through and then breaks, over and over, runs out of
// tries like one that delivers nothing, while one that breaks now and
// then in a long read (a whole 16 MiB pack) is re-requested each time,
// at most once per 64 KiB delivered.
const resumeProgress = 64 << 10

// rangeOpener opens the bytes [off, end) of an object (end < 0: to the
// object's end) and says how many bytes the body holds (-1 if unknown).
// resume is set for every request after the first.
type rangeOpener func(ctx context.Context, off, end int64, resume bool) (io.ReadCloser, int64, error)

// resumingBody is a response body that, when it breaks with a transient
// error (transient), is re-requested from the first byte not yet read.
// The tries at one place are bounded by the backend's attempts, with its
// backoff doubling between them; a body that delivered resumeProgress
// bytes before it broke starts the count again. An error that is not
// transient (or a context that ended) ends the read at once.
type resumingBody struct {
	ctx  context.Context
	b    *Backend
	open rangeOpener
	rc   io.ReadCloser // nil: re-request before the next read
	off  int64         // offset of the next byte in the object
	end  int64         // offset past the last byte wanted; < 0: unknown

	resumes int   // re-requests made
	since   int64 // bytes delivered by the current body
	idle    int   // breaks since a body last made progress
	err     error // sticky
}

// openResuming makes the first request for [off, end) and returns its
// body, resumed on breaks.
func (b *Backend) openResuming(ctx context.Context, open rangeOpener, off, end int64) (io.ReadCloser, error) {
	rc, n, err := open(ctx, off, end, false)
	if err != nil {
		return nil, err
	}
	if n >= 0 && (end < 0 || off+n < end) {
		// What the object holds of the range: a short object's body
		// is shorter than asked for, and a resume must not ask for
		// more than it.
		end = off + n
	}
	return &resumingBody{ctx: ctx, b: b, open: open, rc: rc, off: off, end: end}, nil
}

func (r *resumingBody) Read(p []byte) (int, error) {
	for {
		if r.err != nil {
			return 0, r.err
		}
		if r.rc == nil {
			if err := r.reopen(); err != nil {
				r.err = err
				return 0, err
			}
		}
		n, err := r.rc.Read(p)
		r.off += int64(n)
		r.since += int64(n)
		switch {
		case err == nil:
			return n, nil
		case errors.Is(err, io.EOF) && (r.end < 0 || r.off >= r.end):
			return n, io.EOF
		case errors.Is(err, io.EOF):
			// A clean end before the length the response announced:
			// net/http reports that as io.ErrUnexpectedEOF, but a
			// body reader might not.
			err = io.ErrUnexpectedEOF
		}
		r.rc.Close()
		r.rc = nil
		if r.since >= resumeProgress {
			r.idle = 0
		}
		if !transient(r.ctx, err) || r.idle >= r.b.attempts-1 {
			r.err = fmt.Errorf("read at byte %d (%d re-requests): %w", r.off, r.resumes, err)
			return n, r.err
		}
		r.idle++
		if n > 0 {
			return n, nil // re-requested by the next Read
		}
	}
}

// reopen waits out the backoff and requests the rest of the body.
func (r *resumingBody) reopen() error {
	// idle ≥ 1 here: the break that led here was counted.
	if d := r.b.backoff << max(r.idle-1, 0); d > 0 {
		t := time.NewTimer(d)
		select {
		case <-r.ctx.Done():
			t.Stop()
			return r.ctx.Err()
		case <-t.C:
		}
	}
	r.resumes++
	r.b.resumes.Add(1)
	rc, n, err := r.open(r.ctx, r.off, r.end, true)
	if err != nil {
		return fmt.Errorf("re-request at byte %d: %w", r.off, err)
	}
	if n >= 0 && r.end >= 0 && n != r.end-r.off {
		// Not the rest of the range: the server ignored the Range
		// header or the object is not the one first read.
		rc.Close()
		return fmt.Errorf("re-request at byte %d: %d bytes for a range of %d", r.off, n, r.end-r.off)
	}
	r.rc, r.since = rc, 0
	return nil
}

func (r *resumingBody) Close() error {
	if r.rc == nil {
		return nil
	}
	err := r.rc.Close()
	r.rc = nil
	return err
}
