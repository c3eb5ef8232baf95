package imapd

import (
	"strings"
	"testing"

	"github.com/mailvault/mailvault/mailserver/auth"
	"github.com/mailvault/mailvault/mailserver/internal/servertest"
)

// idleFor puts c in IDLE, runs change (another session's commands or a
// delivery through the store), reads the responses want names (prefixes,
// in order), ends IDLE and fails if anything else came.
func idleFor(t *testing.T, c *client, change func(), want ...string) {
	t.Helper()
	c.Script(`
		C: i1 IDLE
		S: + `)
	change()
	for _, w := range want {
		c.Expect(w)
	}
	c.Send("DONE")
	if rest := c.ReadUntil(servertest.HasPrefix("i1 ")); len(rest) != 1 || !strings.HasPrefix(rest[0], "i1 OK") {
		t.Fatalf("after %q: %q", want, rest)
	}
}

// TestNotifyEvents: one session sets NOTIFY and IDLEs, another (or the
// store's delivery) makes the change; the first is told exactly what its
// filter and events ask for (RFC 5465 sections 5 and 6), nothing else.
func TestNotifyEvents(t *testing.T) {
	tests := []struct {
		name   string
		setup  []string // the changer's commands first
		notify string
		change func(t *testing.T, e *testEnv, ch *client)
		want   []string
	}{
		{
			name:   "MessageNew INBOXES delivery",
			notify: "NOTIFY SET (inboxes (MessageNew MessageExpunge))",
			change: func(t *testing.T, e *testEnv, ch *client) { e.Deliver(t, alice, "", msg("new", "body")) },
			want:   []string{`* STATUS INBOX (MESSAGES 1 UIDNEXT 2 UIDVALIDITY `},
		},
		{
			name:   "MessageNew MAILBOXES append",
			setup:  []string{"s1 CREATE Box"},
			notify: "NOTIFY SET (mailboxes Box (MessageNew))",
			change: func(t *testing.T, e *testEnv, ch *client) { ch.ok("c1 APPEND Box {5+}\r\nx\r\n\r") },
			want:   []string{`* STATUS "Box" (MESSAGES 1 UIDNEXT 2 UIDVALIDITY `},
		},
		{
			// The flag change before the expunge changes no MESSAGES:
			// no STATUS for it (SET STATUS gave the baseline).
			name:   "MessageExpunge PERSONAL",
			setup:  []string{"s1 CREATE Box", "s2 APPEND Box {5+}\r\nx\r\n\r"},
			notify: "NOTIFY SET STATUS (personal (MessageExpunge))",
			change: func(t *testing.T, e *testEnv, ch *client) {
				ch.ok("c1 SELECT Box")
				ch.ok(`c2 STORE 1 +FLAGS (\Deleted)`)
				ch.ok("c3 EXPUNGE")
			},
			want: []string{`* STATUS "Box" (MESSAGES 0)`},
		},
		{
			name:   "FlagChange SUBTREE",
			setup:  []string{"s1 CREATE A", "s2 CREATE A/b", "s3 APPEND A/b {5+}\r\nx\r\n\r"},
			notify: "NOTIFY SET (subtree A (FlagChange))",
			change: func(t *testing.T, e *testEnv, ch *client) {
				ch.ok("c1 SELECT A/b")
				ch.ok(`c2 STORE 1 +FLAGS (\Flagged)`)
			},
			want: []string{`* STATUS "A/b" (UIDVALIDITY `},
		},
		{
			name:   "SUBSCRIBED only",
			setup:  []string{"s1 CREATE Sub", "s2 CREATE Other", "s3 SUBSCRIBE Sub"},
			notify: "NOTIFY SET (subscribed (MessageNew MessageExpunge))",
			change: func(t *testing.T, e *testEnv, ch *client) {
				ch.ok("c1 APPEND Other {5+}\r\nx\r\n\r")
				ch.ok("c2 APPEND Sub {5+}\r\nx\r\n\r")
			},
			want: []string{`* STATUS "Sub" (MESSAGES 1 UIDNEXT 2 `},
		},
		{
			name:   "MailboxName create rename delete",
			notify: "NOTIFY SET (personal (MailboxName))",
			change: func(t *testing.T, e *testEnv, ch *client) {
				ch.ok("c1 CREATE N1")
				ch.ok("c2 RENAME N1 N2")
				ch.ok("c3 DELETE N2")
			},
			want: []string{`* LIST () "/" "N1"`, `* LIST () "/" "N2" (OLDNAME ("N1"))`, `* LIST (\NonExistent) "/" "N2"`},
		},
		{
			// The deleted folder's change comes too, and finds no folder
			// to give STATUS for.
			name:   "deleted folder",
			setup:  []string{"s1 CREATE Box", "s2 APPEND Box {5+}\r\nx\r\n\r"},
			notify: "NOTIFY SET STATUS (personal (MessageNew MessageExpunge MailboxName))",
			change: func(t *testing.T, e *testEnv, ch *client) { ch.ok("c1 DELETE Box") },
			want:   []string{`* LIST (\NonExistent) "/" "Box"`},
		},
		{
			name:   "SubscriptionChange",
			setup:  []string{"s1 CREATE Box"},
			notify: "NOTIFY SET (personal (SubscriptionChange))",
			change: func(t *testing.T, e *testEnv, ch *client) {
				ch.ok("c1 SUBSCRIBE Box")
				ch.ok("c2 UNSUBSCRIBE Box")
			},
			want: []string{`* LIST (\Subscribed) "/" "Box"`, `* LIST () "/" "Box"`},
		},
		{
			name:   "NONE for a mailbox",
			setup:  []string{"s1 CREATE Quiet"},
			notify: "NOTIFY SET (mailboxes Quiet NONE) (personal (MessageNew MessageExpunge))",
			change: func(t *testing.T, e *testEnv, ch *client) {
				ch.ok("c1 APPEND Quiet {5+}\r\nx\r\n\r")
				e.Deliver(t, alice, "", msg("new", "body"))
			},
			want: []string{`* STATUS INBOX (MESSAGES 1 `},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEnv(t, nil)
			ch := e.login(t, "alice")
			for _, l := range tc.setup {
				ch.ok(l)
			}
			w := e.login(t, "alice")
			out := w.ok("n1 " + tc.notify)
			if strings.Contains(tc.notify, "SET STATUS") {
				if len(out) < 2 {
					t.Fatalf("SET STATUS without STATUS: %q", out)
				}
			} else if len(out) != 1 {
				t.Fatalf("NOTIFY SET without STATUS answered %q", out)
			}
			idleFor(t, w, func() { tc.change(t, e, ch) }, tc.want...)
			// Nothing is left queued.
			if out := w.ok("n2 NOOP"); len(out) != 1 {
				t.Fatalf("after IDLE: %q", out)
			}
		})
	}
}

