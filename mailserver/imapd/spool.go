package imapd

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"sync"
)

// maxMemorySpool is the largest APPEND literal received into memory
// rather than a spool file. Most mail is a few kilobytes; a spool file
// cost a create, a write and an unlink in the spool directory per APPEND
// on top of the store's own file (issue 10, APPEND one by one). The
// bound keeps a thousand sessions APPENDing at once under 64 MiB.
const maxMemorySpool = 64 << 10

var spoolBufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// spoolLiteral receives an APPEND literal of the announced size, at most
// limit bytes of it (one more tells that it is too large), into memory
// when it is small, else into a file in dir; it returns the bytes to
// store, how many were received, and a function that releases them.
func spoolLiteral(r io.Reader, size, limit int64, dir string) (io.ReadSeeker, int64, func(), error) {
	if size <= maxMemorySpool {
		b := spoolBufs.Get().(*bytes.Buffer)
		b.Reset()
		n, err := io.Copy(b, io.LimitReader(r, min(limit, maxMemorySpool)+1))
		release := func() {
			if b.Cap() <= 2*maxMemorySpool {
				spoolBufs.Put(b)
			}
		}
		if err != nil {
			release()
			return nil, 0, nil, fmt.Errorf("imapd: spool: %w", err)
		}
		return bytes.NewReader(b.Bytes()), n, release, nil
	}
	f, err := os.CreateTemp(dir, spoolPrefix+"*")
	if err != nil {
		return nil, 0, nil, fmt.Errorf("imapd: spool: %w", err)
	}
	release := func() {
		f.Close()
		os.Remove(f.Name())
	}
	n, err := io.Copy(f, io.LimitReader(r, limit+1))
	if err == nil {
		_, err = f.Seek(0, io.SeekStart)
	}
	if err != nil {
		release()
		return nil, 0, nil, fmt.Errorf("imapd: spool: %w", err)
	}
	return f, n, release, nil
}
