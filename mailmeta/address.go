package mailmeta

import (
	"mime"
	"net/mail"
	"strings"
)

// maxAddressInput bounds the text of one address handed to a parser; real
// ones, even with long encoded display names, are far shorter.
const maxAddressInput = 2 << 10

// parseAddressList appends the addresses of an address-list field value
// (RFC 5322 §3.4) to list, up to MaxAddresses in all. Each non-empty
// entry of the list uses up one of *budget, and parsing stops when none
// is left.
//
// go-message's mail.ParseAddressList, like net/mail's ParseList under it,
// fails the whole list when one address is malformed, and real lists often
// hold one (an unquoted comma in a display name, an unknown charset, a
// local address without a domain). So the list is split here and each
// address parsed on its own, falling back to lenientAddress for the ones
// net/mail rejects. Splitting first also stops the work at MaxAddresses.
func parseAddressList(dec *mime.WordDecoder, value []byte, list []string, budget *int) []string {
	if len(list) >= MaxAddresses || *budget <= 0 {
		return list
	}
	p := mail.AddressParser{WordDecoder: dec}
	s := unfold(value, MaxHeaderBytes)
	if list == nil {
		list = make([]string, 0, min(strings.Count(s, ",")+1, MaxAddresses))
	}
	for s != "" && len(list) < MaxAddresses && *budget > 0 {
		var piece string
		piece, s = nextAddress(s)
		if piece = strings.TrimSpace(piece); piece == "" {
			continue
		}
		*budget--
		if a := parseAddress(&p, dec, piece); a != "" {
			list = append(list, a)
		}
	}
	if len(list) == 0 {
		return nil // as when the field is missing
	}
	return list
}

// nextAddress splits the first address off an address list. Groups (RFC 5322
// §3.4, `name: a@b, c@d;`) are flattened: the group name is dropped and ';'
// ends an address like ','. Separators inside quoted strings, comments and
// angle brackets (obs-route, RFC 5322 §4.4) do not count.
func nextAddress(s string) (piece, rest string) {
	var (
		start   int
		quoted  bool
		escaped bool
		angle   bool
		depth   int // of nested comments
	)
	for i := range len(s) {
		c := s[i]
		switch {
		case escaped:
			escaped = false
		case quoted:
			switch c {
			case '\\':
				escaped = true
			case '"':
				quoted = false
			}
		case depth > 0:
			switch c {
			case '\\':
				escaped = true
			case '(':
				depth++
			case ')':
				depth--
			}
		default:
			switch c {
			case '"':
				quoted = true
			case '(':
				depth++
			case '<':
				angle = true
			case '>':
				angle = false
			case ':':
				if !angle {
					start = i + 1
				}
			case ';':
				if !angle {
					return s[start:i], s[i+1:]
				}
			case ',':
				// A ',' in angle brackets belongs to an obsolete
				// route ("<@a,@b:u@c>") when an '@' follows;
				// otherwise the '>' is missing and the ',' still
				// separates addresses.
				if !angle || !strings.HasPrefix(strings.TrimLeft(s[i+1:], " \t"), "@") {
					return s[start:i], s[i+1:]
				}
			}
		}
	}
	return s[start:], ""
}

// parseAddress parses one address (RFC 5322 §3.4 mailbox) and formats it, or
// returns "" when s is empty.
func parseAddress(p *mail.AddressParser, dec *mime.WordDecoder, s string) string {
	s = strings.TrimSpace(s)
	switch {
	case s == "":
		return ""
	case len(s) > maxAddressInput:
		return lenientAddress(dec, s[:maxAddressInput])
	}
	name, addr, ok := simpleAddress(s)
	if !ok {
		a, err := p.Parse(s)
		if err != nil {
			return lenientAddress(dec, s)
		}
		return formatAddress(a.Name, a.Address)
	}
	if strings.Contains(name, "=?") {
		if d, err := dec.DecodeHeader(name); err == nil {
			name = d
		}
	}
	return formatAddress(name, addr)
}

