package imapd

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-message/textproto"

	"github.com/mailvault/mailvault/mailserver/auth"
	"github.com/mailvault/mailvault/mailserver/internal/servertest"
	"github.com/mailvault/mailvault/mailserver/store"
)

// hostileMessages are messages whose header block is easy to get wrong:
// what FETCH answers from the cached header block must be what it answered
// from the whole file.
func hostileMessages() []struct{ name, msg string } {
	manyFields := func(n int) string {
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, "X-Filler-%d: %s\r\n", i, strings.Repeat("y", 60))
		}
		return b.String()
	}
	big := manyFields(maxHeaderBlock/70 + 10) // > maxHeaderBlock
	// A header whose blank line straddles readMeta's first 4 KiB read.
	straddle := "Subject: straddle\r\n" + strings.Repeat("X-Pad: "+strings.Repeat("p", 91)+"\r\n", 40)
	straddle += "X-End: " + strings.Repeat("e", 4095-len(straddle)-9) + "\r\n"
	return []struct{ name, msg string }{
		{"plain", msg("plain message", "hello")},
		{"lf-only and folded", "Subject: folded\n subject\nFrom: Dave <dave@remote.test>\nTo: a@example.test,\n\tb@example.test\n\nbody\n"},
		{"no blank line", "Subject: no body\r\nFrom: eve@remote.test\r\n"},
		{"no newline at all", "Subject: unterminated"},
		{"header over the limit, then a body", "Subject: big\r\n" + big + "\r\nbody\r\n"},
		{"header over the limit, no blank line", "Subject: big, no end\r\n" + big},
		{"blank first line", "\r\nSubject: in the body\r\n"},
		{"first line folded", " folded\r\nSubject: after\r\n\r\nbody\r\n"},
		{"malformed line", "Subject: ok\r\nnot a header line\r\n\r\nbody\r\n"},
		{"CR CR LF is not blank", "Subject: cr\r\n\r\r\nX-After: 1\r\n\r\nbody\r\n"},
		{"blank line across the first read", straddle + "\r\nbody\r\n"},
		{"empty", ""},
	}
}

// headerItems are the FETCH items that the cache answers.
var headerItems = "UID FLAGS RFC822.SIZE INTERNALDATE ENVELOPE BODY.PEEK[HEADER] BODY.PEEK[HEADER.FIELDS (SUBJECT FROM)] BODY.PEEK[HEADER.FIELDS.NOT (SUBJECT)] BODY.PEEK[HEADER]<2.10>"

func headerSections() []*imap.FetchItemBodySection {
	return []*imap.FetchItemBodySection{
		{Specifier: imap.PartSpecifierHeader, Peek: true},
		{Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"SUBJECT", "FROM"}, Peek: true},
		{Specifier: imap.PartSpecifierHeader, HeaderFieldsNot: []string{"SUBJECT"}, Peek: true},
		{Specifier: imap.PartSpecifierHeader, Partial: &imap.SectionPartial{Offset: 2, Size: 10}, Peek: true},
	}
}

// TestReadMetaMatchesWholeFile compares what fetchOne answers from a
// message's msgMeta with what it answered from the whole file before the
// cache (go-imap's functions over an io.SectionReader of the file).
func TestReadMetaMatchesWholeFile(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range hostileMessages() {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, "m")
			if err := os.WriteFile(p, []byte(tc.msg), 0o600); err != nil {
				t.Fatal(err)
			}
			f, err := os.Open(p)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			fi, err := f.Stat()
			if err != nil {
				t.Fatal(err)
			}
			meta, err := readMeta("k", f, fi.Size(), fi.ModTime())
			if err != nil {
				t.Fatal(err)
			}
			wantBig := strings.HasPrefix(tc.name, "header over the limit")
			if meta.big != wantBig {
				t.Fatalf("big = %v, want %v", meta.big, wantBig)
			}
			if meta.size != int64(len(tc.msg)) || !meta.modTime.Equal(fi.ModTime()) {
				t.Fatalf("size %d, time %v; want %d, %v", meta.size, meta.modTime, len(tc.msg), fi.ModTime())
			}
			if meta.big {
				return // answered from the file, as before
			}
			if !strings.HasPrefix(tc.msg, string(meta.header)) || len(meta.header) > maxHeaderBlock {
				t.Fatalf("header block %q is not a bounded prefix", meta.header)
			}
			whole := func() io.Reader { return io.NewSectionReader(f, 0, fi.Size()) }
			h, _ := textproto.ReadHeader(bufio.NewReader(whole()))
			if want, got := imapserver.ExtractEnvelope(h), meta.envelope(); !reflect.DeepEqual(want, got) {
				t.Errorf("envelope %+v, want %+v", got, want)
			}
			for _, bs := range headerSections() {
				want := imapserver.ExtractBodySection(whole(), bs)
				got := imapserver.ExtractBodySection(bytes.NewReader(meta.header), bs)
				if len(bs.HeaderFields) == 0 && len(bs.HeaderFieldsNot) == 0 && bs.Partial == nil {
					got = meta.headerSection(bs)
					if again := meta.headerSection(bs); !bytes.Equal(again, got) {
						t.Errorf("memoized HEADER %q, first %q", again, got)
					}
				}
				if !bytes.Equal(got, want) {
					t.Errorf("%+v: %q, want %q", bs, got, want)
				}
			}
		})
	}
}

