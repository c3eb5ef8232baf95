package pop3d

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/mailvault/mailvault/mailserver/auth"
	"github.com/mailvault/mailvault/mailserver/internal/handshake"
	"github.com/mailvault/mailvault/mailserver/internal/hangup"
	"github.com/mailvault/mailvault/mailserver/store"
)

type state int

const (
	stateAuthorization state = iota // RFC 1939 section 4
	stateTransaction                // section 5
)

// session is one POP3 connection.
type session struct {
	srv   *Server
	conn  net.Conn
	ip    string
	r     *lineReader
	w     *bufio.Writer
	isTLS bool

	state  state
	user   string // from USER
	acct   store.Account
	locked bool
	errors int

	validity uint32
	msgs     []message
}

// message is one message of the maildrop as listed at login.
type message struct {
	uid     uint32
	size    int64 // octets as sent (CRLF line ends); -1 until computed
	deleted bool
}

func (s *session) reset(c net.Conn) {
	s.conn = c
	s.r = &lineReader{r: bufio.NewReaderSize(c, 1024), max: maxLine}
	s.w = bufio.NewWriter(c)
}

func (s *session) serve() {
	defer func() {
		if s.locked {
			s.srv.unlock(s.acct)
		}
	}()
	s.reset(s.conn)
	if tc, ok := s.conn.(*tls.Conn); ok {
		tc.SetDeadline(time.Now().Add(handshake.Timeout))
		if err := tc.HandshakeContext(s.srv.ctx); err != nil {
			s.srv.log.Info("TLS handshake failed", "ip", s.ip, "err", err)
			return
		}
		tc.SetDeadline(time.Time{})
		s.isTLS = true
	}
	s.reply("+OK %s POP3 server ready", s.srv.cfg.Hostname)
	for {
		if err := s.w.Flush(); err != nil {
			return
		}
		s.conn.SetReadDeadline(time.Now().Add(s.srv.limits.Load().IdleTimeout))
		line, err := s.r.readLine()
		if errors.Is(err, errLineTooLong) {
			if !s.bad("-ERR Line too long") {
				return
			}
			continue
		}
		if err != nil {
			return // connection closed or timed out: no UPDATE state
		}
		cmd, arg, _ := strings.Cut(line, " ")
		if !s.handle(strings.ToUpper(cmd), arg) {
			s.w.Flush()
			return
		}
	}
}

func (s *session) reply(format string, args ...any) {
	fmt.Fprintf(s.w, format+"\r\n", args...)
}

// bad answers a bad command; it reports false once the session has made
// too many mistakes and is closed.
func (s *session) bad(msg string) bool {
	s.errors++
	if s.errors >= s.srv.limits.Load().MaxErrors {
		s.reply("-ERR Too many bad commands, closing")
		return false
	}
	s.reply("%s", msg)
	return true
}

// handle runs one command; it reports false when the session ends.
func (s *session) handle(cmd, arg string) bool {
	switch cmd {
	case "CAPA":
		s.capa()
		return true
	case "QUIT":
		return s.quit()
	}
	if s.state == stateAuthorization {
		switch cmd {
		case "STLS":
			return s.stls()
		case "USER":
			if !s.isTLS {
				return s.bad("-ERR [SYS/PERM] USER/PASS need TLS first (STLS)")
			}
			if arg == "" {
				return s.bad("-ERR USER needs a name")
			}
			s.user = arg
			s.reply("+OK Send PASS")
			return true
		case "PASS":
			return s.pass(arg)
		}
		return s.bad("-ERR Unknown command or not allowed before login")
	}
	switch cmd {
	case "STAT":
		var n int
		var size int64
		for i := range s.msgs {
			if !s.msgs[i].deleted {
				n++
				size += s.size(i)
			}
		}
		s.reply("+OK %d %d", n, size)
	case "LIST", "UIDL":
		if arg != "" {
			i, ok := s.msgNum(arg)
			if !ok {
				return s.bad("-ERR No such message")
			}
			s.reply("+OK %d %s", i+1, s.listValue(cmd, i))
			return true
		}
		s.reply("+OK Listing follows")
		for i := range s.msgs {
			if !s.msgs[i].deleted {
				s.reply("%d %s", i+1, s.listValue(cmd, i))
			}
		}
		s.reply(".")
	case "RETR":
		i, ok := s.msgNum(arg)
		if !ok {
			return s.bad("-ERR No such message")
		}
		return s.send(i, -1)
	case "TOP":
		num, lines, _ := strings.Cut(arg, " ")
		i, ok := s.msgNum(num)
		n, err := strconv.Atoi(lines)
		if !ok || err != nil || n < 0 {
			return s.bad("-ERR Usage: TOP msg n")
		}
		return s.send(i, n)
	case "DELE":
		i, ok := s.msgNum(arg)
		if !ok {
			return s.bad("-ERR No such message")
		}
		s.msgs[i].deleted = true
		s.reply("+OK Message %d deleted", i+1)
	case "RSET":
		for i := range s.msgs {
			s.msgs[i].deleted = false
		}
		s.reply("+OK")
	case "NOOP":
		s.reply("+OK")
	default:
		return s.bad("-ERR Unknown command")
	}
	return true
}

