package imapd

import (
	"bufio"
	"bytes"
	"container/list"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-message/textproto"

	"github.com/mailvault/mailvault/mailserver/store"
)

// maxHeaderBlock bounds the header block that FETCH reads without the rest
// of the message and that the cache keeps. A header without its blank line
// within this many bytes (hostile, or a message that is all header) is
// answered from the whole file, as before, and never cached.
const maxHeaderBlock = 128 << 10

// entryOverhead approximates what an entry costs besides its header bytes:
// the entry, its list element and map slot, the parsed envelope's structs.
const entryOverhead = 256

// structureOverhead is charged up front for a BODYSTRUCTURE the entry may
// come to keep (a few structs per MIME part; one or two parts in most
// mail).
const structureOverhead = 256

// msgMeta is what FETCH needs of a message without its body: the header
// block (through the blank line that ends it, RFC 5322 section 2.1; the
// whole file if it has none), the file's size (RFC822.SIZE) and its
// modification time (INTERNALDATE, the time of delivery: Maildir files
// are written once and only renamed afterwards). The parsed ENVELOPE and
// the BODY[HEADER] answer are computed on first use and kept.
type msgMeta struct {
	key     string
	header  []byte
	big     bool // the header block exceeds maxHeaderBlock: header is empty
	size    int64
	modTime time.Time

	env    atomic.Pointer[imap.Envelope]
	hdrSec atomic.Pointer[[]byte]
	// structure is the message's BODYSTRUCTURE, kept after the first
	// FETCH that asked for it (read from the whole file): Maildir files
	// never change, and parsing every part of every message again was a
	// quarter of the server's time under imaptest (issue 10). Dovecot
	// keeps it in its index cache likewise.
	structure atomic.Pointer[imap.BodyStructure]
	// fields is the header block split into fields (headerfields.go).
	fields atomic.Pointer[parsedFields]
}

// cost is what the entry is charged in the cache: the header, and as much
// again for each of the envelope, the BODY[HEADER] answer and the split
// fields (headerfields.go), which are
// derived from it and no larger (charged up front, so that the cache's
// total does not change under a reader).
func (e *msgMeta) cost() int64 {
	return int64(len(e.key) + 4*len(e.header) + entryOverhead + structureOverhead)
}

// envelope is go-imap's ENVELOPE of the header block, as fetch.go built it
// from the whole file: textproto.ReadHeader stops at the blank line, so
// the header block is all it reads.
func (e *msgMeta) envelope() *imap.Envelope {
	if env := e.env.Load(); env != nil {
		return env
	}
	h, _ := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(e.header)))
	env := extractEnvelope(h)
	e.env.Store(env)
	return env
}

// headerSection answers BODY[HEADER] without a part or partial range, the
// one header FETCH a mail client repeats for a whole mailbox.
func (e *msgMeta) headerSection(bs *imap.FetchItemBodySection) []byte {
	if p := e.hdrSec.Load(); p != nil {
		return *p
	}
	b := imapserver.ExtractBodySection(bytes.NewReader(e.header), bs)
	e.hdrSec.Store(&b)
	return b
}

// headerEnd returns the length of the header block of b: through the first
// empty line, as bufio.Reader.ReadLine (and so go-message's
// textproto.ReadHeader, which go-imap's ENVELOPE and header sections use)
// sees lines: a line ends with "\n", and one "\r" before it is dropped. It
// returns -1 if b has no empty line.
func headerEnd(b []byte) int {
	for i := 0; i < len(b); {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return -1
		}
		if j == 0 || (j == 1 && b[i] == '\r') {
			return i + j + 1
		}
		i += j + 1
	}
	return -1
}

// readMeta reads a message's metadata and header block from f, reading no
// more of the file than the header block (in doubling chunks from 4 KiB),
// so that a header FETCH of a large message does not read its body.
func readMeta(key string, f io.ReaderAt, size int64, modTime time.Time) (*msgMeta, error) {
	e := &msgMeta{key: key, size: size, modTime: modTime}
	buf := make([]byte, min(size, 4<<10))
	n := 0
	for {
		m, err := f.ReadAt(buf[n:], int64(n))
		n += m
		eof := errors.Is(err, io.EOF) || int64(n) == size
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("imapd: read header: %w", err)
		}
		if end := headerEnd(buf[:n]); end >= 0 {
			e.header = bytes.Clone(buf[:end])
			return e, nil
		}
		if eof {
			// No blank line: the whole message is header (what the
			// parser sees too, reading to the end of the file).
			if n <= maxHeaderBlock {
				e.header = bytes.Clone(buf[:n])
			} else {
				e.big = true
			}
			return e, nil
		}
		if n > maxHeaderBlock {
			e.big = true // answered from the file
			return e, nil
		}
		if n == len(buf) {
			buf = append(buf, make([]byte, min(int64(len(buf)), size-int64(n), maxHeaderBlock+1-int64(n)))...)
		}
	}
}

// metaCache keeps msgMeta of recently fetched messages for every session
// of the server, least recently used first out when the total cost exceeds
// max. Keys name a message file for good (account, folder and Maildir
// unique name; the file's content never changes, only its flags, which
// are not cached), so entries are never stale: those of expunged messages
// are simply never asked for again and age out. This is what Dovecot's
// dovecot.index.cache does for header and ENVELOPE FETCHes; without it
// every such FETCH opened, read and parsed every message file again.
type metaCache struct {
	mu   sync.Mutex
	max  int64
	used int64
	lru  list.List // of *msgMeta, most recently used at the front
	byK  map[string]*list.Element
}

func newMetaCache(max int64) *metaCache {
	return &metaCache{max: max, byK: map[string]*list.Element{}}
}

func (c *metaCache) get(key string) *msgMeta {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	el := c.byK[key]
	if el == nil {
		return nil
	}
	c.lru.MoveToFront(el)
	return el.Value.(*msgMeta)
}

func (c *metaCache) put(e *msgMeta) {
	if c == nil || e.cost() > c.max/8 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el := c.byK[e.key]; el != nil {
		c.lru.MoveToFront(el)
		return
	}
	c.byK[e.key] = c.lru.PushFront(e)
	c.used += e.cost()
	for c.used > c.max {
		old := c.lru.Back()
		oe := old.Value.(*msgMeta)
		c.lru.Remove(old)
		delete(c.byK, oe.key)
		c.used -= oe.cost()
	}
}

// stats returns the number of entries and their total cost (for tests).
func (c *metaCache) stats() (entries int, used int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.byK), c.used
}

// warmMeta is the store's WatchDeliveries callback: a message delivered or
// APPENDed into a folder that a session has selected has its header block
// read into the cache now, while the file is in the page cache, so that
// the client's first FETCH of it (a mail client in IDLE asks for the new
// message's ENVELOPE or headers at once) opens no file. Mail for folders
// nobody has selected is not cached: it may never be read over IMAP
// (POP3, offline accounts) and would only evict entries in use.
func (s *Server) warmMeta(a store.Account, d store.Delivery) {
	if s.meta == nil {
		return
	}
	folder := d.Folder
	if folder == "" || strings.EqualFold(folder, store.Inbox) {
		folder = store.Inbox
	}
	key := mailboxKey(a, folder)
	s.mu.Lock()
	_, selected := s.mailboxes[key]
	s.mu.Unlock()
	if !selected {
		return
	}
	f, err := os.Open(d.Path)
	if err != nil {
		return // renamed meanwhile (a flag change): the first FETCH reads it
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return
	}
	if meta, err := readMeta(key+"\x00"+d.Unique, f, fi.Size(), fi.ModTime()); err == nil {
		s.meta.put(meta)
	}
}
