package mailmeta

import (
	"bytes"
	"mime"
	"net/mail"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// seedHeaders returns the fuzzers' starting points, covering each field
// and the tricky syntax around them.
func seedHeaders() []string {
	return []string{
		header2K,
		"From: a@b\n\nbody",
		"Subject: =?utf-8?b?PT91dGYtOD9xP25lc3RlZD89?= =?x?q?a?= =?utf-8?q?trunc\r\n\r\n",
		"To: \"Doe, J\" <j@x>, (c) a@b, g: c@d;, <@r,@s:e@f>, <unclosed, x\n\n",
		"Date: Thu, 20 Nov 97 09:55:06 EST (comment (nested))\nMessage-ID: <a@b>\n\n",
		"Date: 2006-01-02T15:04:05Z\n\n",
		"Cc: =?KOI8-R?B?8NLJ18XU?= <p@x>, \"=?utf-8?q?q?=\" <q@x>\n \n\n",
		"\x00: \xff\r\n\t\x00\n\n",
		"From MAILER-DAEMON\nSubject: x\n",
	}
}

// FuzzParse checks that Parse keeps its promises on any input: no panic,
// clean bounded strings, and the same result on the header block alone.
func FuzzParse(f *testing.F) {
	for _, s := range seedHeaders() {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m := parse(b) // without Parse's recover, to see panics
		checkText(t, "Subject", m.Subject, MaxSubjectBytes, false)
		checkText(t, "MessageID", m.MessageID, MaxMessageIDBytes, true)
		for _, l := range []struct {
			name  string
			addrs []string
		}{{"From", m.From}, {"To", m.To}, {"Cc", m.Cc}} {
			if len(l.addrs) > MaxAddresses {
				t.Errorf("%s has %d addresses", l.name, len(l.addrs))
			}
			for _, a := range l.addrs {
				if a == "" {
					t.Errorf("%s has an empty address", l.name)
				}
				checkText(t, l.name, a, 2*MaxAddressBytes+4, false)
			}
		}
		if y := m.Date.Year(); !m.Date.IsZero() && (y < 0 || y > 9999) {
			t.Errorf("Date = %v", m.Date)
		}

		if end := HeaderEnd(b); end >= 0 {
			if again := parse(b[:end]); !metaEqual(again, m) {
				t.Errorf("Parse(header block) = %#v, Parse(message) = %#v", again, m)
			}
		}
	})
}

func checkText(t *testing.T, field, s string, max int, token bool) {
	t.Helper()
	if len(s) > max {
		t.Errorf("%s is %d bytes, more than %d", field, len(s), max)
	}
	if !utf8.ValidString(s) {
		t.Errorf("%s = %q is not UTF-8", field, s)
	}
	if strings.TrimSpace(s) != s {
		t.Errorf("%s = %q is not trimmed", field, s)
	}
	for _, r := range s {
		if unicode.IsControl(r) || (token && unicode.IsSpace(r)) {
			t.Errorf("%s = %q holds %U", field, s, r)
			break
		}
	}
}

// FuzzHeaderEnd checks HeaderEnd against a line-by-line reading of RFC 5322
// §2.1.
func FuzzHeaderEnd(f *testing.F) {
	for _, s := range seedHeaders() {
		f.Add([]byte(s))
	}
	f.Add([]byte("\r\n"))
	f.Add([]byte("A: b\n\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := HeaderEnd(b), headerEndByLines(b); got != want {
			t.Errorf("HeaderEnd(%q) = %d, want %d", b, got, want)
		}
	})
}

// headerEndByLines is a slow, obvious HeaderEnd: the end of the first line
// that is empty but for its line ending.
func headerEndByLines(b []byte) int {
	off := 0
	for {
		i := bytes.IndexByte(b[off:], '\n')
		if i < 0 {
			return -1
		}
		line := b[off : off+i]
		off += i + 1
		if len(line) == 0 || (len(line) == 1 && line[0] == '\r') {
			return off
		}
	}
}

// FuzzAddress checks that simpleAddress, the fast path of parseAddress,
// gives what the general path (net/mail, then lenientAddress) gives.
func FuzzAddress(f *testing.F) {
	for _, s := range []string{
		"a@b.c",
		"Alice Example <alice@example.com>",
		`"Bob Example" <bob@example.org>`,
		"=?UTF-8?Q?J=C3=B6rg_M=C3=BCller?= <joerg@example.de>",
		"=?utf-8?q?a?= =?utf-8?q?b?= c <x@y>",
		"<a@b>",
		`"" <a@b>`,
		"a.b@c.d",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		s = strings.TrimSpace(s)
		name, _, ok := simpleAddress(s)
		if !ok {
			return
		}
		if strings.HasPrefix(s, `"`) && strings.Contains(name, "=?") {
			return // decoded by the fast path only, on purpose
		}
		dec := mime.WordDecoder{CharsetReader: charsetReader}
		p := mail.AddressParser{WordDecoder: &dec}
		got := parseAddress(&p, &dec, s)
		var want string
		if a, err := p.Parse(s); err == nil {
			want = formatAddress(a.Name, a.Address)
		} else {
			want = lenientAddress(&dec, s)
		}
		if got != want {
			t.Errorf("parseAddress(%q) = %q, want %q as without simpleAddress", s, got, want)
		}
	})
}

// FuzzParseDate checks parseDate against net/mail.ParseDate: it must accept
// every date that net/mail accepts, and agree on the instant unless
// net/mail took an alphabetic zone it does not know (it makes those UTC).
func FuzzParseDate(f *testing.F) {
	for _, s := range []string{
		"Tue, 05 Mar 2024 14:07:11 +0100",
		"5 Mar 24 14:07 -0000",
		"Thu, 20 Nov 1997 09:55:06 EST (Eastern)",
		"Mon Jan  2 15:04:05 2006",
		"2-Jan-2006 15:04:05 GMT+0100",
		"2006-01-02T15:04:05Z",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, ok := parseDate(s)
		if ok && (got.Year() < 0 || got.Year() > 9999) {
			t.Errorf("parseDate(%q) = %v", s, got)
		}
		want, err := mail.ParseDate(s)
		if err != nil {
			return
		}
		if !ok {
			t.Fatalf("parseDate(%q) failed; net/mail: %v", s, want)
		}
		if name, _ := want.Zone(); name != "" && name != "UT" && name != "UTC" && name != "GMT" {
			return
		}
		if got.AddDate(100, 0, 0).Equal(want) && got.Year() >= 1950 && got.Year() < 1969 {
			// RFC 5322 §4.3 makes two-digit years 50 to 68 19xx;
			// net/mail, with time's "06" layout, makes them 20xx.
			return
		}
		if !got.Equal(want) {
			t.Errorf("parseDate(%q) = %v; net/mail: %v", s, got, want)
		}
	})
}

// FuzzClean checks clean's fast path against cleanSlow.
func FuzzClean(f *testing.F) {
	for _, s := range []string{"plain", " Jörg Müller ", "a\u0085b", "\xc2", "é\xff", "\t"} {
		f.Add(s, 3)
	}
	f.Fuzz(func(t *testing.T, s string, max int) {
		if max < 0 || max > 2000 {
			return
		}
		if got, want := clean(s, max), cleanSlow(s, max); got != want {
			t.Errorf("clean(%q, %d) = %q, cleanSlow %q", s, max, got, want)
		}
	})
}
