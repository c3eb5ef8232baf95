package retention

import (
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"
)

// HoldsKind is the kind of the repository's policy document that holds
// the legal holds (archive.PolicyDoc); its body is a Holds.
const HoldsKind = "holds"

// Holds is the body of the holds document: every hold ever placed, the
// released ones with their release, so that the document alone tells a
// case's history.
type Holds struct {
	Holds []Hold `json:"holds"`
}

// Hold is a legal hold: the messages it selects must not be lost while
// it is active. A message is selected when it is in a custodian's mailbox
// (any user when none is named), matches the query (when given) and is
// dated within From and To (when given).
type Hold struct {
	Case       string   `json:"case"`
	Custodians []string `json:"custodians,omitempty"` // mailbox users, e.g. alice@example.com
	Query      string   `json:"query,omitempty"`      // ParseQuery's language
	From       string   `json:"from,omitempty"`       // first day held, YYYY-MM-DD (UTC)
	To         string   `json:"to,omitempty"`         // last day held, included
	Reason     string   `json:"reason,omitempty"`

	CreatedBy string    `json:"created_by"`
	CreatedAt time.Time `json:"created_at"`
	Released  *Release  `json:"released,omitempty"`
}

// Release is how a hold ended.
type Release struct {
	By     string    `json:"by"`
	At     time.Time `json:"at"`
	Reason string    `json:"reason"`
}

// Active reports whether the hold still binds.
func (h *Hold) Active() bool { return h.Released == nil }

// Validate checks a hold as given by a person: a case name, at least one
// selector (a hold of everything is not what a case asks for; a query
// can say so explicitly), a query that parses and dates in order.
func (h *Hold) Validate() error {
	if err := ValidCase(h.Case); err != nil {
		return err
	}
	if len(h.Custodians) == 0 && h.Query == "" && h.From == "" && h.To == "" {
		return fmt.Errorf("hold %q: select messages with a custodian, a query, or from/to dates", h.Case)
	}
	for _, c := range h.Custodians {
		if strings.TrimSpace(c) == "" {
			return fmt.Errorf("hold %q: an empty custodian", h.Case)
		}
	}
	_, err := h.Matcher()
	return err
}

// ValidCase checks a case name: not empty, printable, at most 200 bytes.
func ValidCase(name string) error {
	if strings.TrimSpace(name) == "" {
		return fmt.Errorf("case name: empty")
	}
	if len(name) > 200 {
		return fmt.Errorf("case name %.20q…: longer than 200 bytes", name)
	}
	if strings.ContainsFunc(name, func(r rune) bool { return !unicode.IsPrint(r) }) {
		return fmt.Errorf("case name %q: has control characters", name)
	}
	return nil
}

// Matcher is a hold compiled for matching messages.
type Matcher struct {
	Case       string
	custodians []string
	query      *Query
	from, to   time.Time // from ≤ date < to; zero is open
}

// Matcher compiles h.
func (h *Hold) Matcher() (*Matcher, error) {
	m := &Matcher{Case: h.Case, custodians: h.Custodians}
	var err error
	if h.Query != "" {
		if m.query, err = ParseQuery(h.Query); err != nil {
			return nil, fmt.Errorf("hold %q: %w", h.Case, err)
		}
	}
	if h.From != "" {
		if m.from, err = ParseDay(h.From); err != nil {
			return nil, fmt.Errorf("hold %q: from: %w", h.Case, err)
		}
	}
	if h.To != "" {
		if m.to, err = ParseDay(h.To); err != nil {
			return nil, fmt.Errorf("hold %q: to: %w", h.Case, err)
		}
		m.to = m.to.AddDate(0, 0, 1)
	}
	if !m.from.IsZero() && !m.to.IsZero() && !m.from.Before(m.to) {
		return nil, fmt.Errorf("hold %q: from %s is after to %s", h.Case, h.From, h.To)
	}
	return m, nil
}

// Match reports whether the hold selects msg. A message without a date
// is held by a date range: losing it is worse than keeping it.
func (m *Matcher) Match(msg *Message) bool {
	if len(m.custodians) > 0 && !slices.Contains(m.custodians, msg.User) {
		return false
	}
	if !msg.Date.IsZero() {
		if !m.from.IsZero() && msg.Date.Before(m.from) || !m.to.IsZero() && !msg.Date.Before(m.to) {
			return false
		}
	}
	return m.query == nil || m.query.Match(msg)
}

// Active returns the matchers of the active holds.
func (hs *Holds) Active() ([]*Matcher, error) {
	var ms []*Matcher
	for i := range hs.Holds {
		if !hs.Holds[i].Active() {
			continue
		}
		m, err := hs.Holds[i].Matcher()
		if err != nil {
			return nil, err
		}
		ms = append(ms, m)
	}
	return ms, nil
}

// Find returns the active hold of the case, or nil.
func (hs *Holds) Find(name string) *Hold {
	for i := range hs.Holds {
		if hs.Holds[i].Case == name && hs.Holds[i].Active() {
			return &hs.Holds[i]
		}
	}
	return nil
}

// HeldReason is the reason a decision gives for what a hold keeps.
func HeldReason(name string) string { return "held by case " + name }