func TestHeaderEnd(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int
	}{
		{"", -1},
		{"\n", 1},
		{"\r\n", 2},
		{"A: b\r\n\r\nx", 8},
		{"A: b\n\nx", 6},
		{"A: b\r\n\r\r\n", -1},
		{"A: b\r\n \r\n\r\n", 11},
		{"A: b", -1},
	} {
		if got := headerEnd([]byte(tc.in)); got != tc.want {
			t.Errorf("headerEnd(%q) = %d, want %d", tc.in, got, tc.want)
		}
	}
}

// TestMetaCacheEvictsByBytes: the cache keeps the most recently used
// entries within its byte budget and refuses an entry larger than an
// eighth of it.
func TestMetaCacheEvictsByBytes(t *testing.T) {
	entry := func(k string, n int) *msgMeta { return &msgMeta{key: k, header: make([]byte, n)} }
	one := entry("k00", 100).cost()
	c := newMetaCache(10 * one)
	for i := range 20 {
		c.put(entry(fmt.Sprintf("k%02d", i), 100))
		if i == 12 {
			c.get("k05") // used: survives the next puts
		}
	}
	n, used := c.stats()
	if n != 10 || used != 10*one {
		t.Fatalf("%d entries, %d bytes; want 10, %d", n, used, 10*one)
	}
	if c.get("k05") == nil || c.get("k19") == nil || c.get("k10") != nil {
		t.Fatalf("wrong entries evicted: k05 %v k19 %v k10 %v", c.get("k05") != nil, c.get("k19") != nil, c.get("k10") != nil)
	}
	c.put(entry("huge", 2*int(one)))
	if c.get("huge") != nil {
		t.Fatal("an entry over an eighth of the cache was kept")
	}
}

