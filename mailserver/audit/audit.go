// Package audit keeps an append-only log of security events (logins, admin
// actions) as JSON lines chained by SHA-256, so that an edited, inserted or
// removed line is detected by Verify.
//
// Each line is one JSON object whose last two members are "prev" and
// "hash":
//
//	{"seq":7,"time":"…","kind":"login",…,"prev":"<hash of line 6>","hash":"<hex>"}
//
// "hash" is the SHA-256 of the line's bytes up to (not including) the
// `,"hash":` that precedes it; "prev" is the previous line's hash (64 zeros
// for the first line). Editing a line breaks its own hash; removing or
// inserting one breaks the next line's "prev" and "seq". Cutting lines off
// the end leaves a valid but shorter chain: compare Verify's Head with a
// head recorded elsewhere to detect that.
//
// Several processes may append to one file (the server and the admin
// command line): appends take an exclusive flock and re-read the last line.
package audit

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"
	"time"
)

// Kinds of events.
const (
	KindLogin = "login"
	KindAdmin = "admin"
)

// Event is one audit record as callers fill it.
type Event struct {
	Kind     string `json:"kind"`
	Action   string `json:"action,omitempty"` // e.g. "user.add"
	User     string `json:"user,omitempty"`
	IP       string `json:"ip,omitempty"`
	Protocol string `json:"protocol,omitempty"` // smtp, submission, imap, pop3, cli
	Success  bool   `json:"success"`
	Detail   string `json:"detail,omitempty"`
}

// Record is a line of the log: an Event with its place in the chain.
type Record struct {
	Seq  uint64    `json:"seq"`
	Time time.Time `json:"time"`
	Event
	Prev string `json:"prev"`
	Hash string `json:"hash,omitempty"`
}

// Recorder is what other packages need from an audit log.
type Recorder interface {
	Record(ctx context.Context, ev Event) error
}

// Discard is a Recorder that keeps nothing.
type Discard struct{}

func (Discard) Record(context.Context, Event) error { return nil }

const zeroHash = "0000000000000000000000000000000000000000000000000000000000000000"

// maxLine bounds one line; longer fields are cut before writing.
const maxLine = 16 * 1024

var hashMarker = []byte(`,"hash":"`)

// Log appends to an audit file.
type Log struct {
	mu   sync.Mutex
	f    *os.File
	now  func() time.Time
	path string
}

// Open opens (creating) the audit log at path for appending.
func Open(path string) (*Log, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit: open: %w", err)
	}
	return &Log{f: f, now: time.Now, path: path}, nil
}

// Close closes the file.
func (l *Log) Close() error { return l.f.Close() }

// Path returns the file's path.
func (l *Log) Path() string { return l.path }

