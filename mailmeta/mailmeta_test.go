package mailmeta

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestHeaderEnd(t *testing.T) {
	tests := []struct {
		in   string
		want int
	}{
		{"", -1},
		{"\n", 1},
		{"\r\nbody", 2},
		{"\n\n", 1},
		{"A: b\n\nbody", 6},
		{"A: b\r\n\r\nbody", 8},
		{"A: b\r\n\nbody", 7},
		{"A: b\n\r\nbody", 7},
		{"A: b\n", -1},
		{"A: b\r\n", -1},
		{"A: b\n\r", -1},
		{"A: b", -1},
		{"A: b\n \n\nbody", 8},       // a white-space line continues the field
		{"A: b\n\t\r\n\r\nbody", 10}, // likewise with CRLF
		{"A: b\n\r\r\nC: d\n\n", 14},
		{"A: b\nC: d\n\nE: f\n\n", 11},
	}
	for _, tt := range tests {
		if got := HeaderEnd([]byte(tt.in)); got != tt.want {
			t.Errorf("HeaderEnd(%q) = %d, want %d", tt.in, got, tt.want)
		}
	}
}

func date(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

func TestParse(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want Meta
	}{
		{
			name: "plain",
			in: "From: Alice Example <alice@example.com>\r\n" +
				"To: bob@example.org, \"Carol, C.\" <carol@example.net>\r\n" +
				"Cc: Dave <dave@example.com>\r\n" +
				"Subject: Quarterly report\r\n" +
				"Date: Tue, 05 Mar 2024 14:07:11 +0100\r\n" +
				"Message-ID: <abc.123@mail.example.com>\r\n" +
				"\r\n" +
				"From: not a header\r\n",
			want: Meta{
				From:      []string{"Alice Example <alice@example.com>"},
				To:        []string{"bob@example.org", `"Carol, C." <carol@example.net>`},
				Cc:        []string{"Dave <dave@example.com>"},
				Subject:   "Quarterly report",
				Date:      date("2024-03-05T14:07:11+01:00"),
				MessageID: "abc.123@mail.example.com",
			},
		},
		{
			name: "bare LF, folding, case and obsolete colon spacing",
			in: "FROM : alice@example.com\n" +
				"to: a@example.com,\n\tb@example.com,\n c@example.com\n" +
				"subject: a long\n\tfolded subject\n" +
				"message-id:\n <folded@example.com>\n" +
				"\n",
			want: Meta{
				From:      []string{"alice@example.com"},
				To:        []string{"a@example.com", "b@example.com", "c@example.com"},
				Subject:   "a long folded subject",
				MessageID: "folded@example.com",
			},
		},
		{
			name: "RFC 2047",
			in: "From: =?UTF-8?Q?J=C3=B6rg_M=C3=BCller?= <joerg@example.de>\n" +
				"To: =?ISO-8859-1?Q?Fran=E7ois?= <f@example.fr>, =?KOI8-R?B?8NLJ18XU?= <p@example.ru>\n" +
				"Subject: =?utf-8?B?8J+OiSBQYXJ0eQ==?= =?utf-8?q?_time?= and =?windows-1252?q?caf=E9?=\n" +
				"\n",
			want: Meta{
				From:    []string{"Jörg Müller <joerg@example.de>"},
				To:      []string{"François <f@example.fr>", "Привет <p@example.ru>"},
				Subject: "🎉 Party time and café",
			},
		},
		{
			name: "first of repeated single fields, all To and Cc",
			in: "Subject: first\nSubject: second\nFrom: a@example.com\nFrom: b@example.com\n" +
				"To: t1@example.com\nTo: t2@example.com\nCc: c1@example.com\ncc: c2@example.com\n" +
				"Message-ID: <1@x>\nMessage-ID: <2@x>\n\n",
			want: Meta{
				From:      []string{"a@example.com"},
				To:        []string{"t1@example.com", "t2@example.com"},
				Cc:        []string{"c1@example.com", "c2@example.com"},
				Subject:   "first",
				MessageID: "1@x",
			},
		},
		{
			name: "malformed lines are skipped, not fatal",
			in: "From MAILER-DAEMON Tue Mar  5 14:07:11 2024\n" +
				"garbage without colon\n" +
				" continuation of nothing\n" +
				"Bad Key: x\n" +
				": empty name\n" +
				"Subject: still found\n" +
				"\n",
			want: Meta{Subject: "still found"},
		},
		{
			name: "one bad address does not lose the list",
			in: "To: good@example.com, broken <oops, =?x-unknown?q?Na=E9me?= <n@example.com>, root,\n" +
				" undisclosed-recipients:;, Group: g1@example.com, g2@example.com;, last@example.com\n\n",
			want: Meta{To: []string{
				"good@example.com",
				"broken <oops>",
				"Na\uFFFDme <n@example.com>",
				"root",
				"g1@example.com",
				"g2@example.com",
				"last@example.com",
			}},
		},
		{
			name: "address forms",
			in: "To: john@example.com (John Doe), \"Quoted \\\"Name\\\"\" <q@example.com>,\n" +
				" John Q. Public <jqp@example.com>, <bare@example.com>, \"\" <empty@example.com>,\n" +
				" \"@special\" <s@example.com>, weird@@example.com (Weird), a@[192.0.2.1],\n" +
				" Routed <@relay1.example, @relay2.example:r@example.com>\n\n",
			want: Meta{To: []string{
				"John Doe <john@example.com>",
				`"Quoted \"Name\"" <q@example.com>`,
				"John Q. Public <jqp@example.com>",
				"bare@example.com",
				"empty@example.com",
				`"@special" <s@example.com>`,
				"Weird <weird@@example.com>",
				"a@[192.0.2.1]",
				"Routed <r@example.com>",
			}},
		},
		{
			name: "control characters and invalid UTF-8",
			in: "Subject: a\x00b\x07c\x7f\xc2\x85d \xff\xfe e\tf\r g\n" +
				"From: =?utf-8?q?Evil=00=1B[31m?= <evil@example.com>\n" +
				"Message-ID: <id\x00 with space@example.com>\n\n",
			want: Meta{
				From:      []string{`"Evil[31m" <evil@example.com>`},
				Subject:   "abcd \uFFFD\uFFFD e f  g",
				MessageID: "idwithspace@example.com",
			},
		},
		{
			name: "encoded words are decoded once, and truncated ones kept",
			// The base64 text is "=?utf-8?q?nested?=".
			in:   "Subject: =?utf-8?b?PT91dGYtOD9xP25lc3RlZD89?= =?utf-8?q?trunc\n\n",
			want: Meta{Subject: "=?utf-8?q?nested?= =?utf-8?q?trunc"},
		},
		{
			name: "unknown charset passes through",
			in:   "Subject: =?x-nonexistent?q?abc?= =?utf-7?B?K0FPa0Fw?=\n\n",
			want: Meta{Subject: "abc+AOkAp"},
		},
		{
			name: "lenient Message-ID",
			in:   "Message-ID: no-brackets@example.com (comment)\n\n",
			want: Meta{MessageID: "no-brackets@example.com"},
		},
		{
			name: "empty address lists",
			in:   "From:\nTo: ,, ;\nCc: undisclosed-recipients:;\n\n",
			want: Meta{},
		},
		{
			name: "encoded word in a quoted name",
			in:   "From: \"=?utf-8?q?J=C3=B6rg?=\" <j@example.de>\nTo: =?utf-8?b?PT91dGYtOD9xP25lc3RlZD89?= <n@example.com>\n\n",
			want: Meta{
				From: []string{"Jörg <j@example.de>"},
				To:   []string{"=?utf-8?q?nested?= <n@example.com>"},
			},
		},
		{
			name: "empty header",
			in:   "\r\nSubject: in the body\r\n",
			want: Meta{},
		},
		{
			name: "no blank line",
			in:   "Subject: only header",
			want: Meta{Subject: "only header"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Parse([]byte(tt.in))
			if !metaEqual(got, tt.want) {
				t.Errorf("Parse(%q):\n got %#v\nwant %#v", tt.in, got, tt.want)
			}
		})
	}
}

