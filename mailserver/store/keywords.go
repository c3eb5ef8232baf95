package store

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Keywords (IMAP custom flags, RFC 9051 section 2.3.2) are kept as
// Dovecot keeps them, so that a Maildir moves between the two servers and
// the backup restores them: a message's keywords are lowercase letters in
// its file name's info ("…:2,Sab"), and each folder's "dovecot-keywords"
// file says which keyword a letter stands for, one "N name" line each,
// N = 0…25 for 'a'…'z'. The file sits beside cur/, so the archive backs it
// up with the folder's other files. Keywords are only ever added to the
// file, never renamed or reassigned, so a letter keeps its meaning.

// keywordsName is the per-folder keyword file (Dovecot's name and format).
const keywordsName = "dovecot-keywords"

// MaxKeywords is how many keywords a folder can hold: one per letter a–z.
const MaxKeywords = 26

var (
	// ErrTooManyKeywords: the folder has MaxKeywords keywords and a new one
	// was asked for.
	ErrTooManyKeywords = errors.New("store: the folder has 26 keywords already, the most a Maildir folder can hold")
	// ErrBadKeyword: not an IMAP atom (see ValidKeyword).
	ErrBadKeyword = errors.New("store: invalid keyword")
)

// Keywords is a folder's keyword table: Keywords[i] is the keyword the
// letter 'a'+i stands for in file names, "" when the letter is unused.
type Keywords [MaxKeywords]string

// Letter returns the letter of a keyword, compared case-insensitively
// (RFC 9051 section 2.3.2), or 0 if the folder has no such keyword.
func (k *Keywords) Letter(name string) byte {
	for i, n := range k {
		if n != "" && strings.EqualFold(n, name) {
			return byte('a' + i)
		}
	}
	return 0
}

// Name returns the keyword a letter stands for, "" if none.
func (k *Keywords) Name(letter byte) string {
	if letter < 'a' || letter > 'z' {
		return ""
	}
	return k[letter-'a']
}

// Names returns the keywords in letter order.
func (k *Keywords) Names() []string {
	var out []string
	for _, n := range k {
		if n != "" {
			out = append(out, n)
		}
	}
	return out
}

// Full reports whether every letter is taken.
func (k *Keywords) Full() bool {
	for _, n := range k {
		if n == "" {
			return false
		}
	}
	return true
}

// ValidKeyword reports whether name may be a keyword: an IMAP atom (RFC
// 9051 section 9, flag-keyword): printable US-ASCII without
// atom-specials "(){ %*\"\\]". A leading '\' would make it a system flag.
func ValidKeyword(name string) error {
	if name == "" || len(name) > 255 {
		return fmt.Errorf("%w: %q", ErrBadKeyword, name)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`(){%*"\]`, c) >= 0 {
			return fmt.Errorf("%w: %q", ErrBadKeyword, name)
		}
	}
	return nil
}

// parseKeywords reads a dovecot-keywords file. Like Dovecot, it skips
// lines it cannot use (a bad number, a letter given twice) rather than
// failing: the file is an index of names, and a message's letters stay
// in its file name whatever happens to it.
func parseKeywords(data []byte) Keywords {
	var k Keywords
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		num, name, ok := strings.Cut(sc.Text(), " ")
		i, err := strconv.Atoi(num)
		if !ok || err != nil || i < 0 || i >= MaxKeywords || k[i] != "" || ValidKeyword(name) != nil || k.Letter(name) != 0 {
			continue
		}
		k[i] = name
	}
	return k
}

func formatKeywords(k *Keywords) []byte {
	var b bytes.Buffer
	for i, n := range k {
		if n != "" {
			fmt.Fprintf(&b, "%d %s\n", i, n)
		}
	}
	return b.Bytes()
}

// keywordsStamp tells whether the keyword file changed since it was read
// (another process, e.g. Dovecot, may write it).
type keywordsStamp struct {
	ino   uint64
	size  int64
	mtime time.Time
}

func inode(fi fs.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Ino
	}
	return 0
}

