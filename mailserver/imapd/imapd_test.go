package imapd

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/mailvault/mailvault/mailserver/audit"
	"github.com/mailvault/mailvault/mailserver/auth"
	"github.com/mailvault/mailvault/mailserver/internal/servertest"
	"github.com/mailvault/mailvault/mailserver/store"
)

func TestLoginRefusedBeforeSTARTTLS(t *testing.T) {
	e := newTestEnv(t, nil)
	c := e.dial(t, false)
	caps := c.ok("a0 CAPABILITY")
	mustHave(t, caps, "STARTTLS", "LOGINDISABLED")
	if has(caps, "AUTH=") {
		t.Fatalf("AUTH offered in cleartext: %q", caps)
	}
	c.Script(`
		C: a1 LOGIN alice@example.test "alice password"
		S: a1 NO [PRIVACYREQUIRED]
		C: a2 AUTHENTICATE PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABhbGljZSBwYXNzd29yZA==
		S: a2 NO [PRIVACYREQUIRED]`)
	c.startTLS()
	caps = c.ok("a3 CAPABILITY")
	mustHave(t, caps, "AUTH=PLAIN")
	if has(caps, "LOGINDISABLED") || has(caps, "STARTTLS") {
		t.Fatalf("after STARTTLS: %q", caps)
	}
	out := c.ok(`a4 LOGIN alice@example.test "alice password"`)
	for _, want := range []string{"IDLE", "MOVE", "UIDPLUS", "SPECIAL-USE", "NAMESPACE", "LIST-STATUS", "APPENDLIMIT=1048576"} {
		mustHave(t, out, want)
	}
	if slept := e.Slept(); len(slept) != 0 {
		t.Fatalf("refused cleartext logins counted as failures: %v", slept)
	}
}

func TestSTARTTLSDoesNotRunInjectedCommands(t *testing.T) {
	e := newTestEnv(t, nil)
	c := e.dial(t, false)
	// A man in the middle appends a command after STARTTLS in the same
	// packet (CVE-2011-0411); it must not run inside TLS. imapserver feeds
	// such bytes to the TLS handshake, which then fails.
	c.Send("s1 STARTTLS\r\nx1 LOGIN alice@example.test \"alice password\"")
	c.Script(`S: s1 OK`)
	if err := c.TryStartTLS(); err != nil {
		return // the injected bytes broke the handshake: nothing ran
	}
	c.Script(`
		C: a1 SELECT INBOX
		S: a1 BAD`)
}

