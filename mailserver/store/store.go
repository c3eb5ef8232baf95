// Package store keeps mail in Maildir++ directories, the very layout the
// mailvault archive backs up:
//
//	<root>/<domain>/<user>/Maildir/{tmp,new,cur}           INBOX
//	<root>/<domain>/<user>/Maildir/.Sent/{tmp,new,cur}     folder "Sent"
//	<root>/<domain>/<user>/Maildir/.Archive.2024/...       folder "Archive/2024"
//
// Delivery follows the Maildir specification (cr.yp.to/proto/maildir.html):
// the message is written to tmp/, fsynced, renamed into new/, and the new/
// directory is fsynced; only then does Deliver return, so a caller may
// acknowledge the message (SMTP 250, IMAP APPEND OK) knowing it survives a
// crash.
//
// Each folder carries a UID index ("mailvault-uidlist", see uidlist.go) that
// gives messages the stable UIDs and UIDVALIDITY that IMAP (RFC 9051 section
// 2.3.1.1) requires. The index is an append-only log and can always be
// rebuilt from the directory.
//
// A Store is safe for concurrent use within one process. Quiesce pauses all
// writers so that a snapshot of the tree is consistent.
package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/mailvault/mailvault/maildir"
)

// Inbox is the name of the folder that is the Maildir itself.
const Inbox = "INBOX"

// Junk is the spam folder: smtpd files DMARC-quarantined mail there, and
// imapd lists it with the RFC 6154 SPECIAL-USE attribute \Junk.
const Junk = "Junk"

// Separator is the hierarchy separator of folder names as the store's
// callers see them ("Archive/2024"); on disk Maildir++ uses '.'.
const Separator = '/'

// Errors returned by the store; test with errors.Is.
var (
	ErrNoSuchFolder    = errors.New("store: no such folder")
	ErrFolderExists    = errors.New("store: folder already exists")
	ErrBadFolderName   = errors.New("store: invalid folder name")
	ErrBadAccount      = errors.New("store: invalid account name")
	ErrNoSuchMessage   = errors.New("store: no such message")
	ErrMessageTooLarge = errors.New("store: message too large")
)

// Account names one mailbox owner: the local part and domain of the address.
type Account struct {
	Domain string
	User   string
}

// AccountOf splits an address "user@domain" into an Account, lower-casing
// the domain (RFC 5321 section 2.4: domains are case-insensitive) and the
// local part (mailvault treats local parts case-insensitively too).
func AccountOf(address string) (Account, error) {
	i := strings.LastIndexByte(address, '@')
	if i <= 0 || i == len(address)-1 {
		return Account{}, fmt.Errorf("%w: %q", ErrBadAccount, address)
	}
	a := Account{User: strings.ToLower(address[:i]), Domain: strings.ToLower(address[i+1:])}
	if err := a.validate(); err != nil {
		return Account{}, err
	}
	return a, nil
}

func (a Account) String() string { return a.User + "@" + a.Domain }

func (a Account) validate() error {
	for _, p := range []string{a.User, a.Domain} {
		if p == "" || p == "." || p == ".." || strings.ContainsAny(p, "/\\\x00") || !utf8.ValidString(p) || len(p) > 255 {
			return fmt.Errorf("%w: %q", ErrBadAccount, a.String())
		}
	}
	return nil
}

// Options tune a Store.
type Options struct {
	// Hostname goes into new message file names; os.Hostname by default.
	Hostname string
	// MaxMessageBytes bounds one message; 0 means no bound.
	MaxMessageBytes int64
	Logger          *slog.Logger
	// Now is the clock used for file names and new UIDVALIDITY values;
	// time.Now by default.
	Now func() time.Time
}

// Store is a tree of Maildir++ mailboxes under one root directory.
type Store struct {
	root     string
	host     string
	maxBytes atomic.Int64 // SetMaxMessageBytes
	// scansSkipped counts listings that needed no directory scan
	// (scan.go), for tests.
	scansSkipped atomic.Int64
	// listVersions numbers the states of the folders' listings
	// (Listing.Version), across folders, so that a version never comes
	// back when a folder deleted and created again starts a new
	// folderState.
	listVersions atomic.Uint64
	// syncs counts fsyncs of files and directories (Syncs).
	syncs atomic.Int64
	log   *slog.Logger
	fs    fileSystem
	gate  gate
	seq   atomic.Uint64
	pid   int
	rnd   string
	now   func() time.Time

	mu      sync.Mutex
	folders map[string]*folderState // by folder directory

	// validityMu serializes nextValidity's read and write of the
	// accounts' uidvalidity files; taken under a folder's lock, it is a
	// leaf.
	validityMu sync.Mutex

	watch watchers

	copyBufs sync.Pool // *[]byte of 32 KiB, for CopyPooled
}

// Open returns a Store rooted at dir (normally <data>/mail), creating dir.
func Open(ctx context.Context, dir string, opts Options) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("store: create root: %w", err)
	}
	host := opts.Hostname
	if host == "" {
		host, _ = os.Hostname()
		if host == "" {
			host = "localhost"
		}
	}
	// Maildir: "/" and ":" in the host part are encoded as \057 and \072.
	host = strings.NewReplacer("/", `\057`, ":", `\072`, ",", `\054`).Replace(host)
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("store: random: %w", err)
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	st := &Store{
		root:    dir,
		host:    host,
		log:     log,
		pid:     os.Getpid(),
		rnd:     hex.EncodeToString(b[:]),
		now:     now,
		folders: map[string]*folderState{},
	}
	st.fs = osFS{syncs: &st.syncs}
	st.maxBytes.Store(opts.MaxMessageBytes)
	return st, nil
}

// Syncs returns how many fsyncs (of message files, directories and UID
// indexes) the store has made: a durable delivery's cost is mostly their
// latency, so tests and benchmarks count them per operation.
func (s *Store) Syncs() int64 { return s.syncs.Load() }

