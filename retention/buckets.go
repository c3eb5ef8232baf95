package retention

import "time"

// Period is a calendar period snapshots are bucketed by.
type Period int

// The periods of the keep-* counts.
const (
	Hour Period = iota
	Day
	Week // ISO 8601 week: Monday to Sunday, week 1 holds the year's first Thursday
	Month
	Year
)

var periodNames = [...]string{Hour: "hourly", Day: "daily", Week: "weekly", Month: "monthly", Year: "yearly"}

// String is the period's adjective: "hourly", "daily", ...
func (p Period) String() string { return periodNames[p] }

// Key numbers the period holding t on t's own calendar (so convert t to
// the zone meant first): YYYYMMDDHH, YYYYMMDD, YYYYWW (the ISO year and
// week, so 2021-01-03 is in 2020-W53), YYYYMM, YYYY, as restic's buckets
// do. Two times have the same key exactly when they are in the same
// period; across a DST change that is the wall clock's hour and day, so
// the hour repeated when clocks go back is one bucket.
func (p Period) Key(t time.Time) int {
	switch p {
	case Hour:
		return t.Year()*1000000 + int(t.Month())*10000 + t.Day()*100 + t.Hour()
	case Day:
		return t.Year()*10000 + int(t.Month())*100 + t.Day()
	case Week:
		y, w := t.ISOWeek()
		return y*100 + w
	case Month:
		return t.Year()*100 + int(t.Month())
	}
	return t.Year()
}
