package imapd

import (
	"mime"
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	gomessage "github.com/emersion/go-message"
	"github.com/emersion/go-message/charset"
	"github.com/emersion/go-message/textproto"
)

// extractEnvelope is imapserver.ExtractEnvelope with the address lists
// parsed here: go-imap (through net/mail) drops RFC 5322 groups (section
// 3.4, "name: a@b, c@d;") and every address whose addr-spec holds a
// comment or spaces around "@", which RFC 5322 section 3.4.1 allows
// (CFWS). ENVELOPE keeps a group as RFC 3501 section 7.4.2 says: a
// start marker (NIL NIL "name" NIL), its members, an end marker
// (NIL NIL NIL NIL).
func extractEnvelope(h textproto.Header) *imap.Envelope {
	env := imapserver.ExtractEnvelope(h)
	env.From = envelopeAddresses(h, "From")
	env.Sender = envelopeAddresses(h, "Sender")
	env.ReplyTo = envelopeAddresses(h, "Reply-To")
	env.To = envelopeAddresses(h, "To")
	env.Cc = envelopeAddresses(h, "Cc")
	env.Bcc = envelopeAddresses(h, "Bcc")
	return env
}

func envelopeAddresses(h textproto.Header, key string) []imap.Address {
	var out []imap.Address
	for _, v := range h.Values(key) {
		out = append(out, parseAddressList(v)...)
	}
	return out
}

// addressHeaders are the header fields SEARCH FROM/TO/CC/BCC (and HEADER
// on these names) compare with their addresses as well as their text.
var addressHeaders = map[string]bool{"from": true, "to": true, "cc": true, "bcc": true, "sender": true, "reply-to": true}

// matchHeaderField is SEARCH HEADER (and FROM, TO, CC, BCC, which go-imap
// passes as HEADER criteria): a case-insensitive substring of the field's
// text (RFC 9051 section 6.4.4) or, for an address field, of one of its
// addresses written canonically, "Name <mailbox@host>", or a group's name,
// so that FROM user@domain.org finds <user (comment)@ domain.org> as
// Dovecot does.
func matchHeaderField(h gomessage.Header, key, pattern string) bool {
	if matchFields(h.FieldsByKey(key), pattern) {
		return true
	}
	if pattern == "" || !addressHeaders[strings.ToLower(key)] {
		return false
	}
	pattern = strings.ToLower(pattern)
	for _, v := range h.Values(key) {
		for _, a := range parseAddressList(v) {
			var s string
			switch {
			case a.IsGroupStart():
				s = a.Mailbox
			case a.IsGroupEnd():
				continue
			case a.Name != "":
				s = a.Name + " <" + a.Mailbox + "@" + a.Host + ">"
			default:
				s = a.Mailbox + "@" + a.Host
			}
			if strings.Contains(strings.ToLower(s), pattern) {
				return true
			}
		}
	}
	return false
}

// parseAddressList parses an RFC 5322 address-list (section 3.4), leniently
// as a server must: comments and folding white space anywhere between
// tokens, an obsolete route (section 4.4) kept as Route, a comment naming an
// address without a display name ("user@host (Name)", as Dovecot and
// net/mail take it), and what cannot be parsed left out. A group gives a
// start marker (its name in Mailbox), its members and an end marker (all
// empty), as go-imap's Address and RFC 3501 section 7.4.2 have it.
func parseAddressList(v string) []imap.Address {
	p := addrParser{toks: tokenizeAddress(v)}
	var out []imap.Address
	for !p.eof() {
		if p.isSpecial(',') || p.isSpecial(';') { // ";" outside a group: stray
			p.i++
			continue
		}
		out = p.address(out, false)
	}
	return out
}

type addrTokKind int

const (
	tokAtom    addrTokKind = iota // atom or dot-atom text
	tokQuoted                     // quoted-string, unquoted
	tokLiteral                    // domain literal, with its brackets
	tokSpecial                    // one of ()<>@,;:\".[]
	tokComment                    // comment text, without the parentheses
)

type addrTok struct {
	kind addrTokKind
	text string
}

func tokenizeAddress(v string) []addrTok {
	var toks []addrTok
	for i := 0; i < len(v); {
		c := v[i]
		switch {
		case c == ' ' || c == '\t' || c == '\r' || c == '\n':
			i++
		case c == '(':
			depth, j := 1, i+1
			var b strings.Builder
			for ; j < len(v) && depth > 0; j++ {
				switch v[j] {
				case '\\':
					if j+1 < len(v) {
						j++
						b.WriteByte(v[j])
					}
					continue
				case '(':
					depth++
				case ')':
					depth--
					if depth == 0 {
						continue
					}
				}
				b.WriteByte(v[j])
			}
			toks = append(toks, addrTok{tokComment, strings.TrimSpace(b.String())})
			i = j
		case c == '"':
			j := i + 1
			var b strings.Builder
			for ; j < len(v) && v[j] != '"'; j++ {
				if v[j] == '\\' && j+1 < len(v) {
					j++
				}
				b.WriteByte(v[j])
			}
			toks = append(toks, addrTok{tokQuoted, b.String()})
			i = j + 1
		case c == '[':
			j := strings.IndexByte(v[i:], ']')
			if j < 0 {
				j = len(v) - i - 1
			}
			toks = append(toks, addrTok{tokLiteral, v[i : i+j+1]})
			i += j + 1
		case strings.IndexByte("<>@,;:.]\\)", c) >= 0:
			toks = append(toks, addrTok{tokSpecial, string(c)})
			i++
		default:
			j := i
			for j < len(v) && strings.IndexByte(" \t\r\n()<>@,;:\\\".[]", v[j]) < 0 {
				j++
			}
			toks = append(toks, addrTok{tokAtom, v[i:j]})
			i = j
		}
	}
	return toks
}