// SetMaxMessageBytes changes Options.MaxMessageBytes while the store is
// in use (a configuration reload); deliveries under way keep the bound
// they started with.
func (s *Store) SetMaxMessageBytes(n int64) { s.maxBytes.Store(n) }

// Root returns the directory the store was opened on.
func (s *Store) Root() string { return s.root }

// MaildirPath returns the Maildir directory of an account.
func (s *Store) MaildirPath(a Account) string {
	return filepath.Join(s.root, a.Domain, a.User, "Maildir")
}

// folderDir maps a folder name to its directory. Maildir++: INBOX is the
// Maildir itself, "A/B" is ".A.B".
func (s *Store) folderDir(a Account, folder string) (string, error) {
	if err := a.validate(); err != nil {
		return "", err
	}
	if strings.EqualFold(folder, Inbox) || folder == "" {
		return s.MaildirPath(a), nil
	}
	if err := ValidFolderName(folder); err != nil {
		return "", err
	}
	return filepath.Join(s.MaildirPath(a), "."+strings.ReplaceAll(folder, string(Separator), ".")), nil
}

// ValidFolderName reports whether name may be used as a folder name. Names
// are UTF-8, hierarchy levels separated by '/', and may not contain '.'
// (the Maildir++ separator on disk), control characters or empty levels.
func ValidFolderName(name string) error {
	if name == "" || len(name) > 512 || !utf8.ValidString(name) {
		return fmt.Errorf("%w: %q", ErrBadFolderName, name)
	}
	for _, level := range strings.Split(name, string(Separator)) {
		if level == "" {
			return fmt.Errorf("%w: %q", ErrBadFolderName, name)
		}
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f || r == '.' || r == '\\' {
			return fmt.Errorf("%w: %q", ErrBadFolderName, name)
		}
	}
	if strings.EqualFold(strings.SplitN(name, string(Separator), 2)[0], Inbox) {
		return fmt.Errorf("%w: %q is reserved", ErrBadFolderName, name)
	}
	return nil
}

