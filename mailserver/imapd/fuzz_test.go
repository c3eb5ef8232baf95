package imapd

import (
	"strings"
	"testing"
)

// FuzzCommand feeds an arbitrary command line (hostile literals included)
// to a live, logged-in session with INBOX selected: the session answers or
// ends, no command panics (imapserver would recover and drop the
// connection), the server never crashes, buffers stay bounded by imapserver's
// limits, and a new session still works.
func FuzzCommand(f *testing.F) {
	for _, s := range []string{
		"a FETCH 1:* (BODY[1.2.3.MIME] BODY.PEEK[HEADER.FIELDS.NOT (X)]<0.10> BODYSTRUCTURE ENVELOPE)",
		"a UID FETCH 4294967295:* (FLAGS)",
		"a STORE 1 FLAGS (\\Seen \\Deleted $Forwarded kw)",
		"a STORE 1 +FLAGS (kw1 $Junk caf\xc3\xa9 \\Custom \\Recent)",
		"a UID STORE 1:* FLAGS.SILENT (k0 k1 k2 k3 k4 k5 k6 k7 k8 k9 k10 k11 k12 k13 k14 k15 k16 k17 k18 k19 k20 k21 k22 k23 k24 k25 k26)",
		"a STORE 1 -FLAGS (nosuch $JUNK)",
		"a SEARCH KEYWORD x UNKEYWORD $Junk OR KEYWORD a NOT KEYWORD b",
		"a APPEND INBOX (kw \\Seen $Junk) {1+}",
		"a SEARCH OR (UNSEEN LARGER 5) NOT (FROM x BODY {3}",
		"a APPEND INBOX {4294967296}",
		"a APPEND INBOX (\\Seen) \" 1-Jan-2000 00:00:00 +0000\" {5+}",
		"a SELECT {999999999}",
		"a LIST \"\" \"*%\"",
		"a MOVE 1:* Trash",
		"a COPY * \"&AMk-\"",
		"a RENAME INBOX x",
		"a STATUS INBOX (MESSAGES SIZE RECENT DELETED)",
		"a STATUS INBOX (DELETED-STORAGE APPENDLIMIT UIDNEXT)",
		"a EXPUNGE",
		"a IDLE",
		"a UID EXPUNGE 1:*",
		"a SORT (REVERSE SUBJECT DISPLAYFROM) UTF-8 OR SEEN 1:*",
		"a UID SORT RETURN (MIN MAX ALL COUNT PARTIAL 1:3 UPDATE) (ARRIVAL) US-ASCII ALL",
		"a THREAD REFERENCES UTF-8 ALL",
		"a UID THREAD ORDEREDSUBJECT UTF-8 NOT $",
		"a SEARCH RETURN (SAVE MIN) ALL",
		"a SEARCH RETURN (UPDATE PARTIAL 2:1) OLDER 1 YOUNGER 4294967295",
		"a CANCELUPDATE \"a\" \"b\"",
		"a APPEND INBOX CATENATE (URL \"/INBOX/;UID=1/;SECTION=1.MIME/;PARTIAL=0.9\" TEXT {3+}",
		"a APPEND INBOX CATENATE (URL \"/INBOX;UIDVALIDITY=1/;UID=1\" URL \"/%ZZ/;UID=1\")",
		"a APPEND INBOX {1+}\r\nx (\\Seen) {1+}\r\ny ~{1+}",
		"a FETCH $ (BINARY.PEEK[1]<0.5> BINARY.SIZE[2])",
		"a FETCH 1:* (FLAGS MODSEQ) (CHANGEDSINCE 1)",
		"a UID FETCH 1:* (FLAGS) (CHANGEDSINCE 9223372036854775807 VANISHED)",
		"a UID FETCH 1:* (FLAGS) (VANISHED CHANGEDSINCE 18446744073709551616)",
		"a STORE 1:* (UNCHANGEDSINCE 0 UNCHANGEDSINCE 2) +FLAGS.SILENT (\\Seen)",
		"a UID STORE $ (UNCHANGEDSINCE 9223372036854775808) FLAGS ()",
		"a SEARCH RETURN (MIN MAX COUNT) OR MODSEQ \"/flags/\\\\Seen\" priv 2 NOT MODSEQ 1",
		"a SELECT INBOX (CONDSTORE QRESYNC (1 1 1:*,5:2 (1:3,7 4,2:1)))",
		"a EXAMINE INBOX (QRESYNC (4294967295 9223372036854775807 *))",
		"a SELECT INBOX (QRESYNC (1 2 (1:4294967295 1:4294967295)))",
		"a STATUS INBOX (HIGHESTMODSEQ MESSAGES)",
		"a ENABLE CONDSTORE QRESYNC X",
		"a NOTIFY SET STATUS (selected (MessageNew (UID BODY.PEEK[HEADER.FIELDS (From)]<0.9>) MessageExpunge FlagChange)) (subtree (INBOX \"a b\") (MailboxName))",
		"a NOTIFY SET (mailboxes {4+}",
		"a NOTIFY SET (personal (MessageNew (UID) MessageNew))",
		"a NOTIFY SET (subscribed NONE) (inboxes (AnnotationChange ServerMetadataChange x))",
		"a NOTIFY SET (selected-delayed (MessageNew ((UID))))",
		"a NOTIFY NONE",
		"\x00\xff{1}",
		"a LOGOUT",
	} {
		f.Add(s)
	}
	e := newTestEnv(f, nil)
	e.Deliver(f, alice, "", msg("fuzz one", "x"))
	e.Deliver(f, alice, "", "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\nhi\r\n--b--\r\n")
	f.Fuzz(func(t *testing.T, line string) {
		c := e.login(t, "alice")
		// Odd-length lines run with QRESYNC enabled (VANISHED instead
		// of EXPUNGE, SELECT's QRESYNC parameter allowed): both kinds
		// of session are fuzzed.
		if len(line)%2 == 1 {
			c.ok("q ENABLE QRESYNC")
		}
		c.ok("s SELECT INBOX")
		line = strings.NewReplacer("\r", "", "\n", "").Replace(line)
		// The session may end at any point: write errors are expected.
		send := func(s string) { c.TrySend(s) }
		send(line)
		// Whatever happened, finish with a command and read until its
		// answer or the end of the session (an IDLE is ended by DONE).
		send("DONE")
		send("z NOOP")
		// End our side (TLS close_notify) so that a command left open, e.g.
		// an unterminated quoted string, ends at EOF instead of waiting
		// for imapserver's read timeout.
		c.CloseWrite()
		for {
			l, err := c.TryNext()
			if err != nil || strings.HasPrefix(l, "z ") {
				break
			}
		}
		c.Close()
		e.login(t, "alice").ok("y NOOP")
		// imapserver recovers a handler's panic and drops the connection,
		// which looks like a session that ended: its log says otherwise.
		if logs := e.Logs(); strings.Contains(logs, "panic handling command") {
			t.Fatalf("%q made a command panic:\n%s", line, logs[strings.Index(logs, "panic handling command"):])
		}
	})
}