// TestFetchFromCacheIsByteIdentical: header, ENVELOPE, size and date
// FETCHes of the hostile messages give the same bytes from a cold cache,
// a hot one and a server without the cache, and a hot FETCH is answered
// from the cache.
func TestFetchFromCacheIsByteIdentical(t *testing.T) {
	e := newTestEnv(t, func(c *Config, _ *auth.LimiterConfig) { c.MaxMessageBytes = 1 << 20 })
	msgs := hostileMessages()
	for _, m := range msgs {
		e.Deliver(t, alice, "", m.msg)
	}
	cfg, lcfg := servertest.Configure(Config{TLSConfig: e.ServerTLS, MaxMessageBytes: 1 << 20, ConnsPerMinute: 1e6, MaxConnsPerIP: 1000, SpoolDir: e.Dir, MetaCacheBytes: -1}, nil)
	uncached := New(cfg, e.Store, e.Guard(lcfg), e.Log)
	ports := servertest.ServePorts(t, uncached.Serve, uncached.Shutdown)

	fetch := func(c *client, tag, cmd string) string {
		out := c.ok(tag + " " + cmd)
		return strings.Join(out[:len(out)-1], "\n")
	}
	c := e.login(t, "alice")
	mustHave(t, c.ok("s1 SELECT INBOX"), fmt.Sprintf("* %d EXISTS", len(msgs)))
	cold := fetch(c, "f1", "FETCH 1:* ("+headerItems+")")
	if n, _ := e.srv.meta.stats(); n != len(msgs) {
		t.Fatalf("%d cache entries after the first FETCH, want %d", n, len(msgs))
	}
	hot := fetch(c, "f2", "FETCH 1:* ("+headerItems+")")

	uc := &client{servertest.Dial(t, ports.Addr(true), true, servertest.IMAPLine)}
	uc.Expect("* OK")
	uc.ok(`l1 LOGIN alice@example.test "alice password"`)
	uc.ok("s1 SELECT INBOX")
	plain := fetch(uc, "f1", "FETCH 1:* ("+headerItems+")")
	if uncached.meta != nil {
		t.Fatal("MetaCacheBytes -1 did not disable the cache")
	}
	// The messages are \Recent in c only, the first session to select
	// INBOX (RFC 3501 section 2.3.2).
	plain = strings.ReplaceAll(plain, "FLAGS ()", `FLAGS (\Recent)`)
	if hot != cold || plain != cold {
		t.Fatalf("answers differ:\ncold:\n%s\nhot:\n%s\nwithout cache:\n%s", cold, hot, plain)
	}
	for i, m := range msgs {
		mustHave(t, strings.Split(cold, "\n"), fmt.Sprintf("* %d FETCH (UID %d FLAGS (\\Recent) INTERNALDATE ", i+1, i+1), fmt.Sprintf(" RFC822.SIZE %d ", len(m.msg)))
	}
	mustHave(t, strings.Split(cold, "\n"), `"folded subject"`)

	// The hot FETCH opened no file: with the files gone from under the
	// store (a backup restore would do that), the cache still answers,
	// while the server without it finds nothing.
	l, err := e.Store.List(t.Context(), alice, store.Inbox)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range l.Messages {
		if err := os.Rename(m.Path, m.Path+".away"); err != nil {
			t.Fatal(err)
		}
	}
	if again := fetch(c, "f3", "FETCH 1:* (UID RFC822.SIZE ENVELOPE BODY.PEEK[HEADER])"); strings.Count(again, "ENVELOPE") != len(msgs)-2 {
		t.Fatalf("hot FETCH without files answered %d of %d cached messages:\n%s", strings.Count(again, "ENVELOPE"), len(msgs)-2, again)
	}
	if gone := fetch(uc, "f2", "FETCH 1:* (UID ENVELOPE)"); strings.Contains(gone, "ENVELOPE") {
		t.Fatalf("uncached FETCH answered without files: %s", gone)
	}
}

// TestDeliveryWarmsSelectedFolder: a message delivered into a folder that
// a session has selected is in the cache before the first FETCH, and its
// answer is the one read from the file; mail for other folders is not
// cached.
func TestDeliveryWarmsSelectedFolder(t *testing.T) {
	e := newTestEnv(t, nil)
	e.Deliver(t, alice, "", msg("before select", "x"))
	c := e.login(t, "alice")
	c.ok("s1 SELECT INBOX")
	if n, _ := e.srv.meta.stats(); n != 0 {
		t.Fatalf("%d entries before any FETCH or delivery", n)
	}
	e.Deliver(t, alice, "", msg("while selected", "y"))
	e.Deliver(t, alice, "Archive", msg("elsewhere", "z"))
	if n, _ := e.srv.meta.stats(); n != 1 {
		t.Fatalf("%d entries after one delivery into the selected folder, want 1", n)
	}
	c.ok("n1 NOOP")
	warm := c.ok("f1 FETCH 2 (RFC822.SIZE INTERNALDATE ENVELOPE BODY.PEEK[HEADER])")
	mustHave(t, warm, `"while selected"`)
	if n, _ := e.srv.meta.stats(); n != 1 {
		t.Fatalf("the FETCH of the delivered message missed the cache (%d entries)", n)
	}
	cfg, lcfg := servertest.Configure(Config{TLSConfig: e.ServerTLS, MaxMessageBytes: 1 << 20, ConnsPerMinute: 1e6, MaxConnsPerIP: 1000, SpoolDir: e.Dir, MetaCacheBytes: -1}, nil)
	uncached := New(cfg, e.Store, e.Guard(lcfg), e.Log)
	ports := servertest.ServePorts(t, uncached.Serve, uncached.Shutdown)
	uc := &client{servertest.Dial(t, ports.Addr(true), true, servertest.IMAPLine)}
	uc.Expect("* OK")
	uc.ok(`l1 LOGIN alice@example.test "alice password"`)
	uc.ok("s1 SELECT INBOX")
	cold := uc.ok("f1 FETCH 2 (RFC822.SIZE INTERNALDATE ENVELOPE BODY.PEEK[HEADER])")
	if strings.Join(warm[:len(warm)-1], "\n") != strings.Join(cold[:len(cold)-1], "\n") {
		t.Fatalf("warmed answer %q, from the file %q", warm, cold)
	}
}