// ensureMaildir creates dir with tmp/, new/ and cur/ and makes the new
// entries durable by fsyncing their parents.
func (s *Store) ensureMaildir(dir string, subfolder bool) error {
	if _, err := os.Stat(filepath.Join(dir, "cur")); err == nil {
		return nil
	}
	var created []string
	for p := dir; ; p = filepath.Dir(p) {
		if _, err := os.Stat(p); err == nil {
			break
		}
		created = append(created, p)
		if p == s.root || p == filepath.Dir(p) {
			break
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("store: create maildir: %w", err)
	}
	for _, sub := range []string{"tmp", "new", "cur"} {
		if err := os.Mkdir(filepath.Join(dir, sub), 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("store: create maildir: %w", err)
		}
	}
	if subfolder {
		// Maildir++: a folder is marked by an empty "maildirfolder" file.
		f, err := os.OpenFile(filepath.Join(dir, "maildirfolder"), os.O_CREATE|os.O_WRONLY, 0o600)
		if err != nil {
			return fmt.Errorf("store: create maildir: %w", err)
		}
		f.Close()
	}
	if err := s.fs.SyncDir(dir); err != nil {
		return err
	}
	for _, p := range created {
		if err := s.fs.SyncDir(filepath.Dir(p)); err != nil {
			return err
		}
	}
	return nil
}

// Delivery describes a message that Deliver or Append made durable.
type Delivery struct {
	Folder string
	Unique string
	Size   int64
	// UID is set by Append (zero after Deliver: UIDs of delivered
	// messages are given when the folder is next listed).
	UID uint32
	// UIDValidity is the folder's UIDVALIDITY, set by Append with UID
	// (RFC 4315 APPENDUID).
	UIDValidity uint32
	// Path is the message file's path when Deliver or Append returned
	// (it changes with the message's flags).
	Path string
}

// Deliver stores a message in a folder (created if missing) of account a.
// It returns only after the message file is fsynced and renamed into new/
// and new/ is fsynced (Maildir specification, "How a message is delivered").
func (s *Store) Deliver(ctx context.Context, a Account, folder string, r io.Reader) (Delivery, error) {
	if err := s.gate.enter(ctx); err != nil {
		return Delivery{}, err
	}
	defer s.gate.leave()
	return s.deliver(ctx, a, folder, r, "", false, time.Time{})
}

// Append stores a message like Deliver, with flags, directly in cur/, and
// gives it the next UID (for IMAP APPEND and its APPENDUID, RFC 4315).
func (s *Store) Append(ctx context.Context, a Account, folder string, r io.Reader, flags string) (Delivery, error) {
	return s.AppendAt(ctx, a, folder, r, flags, time.Time{})
}

// AppendAt is Append with the message's internal date (IMAP APPEND's
// date-time, RFC 3501 section 6.3.11); the zero time means now. The
// internal date is the file's modification time, set before the file is
// renamed into cur/, so that no reader (a FETCH, the header cache filled
// at delivery, a COPY's hard link) ever sees another one.
func (s *Store) AppendAt(ctx context.Context, a Account, folder string, r io.Reader, flags string, date time.Time) (Delivery, error) {
	if err := s.gate.enter(ctx); err != nil {
		return Delivery{}, err
	}
	defer s.gate.leave()
	return s.deliver(ctx, a, folder, r, flags, true, date)
}

func (s *Store) newUnique(now time.Time) string {
	// Maildir: "time.MusecPpidQdeliveries.host"; R adds randomness so two
	// processes with the same pid (containers) cannot collide.
	return fmt.Sprintf("%d.M%dP%dQ%dR%s.%s", now.Unix(), now.Nanosecond()/1000, s.pid, s.seq.Add(1), s.rnd, s.host)
}

// CopyPooled is io.Copy with a buffer from the store's pool. Copying into
// an *os.File from a reader that is not a file goes through the file's
// ReadFrom, which allocates a new 32 KiB buffer every time: per delivered
// message, that was the largest allocation of the SMTP path and, with the
// garbage collection it caused, a tenth of its CPU (bench/mailserver).
// Hiding ReadFrom makes io.CopyBuffer use the pooled buffer. IMAP FETCH
// uses it too: an io.SectionReader has no WriteTo and the literal writer
// no ReadFrom, so io.Copy allocated 32 KiB per message sent.
func (s *Store) CopyPooled(dst io.Writer, src io.Reader) (int64, error) {
	bp, _ := s.copyBufs.Get().(*[]byte)
	if bp == nil {
		b := make([]byte, 32<<10)
		bp = &b
	}
	defer s.copyBufs.Put(bp)
	return io.CopyBuffer(struct{ io.Writer }{dst}, src, *bp)
}

func (s *Store) deliver(ctx context.Context, a Account, folder string, r io.Reader, flags string, assignUID bool, date time.Time) (Delivery, error) {
	dir, err := s.folderDir(a, folder)
	if err != nil {
		return Delivery{}, err
	}
	if folder == "" {
		folder = Inbox
	}
	if err := s.ensureMaildir(dir, dir != s.MaildirPath(a)); err != nil {
		return Delivery{}, err
	}
	base := s.newUnique(s.now())
	var f *os.File
	var tmpPath string
	if assignUID {
		f, tmpPath, err = s.createTmp(dir, base) // spare.go
	} else {
		tmpPath = filepath.Join(dir, "tmp", base)
		if f, err = s.fs.Create(tmpPath); err != nil {
			err = fmt.Errorf("store: create tmp: %w", err)
		}
	}
	if err != nil {
		return Delivery{}, err
	}
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmpPath)
		}
	}()
	src := r
	maxBytes := s.maxBytes.Load()
	if maxBytes > 0 {
		src = io.LimitReader(r, maxBytes+1)
	}
	n, err := s.CopyPooled(f, ctxReader{ctx, src})
	if err != nil {
		return Delivery{}, fmt.Errorf("store: write message: %w", err)
	}
	if maxBytes > 0 && n > maxBytes {
		return Delivery{}, ErrMessageTooLarge
	}
	if !date.IsZero() {
		// Before the fsync, which makes the time durable with the data.
		if err := os.Chtimes(tmpPath, date, date); err != nil {
			return Delivery{}, fmt.Errorf("store: set internal date: %w", err)
		}
	}
	unique := base + ",S=" + strconv.FormatInt(n, 10)
	if !assignUID {
		return s.deliverNew(a, folder, dir, f, tmpPath, unique, n, &ok)
	}
	final := filepath.Join(dir, "cur", maildir.FileName(unique, flags))
	d := Delivery{Folder: folder, Unique: unique, Size: n, Path: final}
	// The folder is locked from before the rename, so that the file
	// enters cur/ as a change of this Store's (scan.go): the next
	// listing need not read the directory to find it.
	st, err := s.folder(dir)
	if err != nil {
		return Delivery{}, err
	}
	st.mu.Lock()
	delivered := false
	defer func() {
		st.mu.Unlock()
		if delivered {
			s.delivered(a, d) // after the folder's lock is released
		}
	}()
	if err := st.loadLocked(s); err != nil {
		return Delivery{}, err
	}
	// The UID record is written before the message is durable and
	// fsynced at the same time as the message file, so that an APPEND
	// waits for two fsyncs in a row (these two, then cur/'s) rather than
	// three. A crash after the record and before the rename leaves a
	// record without a file: the next scan expunges that UID (syncLocked),
	// which no client was given. A file in cur/ always has its record.
	fl := maildir.ParseName(filepath.Base(final)).Flags
	uid, ms, err := st.idx.reserve(s.fs, unique, fl)
	if err != nil {
		return Delivery{}, err
	}
	idxSynced := make(chan error, 1)
	go func() { idxSynced <- st.idx.syncFile(s.fs) }()
	err = s.fs.SyncFile(f)
	if idxErr := <-idxSynced; err == nil && idxErr != nil {
		return Delivery{}, idxErr
	}
	if err != nil {
		return Delivery{}, fmt.Errorf("store: fsync message: %w", err)
	}
	if err := f.Close(); err != nil {
		return Delivery{}, fmt.Errorf("store: close message: %w", err)
	}
	done := st.changing()
	if err := s.fs.Rename(tmpPath, final); err != nil {
		done(false)
		return Delivery{}, fmt.Errorf("store: move into place: %w", err)
	}
	ok = true
	defer s.changed(a, folder)
	// In memory before the fsync of cur/, which may fail with the file
	// in it: a scan then finds it with this UID, as a restart would.
	st.idx.assigned([]string{unique}, []string{fl}, []uint32{uid}, ms)
	st.inCur[unique] = true
	st.files[unique] = filepath.Base(final)
	st.appendListedLocked(uid, unique)
	if err := s.fs.SyncDir(filepath.Dir(final)); err != nil {
		done(false)
		return Delivery{}, fmt.Errorf("store: fsync dir: %w", err)
	}
	d.UID, d.UIDValidity = uid, st.idx.validity
	done(true)
	delivered = true
	return d, nil
}