// metaEqual compares Metas, dates by instant and offset.
func metaEqual(a, b Meta) bool {
	if !a.Date.Equal(b.Date) {
		return false
	}
	_, ao := a.Date.Zone()
	_, bo := b.Date.Zone()
	a.Date, b.Date = time.Time{}, time.Time{}
	return ao == bo && reflect.DeepEqual(a, b)
}

func TestParseDate(t *testing.T) {
	tests := []struct {
		in   string
		want string // RFC 3339, "" for a failure
	}{
		{"Tue, 05 Mar 2024 14:07:11 +0100", "2024-03-05T14:07:11+01:00"},
		{"5 Mar 2024 14:07:11 -0000", "2024-03-05T14:07:11Z"},
		{"Tue,  5 Mar 2024 14:07 +0100", "2024-03-05T14:07:00+01:00"},
		{"Tue, 05 Mar 2024 14:07:11 +0000 (UTC)", "2024-03-05T14:07:11Z"},
		{"Tue, 05 Mar 2024 14:07:11 -0800 (PST)", "2024-03-05T14:07:11-08:00"},
		{"(comment) Tue, 05 (x (nested)) Mar 2024 14:07:11 GMT", "2024-03-05T14:07:11Z"},
		{"Thu, 20 Nov 1997 09:55:06 EST", "1997-11-20T09:55:06-05:00"},
		{"Thu, 20 Nov 1997 09:55:06 pdt", "1997-11-20T09:55:06-07:00"},
		{"Thu, 20 Nov 97 09:55:06 UT", "1997-11-20T09:55:06Z"},
		{"Thu, 20 Nov 04 09:55:06 Z", "2004-11-20T09:55:06Z"},
		{"20 Nov 104 09:55:06 A", "2004-11-20T09:55:06Z"},
		{"Thursday, 20 November 1997 09:55:06 +0200", "1997-11-20T09:55:06+02:00"},
		{"20 Sept 1997 09:55:06 +0200", "1997-09-20T09:55:06+02:00"},
		{"20 NOV 1997 09:55:06 +0200", "1997-11-20T09:55:06+02:00"},
		{"Mon Jan  2 15:04:05 2006", "2006-01-02T15:04:05Z"},
		{"Mon Jan  2 15:04:05 MST 2006", "2006-01-02T15:04:05-07:00"},
		{"2-Jan-2006 15:04:05 +0100", "2006-01-02T15:04:05+01:00"},
		{"Mon, 2 Jan 2006 15:04:05-0700", "2006-01-02T15:04:05-07:00"},
		{"Mon, 2 Jan 2006 15:04:05 +01:00", "2006-01-02T15:04:05+01:00"},
		{"Mon, 2 Jan 2006 15:04:05.123 +0100", "2006-01-02T15:04:05+01:00"},
		{"Mon, 2 Jan 2006 15:04:05 +0100 CET", "2006-01-02T15:04:05+01:00"},
		{"Mon, 2 Jan 2006 15:04:05 CET", "2006-01-02T15:04:05Z"},
		{"Mon, 2 Jan 2006 15:04:05 GMT+0100", "2006-01-02T15:04:05+01:00"},
		{"Mon, 2 Jan 2006 15:04:05 GMT-0500", "2006-01-02T15:04:05-05:00"},
		{"Mon, 2 Jan 2006 15:04:05 EST +0100", "2006-01-02T15:04:05+01:00"},
		{"Mon, 2 Jan 2006 15:04:05 +0100 -0500", "2006-01-02T15:04:05+01:00"},
		{"02-JAN-2006 15:04:05 -0000", "2006-01-02T15:04:05Z"},
		{"Mon, 2 Jan 2006", "2006-01-02T00:00:00Z"},
		{"2006-01-02T15:04:05Z", "2006-01-02T15:04:05Z"},
		{"2006-01-02T15:04:05+07:00", "2006-01-02T15:04:05+07:00"},
		{"2006-01-02 15:04:05", "2006-01-02T15:04:05Z"},
		{"29 Feb 2024 00:00:00 +0000", "2024-02-29T00:00:00Z"},
		{"29 Feb 00 00:00:00 +0000", "2000-02-29T00:00:00Z"},
		{"2 Jan 2006 15:04:05 +0100 2007", "2006-01-02T15:04:05+01:00"},

		{"", ""},
		{"yesterday", ""},
		{"29 Feb 2023 00:00:00 +0000", ""},
		{"32 Jan 2006 15:04:05 +0000", ""},
		{"0 Jan 2006 15:04:05 +0000", ""},
		{"2 Jan 2006 24:04:05 +0000", ""},
		{"2 Jan 2006 15:60:05 +0000", ""},
		{"2 Jan 2006 15:04:05 +0100 16:00 Feb", "2006-01-02T15:04:05+01:00"},
		{"2 Jan 2006 15:04:05 Feb", "2006-01-02T15:04:05Z"},
		{"2 Jan 20060 15:04:05", ""},
		{"2 Jan 15:04:05", ""},
		{"2 Jan 2006 1:2:3:4", ""},
		{"123 Jan 456 15:04:05", ""},
		{"2006-13-45", ""},
	}
	for _, tt := range tests {
		got, ok := parseDate(tt.in)
		if tt.want == "" {
			if ok {
				t.Errorf("parseDate(%q) = %v, want failure", tt.in, got)
			}
			continue
		}
		want := date(tt.want)
		_, gotOff := got.Zone()
		_, wantOff := want.Zone()
		if !ok || !got.Equal(want) || gotOff != wantOff {
			t.Errorf("parseDate(%q) = %v, %v; want %v", tt.in, got, ok, want)
		}
	}
}

