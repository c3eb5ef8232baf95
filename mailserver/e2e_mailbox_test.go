package mailserver

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/mailvault/mailvault/mailserver/store"
)

// Real clients against the IMAP and POP3 listeners of a running server:
// python3 imaplib and poplib, curl and mbsync (isync).

var aliceAcct = store.Account{Domain: ExampleDomain, User: "alice"}

func deliverTo(t *testing.T, srv *Server, folder, subject, body string) {
	t.Helper()
	msg := fmt.Sprintf("From: carol@remote.test\r\nTo: alice@example.test\r\nSubject: %s\r\nMessage-ID: <%s@remote.test>\r\n\r\n%s\r\n", subject, strings.ReplaceAll(subject, " ", "-"), body)
	if _, err := srv.Store().Deliver(t.Context(), aliceAcct, folder, strings.NewReader(msg)); err != nil {
		t.Fatal(err)
	}
}

func certFile(cfg Config) string { c, _ := cfg.certFiles(); return c }

const imaplibScript = `
import imaplib, ssl, sys
host, port, sport = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ctx = ssl._create_unverified_context()

# LOGIN before STARTTLS is refused; the server says LOGINDISABLED.
m = imaplib.IMAP4(host, port)
print("cleartext-caps", "LOGINDISABLED" in m.capabilities, "STARTTLS" in m.capabilities)
try:
    m.login("alice@example.test", "alice password")
    print("cleartext-login ok")
except imaplib.IMAP4.error:
    print("cleartext-login refused")
m.starttls(ssl_context=ctx)
typ, _ = m.login("alice@example.test", "alice password")
print("starttls-login", typ)
typ, data = m.select("INBOX")
print("select", typ, data[0].decode())
typ, data = m.search(None, "UNSEEN")
print("unseen", data[0].decode())
typ, data = m.search(None, "SUBJECT", "second")
print("search-subject", data[0].decode())
typ, data = m.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
print("peek", data[0][1].decode().strip())
typ, data = m.fetch("2", "(RFC822)")
print("fetch-body", b"second body" in data[0][1])
typ, data = m.store("1", "+FLAGS", "(\\Flagged)")
print("store", data[0].decode())
typ, data = m.append("INBOX", "(\\Seen)", None, b"Subject: appended\r\n\r\nvia imaplib\r\n")
print("append", typ, data[0].decode())
typ, data = m.copy("1", "Archive")
print("copy", typ, data[0].decode())
typ, data = m.uid("MOVE", "2", "Trash")
print("move", typ)
typ, data = m.store("1", "+FLAGS", "(\\Deleted)")
typ, data = m.expunge()
print("expunge", data)
typ, data = m.fetch("1:*", "(UID FLAGS)")
print("left", [d.decode() for d in data])
m.logout()

# Implicit TLS; IDLE (imaplib has no idle before 3.14: raw commands).
a = imaplib.IMAP4_SSL(host, sport, ssl_context=ctx)
a.login("alice@example.test", "alice password")
a.select("INBOX")
tag = a._new_tag().decode()
a.send(("%s IDLE\r\n" % tag).encode())
print("idle-cont", a.readline().decode().strip())
b = imaplib.IMAP4_SSL(host, sport, ssl_context=ctx)
b.login("alice@example.test", "alice password")
b.append("INBOX", None, None, b"Subject: during idle\r\n\r\nx\r\n")
b.logout()
print("idle-push", a.readline().decode().strip())
a.send(b"DONE\r\n")
while True:
    line = a.readline().decode().strip()
    if line.startswith(tag):
        print("idle-done", line.split(" ")[1])
        break
a.logout()

# Lockout: wrong passwords, then even the right one is refused.
res = []
for pw in ["bad1", "bad2", "bad3", "alice password"]:
    c = imaplib.IMAP4_SSL(host, sport, ssl_context=ctx)
    try:
        c.login("alice@example.test", pw)
        res.append("ok")
    except imaplib.IMAP4.error as e:
        res.append(str(e).split("]")[0].lstrip("b'["))
    c.logout()
print("lockout", res)
`

