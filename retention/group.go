package retention

import (
	"fmt"
	"slices"
	"strings"
)

// GroupBy says which fields divide snapshots into groups that a policy
// is applied to separately; restic's --group-by. All false is one group.
type GroupBy struct {
	Host, Paths, Tags bool
}

// DefaultGroupBy is restic's default, host,paths: each host's backups of
// each set of paths form their own history.
var DefaultGroupBy = GroupBy{Host: true, Paths: true}

// ParseGroupBy parses a comma-separated list of host, paths and tags
// (restic also takes the singular forms, and so does this); "" groups
// nothing.
func ParseGroupBy(s string) (GroupBy, error) {
	var g GroupBy
	for _, f := range strings.Split(s, ",") {
		switch strings.TrimSpace(f) {
		case "":
		case "host", "hosts":
			g.Host = true
		case "path", "paths":
			g.Paths = true
		case "tag", "tags":
			g.Tags = true
		default:
			return GroupBy{}, fmt.Errorf("group by %q: unknown field %q (host, paths, tags)", s, strings.TrimSpace(f))
		}
	}
	return g, nil
}

// String is the comma-separated form ParseGroupBy reads.
func (g GroupBy) String() string {
	var fs []string
	if g.Host {
		fs = append(fs, "host")
	}
	if g.Paths {
		fs = append(fs, "paths")
	}
	if g.Tags {
		fs = append(fs, "tags")
	}
	return strings.Join(fs, ",")
}

// MarshalText writes g as "host,paths".
func (g GroupBy) MarshalText() ([]byte, error) { return []byte(g.String()), nil }

// UnmarshalText reads g from "host,paths".
func (g *GroupBy) UnmarshalText(b []byte) error {
	v, err := ParseGroupBy(string(b))
	if err != nil {
		return err
	}
	*g = v
	return nil
}

// GroupKey is what the snapshots of a group share: the fields grouped by
// (the others are empty). Paths and tags are sorted, so that their order
// in a snapshot does not split a group, as in restic.
type GroupKey struct {
	Host  string   `json:"host,omitempty"`
	Paths []string `json:"paths,omitempty"`
	Tags  []string `json:"tags,omitempty"`
}

// Key returns the group s belongs to.
func (g GroupBy) Key(s Snapshot) GroupKey {
	var k GroupKey
	if g.Host {
		k.Host = s.Host
	}
	if g.Paths {
		k.Paths = slices.Sorted(slices.Values(s.Paths))
	}
	if g.Tags {
		k.Tags = slices.Sorted(slices.Values(s.Tags))
	}
	return k
}

func (k GroupKey) compare(o GroupKey) int {
	if c := strings.Compare(k.Host, o.Host); c != 0 {
		return c
	}
	if c := slices.Compare(k.Paths, o.Paths); c != 0 {
		return c
	}
	return slices.Compare(k.Tags, o.Tags)
}

// String describes the key for people: `host "a", paths [/x]`.
func (k GroupKey) String() string {
	var parts []string
	if k.Host != "" {
		parts = append(parts, fmt.Sprintf("host %q", k.Host))
	}
	if k.Paths != nil {
		parts = append(parts, fmt.Sprintf("paths [%s]", strings.Join(k.Paths, ", ")))
	}
	if k.Tags != nil {
		parts = append(parts, fmt.Sprintf("tags [%s]", strings.Join(k.Tags, ", ")))
	}
	if len(parts) == 0 {
		return "all snapshots"
	}
	return strings.Join(parts, ", ")
}

// Group is one group's decisions.
type Group struct {
	Key       GroupKey   `json:"group"`
	Decisions []Decision `json:"snapshots"` // newest first
}

// Kept counts the snapshots the group keeps.
func (g Group) Kept() int {
	n := 0
	for _, d := range g.Decisions {
		if d.Keep {
			n++
		}
	}
	return n
}

// RemovesAll reports whether the policy leaves the group no snapshot,
// which a caller should not do without being told to (--force): a
// policy that keeps nothing is almost always a mistake, e.g. keep-tag
// with a tag no snapshot has.
func (g Group) RemovesAll() bool { return len(g.Decisions) > 0 && g.Kept() == 0 }

// Plan groups snaps by p.GroupBy (DefaultGroupBy when nil) and applies p
// to each group. Groups come sorted by key.
func Plan(snaps []Snapshot, p Policy, opt Options) []Group {
	gb := DefaultGroupBy
	if p.GroupBy != nil {
		gb = *p.GroupBy
	}
	var groups []Group
	var members [][]Snapshot
	for _, s := range snaps {
		k := gb.Key(s)
		i := slices.IndexFunc(groups, func(g Group) bool { return g.Key.compare(k) == 0 })
		if i < 0 {
			i = len(groups)
			groups = append(groups, Group{Key: k})
			members = append(members, nil)
		}
		members[i] = append(members[i], s)
	}
	for i := range groups {
		groups[i].Decisions = p.Apply(members[i], opt)
	}
	slices.SortFunc(groups, func(a, b Group) int { return a.Key.compare(b.Key) })
	return groups
}

// Filter picks the snapshots a policy is applied to at all (restic's
// --host and --tag); the others are neither kept nor removed by it.
type Filter struct {
	Hosts []string  // any of these hosts; none means every host
	Tags  []TagList // all the tags of any one list; none means any tags
}

// Match reports whether s is picked.
func (f Filter) Match(s Snapshot) bool {
	if len(f.Hosts) > 0 && !slices.Contains(f.Hosts, s.Host) {
		return false
	}
	if len(f.Tags) == 0 {
		return true
	}
	return slices.ContainsFunc(f.Tags, func(l TagList) bool { return l.matches(s.Tags) })
}