func TestParseLimits(t *testing.T) {
	var b bytes.Buffer
	// 100k header fields, most of them To with one address.
	b.WriteString("Subject: " + strings.Repeat("=?utf-8?q?=C3=A9?= ", 2000) + "\n")
	for i := 0; i < 100000; i++ {
		b.WriteString("To: a@example.com\n")
	}
	b.WriteString("From: late@example.com\n\n")
	m := Parse(b.Bytes())
	if len(m.To) != MaxAddresses {
		t.Errorf("len(To) = %d, want %d", len(m.To), MaxAddresses)
	}
	if m.From != nil {
		t.Errorf("From = %q past MaxHeaderBytes, want none", m.From)
	}
	if len(m.Subject) > MaxSubjectBytes || !strings.HasPrefix(m.Subject, "ééé") {
		t.Errorf("Subject is %d bytes, %q...", len(m.Subject), m.Subject[:min(len(m.Subject), 20)])
	}

	// A 10 MB line.
	long := "Subject: " + strings.Repeat("x", 10<<20) + "\nTo: " + strings.Repeat("y", 10<<20) + "@example.com\n\n"
	m = Parse([]byte(long))
	if len(m.Subject) != MaxSubjectBytes {
		t.Errorf("len(Subject) = %d, want %d", len(m.Subject), MaxSubjectBytes)
	}

	// One huge address list.
	list := "Cc: " + strings.Repeat("x@example.com, ", 20000) + "\n\n"
	m = Parse([]byte(list))
	if len(m.Cc) != MaxAddresses {
		t.Errorf("len(Cc) = %d, want %d", len(m.Cc), MaxAddresses)
	}

	// Junk that costs a failed parse per address, in one field and in
	// many; addresses after it are past the budget.
	for _, h := range []string{
		"To: " + strings.Repeat("\x00,", 10000) + "a@example.com\n\n",
		strings.Repeat("To: \x00\n", 10000) + "To: a@example.com\n\n",
	} {
		if m := Parse([]byte(h)); m.To != nil {
			t.Errorf("To = %q after %d junk addresses", m.To, 10000)
		}
	}

	// A long display name and address.
	m = Parse([]byte("From: " + strings.Repeat("N", 1500) + " <" + strings.Repeat("a", 1500) + "@example.com>\n\n"))
	if len(m.From) != 1 || len(m.From[0]) > 2*MaxAddressBytes+3 {
		t.Errorf("From = %d bytes, want at most %d", len(m.From[0]), 2*MaxAddressBytes+3)
	}
}

