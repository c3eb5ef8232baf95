package main

import (
	"fmt"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/mailvault/mailvault/retention"
)

// keepFlags are forget's policy flags, restic's --keep-* (with its short
// forms), --group-by, and the --host and --tag filters.
type keepFlags struct {
	p       retention.Policy
	tags    []string // --keep-tag, each a list "a,b"
	groupBy string
	hosts   []string // --host
	filter  []string // --tag
}

// keepFlagNames are the flags that make a policy; any of them given
// replaces a configured policy.
var keepFlagNames = []string{"keep-last", "keep-hourly", "keep-daily", "keep-weekly", "keep-monthly", "keep-yearly",
	"keep-within", "keep-within-hourly", "keep-within-daily", "keep-within-weekly", "keep-within-monthly",
	"keep-within-yearly", "keep-tag"}

func (k *keepFlags) add(cmd *cobra.Command) {
	f := cmd.Flags()
	for _, c := range []struct {
		n           *int
		name, short string
		what        string
	}{
		{&k.p.Last, "keep-last", "l", "the last N snapshots"},
		{&k.p.Hourly, "keep-hourly", "H", "the newest snapshot of each of the last N hours that have one"},
		{&k.p.Daily, "keep-daily", "d", "the newest snapshot of each of the last N days that have one"},
		{&k.p.Weekly, "keep-weekly", "w", "the newest snapshot of each of the last N ISO weeks that have one"},
		{&k.p.Monthly, "keep-monthly", "m", "the newest snapshot of each of the last N months that have one"},
		{&k.p.Yearly, "keep-yearly", "y", "the newest snapshot of each of the last N years that have one"},
	} {
		f.VarP((*countValue)(c.n), c.name, c.short, "keep "+c.what+" (-1 or unlimited: all)")
	}
	for _, c := range []struct {
		d    *retention.Duration
		name string
		what string
	}{
		{&k.p.Within, "keep-within", "every snapshot"},
		{&k.p.WithinHourly, "keep-within-hourly", "the newest snapshot of each hour"},
		{&k.p.WithinDaily, "keep-within-daily", "the newest snapshot of each day"},
		{&k.p.WithinWeekly, "keep-within-weekly", "the newest snapshot of each ISO week"},
		{&k.p.WithinMonthly, "keep-within-monthly", "the newest snapshot of each month"},
		{&k.p.WithinYearly, "keep-within-yearly", "the newest snapshot of each year"},
	} {
		f.Var((*durationValue)(c.d), c.name, "keep "+c.what+" newer than DURATION (e.g. 1y5m7d2h) before the group's newest snapshot")
	}
	f.StringArrayVar(&k.tags, "keep-tag", nil, "keep every snapshot that has all the tags of this list (a,b); repeatable: any of the lists")
	f.StringVarP(&k.groupBy, "group-by", "g", "host,paths", "group snapshots by host, paths and/or tags, comma-separated ('' for one group), and apply the policy to each group")
	f.StringArrayVar(&k.hosts, "host", nil, "only consider snapshots of this host; repeatable")
	f.StringArrayVar(&k.filter, "tag", nil, "only consider snapshots that have all the tags of this list (a,b); repeatable: any of the lists")
}

// policy returns the policy the flags give (Empty when no keep-* flag
// was given) and whether --group-by was given.
func (k *keepFlags) policy(cmd *cobra.Command) (retention.Policy, error) {
	p := k.p
	for _, l := range k.tags {
		p.Tags = append(p.Tags, retention.ParseTagList(l))
	}
	if err := p.Validate(); err != nil {
		return p, fmt.Errorf("%w: %v", errUsage, err)
	}
	if cmd.Flags().Changed("group-by") {
		gb, err := retention.ParseGroupBy(k.groupBy)
		if err != nil {
			return p, fmt.Errorf("%w: --group-by: %v", errUsage, err)
		}
		p.GroupBy = &gb
	}
	return p, nil
}

// given reports whether any policy flag was given, even one of zero
// (restic: "--keep-daily 0" is an empty policy, not an absent one).
func (k *keepFlags) given(cmd *cobra.Command) bool {
	for _, n := range keepFlagNames {
		if cmd.Flags().Changed(n) {
			return true
		}
	}
	return false
}

func (k *keepFlags) selection() retention.Filter {
	f := retention.Filter{Hosts: k.hosts}
	for _, l := range k.filter {
		f.Tags = append(f.Tags, retention.ParseTagList(l))
	}
	return f
}

// countValue is a keep-* count flag: N, -1 or "unlimited".
type countValue int

func (c *countValue) String() string { return strconv.Itoa(int(*c)) }
func (c *countValue) Type() string   { return "n" }
func (c *countValue) Set(s string) error {
	n, err := retention.ParseCount(s)
	if err != nil {
		return err
	}
	*c = countValue(n)
	return nil
}

// durationValue is a keep-within flag in restic's 1y2m3d4h form.
type durationValue retention.Duration

func (d *durationValue) String() string { return retention.Duration(*d).String() }
func (d *durationValue) Type() string   { return "duration" }
func (d *durationValue) Set(s string) error {
	v, err := retention.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = durationValue(v)
	return nil
}