// simpleAddress splits the most common forms of address, "local@domain",
// "Name <local@domain>" and "\"Name\" <local@domain>", in printable ASCII
// and without escapes or comments, more cheaply than net/mail's general
// parser, which handles everything else. It leaves encoded words in the
// name for the caller to decode; with that, it gives the same result as
// net/mail for what it accepts, except that it also decodes encoded words
// in a quoted name, which RFC 2047 §5 forbids but many mailers write and
// most readers decode.
func simpleAddress(s string) (name, addr string, ok bool) {
	if s == "" || !isPlain(s) {
		return "", "", false
	}
	addr = s
	if s[len(s)-1] == '>' {
		i := strings.IndexByte(s, '<')
		if i < 0 {
			return "", "", false
		}
		name, addr = strings.TrimRight(s[:i], " "), s[i+1:len(s)-1]
		if len(name) >= 2 && name[0] == '"' && name[len(name)-1] == '"' {
			name = name[1 : len(name)-1]
			if strings.ContainsAny(name, `"\`) {
				return "", "", false
			}
		} else if !isSimplePhrase(name) {
			return "", "", false
		}
	}
	// A dot-atom on each side of a single '@' (RFC 5322 §3.4.1), leaving
	// quoted local parts and domain literals to net/mail.
	at := strings.IndexByte(addr, '@')
	if at < 0 || !isDotAtom(addr[:at]) || !isDotAtom(addr[at+1:]) {
		return "", "", false
	}
	return name, addr, true
}

// isSimplePhrase reports whether s is a display name made of atoms (RFC
// 5322 §3.2.3) separated by single spaces, where an atom holding "=?" is a
// whole encoded word (RFC 2047 §2), or is empty.
func isSimplePhrase(s string) bool {
	for s != "" {
		atom, rest, more := strings.Cut(s, " ")
		if atom == "" || (more && rest == "") {
			return false
		}
		for i := range len(atom) {
			if !isAtext(atom[i]) {
				return false
			}
		}
		if strings.Contains(atom, "=?") && !isEncodedWord(atom) {
			return false
		}
		s = rest
	}
	return true
}

// isEncodedWord reports whether s is "=?charset?encoding?text?=" (RFC 2047
// §2) as mime.WordDecoder.Decode, which net/mail uses, accepts it: a
// non-empty charset and a one-letter encoding.
func isEncodedWord(s string) bool {
	if !strings.HasPrefix(s, "=?") || !strings.HasSuffix(s, "?=") || strings.Count(s, "?") != 4 {
		return false
	}
	charset, rest, _ := strings.Cut(s[2:], "?")
	encoding, _, _ := strings.Cut(rest, "?")
	return charset != "" && len(encoding) == 1
}

// isDotAtom reports whether s is an RFC 5322 §3.2.3 dot-atom-text.
func isDotAtom(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for i := range len(s) {
		if c := s[i]; c != '.' && !isAtext(c) {
			return false
		}
	}
	return true
}

// isAtext reports whether the ASCII byte c is RFC 5322 §3.2.3 atext.
func isAtext(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '/', '=', '?', '^', '_', '`', '{', '|', '}', '~':
		return true
	}
	return false
}

// lenientAddress makes the best of an address that net/mail rejects: the
// text in angle brackets, or else the word holding an '@', is the address,
// and what is left is the display name, unquoted and RFC 2047-decoded.
// Text with neither is kept whole as the name, so that nothing the sender
// wrote disappears from the manifest.
func lenientAddress(dec *mime.WordDecoder, s string) string {
	var name, addr string
	if i := strings.LastIndexByte(s, '<'); i >= 0 {
		name, addr = s[:i], s[i+1:]
		if j := strings.IndexByte(addr, '>'); j >= 0 {
			addr = addr[:j]
		}
		// RFC 5322 §4.4: an obsolete route before the address is
		// ignored.
		if j := strings.LastIndexByte(addr, ':'); j >= 0 && strings.HasPrefix(strings.TrimSpace(addr), "@") {
			addr = addr[j+1:]
		}
	} else if at := strings.IndexByte(s, '@'); at >= 0 {
		start := strings.LastIndexAny(s[:at], " \t") + 1
		end := len(s)
		if j := strings.IndexAny(s[at:], " \t"); j >= 0 {
			end = at + j
		}
		addr = s[start:end]
		// What is left is usually a comment: "a@b (Name)".
		name = strings.Trim(s[:start]+" "+s[end:], " \t()")
	} else {
		name = s
	}
	name = unquote(strings.TrimSpace(name))
	if d, err := dec.DecodeHeader(name); err == nil {
		name = d
	}
	return formatAddress(name, addr)
}

// unquote removes the quotes and backslash escapes of a quoted string (RFC
// 5322 §3.2.4), or returns s if it is not one.
func unquote(s string) string {
	if len(s) < 2 || s[0] != '"' || s[len(s)-1] != '"' {
		return s
	}
	s = s[1 : len(s)-1]
	if strings.IndexByte(s, '\\') < 0 {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// formatAddress formats a decoded display name and address as
// "Name <addr>", or just one of them when the other is empty. Runs of
// spaces in the name are collapsed, as phrase syntax would (RFC 5322
// §3.2.3: the words of a phrase are separated by folding white space). A
// name with RFC 5322 §3.2.3 specials is quoted so that the result parses
// again; '.' is left alone, as the obsolete phrase syntax (RFC 5322 §4.1)
// allows it and "John Q. Public" is common.
func formatAddress(name, addr string) string {
	name = collapseSpaces(clean(name, MaxAddressBytes))
	addr = cleanToken(addr, MaxAddressBytes)
	switch {
	case name == "":
		return addr
	case addr == "":
		return name
	}
	if hasSpecials(name) {
		name = `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(name) + `"`
	}
	return name + " <" + addr + ">"
}

// collapseSpaces replaces each run of spaces in s with one space.
func collapseSpaces(s string) string {
	if !strings.Contains(s, "  ") {
		return s
	}
	b := make([]byte, 0, len(s))
	for i := range len(s) {
		if s[i] == ' ' && i > 0 && s[i-1] == ' ' {
			continue
		}
		b = append(b, s[i])
	}
	return string(b)
}

// hasSpecials reports whether s holds RFC 5322 §3.2.3 specials other than
// '.', which make a display name need quoting.
func hasSpecials(s string) bool {
	for i := range len(s) {
		switch s[i] {
		case '"', '(', ')', ',', ':', ';', '<', '>', '@', '[', '\\', ']':
			return true
		}
	}
	return false
}