func TestPythonImaplib(t *testing.T) {
	python := needTool(t, "python3")
	srv, _ := startServer(t, func(c *Config) { c.Auth.AccountFailures = 3 })
	deliverTo(t, srv, "", "first", "first body")
	deliverTo(t, srv, "", "second", "second body")
	a := srv.Addrs()
	host, port := hostPort(a["imap"])
	_, sport := hostPort(a["imaps"])
	script := filepath.Join(t.TempDir(), "imap_client.py")
	os.WriteFile(script, []byte(imaplibScript), 0o600)
	out, err := run(t, "", python, script, host, port, sport)
	if err != nil {
		t.Fatalf("python: %v\n%s", err, out)
	}
	for _, want := range []string{
		"cleartext-caps True True", "cleartext-login refused", "starttls-login OK",
		"select OK 2", "unseen 1 2", "search-subject 2", "peek Subject: first",
		// The messages are \Recent in the first session to select INBOX,
		// the APPENDed one too (RFC 3501 sections 2.3.2 and 6.3.11).
		"fetch-body True", `store 1 (FLAGS (\Flagged \Recent))`, "append OK [APPENDUID ",
		"copy OK [COPYUID ", "move OK",
		"expunge [b'2', b'1']", // imaplib keeps MOVE's EXPUNGE with EXPUNGE's
		`left ['1 (UID 3 FLAGS (\\Seen \\Recent))']`,
		"idle-cont + idling", "idle-push * 2 EXISTS", "idle-done OK",
		"lockout ['AUTHENTICATIONFAILED', 'AUTHENTICATIONFAILED', 'AUTHENTICATIONFAILED', 'UNAVAILABLE']",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in output:\n%s", want, out)
		}
	}
	for folder, n := range map[string]int{"Archive": 1, "Trash": 1} {
		if l, err := srv.Store().List(t.Context(), aliceAcct, folder); err != nil || len(l.Messages) != n {
			t.Errorf("%s: %+v %v", folder, l, err)
		}
	}
}

const poplibScript = `
import poplib, ssl, sys
host, port, sport = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ctx = ssl._create_unverified_context()

p = poplib.POP3(host, port)
print("capa-cleartext", sorted(p.capa().keys()))
try:
    p.user("alice@example.test")
    print("cleartext-user ok")
except poplib.error_proto as e:
    print("cleartext-user refused")
p.stls(context=ctx)
print("capa-tls", sorted(p.capa().keys()))
p.user("alice@example.test")
p.pass_("alice password")
print("stat", p.stat())
uidl = [u.decode() for u in p.uidl()[1]]
print("uidl", uidl)
resp, lines, octets = p.retr(1)
print("retr", b".dot line" in lines, octets)
resp, lines, octets = p.top(2, 0)
print("top", lines)
print("dele", p.dele(1).decode())
print("quit", p.quit().decode())

s = poplib.POP3_SSL(host, sport, context=ctx)
s.user("alice@example.test")
s.pass_("alice password")
print("stat-after", s.stat())
print("uidl-after", [u.decode() for u in s.uidl()[1]])
s.quit()
`

func TestPythonPoplib(t *testing.T) {
	python := needTool(t, "python3")
	srv, _ := startServer(t, nil)
	deliverTo(t, srv, "", "first", "body\r\n.dot line")
	deliverTo(t, srv, "", "second", "second body")
	a := srv.Addrs()
	host, port := hostPort(a["pop3"])
	_, sport := hostPort(a["pop3s"])
	script := filepath.Join(t.TempDir(), "pop_client.py")
	os.WriteFile(script, []byte(poplibScript), 0o600)
	out, err := run(t, "", python, script, host, port, sport)
	if err != nil {
		t.Fatalf("python: %v\n%s", err, out)
	}
	l, err := srv.Store().List(t.Context(), aliceAcct, store.Inbox)
	if err != nil || len(l.Messages) != 1 {
		t.Fatalf("INBOX after DELE+QUIT: %+v %v", l, err)
	}
	uid1 := fmt.Sprintf("'1 %d.1'", l.UIDValidity)
	uid2 := fmt.Sprintf("'2 %d.2'", l.UIDValidity)
	for _, want := range []string{
		"capa-cleartext ['AUTH-RESP-CODE', 'IMPLEMENTATION', 'PIPELINING', 'RESP-CODES', 'STLS', 'TOP', 'UIDL']",
		"cleartext-user refused",
		"capa-tls ['AUTH-RESP-CODE', 'IMPLEMENTATION', 'PIPELINING', 'RESP-CODES', 'TOP', 'UIDL', 'USER']",
		"stat (2, ", "uidl [" + uid1 + ", " + uid2 + "]",
		"retr True", "top [b'From: carol@remote.test', b'To: alice@example.test', b'Subject: second'",
		"dele +OK", "quit +OK", "stat-after (1, ", fmt.Sprintf("uidl-after ['1 %d.2']", l.UIDValidity),
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in output:\n%s", want, out)
		}
	}
}