// header2K is a realistic header of about 2 KB, as delivered to a Maildir.
const header2K = "Return-Path: <bounces+1234-abcd-alice=example.com@mail.example.org>\r\n" +
	"Delivered-To: alice@example.com\r\n" +
	"Received: from mx1.example.com\r\n\tby mail.example.com with LMTP\r\n\tid 6N3cKJ8q52V1JgAA0J78UA\r\n\t(envelope-from <bounces+1234-abcd-alice=example.com@mail.example.org>)\r\n\tfor <alice@example.com>; Tue, 05 Mar 2024 14:07:12 +0100\r\n" +
	"Received: from mail.example.org (mail.example.org [198.51.100.23])\r\n\tby mx1.example.com (Postfix) with ESMTPS id 4TpQ2m0Z3Qz9rxL\r\n\tfor <alice@example.com>; Tue,  5 Mar 2024 14:07:11 +0100 (CET)\r\n" +
	"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.org;\r\n\ts=s1; t=1709644031; h=from:to:cc:subject:date:message-id;\r\n\tbh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=;\r\n\tb=dGhpcyBpcyBub3QgYSByZWFsIHNpZ25hdHVyZSBidXQgaXQgbG9va3MgbGlrZSBvbmUK\r\n\t dGhpcyBpcyBub3QgYSByZWFsIHNpZ25hdHVyZSBidXQgaXQgbG9va3MgbGlrZSBvbmUK\r\n" +
	"From: \"Bob Example\" <bob@example.org>\r\n" +
	"To: Alice Example <alice@example.com>, carol@example.net\r\n" +
	"Cc: =?UTF-8?Q?J=C3=B6rg_M=C3=BCller?= <joerg@example.de>, Dave <dave@example.com>\r\n" +
	"Subject: =?UTF-8?Q?Re:_Quarterly_report_=E2=80=93_draft?=\r\n" +
	"Date: Tue, 05 Mar 2024 14:07:11 +0100\r\n" +
	"Message-ID: <CAF=3x1-q8d@mail.example.org>\r\n" +
	"In-Reply-To: <CAF=2a9-zz1@mail.example.com>\r\n" +
	"References: <CAF=1b7-aa0@mail.example.com> <CAF=2a9-zz1@mail.example.com>\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: multipart/alternative; boundary=\"000000000000a1b2c3d4e5f6\"\r\n" +
	"X-Mailer: Example Mail 4.2\r\n" +
	"List-Unsubscribe: <mailto:unsubscribe@mail.example.org>, <https://mail.example.org/u/1234>\r\n" +
	"X-Spam-Status: No, score=-2.1 required=5.0 tests=BAYES_00,DKIM_SIGNED,\r\n\tDKIM_VALID,DKIM_VALID_AU,SPF_HELO_NONE,SPF_PASS autolearn=ham\r\n\tautolearn_force=no version=3.4.6\r\n" +
	"Authentication-Results: mx1.example.com; dkim=pass header.d=example.org;\r\n\tspf=pass smtp.mailfrom=mail.example.org; dmarc=pass header.from=example.org\r\n" +
	"X-Original-To: alice@example.com\r\n" +
	"\r\n"

