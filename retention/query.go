package retention

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Message is what a hold or a query looks at: the header metadata a
// snapshot's folder trees record for each message, and whose mailbox it
// is in.
type Message struct {
	User      string // the mailbox's user, e.g. alice@example.com
	Folder    string
	From      []string
	To        []string
	Cc        []string
	Subject   string
	MessageID string
	// Date is the Date header's time, or the delivery time (the file's
	// mtime) when the header is missing or unreadable.
	Date time.Time
}

// Query is a parsed query over Message headers:
//
//	from:alice  to:bob  cc:carol  subject:"board minutes"
//	message-id:<x@y>  date:2024-01-01..2024-03-31  date:2024-05-01
//	date:..2023-12-31  date:2024-01-01..  merger  "two words"
//
// A bare word or quoted phrase matches any of from, to, cc and subject.
// Text matches are case-insensitive substrings; message-id matches the
// whole ID, angle brackets optional; dates are UTC days, both ends
// included. Terms in a row must all match (AND, which may be written);
// OR between them matches either (AND binds tighter); NOT or a leading -
// negates a term or a parenthesised group.
type Query struct {
	root qnode
}

// ParseQuery parses s; an empty query is an error (it would match
// everything, which is never what a hold means by a query).
func ParseQuery(s string) (*Query, error) {
	toks, err := lexQuery(s)
	if err != nil {
		return nil, fmt.Errorf("query %q: %w", s, err)
	}
	if len(toks) == 0 {
		return nil, fmt.Errorf("query %q: empty", s)
	}
	p := &qparser{toks: toks}
	n, err := p.or()
	if err == nil && p.i < len(p.toks) {
		err = fmt.Errorf("unexpected %s", p.toks[p.i])
	}
	if err != nil {
		return nil, fmt.Errorf("query %q: %w", s, err)
	}
	return &Query{root: n}, nil
}

// Match reports whether m matches the query.
func (q *Query) Match(m *Message) bool { return q.root.match(m) }

// String is the query in a canonical form that ParseQuery reads back to
// the same query.
func (q *Query) String() string { return q.root.String() }

// The query's syntax tree.
type (
	qnode interface {
		match(*Message) bool
		String() string
	}
	qand  []qnode
	qor   []qnode
	qnot  struct{ n qnode }
	qterm struct {
		field string // "" (any of from, to, cc, subject) or a queryFields name
		value string // lower case for text fields
		// from and to bound a date term: from ≤ date < to; zero is open.
		from, to time.Time
	}
)

// queryFields are the fields a term may name.
var queryFields = []string{"from", "to", "cc", "subject", "message-id", "date"}

func (a qand) match(m *Message) bool {
	for _, n := range a {
		if !n.match(m) {
			return false
		}
	}
	return true
}

func (o qor) match(m *Message) bool {
	for _, n := range o {
		if n.match(m) {
			return true
		}
	}
	return false
}

func (n qnot) match(m *Message) bool { return !n.n.match(m) }

func (t qterm) match(m *Message) bool {
	switch t.field {
	case "":
		return anyContains(m.From, t.value) || anyContains(m.To, t.value) || anyContains(m.Cc, t.value) || contains(m.Subject, t.value)
	case "from":
		return anyContains(m.From, t.value)
	case "to":
		return anyContains(m.To, t.value)
	case "cc":
		return anyContains(m.Cc, t.value)
	case "subject":
		return contains(m.Subject, t.value)
	case "message-id":
		return bareMessageID(m.MessageID) == t.value
	case "date":
		return !m.Date.IsZero() && (t.from.IsZero() || !m.Date.Before(t.from)) && (t.to.IsZero() || m.Date.Before(t.to))
	}
	return false
}

func contains(s, lower string) bool { return strings.Contains(strings.ToLower(s), lower) }

func anyContains(l []string, lower string) bool {
	return slices.ContainsFunc(l, func(s string) bool { return contains(s, lower) })
}

func bareMessageID(s string) string {
	return strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(s), "<"), ">")
}

func (a qand) String() string { return "(" + joinNodes(a, " ") + ")" }
func (o qor) String() string  { return "(" + joinNodes(o, " OR ") + ")" }
func (n qnot) String() string { return "NOT " + n.n.String() }

func (t qterm) String() string {
	if t.field == "" {
		return quote(t.value)
	}
	return t.field + ":" + quote(t.value)
}

func joinNodes(ns []qnode, sep string) string {
	s := make([]string, len(ns))
	for i, n := range ns {
		s[i] = n.String()
	}
	return strings.Join(s, sep)
}

// quote writes v as a quoted string: \ and " escaped.
func quote(v string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(v) + `"`
}

// qtoken is a lexed word: an operator, a parenthesis or a term's text.
type qtoken struct {
	text   string
	quoted bool // some of it was quoted: never an operator
	field  string
}

func (t qtoken) String() string {
	if t.quoted {
		return quote(t.text)
	}
	return fmt.Sprintf("%q", t.text)
}

func (t qtoken) is(op string) bool { return !t.quoted && t.field == "" && t.text == op }