// deliverNew finishes Deliver: the message file, written, is made
// durable and moved into new/, where the next listing gives it a UID.
func (s *Store) deliverNew(a Account, folder, dir string, f *os.File, tmpPath, unique string, n int64, ok *bool) (Delivery, error) {
	if err := s.fs.SyncFile(f); err != nil {
		return Delivery{}, fmt.Errorf("store: fsync message: %w", err)
	}
	if err := f.Close(); err != nil {
		return Delivery{}, fmt.Errorf("store: close message: %w", err)
	}
	final := filepath.Join(dir, "new", unique)
	if err := s.fs.Rename(tmpPath, final); err != nil {
		return Delivery{}, fmt.Errorf("store: move into place: %w", err)
	}
	*ok = true
	defer s.changed(a, folder)
	if err := s.fs.SyncDir(filepath.Dir(final)); err != nil {
		return Delivery{}, fmt.Errorf("store: fsync dir: %w", err)
	}
	d := Delivery{Folder: folder, Unique: unique, Size: n, Path: final}
	s.delivered(a, d)
	return d, nil
}

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// Message is one message in a folder listing.
type Message struct {
	UID    uint32
	Unique string
	// Flags are the Maildir flags (D draft, F flagged, P passed, R replied,
	// S seen, T trashed, and keywords a–z, see Listing.Keywords), sorted.
	Flags string
	// Recent is true while the message is still in new/ (Maildir's
	// "not yet seen by a mail reader"). IMAP's \Recent is
	// Listing.FirstRecent.
	Recent bool
	Size   int64
	// Path is the file's current absolute path; it changes with flags.
	Path string
	// ModSeq is the message's modification sequence (RFC 7162 section
	// 3.1.1): raised by its arrival and by every change of its flags.
	ModSeq uint64
}

// Listing is a folder's state as IMAP SELECT needs it.
type Listing struct {
	UIDValidity uint32
	UIDNext     uint32
	Messages    []Message // ascending UID
	// Keywords names the keyword letters (a–z) in the messages' Flags.
	Keywords Keywords
	// FirstRecent: messages with this UID or a higher one are \Recent
	// (RFC 3501 section 2.3.2), not yet claimed by an IMAP session (see
	// ClaimRecent).
	FirstRecent uint32
	// Version identifies Messages: a later listing of the folder with
	// the same Version has the same Messages (0: no messages).
	Version uint64
	// HighestModSeq is the folder's HIGHESTMODSEQ (RFC 7162 section
	// 3.1.2.1): at least 1, never lower than before, the largest MODSEQ
	// any message or expunge was given.
	HighestModSeq uint64
}

// List synchronises the folder's UID index with its directory and returns
// the messages in UID order. New files are given UIDs in name order; files
// that disappeared are dropped from the index. The Messages are shared
// with the store and other callers: read them, do not change them.
func (s *Store) List(ctx context.Context, a Account, folder string) (*Listing, error) {
	dir, err := s.folderDir(a, folder)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(dir, "cur")); err != nil {
		if dir == s.MaildirPath(a) {
			return &Listing{UIDValidity: 0, UIDNext: 1}, nil
		}
		return nil, fmt.Errorf("%w: %s", ErrNoSuchFolder, folder)
	}
	if err := s.gate.enter(ctx); err != nil {
		return nil, err
	}
	defer s.gate.leave()
	st, err := s.folder(dir)
	if err != nil {
		return nil, err
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if err := st.scanLocked(s); err != nil {
		return nil, err
	}
	kw, err := st.keywordsLocked()
	if err != nil {
		return nil, err
	}
	l := &Listing{UIDValidity: st.idx.validity, UIDNext: st.idx.next, Keywords: kw, FirstRecent: max(st.idx.firstRecent, 1),
		HighestModSeq: st.idx.highestModSeq()}
	if list, v := st.shareListLocked(); len(list) > 0 {
		l.Messages, l.Version = list, v
	}
	return l, nil
}

// ClaimRecent records that the folder's messages with UIDs below next are
// no longer \Recent: an IMAP session that SELECTed the folder (not one
// that EXAMINEd it) has claimed them (RFC 3501 section 2.3.2: a message is
// \Recent in one session only, the first to be notified of it). Like
// Dovecot's first_recent_uid it only grows, and outlives the server.
func (s *Store) ClaimRecent(ctx context.Context, a Account, folder string, next uint32) error {
	_, st, unlock, err := s.lockFolder(ctx, a, folder)
	if err != nil {
		return err
	}
	defer unlock()
	return st.idx.claimRecent(s.fs, min(next, st.idx.next))
}