// keywordsLocked returns the folder's keyword table, re-reading the file
// when it changed.
func (st *folderState) keywordsLocked() (Keywords, error) {
	p := filepath.Join(st.dir, keywordsName)
	fi, err := os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) {
		st.kw, st.kwStamp = Keywords{}, keywordsStamp{}
		return st.kw, nil
	}
	if err != nil {
		return Keywords{}, fmt.Errorf("store: keywords: %w", err)
	}
	stamp := keywordsStamp{ino: inode(fi), size: fi.Size(), mtime: fi.ModTime()}
	if stamp == st.kwStamp {
		return st.kw, nil
	}
	data, err := os.ReadFile(p)
	if err != nil {
		return Keywords{}, fmt.Errorf("store: keywords: %w", err)
	}
	st.kw, st.kwStamp = parseKeywords(data), stamp
	return st.kw, nil
}

// addKeywordsLocked gives every name not yet in the table a free letter
// and writes the file (atomically, fsynced) if anything was added. Either
// all names get a letter or, with ErrTooManyKeywords, none.
func (st *folderState) addKeywordsLocked(s *Store, names []string) (Keywords, error) {
	k, err := st.keywordsLocked()
	if err != nil {
		return k, err
	}
	added := false
	for _, n := range names {
		if err := ValidKeyword(n); err != nil {
			return k, err
		}
		if k.Letter(n) != 0 {
			continue
		}
		free := -1
		for i := range k {
			if k[i] == "" {
				free = i
				break
			}
		}
		if free < 0 {
			return st.kw, ErrTooManyKeywords
		}
		k[free], added = n, true
	}
	if !added {
		return k, nil
	}
	p := filepath.Join(st.dir, keywordsName)
	if err := writeFileAtomic(s.fs, p, formatKeywords(&k)); err != nil {
		return st.kw, fmt.Errorf("store: keywords: %w", err)
	}
	st.kwStamp = keywordsStamp{} // re-read (and stamp) on next use
	st.kw = k
	return k, nil
}

// Keywords returns a folder's keyword table.
func (s *Store) Keywords(ctx context.Context, a Account, folder string) (Keywords, error) {
	_, st, err := s.folderFor(a, folder)
	if err != nil {
		return Keywords{}, err
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.keywordsLocked()
}

// AddKeywords makes sure a folder has letters for the given keywords
// (IMAP STORE or APPEND with keywords new to it) and returns its table.
// It fails with ErrTooManyKeywords, adding none, when they do not fit, and
// with ErrBadKeyword for a name that is not an atom.
func (s *Store) AddKeywords(ctx context.Context, a Account, folder string, names []string) (Keywords, error) {
	if err := s.gate.enter(ctx); err != nil {
		return Keywords{}, err
	}
	defer s.gate.leave()
	if dir, err := s.folderDir(a, folder); err == nil && dir == s.MaildirPath(a) {
		// INBOX exists before its first message (List, Append).
		if err := s.ensureMaildir(dir, false); err != nil {
			return Keywords{}, err
		}
	}
	_, st, err := s.folderFor(a, folder)
	if err != nil {
		return Keywords{}, err
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	before := st.kw
	k, err := st.addKeywordsLocked(s, names)
	if err == nil && k != before {
		s.changed(a, folder)
	}
	return k, err
}

// translateKeywords rewrites the keyword letters of a message's flags
// from one folder's table to another's (COPY and MOVE), adding keywords
// the destination lacks. Letters without a keyword are dropped: they mean
// nothing in the destination.
func translateKeywords(s *Store, flags string, from, to *folderState) (string, error) {
	var names []string
	var keep []byte
	src, err := from.keywordsLocked()
	if err != nil {
		return "", err
	}
	for i := 0; i < len(flags); i++ {
		c := flags[i]
		if c < 'a' || c > 'z' {
			keep = append(keep, c)
		} else if n := src.Name(c); n != "" {
			names = append(names, n)
		}
	}
	if len(names) == 0 && len(keep) == len(flags) {
		return flags, nil
	}
	dst, err := to.addKeywordsLocked(s, names)
	if err != nil {
		return "", err
	}
	for _, n := range names {
		keep = append(keep, dst.Letter(n))
	}
	return string(keep), nil
}

// writeFileAtomic writes data to path through a temporary file that is
// fsynced and renamed into place, then fsyncs the directory.
func writeFileAtomic(fsys fileSystem, path string, data []byte) error {
	tmp := path + ".tmp"
	os.Remove(tmp) // left by a crash; writers of the folder hold its lock
	f, err := fsys.Create(tmp)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := fsys.SyncFile(f); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := fsys.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return fsys.SyncDir(filepath.Dir(path))
}
