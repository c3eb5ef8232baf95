package store

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// validityName is the per-account file holding the last UIDVALIDITY given
// to any folder of the account, one decimal number and a newline, in the
// account's Maildir (Dovecot keeps dovecot-uidvalidity for the same
// purpose).
const validityName = "mailvault-uidvalidity"

// nextValidity returns the UIDVALIDITY for a folder index that is being
// created in dir: the current time in seconds, but above old (the
// folder's previous value, if its index could still be read) and above
// the last value given to any folder of the account, which it records
// durably before returning.
//
// RFC 3501 section 2.3.1.1 (RFC 9051 likewise): if a mailbox is deleted
// and a new one created with the same name, the UIDVALIDITY must be
// greater than the old one's, or a client would take the new mailbox's
// UIDs for the old messages. The current time alone repeats itself when
// a folder is deleted and recreated within one second (imaptest's
// "uidvalidity" test); the account file does not.
func (s *Store) nextValidity(dir string, old uint32) (uint32, error) {
	maildir := dir
	if strings.HasPrefix(filepath.Base(dir), ".") {
		maildir = filepath.Dir(dir)
	}
	s.validityMu.Lock()
	defer s.validityMu.Unlock()
	path := filepath.Join(maildir, validityName)
	last := uint32(0)
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		n, perr := strconv.ParseUint(string(bytes.TrimSpace(b)), 10, 32)
		if perr != nil {
			s.log.Warn("ignoring unreadable uidvalidity file", "path", path)
		}
		last = uint32(n)
	case !errors.Is(err, fs.ErrNotExist):
		return 0, fmt.Errorf("store: read uidvalidity: %w", err)
	}
	v := uint32(s.now().Unix())
	if v <= old {
		v = old + 1
	}
	if v <= last {
		v = last + 1
	}
	if err := writeFileAtomic(s.fs, path, []byte(strconv.FormatUint(uint64(v), 10)+"\n")); err != nil {
		return 0, fmt.Errorf("store: write uidvalidity: %w", err)
	}
	return v, nil
}
