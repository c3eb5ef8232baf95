package imapd

import (
	"strings"
	"testing"

	"github.com/mailvault/mailvault/mailserver/store"
)

// BODYSTRUCTURE is computed from the file once and then answered from the
// metadata cache, identically, with or without other items.
func TestBodyStructureCached(t *testing.T) {
	e := newTestEnv(t, nil)
	a := store.Account{Domain: "example.test", User: "alice"}
	e.Deliver(t, a, "", "From: a@example.org\r\nSubject: parts\r\nMIME-Version: 1.0\r\n"+
		"Content-Type: multipart/mixed; boundary=b\r\n\r\n"+
		"--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nhello\r\n"+
		"--b\r\nContent-Type: application/pdf; name=x.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nAAAA\r\n--b--\r\n")
	c := e.login(t, "alice")
	c.ok("s SELECT INBOX")
	untagged := func(lines []string) string {
		var out []string
		for _, l := range lines {
			if strings.HasPrefix(l, "* ") {
				out = append(out, l)
			}
		}
		return strings.Join(out, "\n")
	}
	first := untagged(c.ok("f1 FETCH 1 (BODYSTRUCTURE)"))
	if !strings.Contains(first, `("text" "plain" ("charset" "utf-8")`) || !strings.Contains(first, `"mixed"`) {
		t.Fatalf("BODYSTRUCTURE: %s", first)
	}
	m := e.srv.meta.get(mailboxKey(a, store.Inbox) + "\x00" + e.srv.mustUnique(t, a, 1))
	if m == nil || m.structure.Load() == nil {
		t.Fatal("BODYSTRUCTURE not kept in the metadata cache")
	}
	if again := untagged(c.ok("f2 FETCH 1 (BODYSTRUCTURE)")); again != first {
		t.Fatalf("from the cache:\n%s\nfrom the file:\n%s", again, first)
	}
	body := strings.Join(c.ok("f3 FETCH 1 (BODY)"), "\n")
	if !strings.Contains(body, "BODY (") || strings.Contains(body, "BODYSTRUCTURE") {
		t.Fatalf("BODY: %s", body)
	}
}

// mustUnique is the Maildir unique name of the message with uid in INBOX.
func (s *Server) mustUnique(t *testing.T, a store.Account, uid uint32) string {
	t.Helper()
	l, err := s.store.List(t.Context(), a, store.Inbox)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range l.Messages {
		if m.UID == uid {
			return m.Unique
		}
	}
	t.Fatalf("no UID %d", uid)
	return ""
}