// Record appends ev, fsyncs, and returns only then.
func (l *Log) Record(ctx context.Context, ev Event) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	for _, s := range []*string{&ev.Action, &ev.User, &ev.IP, &ev.Protocol, &ev.Detail} {
		if len(*s) > 1024 {
			*s = (*s)[:1024]
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := syscall.Flock(int(l.f.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("audit: lock: %w", err)
	}
	defer syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN)

	last, end, err := lastLine(l.f)
	if err != nil {
		return err
	}
	rec := Record{Seq: 1, Time: l.now().UTC(), Event: ev, Prev: zeroHash}
	if last != nil {
		var prev Record
		if err := json.Unmarshal(last, &prev); err != nil || prev.Hash == "" {
			return fmt.Errorf("audit: last line of %s is damaged; run verify", l.path)
		}
		rec.Seq, rec.Prev = prev.Seq+1, prev.Hash
	}
	line, err := encode(rec)
	if err != nil {
		return err
	}
	if fi, err := l.f.Stat(); err == nil && fi.Size() > end {
		if err := l.f.Truncate(end); err != nil {
			return fmt.Errorf("audit: cut torn tail: %w", err)
		}
	}
	if _, err := l.f.WriteAt(line, end); err != nil {
		return fmt.Errorf("audit: write: %w", err)
	}
	if err := l.f.Sync(); err != nil {
		return fmt.Errorf("audit: fsync: %w", err)
	}
	return nil
}

// encode renders a record as a chained line ending in '\n'.
func encode(rec Record) ([]byte, error) {
	rec.Hash = ""
	body, err := json.Marshal(rec)
	if err != nil {
		return nil, fmt.Errorf("audit: encode: %w", err)
	}
	body = body[:len(body)-1] // drop '}'
	sum := sha256.Sum256(body)
	var b bytes.Buffer
	b.Write(body)
	b.Write(hashMarker)
	b.WriteString(hex.EncodeToString(sum[:]))
	b.WriteString("\"}\n")
	return b.Bytes(), nil
}

// lastLine returns the last complete line of f (without '\n') and the
// offset at which the next line goes. A torn tail (no final newline: a
// crash mid-write, never fsynced) is overwritten by the next append.
func lastLine(f *os.File) ([]byte, int64, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, 0, fmt.Errorf("audit: stat: %w", err)
	}
	size := fi.Size()
	var tail []byte
	for off := size; off > 0; {
		n := int64(4096)
		if off < n {
			n = off
		}
		off -= n
		buf := make([]byte, n)
		if _, err := f.ReadAt(buf, off); err != nil && err != io.EOF {
			return nil, 0, fmt.Errorf("audit: read: %w", err)
		}
		tail = append(buf, tail...)
		// Need the newline ending the last line and the one before it.
		end := bytes.LastIndexByte(tail, '\n')
		if end < 0 {
			if off == 0 {
				return nil, 0, nil // only a torn line
			}
			continue
		}
		start := bytes.LastIndexByte(tail[:end], '\n')
		if start >= 0 || off == 0 {
			return tail[start+1 : end], off + int64(end) + 1, nil
		}
		if int64(len(tail)) > 4*maxLine {
			return nil, 0, errors.New("audit: last line too long")
		}
	}
	return nil, 0, nil
}

// Report is the outcome of a successful Verify.
type Report struct {
	Lines int
	// Head is the hash of the last line (zeros when empty); keep it
	// elsewhere to detect lines cut off the end later.
	Head string
}

// VerifyError names the first line that breaks the chain.
type VerifyError struct {
	Line   int // 1-based
	Reason string
}

func (e *VerifyError) Error() string {
	return fmt.Sprintf("audit: line %d: %s", e.Line, e.Reason)
}

// Verify checks the whole chain of the file at path. It returns a
// *VerifyError for the first line that was edited, inserted, reordered,
// or follows a removed line.
func Verify(path string) (Report, error) {
	f, err := os.Open(path)
	if err != nil {
		return Report{}, fmt.Errorf("audit: %w", err)
	}
	defer f.Close()
	return VerifyReader(f)
}

// VerifyReader is Verify on a stream.
func VerifyReader(r io.Reader) (Report, error) {
	br := bufio.NewReaderSize(r, 64*1024)
	prev := zeroHash
	var seq uint64
	n := 0
	for {
		line, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			return Report{}, &VerifyError{n + 1, "line too long"}
		}
		if err == io.EOF {
			if len(line) > 0 {
				return Report{}, &VerifyError{n + 1, "incomplete last line"}
			}
			return Report{Lines: n, Head: prev}, nil
		}
		if err != nil {
			return Report{}, fmt.Errorf("audit: read: %w", err)
		}
		n++
		line = line[:len(line)-1]
		i := bytes.LastIndex(line, hashMarker)
		if i < 0 {
			return Report{}, &VerifyError{n, "no hash"}
		}
		var rec Record
		if err := json.Unmarshal(line, &rec); err != nil {
			return Report{}, &VerifyError{n, "not a JSON record"}
		}
		sum := sha256.Sum256(line[:i])
		if got := hex.EncodeToString(sum[:]); rec.Hash != got || !bytes.Equal(line[i:], []byte(`,"hash":"`+got+`"}`)) {
			return Report{}, &VerifyError{n, "hash mismatch: line was modified"}
		}
		if rec.Prev != prev {
			return Report{}, &VerifyError{n, "previous-hash mismatch: a line before it was removed, inserted or reordered"}
		}
		if rec.Seq != seq+1 {
			return Report{}, &VerifyError{n, fmt.Sprintf("sequence %d after %d", rec.Seq, seq)}
		}
		prev, seq = rec.Hash, rec.Seq
	}
}
