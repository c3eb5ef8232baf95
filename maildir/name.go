// Package maildir knows the Maildir and Maildir++ conventions that both the
// mail server (which writes messages) and the archive (which backs them up)
// depend on: how a message file is named, and how a tree of users and
// folders is laid out.
//
// References: the Maildir specification (cr.yp.to/proto/maildir.html) and
// Courier's Maildir++ extension (folders as ".Name.Sub" directories).
package maildir

import (
	"sort"
	"strconv"
	"strings"
)

// InfoSeparator separates the unique part of a file name from its info part
// ("2,FS"). Maildir uses ':'; some systems that cannot store ':' in file
// names use '!' or ';' — we only ever write ':' but accept all three.
const InfoSeparator = ':'

// Name is a parsed Maildir message file name, e.g.
// "1700000000.M1P2Q3.host,S=1234,W=1260:2,FS".
type Name struct {
	// Unique is the part before the info separator. It identifies the
	// message for its whole life: flag changes rename only the info part,
	// and moves between folders keep it.
	Unique string
	// Flags are the Maildir "2," flags, sorted ASCII (e.g. "FS").
	Flags string
	// Size is the ",S=" size hint from the unique part, or -1 when absent.
	Size int64
	// HasInfo reports whether the name had an info part at all (messages in
	// new/ usually do not).
	HasInfo bool
}

// ParseName splits a Maildir file name. It never fails: a name that does not
// follow the convention is all unique part, with no flags.
func ParseName(fileName string) Name {
	n := Name{Unique: fileName, Size: -1}
	// The info part starts at the last separator that is followed by "2,".
	// Looking only at the very last separator would misparse names whose
	// flags contain a separator character, e.g. FileName("u", ":") is
	// "u:2,:", and they would not round-trip through FileName. Flags as
	// NormalizeFlags returns them never contain a separator followed by
	// "2," (they are sorted, and ',' sorts before '2'), so the last such
	// separator is always the one FileName wrote.
	for rest := fileName; ; {
		i := strings.LastIndexAny(rest, ":!;")
		if i < 0 {
			break
		}
		if strings.HasPrefix(fileName[i+1:], "2,") {
			n.Unique = fileName[:i]
			n.Flags = NormalizeFlags(fileName[i+3:])
			n.HasInfo = true
			break
		}
		rest = rest[:i]
	}
	// ",S=<size>" is a Maildir++ extension giving the file size so that
	// quota and size checks need no stat.
	for _, field := range strings.Split(n.Unique, ",")[1:] {
		if v, ok := strings.CutPrefix(field, "S="); ok {
			if s, err := strconv.ParseInt(v, 10, 64); err == nil && s >= 0 {
				n.Size = s
			}
		}
	}
	return n
}

// FileName builds the name of a message file in cur/ with the given flags.
func FileName(unique, flags string) string {
	return unique + string(InfoSeparator) + "2," + NormalizeFlags(flags)
}

// NormalizeFlags returns the flags sorted and de-duplicated, as the Maildir
// specification requires ("must be in ASCII order").
func NormalizeFlags(flags string) string {
	b := []byte(flags)
	sort.Slice(b, func(i, j int) bool { return b[i] < b[j] })
	out := make([]byte, 0, len(b))
	for _, c := range b {
		if c < 0x21 || c > 0x7e || (len(out) > 0 && c == out[len(out)-1]) {
			continue
		}
		out = append(out, c)
	}
	return string(out)
}
