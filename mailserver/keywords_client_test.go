package mailserver

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// python3 imaplib sets keywords ($Forwarded, $Junk and a custom one) and
// reads them back after logging in again; they are in Dovecot's layout on
// disk.
const keywordsScript = `
import imaplib, ssl, sys
host, sport = sys.argv[1], int(sys.argv[2])
ctx = ssl._create_unverified_context()

m = imaplib.IMAP4_SSL(host, sport, ssl_context=ctx)
m.login("alice@example.test", "alice password")
m.select("INBOX")
print("permanentflags", [r.decode() for r in m.response("OK")[1] if b"PERMANENTFLAGS" in r][0])
typ, data = m.store("1", "+FLAGS", "($Forwarded $Junk Project-Alpha)")
print("store", typ, data[0].decode())
typ, data = m.store("2", "+FLAGS", "(Project-Alpha)")
m.logout()

m = imaplib.IMAP4_SSL(host, sport, ssl_context=ctx)
m.login("alice@example.test", "alice password")
typ, data = m.select("INBOX")
print("flags", m.response("FLAGS")[1][0].decode())
typ, data = m.fetch("1:2", "(FLAGS)")
print("fetch", [d.decode() for d in data])
typ, data = m.search(None, "KEYWORD", "project-alpha")
print("search-keyword", data[0].decode())
typ, data = m.search(None, "UNKEYWORD", "$Junk")
print("search-unkeyword", data[0].decode())
m.logout()
`

func TestPythonImaplibKeywords(t *testing.T) {
	python := needTool(t, "python3")
	srv, _ := startServer(t, nil)
	deliverTo(t, srv, "", "one", "1")
	deliverTo(t, srv, "", "two", "2")
	host, sport := hostPort(srv.Addrs()["imaps"])
	script := filepath.Join(t.TempDir(), "keywords.py")
	os.WriteFile(script, []byte(keywordsScript), 0o600)
	out, err := run(t, "", python, script, host, sport)
	if err != nil {
		t.Fatalf("python: %v\n%s", err, out)
	}
	for _, want := range []string{
		`permanentflags [PERMANENTFLAGS (\Answered \Deleted \Draft \Flagged \Seen $Forwarded \*)]`,
		// \Recent in the first session to select INBOX (RFC 3501 2.3.2).
		`store OK 1 (FLAGS ($Forwarded $Junk Project-Alpha \Recent))`,
		`flags (\Answered \Deleted \Draft \Flagged \Seen $Forwarded $Junk Project-Alpha)`,
		`fetch ['1 (FLAGS ($Forwarded $Junk Project-Alpha))', '2 (FLAGS (Project-Alpha))']`,
		"search-keyword 1 2",
		"search-unkeyword 2",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in output:\n%s", want, out)
		}
	}
	dir := srv.Store().MaildirPath(aliceAcct)
	if kw, _ := os.ReadFile(filepath.Join(dir, "dovecot-keywords")); string(kw) != "0 $Junk\n1 Project-Alpha\n" {
		t.Errorf("dovecot-keywords %q", kw)
	}
	l, err := srv.Store().List(t.Context(), aliceAcct, "INBOX")
	if err != nil || len(l.Messages) != 2 || l.Messages[0].Flags != "Pab" || l.Messages[1].Flags != "b" {
		t.Errorf("Maildir flags: %+v %v", l, err)
	}
}
