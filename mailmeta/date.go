package mailmeta

import (
	"strings"
	"time"
)

// parseDate parses an RFC 5322 §3.3 date-time, also accepting the obsolete
// syntax of RFC 5322 §4.3 (two- and three-digit years, alphabetic and
// military zones, comments and white space anywhere) and what mailers
// commonly send instead: a missing weekday or seconds, full month names,
// asctime order ("Mon Jan  2 15:04:05 2006"), a missing zone, and ISO 8601.
//
// It is written out rather than left to net/mail.ParseDate, which tries
// dozens of layouts in turn (slow on every message whose Date does not
// match the first ones) and takes "EST" and the other obsolete zone names
// as UTC.
func parseDate(s string) (time.Time, bool) {
	s = strings.TrimSpace(s)
	if len(s) >= 5 && isDigits(s[:4]) && s[4] == '-' {
		return parseISODate(s)
	}

	var (
		month        int
		nums         [2]string // day and year, in either order
		n            int
		hour, minute int
		sec          int
		haveTime     bool
		offset       int // seconds east of UTC
		haveOffset   bool
		zone         int // of an alphabetic zone, which a numeric one overrides
	)
	for i, ntok := 0, 0; ntok < maxDateTokens; ntok++ {
		var tok string
		if tok, i = nextDateToken(s, i); tok == "" {
			break
		}
		isZone := false
		switch c := tok[0]; {
		case c == '+' || c == '-':
			if o, ok := parseOffset(tok); ok && !haveOffset {
				offset, haveOffset, isZone = o, true, true
			}
		case haveTime && strings.IndexByte(tok, ':') >= 0:
			// Trailing garbage, which net/mail ignores too.
		case strings.IndexByte(tok, ':') >= 0:
			var ok bool
			if hour, minute, sec, ok = parseClock(tok); !ok {
				return time.Time{}, false
			}
			haveTime = true
		case '0' <= c && c <= '9':
			switch {
			case n == len(nums):
				// Trailing garbage, which net/mail ignores too.
			case !isNumber(tok, 4):
				return time.Time{}, false
			default:
				nums[n] = tok
				n++
			}
		default:
			if m := monthOf(tok); m != 0 {
				if month == 0 {
					month = m
				} // else trailing garbage, which net/mail ignores too
			} else if o, ok := zoneOf(tok); ok {
				zone = o
			}
			// Anything else is a weekday (which RFC 5322 §3.3 makes
			// redundant) or noise such as "AM".
		}
		if isZone && month != 0 && n == len(nums) && haveTime {
			break // a numeric zone ends a date-time; the rest is garbage
		}
	}
	if month == 0 || n != 2 {
		return time.Time{}, false
	}
	// RFC 5322 puts the day first and asctime the year last; a first
	// number longer than a day can be is the year.
	dayTok, yearTok := nums[0], nums[1]
	if len(dayTok) > 2 {
		dayTok, yearTok = yearTok, dayTok
	}
	if len(dayTok) > 2 {
		return time.Time{}, false
	}
	day, year := atoi(dayTok), atoi(yearTok)
	// RFC 5322 §4.3: a two-digit year is 2000+ below 50, else 1900+; a
	// three-digit year is 1900+.
	switch len(yearTok) {
	case 1, 2:
		if year < 50 {
			year += 2000
		} else {
			year += 1900
		}
	case 3:
		year += 1900
	}
	if day < 1 || day > daysIn(time.Month(month), year) || hour > 23 || minute > 59 || sec > 60 {
		return time.Time{}, false
	}
	if !haveOffset {
		offset = zone
	}
	loc := time.UTC
	if offset != 0 {
		loc = time.FixedZone("", offset)
	}
	return time.Date(year, time.Month(month), day, hour, minute, sec, 0, loc), true
}

// maxDateTokens bounds the work on a Date value full of words.
const maxDateTokens = 12

// nextDateToken returns the next word of a date at or after s[i], and the
// offset to look for the one after it; tok is "" at the end. Words are
// split at white space and commas, and comments (RFC 5322 §3.2.2, nested,
// with quoted pairs) are skipped. A '+' or '-' inside a word starts a new
// one.
func nextDateToken(s string, i int) (tok string, next int) {
	for i < len(s) {
		switch s[i] {
		case ' ', '\t', '\r', '\n', ',':
			i++
			continue
		case '(':
			i = skipComment(s, i)
			continue
		}
		j := i + 1
		for j < len(s) && !isDateSeparator(s[j]) {
			j++
		}
		tok = s[i:j]
		// A '-' next to a month name separates words, as in
		// "2-Jan-2006"; otherwise it starts a numeric zone, as in
		// "GMT-0500".
		if j+1 < len(s) && s[j] == '-' && (isLetter(s[j+1]) || monthOf(tok) != 0) {
			j++
		}
		return tok, j
	}
	return "", len(s)
}

