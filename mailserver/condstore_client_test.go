package mailserver

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// python3 imaplib as a CONDSTORE/QRESYNC client (RFC 7162): it enables
// QRESYNC, remembers UIDVALIDITY and HIGHESTMODSEQ, another session
// changes and expunges, and a SELECT with QRESYNC brings it up to date;
// a conditional STORE from an old MODSEQ is refused with MODIFIED.
const condStoreScript = `
import imaplib, ssl, sys, re
host, sport = sys.argv[1], int(sys.argv[2])
ctx = ssl._create_unverified_context()

def login():
    m = imaplib.IMAP4_SSL(host, sport, ssl_context=ctx)
    m.login("alice@example.test", "alice password")
    m._get_capabilities() # imaplib keeps the ones from before LOGIN, without ENABLE
    return m

a = login()
a.enable("QRESYNC")
print("enable", a.response("ENABLED")[1])
a.select("INBOX")
validity = a.response("UIDVALIDITY")[1][0].decode()
highest = a.response("HIGHESTMODSEQ")[1][0].decode()
print("highest", highest)
typ, data = a.fetch("1:3", "(UID MODSEQ)")
print("fetch", [d.decode() for d in data])

b = login()
b.select("INBOX")
b.store("2", "+FLAGS", "(\\Seen)")
b.store("3", "+FLAGS", "(\\Deleted)")
b.expunge()
b.logout()

typ, data = a._simple_command("SELECT", "INBOX (QRESYNC (%s %s))" % (validity, highest))
print("qresync", typ, a.response("VANISHED")[1], [d.decode() for d in a.response("FETCH")[1] if d])
typ, data = a._simple_command("STORE", "1", "(UNCHANGEDSINCE %s)" % highest, "+FLAGS", "(\\Flagged)")
print("store1", typ, a.response("FETCH")[1])
typ, data = a._simple_command("STORE", "1", "(UNCHANGEDSINCE %s)" % highest, "+FLAGS", "(\\Answered)")
print("store2", typ, a.response("MODIFIED")[1])
typ, data = a.uid("FETCH", "1:*", "(FLAGS) (CHANGEDSINCE %s VANISHED)" % highest)
print("uidfetch", a.response("VANISHED")[1], [d.decode() for d in data if d])
a.logout()
`

func TestPythonImaplibCondStore(t *testing.T) {
	python := needTool(t, "python3")
	srv, _ := startServer(t, nil)
	for _, s := range []string{"one", "two", "three"} {
		deliverTo(t, srv, "", s, s)
	}
	host, sport := hostPort(srv.Addrs()["imaps"])
	script := filepath.Join(t.TempDir(), "condstore.py")
	os.WriteFile(script, []byte(condStoreScript), 0o600)
	out, err := run(t, "", python, script, host, sport)
	if err != nil {
		t.Fatalf("python: %v\n%s", err, out)
	}
	for _, want := range []string{
		"enable [b'QRESYNC']",
		"highest 2",
		"fetch ['1 (UID 1 MODSEQ (2))', '2 (UID 2 MODSEQ (2))', '3 (UID 3 MODSEQ (2))']",
		// The expunge of 3 (MODSEQ 5) and the \Seen of 2 (MODSEQ 3).
		`qresync OK [b'(EARLIER) 3'] ['2 (UID 2 FLAGS (\\Seen) MODSEQ (3))']`,
		`store1 OK [b'1 (FLAGS (\\Flagged) MODSEQ (6))']`,
		"store2 OK [b'1']",
		`uidfetch [b'(EARLIER) 3'] ['1 (UID 1 FLAGS (\\Flagged) MODSEQ (6))', '2 (UID 2 FLAGS (\\Seen) MODSEQ (3))']`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in output:\n%s", want, out)
		}
	}
}
