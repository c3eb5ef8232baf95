package imapd

import (
	"sort"
	"strings"

	"github.com/emersion/go-imap/v2"

	"github.com/mailvault/mailvault/maildir"
)

// Maildir info flags (cr.yp.to/proto/maildir.html, "2," info) and the
// IMAP flags they stand for (RFC 9051 section 2.3.2). P ("passed") is the
// $Forwarded keyword (RFC 5788 registry), as Dovecot maps it.
var maildirToIMAP = map[byte]imap.Flag{
	'D': imap.FlagDraft,
	'F': imap.FlagFlagged,
	'P': imap.FlagForwarded,
	'R': imap.FlagAnswered,
	'S': imap.FlagSeen,
	'T': imap.FlagDeleted,
}

// permanentFlags are the flags that survive in file names (the
// PERMANENTFLAGS of RFC 9051 section 7.1); other keywords are accepted and
// dropped, which the absence of "\*" announces.
var permanentFlags = []imap.Flag{imap.FlagAnswered, imap.FlagDeleted, imap.FlagDraft, imap.FlagFlagged, imap.FlagSeen, imap.FlagForwarded}

// imapFlags converts Maildir flags to IMAP flags; unknown letters (e.g.
// another server's keyword letters) are not shown.
func imapFlags(md string) []imap.Flag {
	out := []imap.Flag{}
	for i := 0; i < len(md); i++ {
		if f, ok := maildirToIMAP[md[i]]; ok {
			out = append(out, f)
		}
	}
	return out
}

// maildirLetter maps one IMAP flag to its Maildir letter (0 if none).
// System flags and keywords are case-insensitive (RFC 9051 section 2.3.2).
func maildirLetter(f imap.Flag) byte {
	for l, name := range maildirToIMAP {
		if strings.EqualFold(string(name), string(f)) {
			return l
		}
	}
	return 0
}

// maildirFlags converts IMAP flags to Maildir letters.
func maildirFlags(flags []imap.Flag) string {
	var b []byte
	for _, f := range flags {
		if l := maildirLetter(f); l != 0 {
			b = append(b, l)
		}
	}
	return maildir.NormalizeFlags(string(b))
}

// applyStore computes a message's new Maildir flags for STORE (RFC 9051
// section 6.4.6). Letters this server does not map are kept.
func applyStore(old string, op imap.StoreFlagsOp, flags []imap.Flag) string {
	set := map[byte]bool{}
	for i := 0; i < len(old); i++ {
		set[old[i]] = true
	}
	if op == imap.StoreFlagsSet {
		for l := range maildirToIMAP {
			delete(set, l)
		}
	}
	for _, f := range flags {
		l := maildirLetter(f)
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
