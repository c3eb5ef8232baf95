package retention

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Duration is a calendar span in restic's notation, e.g. "1y2m3d4h":
// years, months, days and hours. It is not a time.Duration because a
// month or a year has no fixed length: it is subtracted from a time with
// AddDate, in that time's zone, so "1d" across a DST change is one
// calendar day (23 or 25 hours) and "1m" from 31 March reaches 3 March.
type Duration struct {
	Years, Months, Days, Hours int
}

// ParseDuration parses restic's duration syntax: numbers each followed by
// one of the units y, m, d, h, in any order ("2d1y" is "1y2d").
// Surrounding white space is ignored and "" is the zero duration (no
// rule). It is stricter than restic 0.14.0, which takes "-1d" (a span
// into the future), "1d2d" (the last one wins) and digits of other
// scripts (then panics): those are errors here.
func ParseDuration(s string) (Duration, error) {
	var d Duration
	rest := strings.TrimSpace(s)
	seen := map[byte]bool{}
	for rest != "" {
		i := 0
		for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
			i++
		}
		if i == 0 {
			return Duration{}, fmt.Errorf("duration %q: want a number before %q (e.g. 1y2m3d4h)", s, firstRune(rest))
		}
		if i == len(rest) {
			return Duration{}, fmt.Errorf("duration %q: no unit after %s (y, m, d or h)", s, rest)
		}
		n, err := strconv.Atoi(rest[:i])
		if err != nil || n > maxDurationField {
			return Duration{}, fmt.Errorf("duration %q: %s is too large", s, rest[:i])
		}
		unit := rest[i]
		if seen[unit] {
			return Duration{}, fmt.Errorf("duration %q: unit %c given twice", s, unit)
		}
		seen[unit] = true
		switch unit {
		case 'y':
			d.Years = n
		case 'm':
			d.Months = n
		case 'd':
			d.Days = n
		case 'h':
			d.Hours = n
		default:
			return Duration{}, fmt.Errorf("duration %q: unknown unit %q after %d (y, m, d or h)", s, firstRune(rest[i:]), n)
		}
		rest = rest[i+1:]
	}
	return d, nil
}

// maxDurationField bounds each number of a duration: far beyond any
// retention (a million hours is 114 years) and far from overflowing
// AddDate or the hours' time.Duration.
const maxDurationField = 1_000_000

func firstRune(s string) string {
	for _, r := range s {
		return string(r)
	}
	return ""
}

// Zero reports whether d is no span at all, which means "no rule".
func (d Duration) Zero() bool { return d == Duration{} }

// String formats d as restic does ("1y2m3d4h", zero fields left out);
// the zero duration is "".
func (d Duration) String() string {
	var b strings.Builder
	for _, f := range []struct {
		n    int
		unit byte
	}{{d.Years, 'y'}, {d.Months, 'm'}, {d.Days, 'd'}, {d.Hours, 'h'}} {
		if f.n != 0 {
			b.WriteString(strconv.Itoa(f.n))
			b.WriteByte(f.unit)
		}
	}
	return b.String()
}

// Before returns the time d before t, counted as restic counts it:
// years, months and days on the calendar of t's zone, then hours of
// elapsed time.
func (d Duration) Before(t time.Time) time.Time {
	return t.AddDate(-d.Years, -d.Months, -d.Days).Add(-time.Duration(d.Hours) * time.Hour)
}

// MarshalText formats d for YAML and JSON.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText parses d from YAML and JSON.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = v
	return nil
}
