package corpus

import (
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"mime"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// segment is one piece of a message's bytes: literal text, or an attachment
// that is materialised only when the message is written so that the planner
// stays cheap and big random blocks are produced by the writer goroutines.
type segment struct {
	text []byte
	att  *attachment
}

// message is the part of a mail that every copy shares. The per-recipient
// copies prepend their own delivery headers to chain+core; the sender's
// Sent copy is core alone (it never went through the server).
type message struct {
	core  []segment
	size  int64 // len of the rendered core
	lines int64 // '\n' count of the rendered core, for the W= size
	chain []byte

	id      string
	subject string
	from    *person
	to, cc  []*person
	date    time.Time
	plain   string
	att     *attachment
	list    *mailingList
}

// composer draws messages. It holds all the randomness of a generation, so
// a composer seeded the same way produces the same mail.
type composer struct {
	r       *rand.Rand
	w       *world
	attFrac float64
	recent  []*message // ring of recent messages that replies and forwards refer to
	next    int
}

func newComposer(r *rand.Rand, w *world, attFrac float64) *composer {
	return &composer{r: r, w: w, attFrac: attFrac, recent: make([]*message, 0, 256)}
}

func (c *composer) remember(m *message) {
	if len(c.recent) < cap(c.recent) {
		c.recent = append(c.recent, m)
		return
	}
	c.recent[c.next] = m
	c.next = (c.next + 1) % len(c.recent)
}

func (c *composer) pick(ps []*person) *person { return ps[c.r.IntN(len(ps))] }

// compose draws the next message sent at t.
func (c *composer) compose(t time.Time) *message {
	r := c.r
	m := &message{}
	var quoted *message
	var forward bool
	switch x := r.Float64(); {
	case x < 0.30 && len(c.recent) > 0:
		quoted = c.recent[r.IntN(len(c.recent))]
	case x < 0.35 && len(c.recent) > 0:
		quoted, forward = c.recent[r.IntN(len(c.recent))], true
	}

	switch {
	case quoted != nil && !forward:
		// Reply: one of the local recipients answers the sender.
		var cands []*person
		for _, p := range append(append([]*person{}, quoted.to...), quoted.cc...) {
			if p.local && p != quoted.from {
				cands = append(cands, p)
			}
		}
		if len(cands) == 0 {
			cands = c.w.locals
		}
		m.from = c.pick(cands)
		m.to = []*person{quoted.from}
		if r.IntN(3) == 0 {
			for _, p := range quoted.cc {
				if p != m.from {
					m.cc = append(m.cc, p)
				}
			}
		}
		m.subject = "Re: " + strings.TrimPrefix(quoted.subject, "Re: ")
	case quoted != nil:
		m.from = c.pick(c.w.locals)
		m.to = c.localRecipients(m.from, 1+r.IntN(3))
		m.subject = "Fwd: " + quoted.subject
	case r.Float64() < 0.08 && len(c.w.lists) > 0:
		l := c.w.lists[r.IntN(len(c.w.lists))]
		m.list = l
		if r.IntN(2) == 0 {
			m.from = c.pick(l.members)
		} else {
			m.from = c.pick(c.w.external)
		}
		_, dom, _ := strings.Cut(l.addr, "@")
		m.to = []*person{{display: l.name, addr: l.addr, domain: dom}}
		m.subject = fmt.Sprintf("[%s] %s", l.name, c.subjectLine())
	case r.IntN(2) == 0:
		m.from = c.pick(c.w.external)
		m.to = c.localRecipients(nil, c.fanOut())
		m.subject = c.subjectLine()
	default:
		m.from = c.pick(c.w.locals)
		n := c.fanOut()
		m.to = c.localRecipients(m.from, n)
		for range r.IntN(3) {
			m.to = append(m.to, c.pick(c.w.external))
		}
		m.subject = c.subjectLine()
	}
	if len(m.cc) == 0 && len(m.to) > 2 && r.IntN(2) == 0 {
		k := 1 + r.IntN(len(m.to)-1)
		m.to, m.cc = m.to[:k], m.to[k:]
	}

	m.date = t.In(m.from.zone)
	m.id = fmt.Sprintf("%016x.%08x@%s", r.Uint64(), r.Uint32(), m.from.domain)

	// Body text.
	paras := 1 + r.IntN(5)
	if r.IntN(10) == 0 || m.list != nil {
		paras = 6 + r.IntN(30)
	}
	var b strings.Builder
	b.WriteString(c.greeting(m))
	b.WriteString(c.paragraphs(paras))
	b.WriteString("\n")
	b.WriteString(m.from.sig)
	if quoted != nil {
		b.WriteString(quoteBlock(quoted, forward))
	}
	m.plain = b.String()

	if forward && quoted.att != nil && r.IntN(2) == 0 {
		// Forwarding keeps the attachment: the same base64 bytes appear
		// again in another message, as in real mailboxes.
		m.att = quoted.att
	} else if r.Float64() < c.attFrac {
		m.att = c.newAttachment()
	}
	m.chain = c.chain(m)
	c.buildCore(m, quoted)
	c.remember(m)
	return m
}

// fanOut draws how many local recipients a message has: mostly one, a good
// share several.
func (c *composer) fanOut() int {
	switch x := c.r.Float64(); {
	case x < 0.6:
		return 1
	case x < 0.85:
		return 2
	default:
		return 3 + c.r.IntN(5)
	}
}

func (c *composer) localRecipients(not *person, n int) []*person {
	dom := c.w.domains[c.r.IntN(len(c.w.domains))]
	if not != nil && c.r.IntN(5) != 0 {
		dom = not.domain // colleagues mostly write to their own domain
	}
	users := c.w.byDomain[dom]
	var out []*person
	for _, i := range c.r.Perm(len(users)) {
		if len(out) == n {
			break
		}
		if users[i] != not {
			out = append(out, users[i])
		}
	}
	if len(out) == 0 {
		out = append(out, c.pick(c.w.locals))
	}
	return out
}

func (c *composer) subjectLine() string {
	s := subjectTopics[c.r.IntN(len(subjectTopics))]
	switch c.r.IntN(4) {
	case 0:
		s += fmt.Sprintf(" %d", 2024+c.r.IntN(2))
	case 1:
		s += " - " + c.words(2+c.r.IntN(4))
	}
	return s
}

func (c *composer) words(n int) string {
	ws := make([]string, n)
	for i := range ws {
		ws[i] = wordList[c.r.IntN(len(wordList))]
	}
	return strings.Join(ws, " ")
}

func (c *composer) sentence() string {
	s := c.words(4 + c.r.IntN(15))
	p := ". "
	if c.r.IntN(8) == 0 {
		p = "? "
	}
	return strings.ToUpper(s[:1]) + s[1:] + p
}

// paragraphs returns n paragraphs wrapped at 72 columns.
func (c *composer) paragraphs(n int) string {
	var b strings.Builder
	for range n {
		var p strings.Builder
		for range 1 + c.r.IntN(6) {
			p.WriteString(c.sentence())
		}
		b.WriteString(wrap(strings.TrimSpace(p.String()), 72))
		b.WriteString("\n\n")
	}
	return b.String()
}

func (c *composer) greeting(m *message) string {
	name := "all"
	if len(m.to) == 1 && m.list == nil {
		name = strings.Fields(m.to[0].display + " there")[0]
	}
	return []string{"Hi ", "Hello ", "Dear ", "Hey "}[c.r.IntN(4)] + name + ",\n\n"
}

func wrap(s string, width int) string {
	var b strings.Builder
	col := 0
	for i, w := range strings.Fields(s) {
		if i > 0 {
			if col+1+len(w) > width {
				b.WriteByte('\n')
				col = 0
			} else {
				b.WriteByte(' ')
				col++
			}
		}
		b.WriteString(w)
		col += len(w)
	}
	return b.String()
}

// quoteBlock renders the quoted original of a reply ("> " lines, capped so
// that long threads do not grow without bound) or the forwarded message.
func quoteBlock(q *message, forward bool) string {
	lines := strings.Split(strings.TrimRight(q.plain, "\n"), "\n")
	if len(lines) > 120 {
		lines = lines[:120]
	}
	var b strings.Builder
	if forward {
		fmt.Fprintf(&b, "\n-------- Forwarded Message --------\nSubject: %s\nDate: %s\nFrom: %s <%s>\n\n",
			q.subject, q.date.Format(time.RFC1123Z), q.from.display, q.from.addr)
		for _, l := range lines {
			b.WriteString(l)
			b.WriteByte('\n')
		}
		return b.String()
	}
	fmt.Fprintf(&b, "\nOn %s, %s wrote:\n", q.date.Format("1/2/06 15:04"), q.from.display)
	for _, l := range lines {
		if l == "" || strings.HasPrefix(l, ">") {
			b.WriteString(">" + l + "\n")
		} else {
			b.WriteString("> " + l + "\n")
		}
	}
	return b.String()
}

// encodeWord returns a display name or subject as a header value: plain
// ASCII as is, Latin text as a Q encoded-word, other scripts as B, which is
// what common clients choose.
func encodeWord(s string) string {
	ascii, latin := true, true
	for _, r := range s {
		if r >= utf8.RuneSelf {
			ascii = false
			if !unicode.Is(unicode.Latin, r) {
				latin = false
			}
		}
	}
	switch {
	case ascii:
		return s
	case latin:
		return mime.QEncoding.Encode("UTF-8", s)
	default:
		return mime.BEncoding.Encode("UTF-8", s)
	}
}

func formatAddr(p *person) string {
	name := encodeWord(p.display)
	if name == p.display && strings.ContainsAny(name, ",.;:\"()<>@[]\\") {
		name = `"` + name + `"`
	}
	return name + " <" + p.addr + ">"
}

// addrHeader folds the address list one address per line as clients do
// once it gets long.
func addrHeader(name string, ps []*person) string {
	parts := make([]string, len(ps))
	for i, p := range ps {
		parts[i] = formatAddr(p)
	}
	sep := ", "
	if len(ps) > 2 {
		sep = ",\n "
	}
	return name + ": " + strings.Join(parts, sep) + "\n"
}

const rfc5322Date = "Mon, 2 Jan 2006 15:04:05 -0700"

// randToken returns n characters of the alphabet Postfix and Dovecot use in
// queue and session ids.
func randToken(r *rand.Rand, n int) string {
	const alpha = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	b := make([]byte, n)
	for i := range b {
		b[i] = alpha[r.IntN(len(alpha))]
	}
	return string(b)
}

func randIP(r *rand.Rand) string {
	return fmt.Sprintf("%d.%d.%d.%d", 11+r.IntN(200), r.IntN(256), r.IntN(256), 1+r.IntN(254))
}

// chain is the transport part common to all local copies: the Received
// lines the message gathered before reaching the delivery agent, and for
// outside mail the authentication headers the MX adds.
func (c *composer) chain(m *message) []byte {
	r := c.r
	var b strings.Builder
	var mx string
	if m.to[0].local || m.list != nil {
		mx = "mx1." + m.to[0].domain
	} else {
		mx = "mx1." + c.w.domains[0]
	}
	d := m.date.UTC().Add(time.Duration(1+r.IntN(4)) * time.Second)
	if m.from.local {
		fmt.Fprintf(&b, "Received: from [192.168.%d.%d] (unknown [%s])\n\t(Authenticated sender: %s)\n\tby smtp.%s (Postfix) with ESMTPSA id 4%s\n\t%s\n",
			r.IntN(256), 1+r.IntN(254), randIP(r), m.from.addr, m.from.domain, randToken(r, 11), "; "+d.Format(rfc5322Date))
		return []byte(b.String())
	}
	host := fmt.Sprintf("mail-%s.%s", strings.ToLower(randToken(r, 6)), m.from.domain)
	fmt.Fprintf(&b, "Received: from %s (%s [%s])\n\t(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)\n\t key-exchange X25519 server-signature RSA-PSS (2048 bits))\n\t(No client certificate requested)\n\tby %s (Postfix) with ESMTPS id 4%s\n\t; %s\n",
		host, host, randIP(r), mx, randToken(r, 11), d.Format(rfc5322Date))
	fmt.Fprintf(&b, "Authentication-Results: %s;\n\tdkim=pass (2048-bit key) header.d=%s header.i=@%s header.b=%s;\n\tspf=pass (%s: domain of %s designates %s as permitted sender) smtp.mailfrom=%s\n",
		mx, m.from.domain, m.from.domain, randToken(r, 8), mx, m.from.addr, randIP(r), m.from.addr)
	fmt.Fprintf(&b, "Received: by %s with SMTP id %s;\n\t%s\n", host, strings.ToLower(randToken(r, 20)), m.date.Format(rfc5322Date))
	sig := make([]byte, 256)
	for i := range sig {
		sig[i] = byte(r.Uint32())
	}
	enc := base64.StdEncoding.EncodeToString(sig)
	fmt.Fprintf(&b, "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=%s; s=s1; t=%d;\n\th=from:to:subject:date:message-id; bh=%s;\n\tb=%s\n\t %s\n\t %s\n",
		m.from.domain, m.date.Unix(), enc[:44], enc[44:120], enc[120:240], enc[240:])
	return []byte(b.String())
}

// deliveryPrefix is what the delivery agent prepends to each local copy.
// Two copies of a message differ only here.
func deliveryPrefix(r *rand.Rand, m *message, rcpt *person, at time.Time) []byte {
	return fmt.Appendf(nil, "Return-Path: <%s>\nDelivered-To: %s\nReceived: from mx1.%s\n\tby imap1.%s with LMTP\n\tid %s\n\t(envelope-from <%s>)\n\tfor <%s>; %s\n",
		m.from.addr, rcpt.addr, rcpt.domain, rcpt.domain, randToken(r, 22), m.from.addr, rcpt.addr, at.UTC().Format(rfc5322Date))
}

func (c *composer) boundary() string {
	return fmt.Sprintf("------------%016x%08x", c.r.Uint64(), c.r.Uint32())
}

// buildCore renders the headers and bodies that all copies share.
func (c *composer) buildCore(m *message, quoted *message) {
	r := c.r
	var h strings.Builder
	if m.list != nil {
		fmt.Fprintf(&h, "List-Id: %s <%s>\nList-Unsubscribe: <mailto:%s?subject=unsubscribe>\nList-Post: <mailto:%s>\nPrecedence: list\n",
			m.list.name, strings.Replace(m.list.addr, "@", ".", 1), strings.Replace(m.list.addr, "@", "-request@", 1), m.list.addr)
	}
	fmt.Fprintf(&h, "Message-ID: <%s>\nDate: %s\nMIME-Version: 1.0\nUser-Agent: %s\n", m.id, m.date.Format(rfc5322Date), m.from.mailer)
	h.WriteString("From: " + formatAddr(m.from) + "\n")
	h.WriteString(addrHeader("To", m.to))
	if len(m.cc) > 0 {
		h.WriteString(addrHeader("Cc", m.cc))
	}
	h.WriteString("Subject: " + encodeWord(m.subject) + "\n")
	if quoted != nil {
		fmt.Fprintf(&h, "In-Reply-To: <%s>\nReferences: <%s>\n", quoted.id, quoted.id)
	}
	h.WriteString("Content-Language: en-US\n")

	text := "Content-Type: text/plain; charset=UTF-8; format=flowed\nContent-Transfer-Encoding: 8bit\n\n" + m.plain
	var body string
	if r.IntN(100) < 55 {
		b := c.boundary()
		body = "Content-Type: multipart/alternative;\n boundary=\"" + b + "\"\n\nThis is a multi-part message in MIME format.\n--" + b + "\n" +
			text + "--" + b + "\nContent-Type: text/html; charset=UTF-8\nContent-Transfer-Encoding: quoted-printable\n\n" +
			quotedPrintable(htmlFromPlain(m.plain)) + "\n--" + b + "--\n"
	} else {
		body = text
	}
	if m.att == nil {
		m.core = []segment{{text: []byte(h.String() + body)}}
	} else {
		b := c.boundary()
		head := h.String() + "Content-Type: multipart/mixed; boundary=\"" + b + "\"\n\nThis is a multi-part message in MIME format.\n--" + b + "\n" +
			body + "--" + b + "\n" +
			fmt.Sprintf("Content-Type: %s; name=\"%s\"\nContent-Disposition: attachment; filename=\"%s\"\nContent-Transfer-Encoding: base64\n\n",
				m.att.kind.mimeType(), m.att.name, m.att.name)
		m.core = []segment{{text: []byte(head)}, {att: m.att}, {text: []byte("\n--" + b + "--\n")}}
	}
	for _, s := range m.core {
		if s.att != nil {
			m.size += s.att.encodedLen()
			m.lines += s.att.encodedLines()
		} else {
			m.size += int64(len(s.text))
			m.lines += int64(strings.Count(string(s.text), "\n"))
		}
	}
}

// htmlFromPlain turns the plain body into the HTML alternative a client
// would send, with its attribute-heavy markup (which QP then escapes).
func htmlFromPlain(plain string) string {
	var b strings.Builder
	b.WriteString("<html>\n  <head>\n    <meta http-equiv=\"content-type\" content=\"text/html; charset=UTF-8\">\n  </head>\n  <body style=\"font-family: Arial, Helvetica, sans-serif; font-size: 14px;\">\n")
	inQuote := false
	for _, para := range strings.Split(plain, "\n\n") {
		para = strings.TrimSpace(para)
		if para == "" {
			continue
		}
		q := strings.HasPrefix(para, ">")
		if q != inQuote {
			if q {
				b.WriteString("    <blockquote type=\"cite\" style=\"margin: 0 0 0 .8ex; border-left: 1px solid #ccc; padding-left: 1ex;\">\n")
			} else {
				b.WriteString("    </blockquote>\n")
			}
			inQuote = q
		}
		b.WriteString("    <p class=\"moz-text-flowed\" style=\"margin: 0 0 1em 0;\">")
		b.WriteString(strings.ReplaceAll(htmlEscape(para), "\n", "<br>\n"))
		b.WriteString("</p>\n")
	}
	if inQuote {
		b.WriteString("    </blockquote>\n")
	}
	b.WriteString("  </body>\n</html>\n")
	return b.String()
}

var htmlEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;")

func htmlEscape(s string) string { return htmlEscaper.Replace(s) }

// quotedPrintable encodes s (LF line ends) per RFC 2045: '=' and non-ASCII
// bytes escaped, lines soft-broken before 76 columns.
func quotedPrintable(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for _, line := range strings.Split(strings.TrimSuffix(s, "\n"), "\n") {
		col := 0
		for i := 0; i < len(line); i++ {
			ch := line[i]
			var tok string
			switch {
			case ch == '=' || ch >= 0x7f || (ch < 0x20 && ch != '\t') ||
				((ch == ' ' || ch == '\t') && i == len(line)-1):
				tok = string([]byte{'=', hex[ch>>4], hex[ch&15]})
			default:
				tok = string(ch)
			}
			if col+len(tok) > 75 {
				b.WriteString("=\n")
				col = 0
			}
			b.WriteString(tok)
			col += len(tok)
		}
		b.WriteByte('\n')
	}
	return b.String()
}
