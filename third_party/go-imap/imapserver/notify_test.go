package imapserver

import (
	"bufio"
	"fmt"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2/internal/imapwire"
)

func parseNotify(line string) (*NotifyOptions, error) {
	dec := imapwire.NewDecoder(bufio.NewReader(strings.NewReader(line+"\r\n")), imapwire.ConnSideServer)
	var o NotifyOptions
	if err := readNotify(dec, &o); err != nil {
		return nil, err
	}
	if !dec.ExpectCRLF() {
		return nil, dec.Err()
	}
	return &o, nil
}

// describe renders parsed options compactly for comparison.
func describe(o *NotifyOptions) string {
	if o.None {
		return "NONE"
	}
	var b strings.Builder
	if o.Status {
		b.WriteString("STATUS")
	}
	for _, g := range o.Groups {
		fmt.Fprintf(&b, " [%s %q %v", g.Filter, g.Mailboxes, g.Events)
		if g.Fetch != nil {
			fmt.Fprintf(&b, " fetch uid=%v flags=%v sections=%d", g.Fetch.UID, g.Fetch.Flags, len(g.Fetch.BodySection))
		}
		b.WriteString("]")
	}
	return strings.TrimSpace(b.String())
}

// TestReadNotify: RFC 5465 section 8's grammar, case-insensitive keywords,
// the RFC's spelling of the events kept, unknown events passed on (the
// session answers BADEVENT), syntax errors refused.
func TestReadNotify(t *testing.T) {
	tests := []struct {
		line, want string // want "" : a syntax error
	}{
		{" NONE", "NONE"},
		{" none", "NONE"},
		{" SET (selected (MessageNew MessageExpunge))", "[SELECTED [] [MessageNew MessageExpunge]]"},
		{" set status (Personal (messagenew flagchange))", "STATUS [PERSONAL [] [MessageNew FlagChange]]"},
		{" SET (selected-delayed (MessageNew (UID FLAGS BODY.PEEK[HEADER]) MessageExpunge))", "[SELECTED-DELAYED [] [MessageNew MessageExpunge] fetch uid=true flags=true sections=1]"},
		{" SET (selected (MessageExpunge MessageNew (UID)))", "[SELECTED [] [MessageExpunge MessageNew] fetch uid=true flags=false sections=0]"},
		{` SET (mailboxes "a b" (MailboxName)) (subtree (INBOX x/y) (SubscriptionChange)) (inboxes NONE) (subscribed (Foo))`,
			`[MAILBOXES ["a b"] [MailboxName]] [SUBTREE ["INBOX" "x/y"] [SubscriptionChange]] [INBOXES [] []] [SUBSCRIBED [] [Foo]]`},
		{" SET (personal (AnnotationChange MailboxMetadataChange ServerMetadataChange))", "[PERSONAL [] [AnnotationChange MailboxMetadataChange ServerMetadataChange]]"},
		{"", ""},
		{" GET", ""},
		{" SET", ""},
		{" SET STATUS", ""},
		{" SET STAT (personal NONE)", ""},
		{" SET ()", ""},
		{" SET (personal)", ""},
		{" SET (personal ())", ""},
		{" SET (personal NON)", ""},
		{" SET (elsewhere NONE)", ""},
		{" SET (mailboxes NONE)", ""},
		{" SET (mailboxes () NONE)", ""},
		{" SET (personal (MessageNew (UID)))", ""},
		{" SET (selected (MessageNew ()))", ""},
		{" SET (selected (MessageNew (UID) MessageNew (FLAGS)))", ""},
		{" SET (selected (MessageNew (NOSUCH)))", ""},
		{" SET (selected (MessageNew (UID))", ""},
		// imapwire takes a missing SP before a list (go-imap issue 571).
		{" SET (personal (MessageNew))(inboxes NONE)", "[PERSONAL [] [MessageNew]] [INBOXES [] []]"},
	}
	for _, tc := range tests {
		o, err := parseNotify(tc.line)
		got := ""
		if err == nil {
			got = describe(o)
		}
		if got != tc.want {
			t.Errorf("%q: got %q (%v), want %q", tc.line, got, err, tc.want)
		}
	}
}

// FuzzReadNotify: no input panics or loops, and what parses has a filter
// and, unless NONE, events for every group.
func FuzzReadNotify(f *testing.F) {
	for _, s := range []string{
		" NONE",
		" SET STATUS (selected (MessageNew (UID BODY.PEEK[1.MIME]<0.5>) MessageExpunge FlagChange)) (subtree (a b) (MailboxName))",
		` SET (mailboxes {3}` + "\r\nabc" + ` (MessageNew))`,
		" SET (selected (MessageNew ((((UID))))))",
		" SET (personal (MessageNew MessageNew MessageNew))",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		o, err := parseNotify(line)
		if err != nil {
			return
		}
		if !o.None && len(o.Groups) == 0 {
			t.Fatalf("%q: SET without groups", line)
		}
		for _, g := range o.Groups {
			if g.Filter == "" {
				t.Fatalf("%q: a group without a filter", line)
			}
			if g.Fetch != nil && g.Filter != NotifyFilterSelected && g.Filter != NotifyFilterSelectedDelayed {
				t.Fatalf("%q: fetch attributes for %s", line, g.Filter)
			}
		}
	})
}