// capa lists the capabilities (RFC 2449 section 5); USER only where it
// may be used (after TLS), STLS only where it may be used.
func (s *session) capa() {
	s.reply("+OK Capability list follows")
	for _, c := range []string{"TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "IMPLEMENTATION mailvault"} {
		s.reply("%s", c)
	}
	if s.state == stateAuthorization {
		if s.isTLS {
			s.reply("USER")
		} else {
			s.reply("STLS")
		}
	}
	s.reply(".")
}

// stls upgrades the connection (RFC 2595 section 4). Anything the client
// sent after STLS before the handshake is dropped with the old buffer, so
// that a man in the middle cannot inject commands into the TLS session.
func (s *session) stls() bool {
	if s.isTLS {
		return s.bad("-ERR Already using TLS")
	}
	s.reply("+OK Begin TLS negotiation")
	if err := s.w.Flush(); err != nil {
		return false
	}
	tc := tls.Server(s.conn, s.srv.cfg.TLSConfig)
	tc.SetDeadline(time.Now().Add(handshake.Timeout))
	if err := tc.HandshakeContext(s.srv.ctx); err != nil {
		// Closed without a reply: the client is speaking TLS.
		s.srv.log.Info("STLS handshake failed", "ip", s.ip, "err", err)
		return false
	}
	tc.SetDeadline(time.Time{})
	s.reset(tc)
	s.isTLS = true
	s.user = ""
	return true
}

// pass logs in through auth.Guard and locks the maildrop.
func (s *session) pass(password string) bool {
	if !s.isTLS {
		return s.bad("-ERR [SYS/PERM] USER/PASS need TLS first (STLS)")
	}
	if s.user == "" {
		return s.bad("-ERR USER first")
	}
	user := s.user
	s.user = ""
	// The session reads nothing while the check waits for its slot:
	// hangup ends the wait if the client leaves meanwhile.
	ctx, stop := hangup.Watch(s.srv.ctx, s.conn)
	u, err := s.srv.guard.Login(ctx, auth.Attempt{Username: user, Password: password, IP: s.ip, Protocol: "pop3"})
	gone := hangup.Gone(ctx)
	stop()
	switch {
	case err != nil && gone:
		s.srv.log.Debug("login abandoned: client hung up", "ip", s.ip)
		return false
	case errors.Is(err, auth.ErrLocked):
		return s.bad("-ERR [SYS/TEMP] Too many failed logins, try again later")
	case errors.Is(err, auth.ErrInvalidCredentials):
		// RFC 3206 section 4: [AUTH], the same for unknown users.
		return s.bad("-ERR [AUTH] Invalid user name or password")
	case err != nil:
		s.srv.log.Error("login", "err", err)
		s.reply("-ERR [SYS/TEMP] Login temporarily unavailable")
		return true
	}
	a, err := store.AccountOf(u.Address)
	if err != nil {
		s.reply("-ERR [SYS/PERM] Bad account")
		return true
	}
	if !s.srv.lock(a) {
		// RFC 2449 section 8.1.1.
		s.reply("-ERR [IN-USE] Maildrop already in use")
		return true
	}
	s.acct, s.locked = a, true
	l, err := s.srv.store.List(s.srv.ctx, a, store.Inbox)
	if err != nil {
		s.srv.log.Error("pop3 list", "account", a.String(), "err", err)
		s.reply("-ERR [SYS/TEMP] Maildrop unavailable")
		return false
	}
	s.validity = l.UIDValidity
	for _, m := range l.Messages {
		s.msgs = append(s.msgs, message{uid: m.UID, size: -1})
	}
	s.state = stateTransaction
	s.reply("+OK Maildrop has %d messages", len(s.msgs))
	return true
}

// quit ends the session; in the TRANSACTION state it enters UPDATE and
// removes the messages marked deleted (RFC 1939 section 6).
func (s *session) quit() bool {
	if s.state != stateTransaction {
		s.reply("+OK Bye")
		return false
	}
	var uids []uint32
	for _, m := range s.msgs {
		if m.deleted {
			uids = append(uids, m.uid)
		}
	}
	var err error
	if len(uids) > 0 {
		err = s.srv.store.Expunge(s.srv.ctx, s.acct, store.Inbox, uids)
	}
	// The UPDATE state is over: release the maildrop before answering, so
	// that a client reconnecting as soon as it reads the reply is not told
	// [IN-USE] by a session that is only closing its socket.
	s.srv.unlock(s.acct)
	s.locked = false
	if err != nil {
		s.srv.log.Error("pop3 update", "account", s.acct.String(), "err", err)
		s.reply("-ERR [SYS/TEMP] Some deleted messages not removed")
		return false
	}
	s.reply("+OK Bye (%d messages deleted)", len(uids))
	return false
}