type addrParser struct {
	toks    []addrTok
	i       int
	comment string // the first comment seen in the current address
}

func (p *addrParser) eof() bool { return p.i >= len(p.toks) }

// next skips comments (remembering the first) and reports whether a token
// is left.
func (p *addrParser) next() bool {
	for p.i < len(p.toks) && p.toks[p.i].kind == tokComment {
		if p.comment == "" {
			p.comment = p.toks[p.i].text
		}
		p.i++
	}
	return p.i < len(p.toks)
}

func (p *addrParser) isSpecial(c byte) bool {
	return p.next() && p.toks[p.i].kind == tokSpecial && p.toks[p.i].text[0] == c
}

// address parses one mailbox or group (a group only outside a group) and
// appends it to out; it stops before the "," or ";" that ends it.
func (p *addrParser) address(out []imap.Address, inGroup bool) []imap.Address {
	p.comment = ""
	var phrase []string
	for p.next() {
		t := p.toks[p.i]
		if t.kind == tokSpecial {
			switch t.text[0] {
			case ':':
				p.i++
				if inGroup {
					phrase = nil // a nested group is not allowed; take its members
					continue
				}
				// A group needs a name (RFC 5322 section 3.4); without
				// one its start marker would read as an end marker, so
				// only its members are kept.
				name := decodePhrase(phrase)
				if name != "" {
					out = append(out, imap.Address{Mailbox: name})
				}
				for !p.eof() && !p.isSpecial(';') {
					if p.isSpecial(',') {
						p.i++
						continue
					}
					out = p.address(out, true)
				}
				if p.isSpecial(';') {
					p.i++
				}
				if name == "" {
					return out
				}
				return append(out, imap.Address{})
			case '<':
				p.i++
				name := decodePhrase(phrase)
				a, ok := p.angleAddr()
				if ok {
					a.Name = name
					out = append(out, a)
				}
				return out
			case '@':
				p.i++
				local := strings.Join(phrase, "")
				host := p.domain()
				p.next() // a trailing comment names the address
				if local != "" && host != "" {
					out = append(out, imap.Address{Name: decodePhrase([]string{p.comment}), Mailbox: local, Host: host})
				}
				return out
			case '.':
				if len(phrase) > 0 {
					phrase[len(phrase)-1] += "."
				} else {
					phrase = append(phrase, ".")
				}
				p.i++
				continue
			case ',', ';':
				return out // a bare phrase, no address: left out
			default:
				p.i++
				continue
			}
		}
		phrase = append(phrase, t.text)
		p.i++
	}
	return out
}

// angleAddr parses what follows "<": an optional obsolete route, the
// addr-spec and ">".
func (p *addrParser) angleAddr() (imap.Address, bool) {
	// obs-route: "@a,@b:" before the addr-spec, kept as ENVELOPE's
	// addr-adl.
	var route strings.Builder
	if p.isSpecial('@') {
		for p.next() && !(p.toks[p.i].kind == tokSpecial && (p.toks[p.i].text[0] == ':' || p.toks[p.i].text[0] == '>')) {
			route.WriteString(p.toks[p.i].text)
			p.i++
		}
		if p.isSpecial(':') {
			p.i++
		} else {
			route.Reset() // no ":": not a route after all
		}
	}
	var local strings.Builder
	for p.next() && !(p.toks[p.i].kind == tokSpecial && (p.toks[p.i].text[0] == '@' || p.toks[p.i].text[0] == '>')) {
		local.WriteString(p.toks[p.i].text)
		p.i++
	}
	var host string
	if p.isSpecial('@') {
		p.i++
		host = p.domain()
	}
	for p.next() && !p.isSpecial('>') && !p.isSpecial(',') && !p.isSpecial(';') {
		p.i++
	}
	if p.isSpecial('>') {
		p.i++
	}
	return imap.Address{Mailbox: local.String(), Host: host, Route: route.String()}, local.Len() > 0 && host != ""
}

// domain parses a dot-atom or domain literal, comments and spaces between
// its parts dropped.
func (p *addrParser) domain() string {
	var b strings.Builder
	for p.next() {
		t := p.toks[p.i]
		if t.kind == tokSpecial && t.text[0] != '.' || t.kind == tokQuoted {
			break
		}
		b.WriteString(t.text)
		p.i++
	}
	return b.String()
}

var wordDecoder = mime.WordDecoder{CharsetReader: charset.Reader}

// decodePhrase joins a display name's words and decodes RFC 2047 encoded
// words in it.
func decodePhrase(words []string) string {
	s := strings.TrimSpace(strings.Join(words, " "))
	if d, err := wordDecoder.DecodeHeader(s); err == nil {
		return d
	}
	return s
}