func TestParseHeader2K(t *testing.T) {
	want := Meta{
		From:      []string{"Bob Example <bob@example.org>"},
		To:        []string{"Alice Example <alice@example.com>", "carol@example.net"},
		Cc:        []string{"Jörg Müller <joerg@example.de>", "Dave <dave@example.com>"},
		Subject:   "Re: Quarterly report – draft",
		Date:      date("2024-03-05T14:07:11+01:00"),
		MessageID: "CAF=3x1-q8d@mail.example.org",
		Boundary:  "000000000000a1b2c3d4e5f6",
	}
	msg := []byte(header2K + "body\r\n")
	if got := Parse(msg); !metaEqual(got, want) {
		t.Errorf("Parse:\n got %#v\nwant %#v", got, want)
	}
	if got := HeaderEnd(msg); got != len(header2K) {
		t.Errorf("HeaderEnd = %d, want %d", got, len(header2K))
	}
}

func BenchmarkParse(b *testing.B) {
	h := []byte(header2K)
	b.SetBytes(int64(len(h)))
	b.ReportAllocs()
	for b.Loop() {
		Parse(h)
	}
}

func BenchmarkHeaderEnd(b *testing.B) {
	msg := []byte(header2K + strings.Repeat("body line\r\n", 100))
	b.SetBytes(int64(len(header2K)))
	for b.Loop() {
		HeaderEnd(msg)
	}
}

