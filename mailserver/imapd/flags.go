package imapd

import (
	"sort"
	"strings"

	"github.com/emersion/go-imap/v2"

	"github.com/mailvault/mailvault/maildir"
	"github.com/mailvault/mailvault/mailserver/store"
)

// Maildir info flags (cr.yp.to/proto/maildir.html, "2," info) and the
// IMAP flags they stand for (RFC 9051 section 2.3.2). P ("passed") is the
// $Forwarded keyword (RFC 5788 registry), as Dovecot maps it. Other
// keywords are the letters a–z, named per folder by store.Keywords.
var maildirToIMAP = map[byte]imap.Flag{
	'D': imap.FlagDraft,
	'F': imap.FlagFlagged,
	'P': imap.FlagForwarded,
	'R': imap.FlagAnswered,
	'S': imap.FlagSeen,
	'T': imap.FlagDeleted,
}

// systemFlags are the flags every folder has, in FLAGS order.
var systemFlags = []imap.Flag{imap.FlagAnswered, imap.FlagDeleted, imap.FlagDraft, imap.FlagFlagged, imap.FlagSeen, imap.FlagForwarded}

// mailboxFlags are a folder's FLAGS (RFC 9051 section 7.3.5): the system
// flags and its keywords.
func mailboxFlags(kw *store.Keywords) []imap.Flag {
	out := append([]imap.Flag(nil), systemFlags...)
	for _, n := range kw.Names() {
		out = append(out, imap.Flag(n))
	}
	return out
}

// permanentFlags are a folder's PERMANENTFLAGS (RFC 9051 section 7.1):
// all of its FLAGS survive in file names, and "\*" says a STORE may create
// keywords while a letter is free.
func permanentFlags(kw *store.Keywords) []imap.Flag {
	out := mailboxFlags(kw)
	if !kw.Full() {
		out = append(out, imap.FlagWildcard)
	}
	return out
}

// imapFlags converts Maildir flags to IMAP flags; letters that stand for
// nothing (no keyword of that letter in the folder) are not shown.
func imapFlags(md string, kw *store.Keywords) []imap.Flag {
	out := []imap.Flag{}
	for i := 0; i < len(md); i++ {
		if f, ok := maildirToIMAP[md[i]]; ok {
			out = append(out, f)
		} else if n := kw.Name(md[i]); n != "" {
			out = append(out, imap.Flag(n))
		}
	}
	return out
}

// maildirLetter maps one IMAP flag to its Maildir letter, 0 if none.
// Flags are case-insensitive (RFC 9051 section 2.3.2).
func maildirLetter(f imap.Flag, kw *store.Keywords) byte {
	for l, name := range maildirToIMAP {
		if strings.EqualFold(string(name), string(f)) {
			return l
		}
	}
	if strings.HasPrefix(string(f), `\`) {
		return 0 // \Recent or a system flag this server does not know
	}
	return kw.Letter(string(f))
}

// newKeywords returns the keywords among flags that the folder has no
// letter for yet. A keyword that is not an atom is an error; system flags
// the server does not store (\Recent, unknown "\…") are not keywords and
// are left out, to be ignored as the PERMANENTFLAGS announce.
func newKeywords(flags []imap.Flag, kw *store.Keywords) ([]string, error) {
	var out []string
	for _, f := range flags {
		if strings.HasPrefix(string(f), `\`) || maildirLetter(f, kw) != 0 {
			continue
		}
		if err := store.ValidKeyword(string(f)); err != nil {
			return nil, err
		}
		out = append(out, string(f))
	}
	return out, nil
}

// maildirFlags converts IMAP flags to Maildir letters.
func maildirFlags(flags []imap.Flag, kw *store.Keywords) string {
	var b []byte
	for _, f := range flags {
		if l := maildirLetter(f, kw); l != 0 {
			b = append(b, l)
		}
	}
	return maildir.NormalizeFlags(string(b))
}

// applyStore computes a message's new Maildir flags for STORE (RFC 9051
// section 6.4.6). Keywords must have letters already (newKeywords); letters
// this server does not map to a flag are kept.
func applyStore(old string, op imap.StoreFlagsOp, flags []imap.Flag, kw *store.Keywords) string {
	set := map[byte]bool{}
	for i := 0; i < len(old); i++ {
		set[old[i]] = true
	}
	if op == imap.StoreFlagsSet {
		for l := range set {
			if _, system := maildirToIMAP[l]; system || kw.Name(l) != "" {
				delete(set, l)
			}
		}
	}
	for _, f := range flags {
		l := maildirLetter(f, kw)
		if l == 0 {
			continue
		}
		set[l] = op != imap.StoreFlagsDel
	}
	var b []byte
	for l, on := range set {
		if on {
			b = append(b, l)
		}
	}
	sort.Slice(b, func(i, j int) bool { return b[i] < b[j] })
	return maildir.NormalizeFlags(string(b))
}

func hasFlag(md string, letter byte) bool { return strings.IndexByte(md, letter) >= 0 }