func TestCurlIMAPSAndPOP3S(t *testing.T) {
	curl := needTool(t, "curl")
	srv, cfg := startServer(t, nil)
	deliverTo(t, srv, "", "for curl", "fetched by curl")
	a := srv.Addrs()
	ca := certFile(cfg)
	user := "alice@example.test:alice password"
	// The server's own self-signed certificate is the CA: no --insecure.
	out, err := run(t, "", curl, "-sS", "--cacert", ca, "--user", user, "imaps://"+a["imaps"]+"/INBOX;UID=1")
	if err != nil || !strings.Contains(out, "fetched by curl") {
		t.Fatalf("curl imaps: %v\n%s", err, out)
	}
	out, err = run(t, "", curl, "-sS", "--cacert", ca, "--user", user, "imaps://"+a["imaps"]+"/")
	if err != nil || !strings.Contains(out, `"/" "Sent"`) || !strings.Contains(out, "INBOX") {
		t.Fatalf("curl imaps LIST: %v\n%s", err, out)
	}
	out, err = run(t, "", curl, "-sS", "--ssl-reqd", "--cacert", ca, "--user", user, "imap://"+a["imap"]+"/INBOX;UID=1")
	if err != nil || !strings.Contains(out, "fetched by curl") {
		t.Fatalf("curl imap STARTTLS: %v\n%s", err, out)
	}
	out, err = run(t, "", curl, "-sS", "--cacert", ca, "--user", user, "pop3s://"+a["pop3s"]+"/1")
	if err != nil || !strings.Contains(out, "fetched by curl") {
		t.Fatalf("curl pop3s RETR: %v\n%s", err, out)
	}
	out, err = run(t, "", curl, "-sS", "--ssl-reqd", "--cacert", ca, "--user", user, "pop3://"+a["pop3"]+"/")
	if err != nil || !regexp.MustCompile(`(?m)^1 \d+`).MatchString(out) {
		t.Fatalf("curl pop3 STLS LIST: %v\n%s", err, out)
	}
	// Without TLS curl cannot log in: the servers do not offer it.
	out, err = run(t, "", curl, "-sS", "--user", user, "pop3://"+a["pop3"]+"/1")
	if err == nil || strings.Contains(out, "fetched by curl") {
		t.Fatalf("curl pop3 cleartext logged in: %v\n%s", err, out)
	}
}

