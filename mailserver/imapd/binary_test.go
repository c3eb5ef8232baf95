package imapd

import (
	"strconv"
	"strings"
	"testing"

	"github.com/mailvault/mailvault/mailserver/internal/servertest"
)

// BINARY (RFC 3516): an APPEND of a literal8 with NUL octets is stored
// with that part base64-encoded (BODY[] may not carry NUL), BINARY[]
// gives the octets back, partial with its origin, and BINARY.SIZE counts
// them; a text part is left as it came.
func TestBinaryAppendAndFetch(t *testing.T) {
	e := newTestEnv(t, nil)
	c := e.login(t, "alice")
	mustHave(t, c.ok("a0 CAPABILITY"), " BINARY")
	c.ok("a1 SELECT INBOX")
	bin := "\x00\x01abc\xff\r\n\x00"
	m := "From: bob@x.test\r\nSubject: bin\r\nMime-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"XX\"\r\n\r\n" +
		"--XX\r\nContent-Type: text/plain\r\n\r\nhello\r\n" +
		"--XX\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\n" + bin + "\r\n--XX--\r\n"
	c.Send("a2 APPEND INBOX ~{" + strconv.Itoa(len(m)) + "}")
	if l := c.Next(); !strings.HasPrefix(l, "+") {
		t.Fatalf("no continuation: %q", l)
	}
	c.Send(m)
	mustHave(t, c.ReadUntil(servertest.HasPrefix("a2 ")), "a2 OK [APPENDUID")
	out := c.ok("a4 FETCH 1 (BODY.PEEK[2] BODY.PEEK[2.MIME])")
	mustHave(t, out, "Content-Transfer-Encoding: base64", "AAFhYmP/DQoA")
	if strings.Contains(strings.Join(out, "\n"), "\x00") {
		t.Fatalf("BODY[] carried a NUL: %q", out)
	}
	mustHave(t, c.ok("a5 FETCH 1 (BINARY.SIZE[2] BINARY.SIZE[1])"), "BINARY.SIZE[2] 9", "BINARY.SIZE[1] 5")
	if out := strings.Join(c.ok("a6 FETCH 1 (BINARY.PEEK[2]<1.4>)"), "\n"); !strings.Contains(out, "* 1 FETCH (BINARY[2]<1> ~{4}\r\n\x01abc)") {
		t.Fatalf("BINARY[2]<1.4>: %q", out)
	}
	mustHave(t, c.ok("a7 FETCH 1 BODY.PEEK[1]"), "hello")
}

// BINARY of a part in an encoding the server cannot decode is NO
// [UNKNOWN-CTE] (RFC 3516 section 4.3), not an empty answer.
func TestBinaryUnknownCTE(t *testing.T) {
	e := newTestEnv(t, nil)
	e.Deliver(t, alice, "", "From: bob@x.test\r\nSubject: uu\r\nMime-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"B\"\r\n\r\n"+
		"--B\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nh=C3=A9\r\n"+
		"--B\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\nbegin 644 x\r\nend\r\n--B--\r\n")
	c := e.login(t, "alice")
	c.ok("a1 SELECT INBOX")
	mustHave(t, c.ok("a2 FETCH 1 BINARY.PEEK[1]"), "BINARY[1] ~{3}")
	mustHave(t, c.cmd("a3 FETCH 1 BINARY.PEEK[2]"), "a3 NO [UNKNOWN-CTE]")
	mustHave(t, c.cmd("a4 FETCH 1 BINARY.SIZE[2]"), "a4 NO [UNKNOWN-CTE]")
}