// BenchmarkParseHostile measures Parse on inputs built to be slow, which
// MaxHeaderBytes and the other limits keep bounded.
func BenchmarkParseHostile(b *testing.B) {
	fill := func(prefix, unit, suffix string) []byte {
		n := (MaxHeaderBytes - len(prefix)) / len(unit)
		return []byte(prefix + strings.Repeat(unit, n) + suffix)
	}
	for _, bb := range []struct {
		name string
		in   []byte
	}{
		{"LongLine", []byte("Subject: " + strings.Repeat("x", 10<<20) + "\n\n")},
		{"ManyFields", fill("", "X-A: b\n", "\n")},
		{"ManyJunkTo", fill("", "To: \x00\n", "\n")},
		{"JunkList", fill("To: ", "\x00,", "\n\n")},
		{"EmptyList", fill("To: ", ",", "\n\n")},
		{"ManyGroups", fill("To: ", "g:", "\n\n")},
		{"EncodedWords", fill("Subject: ", "=?utf-8?q?=C3=A9?= ", "\n\n")},
		{"BadEncodedWords", fill("Subject: ", "=?x?", "\n\n")},
		{"Comments", fill("To: ", "(", "\n\n")},
		{"Quotes", fill("To: ", `"a@b`, "\n\n")},
		{"Date", fill("Date: ", "((((", "\n\n")},
		{"ContinuationLines", fill("Subject: a", "\n ", "\n\n")},
	} {
		b.Run(bb.name, func(b *testing.B) {
			b.SetBytes(int64(min(len(bb.in), MaxHeaderBytes)))
			for b.Loop() {
				Parse(bb.in)
			}
		})
	}
}

func TestParseBoundary(t *testing.T) {
	for _, tc := range []struct{ header, want string }{
		{"Content-Type: multipart/mixed; boundary=\"abc\"\r\n\r\n", "abc"},
		{"Content-Type: multipart/mixed;\r\n boundary=\"=_x_\"\r\n\r\n", "=_x_"},
		{"Content-Type: text/plain; boundary=\"abc\"\r\n\r\n", ""},
		{"Content-Type: multipart/mixed\r\n\r\n", ""},
		{"Content-Type: multipart/mixed; boundary=\"" + strings.Repeat("b", 71) + "\"\r\n\r\n", ""},
		{"Content-Type: multipart/mixed; boundary=\"\r\n\r\n", ""},
		// The fast path for single-part types must not miss a multipart
		// one that ParseMediaType reads.
		{"Content-Type: MULTIPART/Mixed; boundary=abc\r\n\r\n", "abc"},
		{"Content-Type:\r\n multipart/mixed; boundary=abc\r\n\r\n", "abc"},
		{"Content-Type: \fmultipart/mixed; boundary=abc\r\n\r\n", "abc"},
		{"Content-Type: multipart\r\n\r\n", ""},
		{"Content-Type: text/plain\r\n\r\n", ""},
	} {
		if got := Parse([]byte(tc.header)).Boundary; got != tc.want {
			t.Errorf("%q: boundary %q, want %q", tc.header, got, tc.want)
		}
	}
}
