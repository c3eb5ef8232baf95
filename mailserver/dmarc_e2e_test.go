package mailserver

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailvault/mailvault/mailserver/smtpd"
	"github.com/mailvault/mailvault/mailserver/store"
)

const junkScript = `
import imaplib, re, ssl, sys
host, port = sys.argv[1], int(sys.argv[2])
m = imaplib.IMAP4_SSL(host, port, ssl_context=ssl._create_unverified_context())
m.login("alice@example.test", "alice password")
typ, data = m.select("INBOX", readonly=True)
print("inbox", int(data[0]))
# RFC 6154: the client finds the spam folder by its \Junk attribute.
typ, data = m.list('""', "*")
junk = [re.search(rb'"([^"]+)"$', l).group(1).decode() for l in data if b"\\Junk" in l]
print("junk", junk)
typ, data = m.select('"%s"' % junk[0], readonly=True)
print("junk-count", int(data[0]))
typ, data = m.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT AUTHENTICATION-RESULTS)])")
print("junk-header", " ".join(data[0][1].decode().split()))
m.logout()
`

// TestDMARCQuarantineReachesJunk: with smtp.enforce_dmarc, a message
// failing DMARC under p=quarantine, sent by swaks to the MX, is in the
// recipient's Junk folder, which python3 imaplib finds by its SPECIAL-USE
// \Junk attribute (RFC 6154) and reads, with the reason recorded.
func TestDMARCQuarantineReachesJunk(t *testing.T) {
	swaks := needTool(t, "swaks")
	python := needTool(t, "python3")
	res := &smtpd.StaticResolver{}
	res.SetTXT("shop.test", "v=spf1 -all")
	res.SetTXT("_dmarc.shop.test", "v=DMARC1; p=quarantine")
	srv, _ := startServerDNS(t, res, func(c *Config) { c.SMTP.EnforceDMARC = true })
	a := srv.Addrs()
	out, err := run(t, "", swaks, "--server", a["smtp"], "--helo", "forger.test", "--from", "x@shop.test", "--to", "alice@example.test",
		"--header", "From: <ceo@shop.test>", "--header", "Subject: quarantined")
	if err != nil || !strings.Contains(out, "250 2.0.0") {
		t.Fatalf("swaks: %v\n%s", err, out)
	}
	if l, err := srv.Store().List(t.Context(), aliceAcct, store.Junk); err != nil || len(l.Messages) != 1 {
		t.Fatalf("Junk: %+v %v", l, err)
	}
	host, port := hostPort(a["imaps"])
	script := filepath.Join(t.TempDir(), "junk.py")
	if err := os.WriteFile(script, []byte(junkScript), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err = run(t, "", python, script, host, port)
	if err != nil {
		t.Fatalf("python: %v\n%s", err, out)
	}
	for _, want := range []string{
		"inbox 0", "junk ['Junk']", "junk-count 1", "Subject: quarantined",
		`dmarc=fail reason="p=quarantine dis=quarantine" header.from=shop.test`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in output:\n%s", want, out)
		}
	}
}
