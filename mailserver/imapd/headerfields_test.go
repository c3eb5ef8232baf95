package imapd

import (
	"bytes"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
)

var headerFieldsHeaders = []string{
	"From: a@example.org\r\nTo: b@example.org\r\nSubject: hi\r\n\r\n",
	"Received: x\r\n\tfolded\r\nreceived: y\r\nFROM: A <a@example.org>\r\nSubject: =?utf-8?q?h=C3=A9?=\r\n  more\r\nX-Odd_Key: 1\r\nMessage-ID: <m@x>\r\n\r\n",
	"From: lf@example.org\nTo: only-lf@example.org\nSubject: lf\n\n",
	"Subject:no space\r\nIn-Reply-To:\r\n <p@x>\r\nReferences: <a@x>\r\n <b@x>\r\n\r\n",
	"not a header line\r\n\r\n",
	"From: a\r\n",
	"",
	"From: a@example.org\r\nTo: b@example.org\r\n\r\nbody that is not header\r\n",
}

var headerFieldsSections = []*imap.FetchItemBodySection{
	{Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"From", "Subject"}},
	{Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"received"}},
	{Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"X-ODD_KEY", "message-id", "Nope"}},
	{Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"References", "In-Reply-To", "To", "Cc"}},
	{Specifier: imap.PartSpecifierHeader, HeaderFieldsNot: []string{"received", "SUBJECT"}},
	{Specifier: imap.PartSpecifierHeader, HeaderFieldsNot: []string{"x-odd_key"}},
	{Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"From"}, Partial: &imap.SectionPartial{Offset: 3, Size: 10}},
	{Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"From"}, Partial: &imap.SectionPartial{Offset: 1000, Size: 10}},
	{Specifier: imap.PartSpecifierHeader, Partial: &imap.SectionPartial{Offset: 0, Size: 12}},
}

// headerFields answers exactly as go-imap's ExtractBodySection does from
// the header block.
func TestHeaderFieldsMatchGoIMAP(t *testing.T) {
	for _, h := range headerFieldsHeaders {
		block := []byte(h)
		if n := headerEnd(block); n >= 0 {
			block = block[:n]
		}
		for _, bs := range headerFieldsSections {
			checkHeaderFields(t, block, bs)
		}
	}
}

func checkHeaderFields(t *testing.T, block []byte, bs *imap.FetchItemBodySection) {
	t.Helper()
	m := &msgMeta{header: block}
	want := imapserver.ExtractBodySection(bytes.NewReader(block), bs)
	for range 2 { // parsed, then from the kept fields
		if got := m.headerFields(bs); !bytes.Equal(got, want) {
			t.Fatalf("header %q, section %+v:\n got %q\nwant %q", block, bs, got, want)
		}
	}
}

func FuzzHeaderFields(f *testing.F) {
	for _, h := range headerFieldsHeaders {
		f.Add(h, "From Subject", false)
		f.Add(h, "received x-odd_key", true)
	}
	f.Fuzz(func(t *testing.T, h, fields string, not bool) {
		block := []byte(h)
		if n := headerEnd(block); n >= 0 {
			block = block[:n]
		}
		names := strings.Fields(fields)
		if len(names) == 0 {
			return
		}
		bs := &imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, HeaderFields: names}
		if not {
			bs = &imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, HeaderFieldsNot: names}
		}
		checkHeaderFields(t, block, bs)
	})
}