// msgNum parses a message number that is not marked deleted.
func (s *session) msgNum(arg string) (int, bool) {
	n, err := strconv.Atoi(strings.TrimSpace(arg))
	if err != nil || n < 1 || n > len(s.msgs) || s.msgs[n-1].deleted {
		return 0, false
	}
	return n - 1, true
}

func (s *session) listValue(cmd string, i int) string {
	if cmd == "UIDL" {
		// RFC 1939 section 7: 1 to 70 characters 0x21-0x7E, never reused
		// for another message of the maildrop.
		return fmt.Sprintf("%d.%d", s.validity, s.msgs[i].uid)
	}
	return strconv.FormatInt(s.size(i), 10)
}

func (s *session) open(i int) (*os.File, error) {
	return s.srv.store.OpenMessage(s.srv.ctx, s.acct, store.Inbox, s.msgs[i].uid)
}

// size is the message's size as RETR sends it: bare LFs become CRLF.
func (s *session) size(i int) int64 {
	if s.msgs[i].size >= 0 {
		return s.msgs[i].size
	}
	f, err := s.open(i)
	if err != nil {
		return 0
	}
	defer f.Close()
	n, _ := transmit(io.Discard, f, -1)
	s.msgs[i].size = n
	return n
}

// send answers RETR (lines < 0) or TOP.
func (s *session) send(i, lines int) bool {
	f, err := s.open(i)
	if err != nil {
		s.reply("-ERR [SYS/TEMP] Message no longer available")
		return true
	}
	defer f.Close()
	if lines < 0 {
		s.reply("+OK %d octets", s.size(i))
	} else {
		s.reply("+OK")
	}
	if _, err := transmit(&dotWriter{w: s.w, bol: true}, f, lines); err != nil {
		return false
	}
	s.reply(".")
	return true
}

// transmit copies a message with CRLF line ends, the header and at most
// bodyLines lines of the body (all if negative), and returns the octets
// written before dot-stuffing.
func transmit(w io.Writer, r io.Reader, bodyLines int) (int64, error) {
	br := bufio.NewReader(r)
	var n int64
	inBody := false
	for body := 0; bodyLines < 0 || !inBody || body < bodyLines; {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			complete := line[len(line)-1] == '\n'
			content := line
			if complete {
				content = line[:len(line)-1]
				if len(content) > 0 && content[len(content)-1] == '\r' {
					content = content[:len(content)-1]
				}
			}
			if _, werr := w.Write(content); werr != nil {
				return n, werr
			}
			n += int64(len(content))
			if complete || err == io.EOF {
				if _, werr := w.Write([]byte("\r\n")); werr != nil {
					return n, werr
				}
				n += 2
				if inBody {
					body++
				} else if len(content) == 0 {
					inBody = true
				}
			}
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			// A long line: keep copying its rest, not a new line.
			if err := copyLineRest(w, br, &n); err != nil {
				return n, err
			}
			if inBody {
				body++
			}
			continue
		}
		if err != nil {
			if err == io.EOF {
				return n, nil
			}
			return n, err
		}
	}
	return n, nil
}

// copyLineRest copies the rest of an over-long line and ends it with CRLF.
func copyLineRest(w io.Writer, br *bufio.Reader, n *int64) error {
	for {
		frag, err := br.ReadSlice('\n')
		content := frag
		complete := len(frag) > 0 && frag[len(frag)-1] == '\n'
		if complete {
			content = frag[:len(frag)-1]
			if len(content) > 0 && content[len(content)-1] == '\r' {
				content = content[:len(content)-1]
			}
		}
		if _, werr := w.Write(content); werr != nil {
			return werr
		}
		*n += int64(len(content))
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if _, werr := w.Write([]byte("\r\n")); werr != nil {
			return werr
		}
		*n += 2
		if err != nil && err != io.EOF {
			return err
		}
		return nil
	}
}

// dotWriter byte-stuffs lines that start with "." (RFC 1939 section 3).
type dotWriter struct {
	w   io.Writer
	bol bool // at the beginning of a line
}

func (d *dotWriter) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		if d.bol && p[0] == '.' {
			if _, err := d.w.Write([]byte{'.'}); err != nil {
				return written, err
			}
		}
		i := 0
		for i < len(p) && p[i] != '\n' {
			i++
		}
		if i < len(p) {
			i++ // include the LF
			d.bol = true
		} else {
			d.bol = false
		}
		n, err := d.w.Write(p[:i])
		written += n
		if err != nil {
			return written, err
		}
		p = p[i:]
	}
	return written, nil
}