func isDateSeparator(c byte) bool {
	switch c {
	case ' ', '\t', '\r', '\n', ',', '(', '-', '+':
		return true
	}
	return false
}

// skipComment returns the offset just past the comment starting at s[i],
// which is '(' (RFC 5322 §3.2.2: comments nest and may hold quoted pairs),
// or len(s) if it is not closed.
func skipComment(s string, i int) int {
	depth := 0
	for ; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '(':
			depth++
		case ')':
			if depth--; depth == 0 {
				return i + 1
			}
		}
	}
	return len(s)
}

func isLetter(c byte) bool {
	c |= 0x20
	return 'a' <= c && c <= 'z'
}

// parseClock parses "hh:mm" or "hh:mm:ss", ignoring a fraction of a second.
func parseClock(s string) (hour, minute, sec int, ok bool) {
	if i := strings.IndexByte(s, '.'); i >= 0 {
		s = s[:i]
	}
	h, rest, _ := strings.Cut(s, ":")
	m, secs, hasSec := strings.Cut(rest, ":")
	if !isNumber(h, 2) || !isNumber(m, 2) || (hasSec && !isNumber(secs, 2)) {
		return 0, 0, 0, false
	}
	if hasSec {
		sec = atoi(secs)
	}
	return atoi(h), atoi(m), sec, true
}

// parseOffset parses a numeric zone, "+hhmm" (RFC 5322 §3.3) or "+hh:mm".
// What follows the four digits is ignored, and 24 hours or 60 minutes are
// accepted, as net/mail (with time.Parse) does: "some people do write
// offsets of 24 hours or 60 minutes".
func parseOffset(s string) (int, bool) {
	sign := 1
	if s[0] == '-' {
		sign = -1
	}
	var h, m string
	switch s = s[1:]; {
	case len(s) >= 5 && s[2] == ':':
		h, m = s[:2], s[3:5]
	case len(s) >= 4:
		h, m = s[:2], s[2:4]
	default:
		return 0, false
	}
	if !isDigits(h) || !isDigits(m) || atoi(h) > 24 || atoi(m) > 60 {
		return 0, false
	}
	// "-0000" means the local time is unknown (RFC 5322 §3.3); UTC is
	// the best that can be said.
	return sign * (atoi(h)*3600 + atoi(m)*60), true
}

// zoneOf returns the offset of an obsolete alphabetic zone (RFC 5322 §4.3).
func zoneOf(s string) (int, bool) {
	if len(s) > 3 {
		return 0, false
	}
	switch strings.ToUpper(s) {
	case "UT", "UTC", "GMT", "Z":
		return 0, true
	case "EDT":
		return -4 * 3600, true
	case "EST", "CDT":
		return -5 * 3600, true
	case "CST", "MDT":
		return -6 * 3600, true
	case "MST", "PDT":
		return -7 * 3600, true
	case "PST":
		return -8 * 3600, true
	}
	if len(s) == 1 && ('A' <= s[0]&^0x20 && s[0]&^0x20 <= 'Z') && s[0]&^0x20 != 'J' {
		// Military zones were defined with the wrong sign in RFC 822,
		// so RFC 5322 §4.3 says to treat them as "-0000".
		return 0, true
	}
	return 0, false
}

// monthOf returns the month named by s (its first three letters, in any
// case, as in "Jan", "JAN", "January", "Sept"), or 0.
func monthOf(s string) int {
	if len(s) < 3 || len(s) > 9 {
		return 0
	}
	const names = "janfebmaraprmayjunjulaugsepoctnovdec"
	var b [3]byte
	for i := range 3 {
		b[i] = s[i] | 0x20
	}
	for i := 0; i < len(names); i += 3 {
		if string(b[:]) == names[i:i+3] {
			return i/3 + 1
		}
	}
	return 0
}

// parseISODate parses the ISO 8601 dates some software puts in Date.
func parseISODate(s string) (time.Time, bool) {
	for _, layout := range [...]string{
		time.RFC3339Nano,
		"2006-01-02T15:04:05Z0700",
		"2006-01-02 15:04:05Z07:00",
		"2006-01-02 15:04:05 -0700",
		"2006-01-02T15:04:05",
		"2006-01-02 15:04:05",
		"2006-01-02",
	} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

func daysIn(m time.Month, year int) int {
	return time.Date(year, m+1, 0, 0, 0, 0, 0, time.UTC).Day()
}

// isNumber reports whether s is one to max digits.
func isNumber(s string, max int) bool {
	return len(s) >= 1 && len(s) <= max && isDigits(s)
}

func isDigits(s string) bool {
	for i := range len(s) {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// atoi converts a short string of digits, checked by the caller.
func atoi(s string) int {
	n := 0
	for i := range len(s) {
		n = n*10 + int(s[i]-'0')
	}
	return n
}