// lexQuery splits s into words at white space and parentheses outside
// quotes. A word "field:..." names a field when field is one of
// queryFields (an unknown one is an error, so that a typo never silently
// widens a hold); a leading - is a NOT of its own.
func lexQuery(s string) ([]qtoken, error) {
	var toks []qtoken
	i := 0
	for i < len(s) {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
			continue
		case c == '(' || c == ')':
			toks = append(toks, qtoken{text: string(c)})
			i++
			continue
		}
		if c == '-' {
			toks = append(toks, qtoken{text: "NOT"})
			i++
			continue
		}
		var t qtoken
		var b strings.Builder
		for i < len(s) {
			c := s[i]
			if c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '(' || c == ')' {
				break
			}
			if c == ':' && !t.quoted && t.field == "" && slices.Contains(queryFields, strings.ToLower(b.String())) {
				t.field = strings.ToLower(b.String())
				b.Reset()
				i++
				continue
			}
			if c == ':' && !t.quoted && t.field == "" && b.Len() > 0 && isFieldName(b.String()) {
				return nil, fmt.Errorf("unknown field %q (want one of %s; quote a word that has a colon)", b.String(), strings.Join(queryFields, ", "))
			}
			if c != '"' {
				b.WriteByte(c)
				i++
				continue
			}
			t.quoted = true
			i++
			closed := false
			for i < len(s) {
				c := s[i]
				i++
				if c == '\\' && i < len(s) {
					b.WriteByte(s[i])
					i++
					continue
				}
				if c == '"' {
					closed = true
					break
				}
				b.WriteByte(c)
			}
			if !closed {
				return nil, fmt.Errorf("unterminated quote")
			}
		}
		t.text = b.String()
		toks = append(toks, t)
	}
	return toks, nil
}

// isFieldName reports whether s looks like a field name (letters and
// dashes), as opposed to a word that merely has a colon, like "10:30".
func isFieldName(s string) bool {
	for _, c := range s {
		if (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') && c != '-' {
			return false
		}
	}
	return true
}

type qparser struct {
	toks []qtoken
	i    int
}

func (p *qparser) peek() (qtoken, bool) {
	if p.i < len(p.toks) {
		return p.toks[p.i], true
	}
	return qtoken{}, false
}

// or := and ("OR" and)*
func (p *qparser) or() (qnode, error) {
	var alts qor
	for {
		n, err := p.and()
		if err != nil {
			return nil, err
		}
		alts = append(alts, n)
		t, ok := p.peek()
		if !ok || !t.is("OR") {
			break
		}
		p.i++
	}
	if len(alts) == 1 {
		return alts[0], nil
	}
	return alts, nil
}

// and := unary (["AND"] unary)*, up to ")", "OR" or the end.
func (p *qparser) and() (qnode, error) {
	var all qand
	for {
		t, ok := p.peek()
		if !ok || t.is(")") || t.is("OR") {
			break
		}
		if t.is("AND") {
			if len(all) == 0 {
				return nil, fmt.Errorf("AND with nothing before it")
			}
			p.i++
			if t, ok := p.peek(); !ok || t.is(")") || t.is("OR") || t.is("AND") {
				return nil, fmt.Errorf("AND with nothing after it")
			}
			continue
		}
		n, err := p.unary()
		if err != nil {
			return nil, err
		}
		all = append(all, n)
	}
	switch len(all) {
	case 0:
		t, ok := p.peek()
		if !ok {
			return nil, fmt.Errorf("missing a term at the end")
		}
		return nil, fmt.Errorf("missing a term before %s", t)
	case 1:
		return all[0], nil
	}
	return all, nil
}

// unary := ("NOT" | "-") unary | "(" or ")" | term
func (p *qparser) unary() (qnode, error) {
	t, _ := p.peek()
	p.i++
	switch {
	case t.is("NOT"):
		if n, ok := p.peek(); !ok || n.is(")") || n.is("OR") || n.is("AND") {
			return nil, fmt.Errorf("NOT with nothing after it")
		}
		n, err := p.unary()
		if err != nil {
			return nil, err
		}
		return qnot{n}, nil
	case t.is("("):
		n, err := p.or()
		if err != nil {
			return nil, err
		}
		if c, ok := p.peek(); !ok || !c.is(")") {
			return nil, fmt.Errorf("missing )")
		}
		p.i++
		return n, nil
	}
	return termOf(t)
}

func termOf(t qtoken) (qnode, error) {
	if t.text == "" {
		if t.field != "" {
			return nil, fmt.Errorf("%s: with no value", t.field)
		}
		return nil, fmt.Errorf("empty phrase")
	}
	switch t.field {
	case "message-id":
		v := bareMessageID(t.text)
		if v == "" {
			return nil, fmt.Errorf("message-id: with no value")
		}
		return qterm{field: t.field, value: v}, nil
	case "date":
		from, to, err := parseDateRange(t.text)
		if err != nil {
			return nil, err
		}
		return qterm{field: t.field, value: t.text, from: from, to: to}, nil
	}
	return qterm{field: t.field, value: strings.ToLower(t.text)}, nil
}

// parseDateRange reads DAY, DAY..DAY, ..DAY or DAY.. (days YYYY-MM-DD,
// UTC, both ends included) as the span from ≤ t < to.
func parseDateRange(s string) (from, to time.Time, err error) {
	lo, hi, isRange := strings.Cut(s, "..")
	if !isRange {
		hi = lo
	}
	if lo == "" && hi == "" {
		return from, to, fmt.Errorf("date:%s: want DAY, DAY..DAY, ..DAY or DAY.. (DAY as 2024-01-31)", s)
	}
	if lo != "" {
		if from, err = ParseDay(lo); err != nil {
			return from, to, fmt.Errorf("date:%s: %w", s, err)
		}
	}
	if hi != "" {
		if to, err = ParseDay(hi); err != nil {
			return from, to, fmt.Errorf("date:%s: %w", s, err)
		}
		to = to.AddDate(0, 0, 1)
	}
	if !from.IsZero() && !to.IsZero() && !from.Before(to) {
		return from, to, fmt.Errorf("date:%s: the range ends before it starts", s)
	}
	return from, to, nil
}

// ParseDay parses a calendar day, YYYY-MM-DD, as its first instant in
// UTC.
func ParseDay(s string) (time.Time, error) {
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("date %q: want YYYY-MM-DD", s)
	}
	return t, nil
}