// TestNotifySelected: the selected mailbox's events are the usual
// EXISTS and EXPUNGE (VANISHED once QRESYNC is on, RFC 5465 section 5.3
// and RFC 7162 section 3.2.10), MessageNew's fetch attributes give a
// FETCH after the EXISTS (section 5.2), and no STATUS is sent for it even
// when another filter (PERSONAL) covers it.
func TestNotifySelected(t *testing.T) {
	e := newTestEnv(t, nil)
	e.Deliver(t, alice, "", msg("old", "body"))
	w := e.login(t, "alice")
	ch := e.login(t, "alice")
	w.ok("w1 ENABLE QRESYNC")
	w.ok("w2 SELECT INBOX")
	w.ok("w3 NOTIFY SET (selected (MessageNew (UID) MessageExpunge FlagChange)) (personal (MessageNew MessageExpunge))")
	idleFor(t, w, func() { e.Deliver(t, alice, "", msg("new", "body")) },
		"* 2 EXISTS", "* 2 RECENT", "* 2 FETCH (UID 2)")
	idleFor(t, w, func() {
		ch.ok("c1 SELECT INBOX")
		ch.ok(`c2 STORE 1 +FLAGS.SILENT (\Deleted)`)
		ch.ok("c3 EXPUNGE")
	}, `* 1 FETCH (UID 1 FLAGS (\Deleted \Recent) MODSEQ (`, "* VANISHED 1", "* 1 RECENT")
	// Another mailbox of the same filter still gets STATUS.
	ch.ok("c4 CREATE Other")
	idleFor(t, w, func() { ch.ok("c5 APPEND Other {5+}\r\nx\r\n\r") },
		`* STATUS "Other" (MESSAGES 1 UIDNEXT 2 UIDVALIDITY `)
}

// TestNotifySelectedDelayed: SELECTED-DELAYED gives the same EXISTS and
// MessageNew FETCH; an expunge waits, as for SELECTED, for a command
// that allows EXPUNGE (RFC 5465 section 6; RFC 9051 section 7.5.1), so
// a FETCH does not get it and the NOOP after it does.
func TestNotifySelectedDelayed(t *testing.T) {
	e := newTestEnv(t, nil)
	e.Deliver(t, alice, "", msg("old", "body"))
	w := e.login(t, "alice")
	ch := e.login(t, "alice")
	w.ok("w1 SELECT INBOX")
	w.ok("w2 NOTIFY SET (selected-delayed (MessageNew (UID FLAGS) MessageExpunge))")
	idleFor(t, w, func() { e.Deliver(t, alice, "", msg("new", "body")) },
		"* 2 EXISTS", "* 2 RECENT", `* 2 FETCH (UID 2 FLAGS (\Recent))`)
	ch.ok("c1 SELECT INBOX")
	ch.ok(`c2 STORE 1 +FLAGS.SILENT (\Deleted)`)
	ch.ok("c3 EXPUNGE")
	w.Script(`
		C: w3 FETCH 2 (UID)
		S: * 2 FETCH (UID 2)
		S: * 1 FETCH (UID 1 FLAGS (\Deleted \Recent))
		S: w3 OK
		C: w4 NOOP
		S: * 1 EXPUNGE
		S: * 1 RECENT
		S: w4 OK`)
}

