package imapd

import (
	"bytes"
	"errors"
	"io"
	"net/url"
	"strconv"
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/mailvault/mailvault/mailserver/store"
)

// CatenateURL resolves an IMAP URL of an APPEND's CATENATE part (RFC 4469
// section 5, RFC 5092): an absolute path in the logged-in account,
// "/mailbox[;UIDVALIDITY=n]/;UID=n[/;SECTION=s][/;PARTIAL=o[.l]]", where
// the section is a part number, HEADER, TEXT or MIME (after a part).
// Anything else, or a message that is not there, is NO [BADURL]. dest is
// the APPEND's mailbox.
func (s *session) CatenateURL(dest, raw string) ([]byte, error) {
	// NO [TRYCREATE] for a destination that is not there comes first.
	if folder, err := folderName(dest); err != nil {
		return nil, err
	} else if folder != store.Inbox {
		if err := s.srv.store.CheckFolder(s.acct, folder); errors.Is(err, store.ErrNoSuchFolder) {
			return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeTryCreate, Text: "No such mailbox"}
		}
	}
	u, err := parseIMAPURL(raw)
	if err != nil {
		return nil, badURL(raw, err.Error())
	}
	folder, err := folderName(u.mailbox)
	if err != nil {
		return nil, badURL(raw, "no such mailbox")
	}
	if u.uidValidity != 0 {
		l, err := s.srv.store.List(s.ctx(), s.acct, folder)
		if err != nil {
			return nil, badURL(raw, "no such mailbox")
		}
		if l.UIDValidity != u.uidValidity {
			return nil, badURL(raw, "UIDVALIDITY differs")
		}
	}
	f, err := s.srv.store.OpenMessage(s.ctx(), s.acct, folder, u.uid)
	if errors.Is(err, store.ErrNoSuchMessage) || errors.Is(err, store.ErrNoSuchFolder) {
		return nil, badURL(raw, "no such message")
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var b []byte
	if u.section.Specifier == imap.PartSpecifierNone && len(u.section.Part) == 0 {
		b, err = io.ReadAll(f)
		if err != nil {
			return nil, err
		}
	} else {
		b = imapserver.ExtractBodySection(f, &u.section)
	}
	if p := u.section.Partial; p != nil {
		off := min(p.Offset, int64(len(b)))
		end := int64(len(b))
		if p.Size >= 0 {
			end = min(off+p.Size, end)
		}
		b = b[off:end]
	}
	return bytes.Clone(b), nil
}

func badURL(raw, why string) error {
	return &imap.Error{Type: imap.StatusResponseTypeNo, Code: "BADURL", Text: "Bad URL " + strconv.Quote(raw) + ": " + why}
}

type imapURL struct {
	mailbox     string
	uidValidity uint32
	uid         uint32
	section     imap.FetchItemBodySection
}

func parseIMAPURL(raw string) (*imapURL, error) {
	if !strings.HasPrefix(raw, "/") || strings.HasPrefix(raw, "//") {
		return nil, errors.New("only absolute paths in this account")
	}
	segs := strings.Split(raw[1:], "/;")
	u := &imapURL{}
	box := segs[0]
	if i := strings.Index(strings.ToUpper(box), ";UIDVALIDITY="); i >= 0 {
		v, err := strconv.ParseUint(box[i+len(";UIDVALIDITY="):], 10, 32)
		if err != nil || v == 0 {
			return nil, errors.New("bad UIDVALIDITY")
		}
		u.uidValidity, box = uint32(v), box[:i]
	}
	box = strings.TrimSuffix(box, "/")
	name, err := url.PathUnescape(box)
	if err != nil || name == "" {
		return nil, errors.New("bad mailbox")
	}
	u.mailbox = name
	for i, seg := range segs[1:] {
		key, val, ok := strings.Cut(seg, "=")
		if !ok {
			return nil, errors.New("bad " + seg)
		}
		val = strings.TrimSuffix(val, "/")
		switch strings.ToUpper(key) {
		case "UID":
			if i != 0 {
				return nil, errors.New("UID out of place")
			}
			v, err := strconv.ParseUint(val, 10, 32)
			if err != nil || v == 0 {
				return nil, errors.New("bad UID")
			}
			u.uid = uint32(v)
		case "SECTION":
			sec, err := url.PathUnescape(val)
			if err != nil || parseURLSection(sec, &u.section) != nil {
				return nil, errors.New("unsupported SECTION")
			}
		case "PARTIAL":
			o, l, hasLen := strings.Cut(val, ".")
			off, err := strconv.ParseInt(o, 10, 64)
			if err != nil || off < 0 {
				return nil, errors.New("bad PARTIAL")
			}
			p := &imap.SectionPartial{Offset: off, Size: -1}
			if hasLen {
				if p.Size, err = strconv.ParseInt(l, 10, 64); err != nil || p.Size <= 0 {
					return nil, errors.New("bad PARTIAL")
				}
			}
			u.section.Partial = p
		default:
			return nil, errors.New("unsupported " + key)
		}
	}
	if u.uid == 0 {
		return nil, errors.New("no UID")
	}
	return u, nil
}

// parseURLSection reads a section-text of an IMAP URL: part numbers then
// HEADER, TEXT or MIME (HEADER.FIELDS is not taken).
func parseURLSection(s string, bs *imap.FetchItemBodySection) error {
	for _, p := range strings.Split(s, ".") {
		if n, err := strconv.Atoi(p); err == nil && n > 0 && bs.Specifier == imap.PartSpecifierNone {
			bs.Part = append(bs.Part, n)
			continue
		}
		if bs.Specifier != imap.PartSpecifierNone {
			return errors.New("bad section")
		}
		switch spec := imap.PartSpecifier(strings.ToUpper(p)); spec {
		case imap.PartSpecifierHeader, imap.PartSpecifierText:
			bs.Specifier = spec
		case imap.PartSpecifierMIME:
			if len(bs.Part) == 0 {
				return errors.New("MIME without a part")
			}
			bs.Specifier = spec
		default:
			return errors.New("bad section")
		}
	}
	return nil
}