// OpenMessage opens a message for reading by UID.
func (s *Store) OpenMessage(ctx context.Context, a Account, folder string, uid uint32) (*os.File, error) {
	dir, st, err := s.folderFor(a, folder)
	if err != nil {
		return nil, err
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	// The open is the existence check: one system call less per message
	// than finding the path and then opening it, which an IMAP FETCH of
	// a whole mailbox pays once per message.
	var f *os.File
	_, _, err = st.findLocked(s, dir, uid, func(p string) (err error) {
		f, err = os.Open(p)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("store: open message: %w", err)
	}
	return f, nil
}

// SetFlags replaces a message's Maildir flags: the file is renamed to
// cur/<unique>:2,<flags> (moving it out of new/ if needed) and cur/ is
// fsynced. A change of flags gives the message a new MODSEQ (RFC 7162).
func (s *Store) SetFlags(ctx context.Context, a Account, folder string, uid uint32, flags string) error {
	_, err := s.SetFlagsModSeq(ctx, a, folder, uid, flags, Unconditional)
	return err
}

// Unconditional is the unchangedSince of a SetFlagsModSeq without a
// condition: above every MODSEQ.
const Unconditional = 1<<64 - 1

// ErrModified is SetFlagsModSeq's answer for a message whose MODSEQ is
// above unchangedSince.
var ErrModified = errors.New("store: message modified since")

// SetFlagsModSeq is SetFlags returning the message's MODSEQ (a new one if
// the flags changed). It changes nothing, and returns ErrModified with
// the message's MODSEQ, if that is above unchangedSince: STORE
// (UNCHANGEDSINCE n) of RFC 7162 section 3.1.3. The test and the change
// are made under the folder's lock, so of two sessions racing on one
// message with the same n only the first changes it.
func (s *Store) SetFlagsModSeq(ctx context.Context, a Account, folder string, uid uint32, flags string, unchangedSince uint64) (uint64, error) {
	if err := s.gate.enter(ctx); err != nil {
		return 0, err
	}
	defer s.gate.leave()
	dir, st, err := s.folderFor(a, folder)
	if err != nil {
		return 0, err
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	old, unique, err := st.pathLocked(s, dir, uid)
	if err != nil {
		return 0, err
	}
	cur := st.idx.mods[uid].modseq
	if cur > unchangedSince {
		return cur, ErrModified
	}
	name := maildir.FileName(unique, flags)
	newPath := filepath.Join(dir, "cur", name)
	if old == newPath {
		return cur, nil
	}
	done := st.changing()
	changedOK := false
	defer func() { done(changedOK) }()
	if err := s.fs.Rename(old, newPath); err != nil {
		return 0, fmt.Errorf("store: set flags: %w", err)
	}
	if err := s.fs.SyncDir(filepath.Join(dir, "cur")); err != nil {
		return 0, err
	}
	if filepath.Dir(old) != filepath.Join(dir, "cur") {
		if err := s.fs.SyncDir(filepath.Dir(old)); err != nil {
			return 0, err
		}
	}
	st.files[unique] = name
	st.inCur[unique] = true
	// After the rename: a crash before the record leaves a file whose
	// flags differ from its M record's, and the next scan gives it a
	// MODSEQ then (syncLocked).
	ms, err := st.idx.setModSeqs(s.fs, []uint32{uid}, []string{maildir.ParseName(name).Flags})
	if err != nil {
		st.listOK = false
		return 0, err
	}
	st.setListedLocked(uid, unique)
	changedOK = true
	s.changed(a, folder)
	return ms, nil
}

// Expunge removes messages by UID; unknown UIDs are ignored.
func (s *Store) Expunge(ctx context.Context, a Account, folder string, uids []uint32) error {
	dir, st, unlock, err := s.lockFolder(ctx, a, folder)
	if err != nil {
		return err
	}
	defer unlock()
	var gone []uint32
	dirs := map[string]bool{}
	done := st.changing()
	changedOK := false
	defer func() { done(changedOK) }()
	for _, uid := range uids {
		p, unique, err := st.pathLocked(s, dir, uid)
		if errors.Is(err, ErrNoSuchMessage) {
			continue
		}
		if err != nil {
			return err
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("store: expunge: %w", err)
		}
		dirs[filepath.Dir(p)] = true
		delete(st.files, unique)
		delete(st.inCur, unique)
		gone = append(gone, uid)
	}
	for d := range dirs {
		if err := s.fs.SyncDir(d); err != nil {
			return err
		}
	}
	if len(gone) > 0 {
		defer s.changed(a, folder)
	}
	st.dropListedLocked(gone)
	if err := st.idx.remove(s.fs, gone); err != nil {
		st.listOK = false
		return err
	}
	changedOK = true
	return nil
}

// Move moves a message to another folder of the same account by renaming
// it (keeping its unique name and flags) and returns its UID there
// (RFC 6851 MOVE with COPYUID). Moved within its own folder, the message
// gets a new UID and the old one is expunged.
func (s *Store) Move(ctx context.Context, a Account, from, to string, uid uint32) (uint32, error) {
	return s.transfer(ctx, a, from, to, uid, true)
}

// Copy copies a message to another folder (hard link when possible) and
// returns its UID there.
func (s *Store) Copy(ctx context.Context, a Account, from, to string, uid uint32) (uint32, error) {
	return s.transfer(ctx, a, from, to, uid, false)
}

func (s *Store) transfer(ctx context.Context, a Account, from, to string, uid uint32, move bool) (uint32, error) {
	if err := s.gate.enter(ctx); err != nil {
		return 0, err
	}
	defer s.gate.leave()
	srcDir, src, err := s.folderFor(a, from)
	if err != nil {
		return 0, err
	}
	dstDir, err := s.folderDir(a, to)
	if err != nil {
		return 0, err
	}
	if _, err := os.Stat(filepath.Join(dstDir, "cur")); err != nil {
		return 0, fmt.Errorf("%w: %s", ErrNoSuchFolder, to)
	}
	if srcDir == dstDir && move {
		return s.renumber(a, from, src, uid)
	}
	dst, err := s.folder(dstDir)
	if err != nil {
		return 0, err
	}
	// Lock in a fixed order (by directory) so concurrent moves in opposite
	// directions cannot deadlock.
	first, second := src, dst
	if dstDir < srcDir {
		first, second = dst, src
	}
	first.mu.Lock()
	defer first.mu.Unlock()
	if first != second {
		second.mu.Lock()
		defer second.mu.Unlock()
	}
	oldPath, unique, err := src.pathLocked(s, srcDir, uid)
	if err != nil {
		return 0, err
	}
	if err := dst.loadLocked(s); err != nil {
		return 0, err
	}
	dstDone, srcDone := dst.changing(), func(bool) {}
	if move {
		srcDone = src.changing()
	}
	changedOK := false
	defer func() { dstDone(changedOK); srcDone(changedOK) }()
	p := maildir.ParseName(filepath.Base(oldPath))
	newUnique := unique
	if !move {
		newUnique = s.newUnique(s.now())
		if p.Size >= 0 {
			newUnique += ",S=" + strconv.FormatInt(p.Size, 10)
		}
	}
	flags := p.Flags
	if srcDir != dstDir {
		// Keyword letters are per folder.
		if flags, err = translateKeywords(s, flags, src, dst); err != nil {
			return 0, err
		}
	}
	name := maildir.FileName(newUnique, flags)
	newPath := filepath.Join(dstDir, "cur", name)
	if move {
		if err := s.fs.Rename(oldPath, newPath); err != nil {
			return 0, fmt.Errorf("store: move: %w", err)
		}
	} else if err := copyFile(s.fs, oldPath, newPath, filepath.Join(dstDir, "tmp", filepath.Base(newUnique))); err != nil {
		return 0, err
	}
	if err := s.fs.SyncDir(filepath.Join(dstDir, "cur")); err != nil {
		return 0, err
	}
	newUIDs, err := dst.idx.assign(s.fs, []string{newUnique}, []string{maildir.ParseName(name).Flags})
	if err != nil {
		return 0, err
	}
	dst.files[newUnique] = name
	dst.inCur[newUnique] = true
	dst.appendListedLocked(newUIDs[0], newUnique)
	if move {
		if err := s.fs.SyncDir(filepath.Dir(oldPath)); err != nil {
			return 0, err
		}
		delete(src.files, unique)
		delete(src.inCur, unique)
		src.dropListedLocked([]uint32{uid})
		if err := src.idx.remove(s.fs, []uint32{uid}); err != nil {
			return 0, err
		}
		s.changed(a, from)
	}
	changedOK = true
	s.changed(a, to)
	return newUIDs[0], nil
}

// renumber is MOVE into the folder the message is in. RFC 6851 section 3.1
// defines MOVE as COPY followed by expunging the originals, done
// atomically, and does not exclude the selected mailbox as target (Dovecot
// allows it, imaptest's "move" test uses it): the message keeps its file,
// flags and internal date and gets the next UID; the old one is expunged.
func (s *Store) renumber(a Account, folder string, st *folderState, uid uint32) (uint32, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	_, unique, err := st.pathLocked(s, st.dir, uid)
	if err != nil {
		return 0, err
	}
	st.listOK = false
	if err := st.idx.remove(s.fs, []uint32{uid}); err != nil {
		return 0, err
	}
	defer s.changed(a, folder)
	uids, err := st.idx.assign(s.fs, []string{unique}, []string{maildir.ParseName(st.files[unique]).Flags})
	if err != nil {
		return 0, err
	}
	return uids[0], nil
}

func copyFile(fsys fileSystem, from, to, tmp string) error {
	if err := os.Link(from, to); err == nil {
		return nil
	}
	in, err := os.Open(from)
	if err != nil {
		return fmt.Errorf("store: copy: %w", err)
	}
	defer in.Close()
	out, err := fsys.Create(tmp)
	if err != nil {
		return fmt.Errorf("store: copy: %w", err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		os.Remove(tmp)
		return fmt.Errorf("store: copy: %w", err)
	}
	// The copy keeps the internal date (RFC 3501 section 6.4.7), which is
	// the modification time, as a hard link would.
	if fi, err := in.Stat(); err == nil {
		if err := os.Chtimes(tmp, fi.ModTime(), fi.ModTime()); err != nil {
			out.Close()
			os.Remove(tmp)
			return fmt.Errorf("store: copy: %w", err)
		}
	}
	if err := fsys.SyncFile(out); err != nil {
		out.Close()
		os.Remove(tmp)
		return err
	}
	out.Close()
	return fsys.Rename(tmp, to)
}

// CreateFolder creates a folder (and, Maildir++ having no real hierarchy,
// nothing else: "A/B" does not imply "A").
func (s *Store) CreateFolder(ctx context.Context, a Account, name string) error {
	if err := s.gate.enter(ctx); err != nil {
		return err
	}
	defer s.gate.leave()
	if err := ValidFolderName(name); err != nil {
		return err
	}
	dir, err := s.folderDir(a, name)
	if err != nil {
		return err
	}
	if _, err := os.Stat(dir); err == nil {
		return fmt.Errorf("%w: %s", ErrFolderExists, name)
	}
	if err := s.ensureMaildir(s.MaildirPath(a), false); err != nil {
		return err
	}
	if err := s.ensureMaildir(dir, true); err != nil {
		return err
	}
	s.folderEvent(a, FolderEvent{Kind: FolderCreated, Folder: name})
	return nil
}

// DeleteFolder removes a folder and its messages (not its sub-folders:
// Maildir++ folders are independent directories). INBOX cannot be deleted.
func (s *Store) DeleteFolder(ctx context.Context, a Account, name string) error {
	if err := s.gate.enter(ctx); err != nil {
		return err
	}
	defer s.gate.leave()
	if err := ValidFolderName(name); err != nil {
		return err
	}
	dir, err := s.folderDir(a, name)
	if err != nil {
		return err
	}
	if _, err := os.Stat(dir); err != nil {
		return fmt.Errorf("%w: %s", ErrNoSuchFolder, name)
	}
	s.mu.Lock()
	if st := s.folders[dir]; st != nil {
		st.mu.Lock()
		if st.idx != nil && st.idx.f != nil {
			st.idx.f.Close()
		}
		st.dropSpareLocked()
		st.mu.Unlock()
		delete(s.folders, dir)
	}
	s.mu.Unlock()
	// Rename first so a crash leaves either the whole folder or a
	// trash directory that is not a folder (no leading dot).
	trash := filepath.Join(filepath.Dir(dir), "deleted-"+s.newUnique(s.now()))
	if err := s.fs.Rename(dir, trash); err != nil {
		return fmt.Errorf("store: delete folder: %w", err)
	}
	if err := s.fs.SyncDir(filepath.Dir(dir)); err != nil {
		return err
	}
	s.changed(a, name)
	s.folderEvent(a, FolderEvent{Kind: FolderDeleted, Folder: name})
	if err := os.RemoveAll(trash); err != nil {
		return fmt.Errorf("store: delete folder: %w", err)
	}
	return nil
}

// RenameFolder renames a folder and its sub-folders ("A" -> "B" also moves
// "A/x" to "B/x"), keeping UIDs and UIDVALIDITY. Renaming INBOX is not
// supported yet.
func (s *Store) RenameFolder(ctx context.Context, a Account, from, to string) error {
	if err := s.gate.enter(ctx); err != nil {
		return err
	}
	defer s.gate.leave()
	if err := ValidFolderName(from); err != nil {
		return err
	}
	if err := ValidFolderName(to); err != nil {
		return err
	}
	if to == from || strings.HasPrefix(to, from+string(Separator)) {
		return fmt.Errorf("%w: cannot rename %q into itself", ErrBadFolderName, from)
	}
	folders, err := s.Folders(ctx, a)
	if err != nil {
		return err
	}
	var moves [][2]string
	for _, f := range folders {
		if f == from || strings.HasPrefix(f, from+string(Separator)) {
			moves = append(moves, [2]string{f, to + f[len(from):]})
		}
	}
	if !contains(folders, from) {
		return fmt.Errorf("%w: %s", ErrNoSuchFolder, from)
	}
	for _, m := range moves {
		if contains(folders, m[1]) {
			return fmt.Errorf("%w: %s", ErrFolderExists, m[1])
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range moves {
		oldDir, _ := s.folderDir(a, m[0])
		newDir, _ := s.folderDir(a, m[1])
		if st := s.folders[oldDir]; st != nil {
			st.mu.Lock()
			if st.idx != nil && st.idx.f != nil {
				st.idx.f.Close()
			}
			st.dropSpareLocked()
			st.mu.Unlock()
			delete(s.folders, oldDir)
		}
		if err := s.fs.Rename(oldDir, newDir); err != nil {
			return fmt.Errorf("store: rename folder: %w", err)
		}
	}
	if err := s.fs.SyncDir(s.MaildirPath(a)); err != nil {
		return err
	}
	for _, m := range moves {
		s.changed(a, m[0])
		s.changed(a, m[1])
		s.folderEvent(a, FolderEvent{Kind: FolderRenamed, Folder: m[1], OldName: m[0]})
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Folders lists an account's folders: INBOX first, then the others sorted.
func (s *Store) Folders(ctx context.Context, a Account) ([]string, error) {
	if err := a.validate(); err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(s.MaildirPath(a))
	if errors.Is(err, fs.ErrNotExist) {
		return []string{Inbox}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("store: list folders: %w", err)
	}
	var out []string
	for _, e := range entries {
		n := e.Name()
		if !e.IsDir() || len(n) < 2 || n[0] != '.' || n == ".." {
			continue
		}
		out = append(out, strings.ReplaceAll(n[1:], ".", string(Separator)))
	}
	sort.Strings(out)
	return append([]string{Inbox}, out...), nil
}

// Quiesce blocks new writes (deliveries, flag changes, moves, expunges),
// waits until the writes in flight have finished (each is durable when it
// finishes) and returns a function that lets writes go on. Writers that
// arrive meanwhile wait. If ctx ends first, Quiesce undoes the pause and
// returns ctx's error. Quiesce may be nested; writes resume when every
// resume function has been called.
func (s *Store) Quiesce(ctx context.Context) (resume func(), err error) {
	return s.gate.pause(ctx)
}

// CheckFolder returns ErrNoSuchFolder unless the folder exists: what
// IMAP APPEND needs to know before it stores (NO [TRYCREATE]), without
// listing the folder.
func (s *Store) CheckFolder(a Account, folder string) error {
	_, err := s.existingFolderDir(a, folder)
	return err
}

// existingFolderDir returns the directory of a folder that exists
// (ErrNoSuchFolder otherwise): one with a cur/.
func (s *Store) existingFolderDir(a Account, folder string) (string, error) {
	dir, err := s.folderDir(a, folder)
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(filepath.Join(dir, "cur")); err != nil {
		return "", fmt.Errorf("%w: %s", ErrNoSuchFolder, folder)
	}
	return dir, nil
}

// lockFolder enters the store's gate (loading a folder not loaded yet
// scans it, which may write its UID list: not while the store is
// quiesced), finds the folder, locks it and loads its state. unlock
// releases both.
func (s *Store) lockFolder(ctx context.Context, a Account, folder string) (dir string, st *folderState, unlock func(), err error) {
	if err := s.gate.enter(ctx); err != nil {
		return "", nil, nil, err
	}
	dir, st, err = s.folderFor(a, folder)
	if err != nil {
		s.gate.leave()
		return "", nil, nil, err
	}
	st.mu.Lock()
	unlock = func() {
		st.mu.Unlock()
		s.gate.leave()
	}
	if err := st.loadLocked(s); err != nil {
		unlock()
		return "", nil, nil, err
	}
	return dir, st, unlock, nil
}

// folderFor returns the state of an existing folder.
func (s *Store) folderFor(a Account, folder string) (string, *folderState, error) {
	dir, err := s.existingFolderDir(a, folder)
	if err != nil {
		return "", nil, err
	}
	st, err := s.folder(dir)
	return dir, st, err
}

func (s *Store) folder(dir string) (*folderState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.folders[dir]
	if st == nil {
		st = &folderState{dir: dir, versions: &s.listVersions}
		s.folders[dir] = st
	}
	return st, nil
}

// folderState is the in-memory state of one folder, guarded by mu.
type folderState struct {
	mu    sync.Mutex
	dir   string
	idx   *uidIndex
	files map[string]string // unique -> current file name
	inCur map[string]bool   // unique -> file is in cur/
	// kw is the keyword table as last read from the folder's
	// dovecot-keywords file, whose identity kwStamp records.
	kw      Keywords
	kwStamp keywordsStamp
	// stamp: the modification times of the folder's directories that
	// files and inCur describe, valid if trusted; recheck: a full scan is
	// due once they are older than settleWindow (scan.go).
	stamp            [3]time.Time
	trusted, recheck bool
	// list is the listing of files and idx, valid if listOK, handed out
	// by List if listShared, numbered listVersion (scan.go).
	list        []Message
	listOK      bool
	listShared  bool
	listVersion uint64
	versions    *atomic.Uint64 // the Store's listVersions
	// spare is an empty file in tmp/ for the next Append (spare.go).
	spare string
}

func (st *folderState) loadLocked(s *Store) error {
	if st.idx != nil {
		return nil
	}
	return st.syncLocked(s)
}

// openIndexLocked opens the folder's UID index if it is not open yet.
func (st *folderState) openIndexLocked(s *Store) error {
	if st.idx != nil {
		return nil
	}
	removeSpares(st.dir) // spare.go
	newValidity := func(old uint32) (uint32, error) { return s.nextValidity(st.dir, old) }
	idx, err := openIndex(s.fs, filepath.Join(st.dir, indexName), newValidity, s.log)
	if err != nil {
		return err
	}
	st.idx = idx
	return nil
}

// syncLocked rescans new/ and cur/ and reconciles the index with them.
func (st *folderState) syncLocked(s *Store) error {
	st.listOK = false
	if err := st.openIndexLocked(s); err != nil {
		return err
	}
	files := map[string]string{}
	inCur := map[string]bool{}
	for _, sub := range []string{"new", "cur"} {
		entries, err := os.ReadDir(filepath.Join(st.dir, sub))
		if err != nil {
			return fmt.Errorf("store: scan folder: %w", err)
		}
		for _, e := range entries {
			if !e.Type().IsRegular() || strings.HasPrefix(e.Name(), ".") {
				continue
			}
			u := maildir.ParseName(e.Name()).Unique
			if _, dup := files[u]; dup && sub == "new" {
				continue
			}
			files[u] = e.Name()
			inCur[u] = sub == "cur"
		}
	}
	var gone []uint32
	for uid, u := range st.idx.byUID {
		if _, ok := files[u]; !ok {
			gone = append(gone, uid)
		}
	}
	sort.Slice(gone, func(i, j int) bool { return gone[i] < gone[j] })
	if err := st.idx.remove(s.fs, gone); err != nil {
		return err
	}
	var fresh []string
	for u := range files {
		if _, ok := st.idx.byUnique[u]; !ok {
			fresh = append(fresh, u)
		}
	}
	// Maildir unique names start with the delivery time, so name order is
	// close to arrival order.
	sort.Slice(fresh, func(i, j int) bool { return lessUnique(fresh[i], fresh[j]) })
	freshFlags := make([]string, len(fresh))
	for i, u := range fresh {
		freshFlags[i] = maildir.ParseName(files[u]).Flags
	}
	if _, err := st.idx.assign(s.fs, fresh, freshFlags); err != nil {
		return err
	}
	// Flags changed by another process (a rename the index has no M
	// record for), and messages of a log from before MODSEQs: a new
	// MODSEQ, or CHANGEDSINCE would miss them (RFC 7162 section 3.1).
	var changed []uint32
	var changedFlags []string
	for uid, u := range st.idx.byUID {
		f := maildir.ParseName(files[u]).Flags
		if r, ok := st.idx.mods[uid]; !ok || r.flags != f {
			changed = append(changed, uid)
			changedFlags = append(changedFlags, f)
		}
	}
	if _, err := st.idx.setModSeqs(s.fs, changed, changedFlags); err != nil {
		return err
	}
	st.files, st.inCur = files, inCur
	st.listOK = false
	return nil
}

func lessUnique(a, b string) bool {
	sa, ua := uniqueTime(a)
	sb, ub := uniqueTime(b)
	if sa != sb {
		return sa < sb
	}
	if ua != ub {
		return ua < ub
	}
	return a < b
}

// uniqueTime parses "<seconds>.M<microseconds>..." (missing parts are 0).
func uniqueTime(u string) (sec, usec int64) {
	secStr, rest, _ := strings.Cut(u, ".")
	sec, _ = strconv.ParseInt(secStr, 10, 64)
	if m, ok := strings.CutPrefix(rest, "M"); ok {
		end := 0
		for end < len(m) && m[end] >= '0' && m[end] <= '9' {
			end++
		}
		usec, _ = strconv.ParseInt(m[:end], 10, 64)
	}
	return sec, usec
}

// pathLocked finds the current file of a UID, rescanning once if the
// cached name is stale (another process may have renamed it).
func (st *folderState) pathLocked(s *Store, dir string, uid uint32) (path, unique string, err error) {
	return st.findLocked(s, dir, uid, func(p string) error {
		_, err := os.Lstat(p)
		return err
	})
}

// findLocked is pathLocked with probe as the check that the cached file
// still exists: a probe failing with fs.ErrNotExist means the name is
// stale, any other error is returned.
func (st *folderState) findLocked(s *Store, dir string, uid uint32, probe func(path string) error) (path, unique string, err error) {
	if err := st.loadLocked(s); err != nil {
		return "", "", err
	}
	for attempt := 0; attempt < 2; attempt++ {
		unique, ok := st.idx.byUID[uid]
		if !ok {
			return "", "", fmt.Errorf("%w: uid %d", ErrNoSuchMessage, uid)
		}
		if name, ok := st.files[unique]; ok {
			sub := "new"
			if st.inCur[unique] {
				sub = "cur"
			}
			p := filepath.Join(dir, sub, name)
			err := probe(p)
			if err == nil {
				return p, unique, nil
			}
			if !errors.Is(err, fs.ErrNotExist) {
				return "", "", err
			}
		}
		if err := st.syncLocked(s); err != nil {
			return "", "", err
		}
	}
	return "", "", fmt.Errorf("%w: uid %d", ErrNoSuchMessage, uid)
}