// TestNotifyOverflowAndNone: past Config.NotifyQueue queued events the
// session gets NOTIFICATIONOVERFLOW and NOTIFY is off (RFC 5465 section
// 5.8), as after NOTIFY NONE (section 3.2).
func TestNotifyOverflowAndNone(t *testing.T) {
	e := newTestEnv(t, func(c *Config, _ *auth.LimiterConfig) { c.NotifyQueue = 2 })
	w := e.login(t, "alice")
	ch := e.login(t, "alice")
	for _, f := range []string{"A", "B", "C"} {
		ch.ok("s" + f + " CREATE " + f)
	}
	w.ok("w1 NOTIFY SET (personal (MessageNew MessageExpunge))")
	ch.ok("c1 APPEND A {5+}\r\nx\r\n\r")
	ch.ok("c2 APPEND A {5+}\r\nx\r\n\r") // the same folder: one entry
	ch.ok("c3 APPEND B {5+}\r\nx\r\n\r")
	w.Script(`
		C: w2 NOOP
		S: * STATUS "A" (MESSAGES 2 UIDNEXT 3
		S: * STATUS "B" (MESSAGES 1 UIDNEXT 2
		S: w2 OK`)
	for _, f := range []string{"A", "B", "C"} {
		ch.ok("c4 APPEND " + f + " {5+}\r\nx\r\n\r")
	}
	w.Script(`
		C: w3 NOOP
		S: * OK [NOTIFICATIONOVERFLOW]
		S: w3 OK`)
	ch.ok("c5 APPEND A {5+}\r\nx\r\n\r")
	if out := w.ok("w4 NOOP"); len(out) != 1 {
		t.Fatalf("NOTIFY still on after the overflow: %q", out)
	}
	w.ok("w5 NOTIFY SET (personal (MessageNew MessageExpunge))")
	w.ok("w6 NOTIFY NONE")
	ch.ok("c6 APPEND A {5+}\r\nx\r\n\r")
	if out := w.ok("w7 NOOP"); len(out) != 1 {
		t.Fatalf("NOTIFY still on after NOTIFY NONE: %q", out)
	}
	e.srv.mu.Lock()
	left := len(e.srv.notifiers[alice.String()])
	e.srv.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d notifiers registered after NONE", left)
	}
}

// TestNotifyRefused: events not offered get NO [BADEVENT (the offered
// ones)] (RFC 5465 section 3.1); malformed commands get BAD; NOTIFY needs
// a login.
func TestNotifyRefused(t *testing.T) {
	e := newTestEnv(t, nil)
	anon := e.dial(t, true)
	if out := anon.cmd("a1 NOTIFY NONE"); !strings.HasPrefix(out[len(out)-1], "a1 BAD") {
		t.Fatalf("NOTIFY before login: %q", out)
	}
	c := e.login(t, "alice")
	mustHave(t, c.ok("a0 CAPABILITY"), " NOTIFY")
	const badEvent = "NO [BADEVENT (MessageNew MessageExpunge FlagChange MailboxName SubscriptionChange)]"
	tests := []struct{ cmd, want string }{
		{"NOTIFY SET (selected (AnnotationChange))", badEvent},
		{"NOTIFY SET (personal (MailboxMetadataChange))", badEvent},
		{"NOTIFY SET (personal (ServerMetadataChange))", badEvent},
		{"NOTIFY SET (personal (MessageNew Unknown))", badEvent},
		{"NOTIFY SET (personal (messagenew messageexpunge))", "OK"},
		{"NOTIFY", "BAD"},
		{"NOTIFY SET", "BAD"},
		{"NOTIFY SET STATUS", "BAD"},
		{"NOTIFY GET", "BAD"},
		{"NOTIFY SET ()", "BAD"},
		{"NOTIFY SET (personal)", "BAD"},
		{"NOTIFY SET (personal ())", "BAD"},
		{"NOTIFY SET (elsewhere (MessageNew))", "BAD"},
		{"NOTIFY SET (mailboxes (MessageNew))", "BAD"},
		{"NOTIFY SET (mailboxes () (MessageNew))", "BAD"},
		{"NOTIFY SET (personal (MessageNew (UID)))", "BAD"}, // fetch-att only for SELECTED
		{"NOTIFY SET (selected (MessageNew (NOSUCH)))", "BAD"},
		{"NOTIFY SET (selected (MessageNew (UID) MessageNew (UID)))", "BAD"},
		{"NOTIFY SET (selected (MessageNew (UID FLAGS) MessageExpunge))", "OK"},
		{"NOTIFY SET STATUS (subtree (A B) (MessageNew)) (inboxes NONE)", "OK"},
		{"NOTIFY NONE extra", "BAD"},
	}
	for i, tc := range tests {
		tag := "t" + string(rune('a'+i))
		out := c.cmd(tag + " " + tc.cmd)
		if got := out[len(out)-1]; !strings.HasPrefix(got, tag+" "+tc.want) {
			t.Errorf("%s: got %q, want %s", tc.cmd, got, tc.want)
		}
	}
}