// TestMbsyncTwoWay syncs INBOX and Archive both ways with mbsync (isync)
// between the server (IMAPS, certificate pinned with CertificateFile) and
// a local Maildir: messages and flags propagate in both directions, and
// deletions too.
func TestMbsyncTwoWay(t *testing.T) {
	mbsync := needTool(t, "mbsync")
	srv, cfg := startServer(t, nil)
	deliverTo(t, srv, "", "server one", "1")
	deliverTo(t, srv, "", "server two", "2")
	deliverTo(t, srv, "Archive", "server archived", "3")
	dir := t.TempDir()
	local := filepath.Join(dir, "local")
	if err := os.Mkdir(local, 0o700); err != nil {
		t.Fatal(err)
	}
	host, port := hostPort(srv.Addrs()["imaps"])
	tlsKey := "TLSType"
	if v, _ := exec.Command(mbsync, "--version").CombinedOutput(); regexp.MustCompile(`isync 1\.[0-4]\.`).Match(v) {
		tlsKey = "SSLType" // isync < 1.5
	}
	conf := fmt.Sprintf(`IMAPAccount mv
Host %s
Port %s
User alice@example.test
Pass "alice password"
%s IMAPS
CertificateFile %s

IMAPStore remote
Account mv

MaildirStore local
Path %s/
Inbox %s/INBOX
SubFolders Verbatim

Channel sync
Far :remote:
Near :local:
Patterns INBOX Archive
Create Both
Expunge Both
SyncState *
Sync All
`, host, port, tlsKey, certFile(cfg), local, local)
	rc := filepath.Join(dir, "mbsyncrc")
	os.WriteFile(rc, []byte(conf), 0o600)
	sync := func() {
		t.Helper()
		out, err := run(t, "", mbsync, "-c", rc, "-a")
		if err != nil {
			t.Fatalf("mbsync: %v\n%s", err, out)
		}
	}

	// 1. Far to near: messages and their flags.
	l, _ := srv.Store().List(t.Context(), aliceAcct, store.Inbox)
	if err := srv.Store().SetFlags(t.Context(), aliceAcct, store.Inbox, l.Messages[0].UID, "FS"); err != nil {
		t.Fatal(err)
	}
	sync()
	near := localMessages(t, filepath.Join(local, "INBOX"))
	if len(near) != 2 || near["server one"] != "FS" || near["server two"] != "" {
		t.Fatalf("near INBOX after first sync: %v", near)
	}
	if a := localMessages(t, filepath.Join(local, "Archive")); len(a) != 1 {
		t.Fatalf("near Archive: %v", a)
	}

	// 2. Near to far: a new message with flags, a flag change, a deletion.
	writeLocal(t, filepath.Join(local, "INBOX"), "1700000000.local1.host:2,RS", "Subject: local new\r\n\r\nfrom the laptop\r\n")
	for name, subj := range localFiles(t, filepath.Join(local, "INBOX")) {
		switch subj {
		case "server two":
			renameFlags(t, filepath.Join(local, "INBOX"), name, "F")
		case "server one":
			renameFlags(t, filepath.Join(local, "INBOX"), name, "FST") // trashed: expunged on sync
		}
	}
	sync()
	far := serverMessages(t, srv, store.Inbox)
	if len(far) != 2 || far["local new"] != "RS" || far["server two"] != "F" {
		t.Fatalf("server INBOX after second sync: %v", far)
	}

	// 3. Far to near again: a change made over IMAP by another client
	// reaches the Maildir.
	l, _ = srv.Store().List(t.Context(), aliceAcct, store.Inbox)
	for _, m := range l.Messages {
		if err := srv.Store().SetFlags(t.Context(), aliceAcct, store.Inbox, m.UID, "S"); err != nil {
			t.Fatal(err)
		}
	}
	deliverTo(t, srv, "", "server three", "4")
	sync()
	near = localMessages(t, filepath.Join(local, "INBOX"))
	want := map[string]string{"local new": "S", "server two": "S", "server three": ""}
	if fmt.Sprint(near) != fmt.Sprint(want) {
		t.Fatalf("near INBOX after third sync: %v, want %v", near, want)
	}
}

// localFiles maps the file names of a local Maildir folder to subjects.
func localFiles(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, sub := range []string{"cur", "new"} {
		entries, _ := os.ReadDir(filepath.Join(dir, sub))
		for _, e := range entries {
			b, err := os.ReadFile(filepath.Join(dir, sub, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			out[sub+"/"+e.Name()] = subjectOf(string(b))
		}
	}
	return out
}

// localMessages maps subjects to Maildir flags.
func localMessages(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for name, subj := range localFiles(t, dir) {
		flags := ""
		if i := strings.LastIndex(name, ":2,"); i >= 0 {
			flags = name[i+3:]
		}
		out[subj] = sortFlags(flags)
	}
	return out
}

func serverMessages(t *testing.T, srv *Server, folder string) map[string]string {
	t.Helper()
	l, err := srv.Store().List(t.Context(), aliceAcct, folder)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, m := range l.Messages {
		b, _ := os.ReadFile(m.Path)
		out[subjectOf(string(b))] = m.Flags
	}
	return out
}

func sortFlags(f string) string {
	b := []byte(f)
	sort.Slice(b, func(i, j int) bool { return b[i] < b[j] })
	return string(b)
}

func subjectOf(msg string) string {
	for _, line := range strings.Split(msg, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimRight(line, "\r"), "Subject: "); ok {
			return v
		}
	}
	return ""
}

func writeLocal(t *testing.T, dir, name, body string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "cur", name), []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
}

func renameFlags(t *testing.T, dir, rel, flags string) {
	t.Helper()
	base := rel[strings.IndexByte(rel, '/')+1:]
	if i := strings.LastIndex(base, ":2,"); i >= 0 {
		base = base[:i]
	}
	if err := os.Rename(filepath.Join(dir, rel), filepath.Join(dir, "cur", base+":2,"+flags)); err != nil {
		t.Fatal(err)
	}
}
