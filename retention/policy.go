package retention

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Unlimited as a count keeps the newest snapshot of every period there
// is (restic's -1).
const Unlimited = -1

// Policy is a keep-* policy: which snapshots of one group to keep; the
// others go. A snapshot is kept when any rule keeps it.
//
// Counts keep the newest snapshot of each of the N most recent periods
// (hours, days, ISO weeks, months, years of the local calendar) that have
// a snapshot; Last keeps the N newest snapshots. Within rules count back
// from the newest snapshot of the group that is not in the future: Within
// keeps every snapshot newer than that, WithinDaily and the others the
// newest of each period newer than that. Tags keeps every snapshot that
// carries all the tags of one of its lists.
//
// This is restic 0.14.0's forget, with two deliberate differences: -1 is
// unlimited (restic 0.14.0 reads it as "none" and removes what the other
// rules do not keep; later restic fixed this as mailvault does), and
// counts below -1 and malformed durations are errors. Like 0.14.0 and
// unlike restic 0.17 and later, the oldest snapshot is not kept just
// because a count was not used up.
type Policy struct {
	Last    int `yaml:"last,omitempty" json:"last,omitempty"`
	Hourly  int `yaml:"hourly,omitempty" json:"hourly,omitempty"`
	Daily   int `yaml:"daily,omitempty" json:"daily,omitempty"`
	Weekly  int `yaml:"weekly,omitempty" json:"weekly,omitempty"`
	Monthly int `yaml:"monthly,omitempty" json:"monthly,omitempty"`
	Yearly  int `yaml:"yearly,omitempty" json:"yearly,omitempty"`

	Within        Duration `yaml:"within,omitempty" json:"within,omitzero"`
	WithinHourly  Duration `yaml:"within_hourly,omitempty" json:"within_hourly,omitzero"`
	WithinDaily   Duration `yaml:"within_daily,omitempty" json:"within_daily,omitzero"`
	WithinWeekly  Duration `yaml:"within_weekly,omitempty" json:"within_weekly,omitzero"`
	WithinMonthly Duration `yaml:"within_monthly,omitempty" json:"within_monthly,omitzero"`
	WithinYearly  Duration `yaml:"within_yearly,omitempty" json:"within_yearly,omitzero"`

	// Tags keeps the snapshots that have every tag of one of the lists.
	Tags []TagList `yaml:"tags,omitempty" json:"tags,omitempty"`

	// GroupBy, when set, is how the snapshots are grouped before the
	// policy is applied to each group (Plan); nil is host,paths. It is
	// part of a configured policy because a policy written for groups of
	// one host means something else applied to all hosts at once.
	GroupBy *GroupBy `yaml:"group_by,omitempty" json:"group_by,omitempty"`
}

// IsZero reports whether d is no span at all (for YAML's omitempty).
func (d Duration) IsZero() bool { return d.Zero() }

// Empty reports whether p keeps nothing by any rule. restic applies an
// empty policy by keeping everything ("policy is empty"); so does Apply.
func (p Policy) Empty() bool {
	return p.Last == 0 && p.Hourly == 0 && p.Daily == 0 && p.Weekly == 0 && p.Monthly == 0 && p.Yearly == 0 &&
		p.Within.Zero() && p.WithinHourly.Zero() && p.WithinDaily.Zero() && p.WithinWeekly.Zero() &&
		p.WithinMonthly.Zero() && p.WithinYearly.Zero() && len(p.Tags) == 0
}

// Validate reports counts below Unlimited, which have no meaning.
// (Durations cannot be negative: ParseDuration refuses a sign.)
func (p Policy) Validate() error {
	for _, c := range p.counts() {
		if c.n < Unlimited {
			return fmt.Errorf("keep %s %d: want a count of 0 or more, or -1 (unlimited)", c.name, c.n)
		}
	}
	for _, w := range p.withins() {
		if w.d.Years < 0 || w.d.Months < 0 || w.d.Days < 0 || w.d.Hours < 0 {
			return fmt.Errorf("keep within %s: negative duration", w.d)
		}
	}
	return nil
}

type namedCount struct {
	name string
	n    int
}

func (p Policy) counts() []namedCount {
	return []namedCount{{"last", p.Last}, {"hourly", p.Hourly}, {"daily", p.Daily},
		{"weekly", p.Weekly}, {"monthly", p.Monthly}, {"yearly", p.Yearly}}
}

type namedWithin struct {
	name string
	d    Duration
}

func (p Policy) withins() []namedWithin {
	return []namedWithin{{"", p.Within}, {"hourly", p.WithinHourly}, {"daily", p.WithinDaily},
		{"weekly", p.WithinWeekly}, {"monthly", p.WithinMonthly}, {"yearly", p.WithinYearly}}
}

// String describes p for people, e.g. "keep 14 daily, 8 weekly, all
// monthly snapshots and all snapshots with tags [keep]".
func (p Policy) String() string {
	if p.Empty() {
		return "empty policy"
	}
	var parts []string
	for _, c := range p.counts() {
		if c.name == "last" {
			c.name = "latest" // restic's word: "keep 3 latest snapshots"
		}
		switch {
		case c.n == Unlimited:
			parts = append(parts, "all "+c.name)
		case c.n > 0:
			parts = append(parts, fmt.Sprintf("%d %s", c.n, c.name))
		}
	}
	s := ""
	if len(parts) > 0 {
		s = strings.Join(parts, ", ") + " snapshots"
	}
	for _, w := range p.withins() {
		if w.d.Zero() {
			continue
		}
		if s != "" {
			s += ", "
		}
		if w.name == "" {
			s += fmt.Sprintf("all snapshots within %s of the newest", w.d)
		} else {
			s += fmt.Sprintf("%s snapshots within %s of the newest", w.name, w.d)
		}
	}
	for _, l := range p.Tags {
		if s != "" {
			s += ", "
		}
		s += "all snapshots with tags " + l.String()
	}
	return "keep " + s
}

// ParseCount parses a keep-* count: a number of 0 or more, or -1 or
// "unlimited" for Unlimited (restic 0.16 and later spell it so).
func ParseCount(s string) (int, error) {
	s = strings.TrimSpace(s)
	if s == "unlimited" {
		return Unlimited, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < Unlimited {
		return 0, fmt.Errorf("count %q: want a number of 0 or more, or -1 or \"unlimited\"", s)
	}
	return n, nil
}

// TagList is a set of tags a snapshot must all carry; written "a,b".
type TagList []string

// ParseTagList splits "a,b" into its tags, trimming white space. As in
// restic, an empty tag matches a snapshot that has no tags at all, so ""
// (one empty tag) is the list that picks the untagged snapshots.
func ParseTagList(s string) TagList {
	l := TagList{}
	for _, t := range strings.Split(s, ",") {
		l = append(l, strings.TrimSpace(t))
	}
	return l
}

// String is restic's form, "[a, b]", used in reasons.
func (l TagList) String() string { return "[" + strings.Join(l, ", ") + "]" }

// MarshalText writes l as "a,b".
func (l TagList) MarshalText() ([]byte, error) { return []byte(strings.Join(l, ",")), nil }

// UnmarshalText reads l from "a,b".
func (l *TagList) UnmarshalText(b []byte) error {
	*l = ParseTagList(string(b))
	return nil
}

// matches reports whether tags has every tag of l, restic's HasTags: an
// empty tag in l stands for "no tags at all".
func (l TagList) matches(tags []string) bool {
	for _, t := range l {
		if t == "" && len(tags) == 0 {
			return true
		}
		if !slices.Contains(tags, t) {
			return false
		}
	}
	return true
}
