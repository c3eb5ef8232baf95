package smtpd

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"regexp"
	"strings"
	"testing"

	"github.com/mailvault/mailvault/mailserver/auth"
)

var replyLine = regexp.MustCompile(`^[2-5][0-9][0-9][ -]`)

// FuzzSMTPSession feeds arbitrary bytes to live MX and submission
// connections. The server must answer only with well-formed replies, never
// crash, and keep serving new connections.
func FuzzSMTPSession(f *testing.F) {
	for _, seed := range []string{
		"EHLO a.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\nSubject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n",
		"HELO x\r\nMAIL FROM:<>\r\nRCPT TO:<postmaster@example.test>\r\nDATA\r\n.\r\n",
		"EHLO a\r\nAUTH PLAIN\r\n*\r\nAUTH LOGIN YWxpY2U=\r\nx\r\n",
		"EHLO a\r\nMAIL FROM:<a@b> SIZE=99999999999999999999 BODY=8BITMIME SMTPUTF8\r\n",
		"EHLO a\r\nRCPT TO:<alice@example.test>\r\nBDAT 10 LAST\r\n0123456789",
		"EHLO a\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<alice@example.test>\r\nBDAT 999999999\r\nxx",
		"EHLO a\r\nSTARTTLS\r\n\x16\x03\x01\x00\x05hello",
		"\x00\xff\r\n\r\n\n\n\rMAIL\r\nRCPT TO:\r\nVRFY root\r\nEXPN all\r\nHELP\r\nNOOP x\r\nRSET\r\n",
		"EHLO " + strings.Repeat("a", 3000) + "\r\n",
		"EHLO a\r\nMAIL FROM:<" + strings.Repeat("x", 600) + "@b.test>\r\n",
		"ehlo A\r\nmail from:<\"q\\\"uoted\"@b.test>\r\nrcpt to:<alice@[127.0.0.1]>\r\n",
		"EHLO a\r\nDATA\r\n.\r\nDATA\r\nMAIL FROM:<a@b.test> AUTH=<>\r\nRCPT TO:<alice@example.test> NOTIFY=NEVER ORCPT=rfc822;x\r\n",
	} {
		f.Add([]byte(seed), false)
		f.Add([]byte(seed), true)
	}
	e := newTestEnv(f, func(c *Config, l *auth.LimiterConfig) {
		c.ConnsPerMinute = 1e9
		c.MessagesPerMinute = 1e9
		c.MaxConnsPerIP = 1000
		c.MaxMessageBytes = 64 << 10
	})
	f.Fuzz(func(t *testing.T, input []byte, submission bool) {
		mode := ModeMX
		if submission {
			mode = ModeSubmission
		}
		conn, err := net.Dial("tcp", e.addr[mode])
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		// Write everything, then half-close: the server sees EOF and must
		// end the session whatever state the input left it in.
		go func() {
			conn.Write(input)
			conn.(*net.TCPConn).CloseWrite()
		}()
		out, err := io.ReadAll(io.LimitReader(conn, 1<<20))
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		if len(out) == 0 {
			t.Fatal("no greeting")
		}
		// Replies are text lines until a STARTTLS handshake began; after
		// "220 2.0.0 Ready to start TLS" the bytes may be TLS records.
		sc := bufio.NewScanner(bytes.NewReader(out))
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			line := strings.TrimSuffix(sc.Text(), "\r")
			if !replyLine.MatchString(line) {
				t.Fatalf("malformed reply line %q in\n%s", line, out)
			}
			if strings.HasPrefix(line, "220 2.0.0 Ready to start TLS") {
				break
			}
		}
		// The server still serves.
		c := e.dial(t, ModeMX)
		c.Script(`
			S: 220
			C: NOOP
			S: 250`)
	})
}