func TestLoginFailuresLockoutAndAudit(t *testing.T) {
	e := newTestEnv(t, func(_ *Config, l *auth.LimiterConfig) { l.AccountFailures = 3 })
	c := e.dial(t, true)
	// Unknown user and wrong password: the same answer.
	unknown := c.cmd(`a1 LOGIN nobody@example.test "x"`)
	wrong := c.cmd(`a2 LOGIN alice@example.test "wrong"`)
	if strings.TrimPrefix(unknown[0], "a1") != strings.TrimPrefix(wrong[0], "a2") || !strings.HasPrefix(wrong[0], "a2 NO [AUTHENTICATIONFAILED]") {
		t.Fatalf("unknown %q, wrong %q", unknown, wrong)
	}
	c.Script(`
		C: a3 LOGIN alice@example.test "wrong again"
		S: a3 NO [AUTHENTICATIONFAILED]
		C: a4 LOGIN alice@example.test "wrong thrice"
		S: a4 NO [AUTHENTICATIONFAILED]
		C: a5 LOGIN alice@example.test "alice password"
		S: a5 NO [UNAVAILABLE]`)
	// Bob is not locked; an app password works.
	secret, err := e.DB.AddAppPassword(t.Context(), "bob@example.test", "phone")
	if err != nil {
		t.Fatal(err)
	}
	c2 := e.dial(t, true)
	c2.ok(`b1 LOGIN bob@example.test "` + secret + `"`)
	rep, err := audit.Verify(e.Audit.Path())
	if err != nil {
		t.Fatal(err)
	}
	if rep.Lines < 6 {
		t.Fatalf("audit lines %d", rep.Lines)
	}
	b, _ := os.ReadFile(e.Audit.Path())
	for _, want := range []string{`"protocol":"imap"`, `"detail":"locked out"`, `"user":"nobody@example.test"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("audit log lacks %s", want)
		}
	}
}

func TestBadCommandsAndBoundedInput(t *testing.T) {
	e := newTestEnv(t, nil)
	// An unknown command before login ends the connection (cross-protocol
	// attacks, as imapserver does).
	c := e.dial(t, false)
	c.Script(`
		C: GET / HTTP/1.1
		S: GET BAD
		S: * BYE`)
	c = e.login(t, "alice")
	c.Script(`
		C: a1 FROBNICATE
		S: a1 BAD
		C: a2 SELECT
		S: a2 BAD
		C: a3 FETCH 1 (FLAGS)
		S: a3 BAD
		C: a4 SELECT "no/such"
		S: a4 NO [NONEXISTENT]
		C: a5 CREATE "dots.are.separators.on.disk"
		S: a5 NO [CANNOT]`)
	// APPEND above the message size limit: refused before the data.
	c.Script(`
		C: a7 APPEND INBOX {2000000}
		S: a7 NO [TOOBIG]
		C: a8 NOOP
		S: a8 OK`)
	// A command line above imapserver's 50 KiB bound closes the
	// connection rather than growing a buffer.
	c.Send("a9 NOOP " + strings.Repeat("x", 100<<10))
	if l, err := c.TryNext(); err == nil && !strings.Contains(l, "BAD") && !strings.Contains(l, "BYE") {
		t.Fatalf("over-long line answered %q", l)
	}
	// The server still serves.
	e.login(t, "alice").ok("b1 NOOP")
}

func TestSelectFetchStoreSearchCopyMoveExpunge(t *testing.T) {
	e := newTestEnv(t, nil)
	e.Deliver(t, alice, "", msg("first", "hello world"))
	e.Deliver(t, alice, "", msg("second", "another body"))
	e.Deliver(t, alice, "", msg("third", "needle in here"))
	c := e.login(t, "alice")
	sel := c.ok("a1 SELECT INBOX")
	mustHave(t, sel, "* 3 EXISTS")
	mustHave(t, sel, "[UIDVALIDITY ")
	mustHave(t, sel, "[UIDNEXT 4]")
	mustHave(t, sel, "* FLAGS (\\Answered \\Deleted \\Draft \\Flagged \\Seen $Forwarded)")
	mustHave(t, sel, "[PERMANENTFLAGS (\\Answered \\Deleted \\Draft \\Flagged \\Seen $Forwarded \\*)]")
	mustHave(t, sel, "a1 OK [READ-WRITE]")

	out := c.ok("a2 FETCH 1:* (UID FLAGS RFC822.SIZE INTERNALDATE ENVELOPE)")
	// The messages are \Recent in this session, the first to select the
	// mailbox since they came (RFC 3501 section 2.3.2).
	mustHave(t, out, "* 1 FETCH (UID 1 FLAGS (\\Recent) INTERNALDATE ", "RFC822.SIZE ", `"first"`, `"Carol" NIL "carol" "remote.test"`)
	out = c.ok("a3 FETCH 2 BODYSTRUCTURE")
	mustHave(t, out, `BODYSTRUCTURE ("text" "plain"`)
	// BODY.PEEK does not set \Seen; BODY[] does and reports it.
	out = c.ok("a4 FETCH 1 BODY.PEEK[HEADER.FIELDS (SUBJECT)]")
	mustHave(t, out, "Subject: first")
	if has(out, "\\Seen") {
		t.Fatalf("PEEK set \\Seen: %q", out)
	}
	out = c.ok("a5 UID FETCH 1 BODY[]")
	mustHave(t, out, "hello world")
	mustHave(t, out, "\\Seen")
	out = c.ok("a6 FETCH 3 BODY[TEXT]<0.6>")
	mustHave(t, out, "BODY[TEXT]<0> {6}", "needle")

	// STORE; the flags live in the file names, a new keyword in the
	// folder's FLAGS.
	out = c.ok("a7 STORE 2 +FLAGS (\\Flagged $Forwarded $Custom)")
	mustHave(t, out, "* FLAGS (\\Answered \\Deleted \\Draft \\Flagged \\Seen $Forwarded $Custom)")
	mustHave(t, out, "* 2 FETCH (FLAGS (\\Flagged $Forwarded $Custom \\Recent))")
	c.ok("a8 UID STORE 3 +FLAGS.SILENT (\\Answered)")
	l, err := e.Store.List(t.Context(), alice, store.Inbox)
	if err != nil {
		t.Fatal(err)
	}
	if got := []string{l.Messages[0].Flags, l.Messages[1].Flags, l.Messages[2].Flags}; got[0] != "S" || got[1] != "FPa" || got[2] != "RS" {
		t.Fatalf("Maildir flags %q", got)
	}
	if !strings.HasSuffix(l.Messages[1].Path, ":2,FPa") {
		t.Fatalf("file name %s", l.Messages[1].Path)
	}

	// SEARCH.
	for q, want := range map[string]string{
		"s1 SEARCH UNSEEN":                          "* SEARCH 2",
		"s2 SEARCH SEEN":                            "* SEARCH 1 3",
		"s3 SEARCH FLAGGED":                         "* SEARCH 2",
		"s4 SEARCH BODY needle":                     "* SEARCH 3",
		"s5 SEARCH SUBJECT second":                  "* SEARCH 2",
		"s6 UID SEARCH FROM carol NOT ANSWERED":     "* SEARCH 1 2",
		"s7 SEARCH OR ANSWERED FLAGGED":             "* SEARCH 2 3",
		"s8 SEARCH TEXT HELLO":                      "* SEARCH 1",
		"s9 SEARCH 2:*":                             "* SEARCH 2 3",
		"s10 SEARCH SENTBEFORE 1-Jan-2007 LARGER 1": "* SEARCH 1 2 3",
		"s11 SEARCH KEYWORD $Forwarded":             "* SEARCH 2",
		"s12 SEARCH SINCE 1-Jan-2000":               "* SEARCH 1 2 3",
	} {
		out := c.ok(q)
		if out[0] != want {
			t.Errorf("%s: %q, want %q", q, out[0], want)
		}
	}

	// COPY with COPYUID; MOVE reports COPYUID, then EXPUNGE.
	out = c.ok("c1 COPY 1 Archive")
	mustHave(t, out, "c1 OK [COPYUID ", " 1 1]")
	out = c.ok("c2 UID MOVE 2 Trash")
	mustHave(t, out, "* OK [COPYUID ", " 2 1]")
	mustHave(t, out, "* 2 EXPUNGE")
	c.Script(`
		C: c3 COPY 1 Nowhere
		S: c3 NO [TRYCREATE]`)
	if l, _ := e.Store.List(t.Context(), alice, "Trash"); len(l.Messages) != 1 || l.Messages[0].Flags != "FPa" || l.Keywords.Name('a') != "$Custom" {
		t.Fatalf("Trash %+v", l)
	}

	// EXPUNGE of \Deleted messages.
	c.ok(`d1 STORE 1 +FLAGS.SILENT (\Deleted)`)
	out = c.ok("d2 EXPUNGE")
	mustHave(t, out, "* 1 EXPUNGE")
	out = c.ok("d3 FETCH 1:* (UID)")
	mustHave(t, out, "* 1 FETCH (UID 3)")
	if l, _ := e.Store.List(t.Context(), alice, store.Inbox); len(l.Messages) != 1 {
		t.Fatalf("INBOX after expunge: %+v", l)
	}

	// EXAMINE is read-only.
	out = c.ok("e1 EXAMINE INBOX")
	mustHave(t, out, "e1 OK [READ-ONLY]")
	c.Script(`
		C: e2 STORE 1 +FLAGS (\Flagged)
		S: e2 NO [READ-ONLY]`)
	c.ok("e3 FETCH 1 BODY[]")
	if l, _ := e.Store.List(t.Context(), alice, store.Inbox); l.Messages[0].Flags != "RS" {
		t.Fatalf("EXAMINE changed flags: %q", l.Messages[0].Flags)
	}
}

func TestAppendIsDurableWithUIDPlus(t *testing.T) {
	e := newTestEnv(t, nil)
	c := e.login(t, "alice")
	m := msg("appended", "body")
	c.Send(`a1 APPEND Sent (\Seen \Draft) "05-Feb-2021 10:11:12 +0000" {` + strconv.Itoa(len(m)) + `}`)
	c.Script(`S: +`)
	c.Send(m)
	if out := c.Next(); !strings.HasPrefix(out, "a1 OK [APPENDUID ") || !strings.Contains(out, " 1]") {
		t.Fatalf("APPEND: %q", out)
	}
	// Acknowledged means in cur/ with its flags; INTERNALDATE is kept.
	l, err := e.Store.List(t.Context(), alice, "Sent")
	if err != nil || len(l.Messages) != 1 {
		t.Fatalf("%+v %v", l, err)
	}
	if !strings.Contains(l.Messages[0].Path, "/cur/") || !strings.HasSuffix(l.Messages[0].Path, ":2,DS") {
		t.Fatalf("stored as %s", l.Messages[0].Path)
	}
	c.ok("a2 SELECT Sent")
	out := c.ok("a3 FETCH 1 (INTERNALDATE FLAGS)")
	mustHave(t, out, `INTERNALDATE " 5-Feb-2021 10:11:12 +0000"`, "\\Draft \\Seen")
	// LITERAL- (RFC 7888) non-synchronizing literal.
	m2 := msg("nonsync", "x")
	c.Send("a4 APPEND INBOX {" + strconv.Itoa(len(m2)) + "+}\r\n" + m2)
	mustHave(t, []string{c.Next()}, "a4 OK [APPENDUID")
	c.Script(`
		C: a5 APPEND Nowhere {1}
		S: +
		C: x
		S: a5 NO [TRYCREATE]`)
	if spool, _ := filepath.Glob(filepath.Join(e.srv.cfg.SpoolDir, spoolPrefix+"*")); len(spool) != 0 {
		t.Fatalf("spool files left: %v", spool)
	}
}

func TestListSpecialUseSubscribeStatusNamespace(t *testing.T) {
	e := newTestEnv(t, nil)
	c := e.login(t, "alice")
	out := c.ok(`l1 LIST "" ""`)
	mustHave(t, out, `* LIST (\Noselect) "/" ""`)
	out = c.ok(`l2 LIST "" "*"`)
	for _, want := range []string{`"/" INBOX`, `(\HasNoChildren \Sent) "/" "Sent"`, `\Trash) "/" "Trash"`, `\Junk) "/" "Junk"`, `\Drafts) "/" "Drafts"`, `\Archive) "/" "Archive"`} {
		mustHave(t, out, want)
	}
	c.ok(`l3 CREATE "Projects/2024/"`)
	out = c.ok(`l4 LIST "" "%"`)
	mustHave(t, out, `(\NonExistent \HasChildren) "/" "Projects"`)
	out = c.ok(`l5 LIST "Projects/" "*"`)
	mustHave(t, out, `"/" "Projects/2024"`)
	out = c.ok(`l6 LIST (SPECIAL-USE) "" "*"`)
	if has(out, "INBOX") || !has(out, `\Sent`) {
		t.Fatalf("LIST (SPECIAL-USE): %q", out)
	}
	c.ok(`l7 SUBSCRIBE Projects/2024`)
	out = c.ok(`l8 LSUB "" "*"`)
	mustHave(t, out, `* LSUB`, "Projects/2024")
	mustHave(t, out, `* LSUB`, "Sent")
	c.ok(`l9a CREATE Projects`)
	c.ok(`l9 RENAME Projects Work`)
	out = c.ok(`l10 LIST "" "*" RETURN (SUBSCRIBED STATUS (MESSAGES UIDNEXT UNSEEN SIZE))`)
	mustHave(t, out, `\Subscribed`, "Work/2024")
	mustHave(t, out, `* STATUS "Work/2024" (MESSAGES 0 UIDNEXT 1 UNSEEN 0 SIZE 0)`)
	if has(out, "Projects") {
		t.Fatalf("after RENAME: %q", out)
	}
	e.Deliver(t, alice, "", msg("s", "x"))
	out = c.ok(`l11 STATUS INBOX (MESSAGES UNSEEN UIDVALIDITY RECENT)`)
	mustHave(t, out, "* STATUS INBOX (MESSAGES 1 ", "UNSEEN 1", "RECENT 1")
	out = c.ok(`l12 NAMESPACE`)
	mustHave(t, out, `* NAMESPACE (("" "/")) NIL NIL`)
	c.ok(`l13 DELETE Work/2024`)
	c.Script(`
		C: l14 DELETE INBOX
		S: l14 NO
		C: l15 DELETE Work/2024
		S: l15 NO [NONEXISTENT]
		C: l16 CREATE Sent
		S: l16 NO [ALREADYEXISTS]`)
	subs, _ := os.ReadFile(filepath.Join(e.Store.MaildirPath(alice), "subscriptions"))
	if !strings.Contains(string(subs), "Work/2024\n") || !strings.Contains(string(subs), "Sent\n") {
		t.Fatalf("subscriptions file %q", subs)
	}
}

// Two sessions on one folder see each other's changes, and IDLE pushes a
// delivery made through the store (as SMTP does) at once.
func TestTwoSessionsAndIdle(t *testing.T) {
	e := newTestEnv(t, nil)
	e.Deliver(t, alice, "", msg("one", "1"))
	e.Deliver(t, alice, "", msg("two", "2"))
	a := e.login(t, "alice")
	b := e.login(t, "alice")
	a.ok("a1 SELECT INBOX")
	b.ok("b1 SELECT INBOX")

	b.ok(`b2 STORE 1 +FLAGS (\Flagged)`)
	out := a.ok("a2 NOOP")
	// \Recent in a, which selected INBOX first (RFC 3501 section 2.3.2).
	mustHave(t, out, "* 1 FETCH (UID 1 FLAGS (\\Flagged \\Recent))")

	b.ok(`b3 STORE 1 +FLAGS.SILENT (\Deleted)`)
	out = b.ok("b4 EXPUNGE")
	mustHave(t, out, "* 1 EXPUNGE")
	// A FETCH on a's side must not carry EXPUNGE (RFC 9051 section 7.5.1);
	// its NOOP does.
	out = a.ok("a3 FETCH 2 (UID)")
	if has(out, "EXPUNGE") {
		t.Fatalf("EXPUNGE during FETCH: %q", out)
	}
	mustHave(t, out, "* 2 FETCH (UID 2)")
	out = a.ok("a4 NOOP")
	mustHave(t, out, "* 1 EXPUNGE")

	// IDLE: a delivery through the store wakes the session.
	a.Script(`
		C: a5 IDLE
		S: + idling`)
	e.Deliver(t, alice, "", msg("three", "3"))
	// The new message is \Recent in a, the first to select INBOX (RFC
	// 3501 section 7.3.2: RECENT comes when the mailbox's size changes).
	a.Script(`
		S: * 2 EXISTS
		S: * 2 RECENT`)
	// b's MOVE out of INBOX shows as EXPUNGE in a's IDLE.
	out = b.ok("b5 UID MOVE 2 Archive")
	mustHave(t, out, "* 1 EXPUNGE")
	mustHave(t, out, "* 2 EXISTS") // b's view caught up with the delivery
	a.Script(`
		S: * 1 EXPUNGE
		S: * 1 RECENT`)
	a.Send("DONE")
	a.Script(`S: a5 OK`)
	out = a.ok("a6 FETCH 1 (UID FLAGS)")
	mustHave(t, out, "* 1 FETCH (UID 3 FLAGS (\\Recent))")
}

func TestConnectionLimitPerIP(t *testing.T) {
	e := newTestEnv(t, func(c *Config, _ *auth.LimiterConfig) { c.MaxConnsPerIP = 2 })
	e.dial(t, false)
	e.dial(t, true)
	c := servertest.Dial(t, e.Plain, false, servertest.IMAPLine)
	c.Script(`S: * BYE Too many concurrent connections`)
}

func TestShutdownSaysBye(t *testing.T) {
	e := newTestEnv(t, nil)
	c := e.login(t, "alice")
	c.ok("a1 SELECT INBOX")
	c.Script(`
		C: a2 IDLE
		S: + idling`)
	done := make(chan error, 1)
	go func() { done <- e.srv.Shutdown(context.Background()) }()
	c.Script(`S: * BYE Server shutting down`)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := net.Dial("tcp", e.Plain); err == nil {
		t.Fatal("still accepting after Shutdown")
	}
}
