// Package smtpd is mailvault's SMTP server, built on emersion/go-smtp:
//
//   - MX (RFC 5321): accepts mail for local domains only — never an open
//     relay — with STARTTLS (RFC 3207), size and recipient limits, per-IP
//     connection and message rates, and records SPF, DKIM and DMARC
//     results in Authentication-Results (RFC 8601).
//   - Submission (RFC 6409) on a STARTTLS port, where AUTH is refused until
//     TLS is up, and on an implicit-TLS port (RFC 8314 section 3.3); AUTH
//     PLAIN (RFC 4616) and LOGIN; the envelope sender must belong to the
//     authenticated user; local recipients are delivered. (There is no
//     outbound queue yet: remote recipients are refused.)
//
// A message is acknowledged with 250 only after every copy is fsynced and
// renamed into its Maildir.
package smtpd

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-message/textproto"
	"github.com/emersion/go-msgauth/authres"
	"github.com/emersion/go-msgauth/dmarc"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/mailvault/mailvault/mailserver/auth"
	"github.com/mailvault/mailvault/mailserver/internal/handshake"
	"github.com/mailvault/mailvault/mailserver/internal/hangup"
	"github.com/mailvault/mailvault/mailserver/ratelimit"
	"github.com/mailvault/mailvault/mailserver/store"
)

// Mode is the role of a listener.
type Mode int

const (
	ModeMX          Mode = iota // port 25: inbound from other servers
	ModeSubmission              // port 587: STARTTLS then AUTH (RFC 6409)
	ModeSubmissions             // port 465: implicit TLS (RFC 8314)
)

func (m Mode) String() string {
	switch m {
	case ModeMX:
		return "smtp"
	case ModeSubmission:
		return "submission"
	default:
		return "submissions"
	}
}

// Config tunes the server. Zero values get the defaults noted.
type Config struct {
	Hostname        string      // announced in greeting and Received; "localhost"
	TLSConfig       *tls.Config // required for STARTTLS and port 465
	MaxMessageBytes int64       // 25 MiB
	MaxRecipients   int         // 100
	// RFC 5321 section 4.5.3.1.4 sets 512 octets for a command line;
	// go-smtp's limit also covers message lines (section 4.5.3.1.6,
	// 1000), so the default is 2000 like go-smtp's.
	MaxLineLength int
	ReadTimeout   time.Duration // 5 minutes (RFC 5321 section 4.5.3.2.7)
	WriteTimeout  time.Duration // 5 minutes

	// Per remote IP: new connections per minute (burst = same number),
	// concurrent connections, and messages per minute.
	ConnsPerMinute    float64 // 60
	MaxConnsPerIP     int     // 20
	MessagesPerMinute float64 // 120

	// Resolver is the DNS for SPF, DKIM and DMARC; if nil, the system's
	// resolver behind a CachingResolver.
	Resolver Resolver
	// EnforceDMARC rejects (550 5.7.1) mail whose DMARC evaluation fails
	// with p=reject, and files p=quarantine failures in each recipient's
	// Junk folder (the one IMAP lists with SPECIAL-USE \Junk). A policy
	// with pct= below 100 applies to that share of failing mail; the rest
	// gets the next lower policy (RFC 7489 section 6.6.4).
	EnforceDMARC bool
	// DMARCSample draws which failing messages pct= subjects to their
	// policy; RandomSampler if nil.
	DMARCSample Sampler
	// SpoolDir holds messages while they are being checked; it must be on
	// any local file system. os.TempDir() if empty.
	SpoolDir string
}

func (c *Config) setDefaults() {
	if c.Hostname == "" {
		c.Hostname = "localhost"
	}
	if c.MaxMessageBytes == 0 {
		c.MaxMessageBytes = 25 << 20
	}
	if c.MaxRecipients == 0 {
		c.MaxRecipients = 100
	}
	if c.MaxLineLength == 0 {
		c.MaxLineLength = 2000
	}
	if c.ReadTimeout == 0 {
		c.ReadTimeout = 5 * time.Minute
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = 5 * time.Minute
	}
	if c.ConnsPerMinute == 0 {
		c.ConnsPerMinute = 60
	}
	if c.MaxConnsPerIP == 0 {
		c.MaxConnsPerIP = 20
	}
	if c.MessagesPerMinute == 0 {
		c.MessagesPerMinute = 120
	}
	if c.Resolver == nil {
		c.Resolver = NewCachingResolver(net.DefaultResolver)
	}
	if c.DMARCSample == nil {
		c.DMARCSample = RandomSampler
	}
	if c.SpoolDir == "" {
		c.SpoolDir = os.TempDir()
	}
}

// Limits are the settings that SetLimits can change while the server
// runs. Zero values get Config's defaults.
type Limits struct {
	// MaxMessageBytes is enforced on every DATA and BDAT (RFC 5321
	// section 4.5.3.1.10, 552) and on MAIL FROM's SIZE (RFC 1870 section
	// 6.1), and announced as EHLO's SIZE. A new value, higher or lower,
	// is announced and applied to the sessions that start after it (see
	// generation.go); sessions under way keep the SIZE they were told,
	// and a lowered limit applies to their next message too.
	MaxMessageBytes   int64
	MaxRecipients     int
	ConnsPerMinute    float64
	MaxConnsPerIP     int
	MessagesPerMinute float64
	EnforceDMARC      bool
}

func (c *Config) limits() Limits {
	return Limits{
		MaxMessageBytes: c.MaxMessageBytes, MaxRecipients: c.MaxRecipients,
		ConnsPerMinute: c.ConnsPerMinute, MaxConnsPerIP: c.MaxConnsPerIP,
		MessagesPerMinute: c.MessagesPerMinute, EnforceDMARC: c.EnforceDMARC,
	}
}

// Server serves SMTP on any number of listeners.
type Server struct {
	// cfg is fixed at New; the fields also in Limits are the start-up
	// values, and the live ones are in limits.
	cfg      Config
	limits   atomic.Pointer[Limits]
	setMu    sync.Mutex // serializes SetLimits
	store    *store.Store
	accounts *auth.DB
	guard    *auth.Guard
	log      *slog.Logger

	conns   *ratelimit.Conns // per-IP limits of every listener
	msgRate *ratelimit.Bucket

	ctx    context.Context
	cancel context.CancelFunc

	mu        sync.Mutex
	closing   bool                     // Shutdown began
	listeners []*listener              // one per Serve call
	gens      map[*generation]struct{} // current and retiring go-smtp servers
	open      map[net.Conn]net.Conn    // tracked connection → the admitted one

	// spoolBufs holds 32 KiB copy buffers (*[]byte) for spooling DATA:
	// io.Copy into the spool *os.File would allocate one per message
	// (the file's ReadFrom has no fast path from a network reader).
	spoolBufs sync.Pool
}

// New returns a server delivering into st, with accounts and logins
// checked by db and guard.
func New(cfg Config, st *store.Store, db *auth.DB, guard *auth.Guard, log *slog.Logger) *Server {
	cfg.setDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		cfg: cfg, store: st, accounts: db, guard: guard, log: log,
		conns:   ratelimit.NewConns(cfg.ConnsPerMinute, cfg.MaxConnsPerIP),
		msgRate: &ratelimit.Bucket{Rate: cfg.MessagesPerMinute / 60, Burst: cfg.MessagesPerMinute},
		ctx:     ctx, cancel: cancel,
		open: map[net.Conn]net.Conn{}, gens: map[*generation]struct{}{},
	}
	l := cfg.limits()
	s.limits.Store(&l)
	return s
}

// Limits returns the limits in force.
func (s *Server) Limits() Limits { return *s.limits.Load() }

// SetLimits replaces the limits while the server runs. Sessions already
// under way see the new values at their next command, except the SIZE and
// RCPTMAX that their EHLO announced (see Limits.MaxMessageBytes); per-IP
// rate and connection counts are kept, not reset.
func (s *Server) SetLimits(l Limits) {
	c := Config{
		MaxMessageBytes: l.MaxMessageBytes, MaxRecipients: l.MaxRecipients,
		ConnsPerMinute: l.ConnsPerMinute, MaxConnsPerIP: l.MaxConnsPerIP,
		MessagesPerMinute: l.MessagesPerMinute, EnforceDMARC: l.EnforceDMARC,
		Resolver: s.cfg.Resolver, DMARCSample: s.cfg.DMARCSample, SpoolDir: s.cfg.SpoolDir,
	}
	c.setDefaults()
	l = c.limits()
	s.setMu.Lock()
	defer s.setMu.Unlock()
	s.conns.SetLimits(l.ConnsPerMinute, l.MaxConnsPerIP)
	s.msgRate.SetRate(l.MessagesPerMinute/60, l.MessagesPerMinute)
	s.limits.Store(&l)
	s.renew(l)
}

// Serve accepts connections on ln in the given mode until Shutdown. For
// ModeSubmissions ln is a plain listener; Serve wraps it in TLS.
func (s *Server) Serve(ln net.Listener, mode Mode) error {
	if mode != ModeMX && s.cfg.TLSConfig == nil {
		return errors.New("smtpd: submission needs a TLS configuration")
	}
	// Connections over the per-IP limits are refused with 421 (RFC 5321
	// section 3.8) before any session starts; on port 465 they are closed
	// without a reply.
	ln = &trackListener{
		Listener: &ratelimit.Listener{
			Listener: ln, Conns: s.conns, ImplicitTLS: mode == ModeSubmissions, Log: s.log.With("mode", mode.String()),
			Replies: ratelimit.Replies{
				TooFast: "421 4.7.0 Too many connections from your address, try later\r\n",
				TooMany: "421 4.7.0 Too many concurrent connections from your address\r\n",
			},
		},
		s: s, mode: mode,
	}
	if mode == ModeSubmissions {
		// Handshake before go-smtp sees the connection (see package
		// handshake), after the per-IP limits.
		ln = handshake.NewListener(ln, s.cfg.TLSConfig, handshake.Timeout, s.log.With("mode", mode.String()))
	}
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return smtp.ErrServerClosed
	}
	ls := &listener{mode: mode, ln: ln}
	ls.cur = s.newGeneration(mode, ln.Addr(), *s.limits.Load())
	s.listeners = append(s.listeners, ls)
	s.mu.Unlock()
	return s.dispatch(ls)
}

// Shutdown stops accepting, lets sessions finish until ctx ends, then
// closes them.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	var errs []error
	for _, ls := range s.listeners {
		if err := ls.ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
		s.retire(ls.cur)
	}
	s.listeners = nil
	var drained []chan struct{}
	for g := range s.gens {
		drained = append(drained, g.drained)
	}
	s.mu.Unlock()
	for _, d := range drained {
		select {
		case <-d:
			continue
		case <-ctx.Done():
		}
		// go-smtp's Close after Shutdown does not close sessions: close
		// the connections that are still open ourselves.
		errs = append(errs, ctx.Err())
		s.mu.Lock()
		for _, raw := range s.open {
			raw.Close() // not the tracked wrapper: its release takes s.mu
		}
		s.mu.Unlock()
		break
	}
	s.cancel()
	return errors.Join(errs...)
}

type slogAdapter struct{ log *slog.Logger }

func (a slogAdapter) Printf(format string, v ...any) { a.log.Warn(fmt.Sprintf(format, v...)) }
func (a slogAdapter) Println(v ...any)               { a.log.Warn(fmt.Sprint(v...)) }

// trackListener records each admitted connection in s.open, for
// Shutdown to close, and on the cleartext ports guards STARTTLS (see
// startTLSGuard).
type trackListener struct {
	net.Listener // a ratelimit.Listener
	s            *Server
	mode         Mode
}

func (l *trackListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	var rc net.Conn
	rc = ratelimit.ReleaseOnClose(c, func() {
		l.s.mu.Lock()
		delete(l.s.open, rc)
		l.s.mu.Unlock()
	})
	l.s.mu.Lock()
	l.s.open[rc] = c
	l.s.mu.Unlock()
	if l.mode != ModeSubmissions {
		return &startTLSGuard{Conn: rc, log: l.s.log.With("mode", l.mode.String()), timeout: handshake.Timeout}, nil
	}
	return rc, nil
}

type backend struct {
	s    *Server
	mode Mode
}

// NewSession runs at the first HELO/EHLO, whose argument it checks
// (RFC 5321 section 4.1.1.1: a domain or an address literal).
func (b *backend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	helo := c.Hostname()
	if !validHelo(helo) {
		return nil, &smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 5, 4}, Message: "Invalid HELO/EHLO argument"}
	}
	ip := ratelimit.RemoteIP(c.Conn().RemoteAddr())
	return &session{s: b.s, mode: b.mode, conn: c, ip: ip, helo: helo}, nil
}

// validHelo accepts a domain name (RFC 5321 section 4.1.2 Domain) or an
// address literal ("[192.0.2.1]", "[IPv6:2001:db8::1]").
func validHelo(h string) bool {
	if len(h) == 0 || len(h) > 255 {
		return false
	}
	if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") {
		lit := h[1 : len(h)-1]
		if v6, ok := strings.CutPrefix(lit, "IPv6:"); ok {
			ip := net.ParseIP(v6)
			return ip != nil && ip.To4() == nil
		}
		ip := net.ParseIP(lit)
		return ip != nil && ip.To4() != nil
	}
	_, err := auth.NormalizeDomain(h)
	return err == nil
}

type recipient struct {
	address string
	users   []string
}

type session struct {
	s    *Server
	mode Mode
	conn *smtp.Conn
	ip   string
	helo string
	user string // authenticated address, "" before AUTH

	from  string
	rcpts []recipient
}

func smtpErr(code int, e1, e2, e3 int, msg string) *smtp.SMTPError {
	return &smtp.SMTPError{Code: code, EnhancedCode: smtp.EnhancedCode{e1, e2, e3}, Message: msg}
}

var (
	errTempFailure = smtpErr(451, 4, 3, 0, "Temporary local failure, try again later")
	errRelayDenied = smtpErr(550, 5, 7, 1, "Relaying denied: not a local domain")
	errNoSuchUser  = smtpErr(550, 5, 1, 1, "No such user here")
)

func (se *session) isTLS() bool {
	_, ok := se.conn.TLSConnectionState()
	return ok
}

// AuthMechanisms lists SASL mechanisms; none on the MX. go-smtp itself
// hides AUTH and answers it with an error until TLS is up
// (AllowInsecureAuth is false).
func (se *session) AuthMechanisms() []string {
	if se.mode == ModeMX {
		return nil
	}
	return []string{sasl.Plain, sasl.Login}
}

func (se *session) Auth(mech string) (sasl.Server, error) {
	if se.mode == ModeMX {
		return nil, smtp.ErrAuthUnsupported
	}
	if !se.isTLS() {
		// RFC 4954 section 6: 538 5.7.11 Encryption required. (go-smtp
		// normally stops AUTH before this point.)
		return nil, smtpErr(538, 5, 7, 11, "Encryption required for requested authentication mechanism")
	}
	switch mech {
	case sasl.Plain:
		return sasl.NewPlainServer(func(identity, username, password string) error {
			if identity != "" && !strings.EqualFold(identity, username) {
				return smtpErr(535, 5, 7, 8, "Authentication credentials invalid")
			}
			return se.login(username, password)
		}), nil
	case sasl.Login:
		return &loginServer{authenticate: se.login}, nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

func (se *session) login(username, password string) error {
	// go-smtp reads nothing while AUTH's check waits for its slot:
	// hangup ends the wait if the client leaves meanwhile.
	ctx, stop := hangup.Watch(se.s.ctx, se.conn.Conn())
	u, err := se.s.guard.Login(ctx, auth.Attempt{Username: username, Password: password, IP: se.ip, Protocol: se.mode.String()})
	gone := hangup.Gone(ctx)
	stop()
	switch {
	case err != nil && gone:
		se.s.log.Debug("login abandoned: client hung up", "ip", se.ip)
		return smtpErr(454, 4, 7, 0, "Temporary authentication failure")
	case err == nil:
		se.user = u.Address
		return nil
	case errors.Is(err, auth.ErrInvalidCredentials):
		// RFC 4954 section 6: 535 5.7.8, the same for unknown users.
		return smtpErr(535, 5, 7, 8, "Authentication credentials invalid")
	case errors.Is(err, auth.ErrLocked):
		return smtpErr(454, 4, 7, 0, "Too many failed authentications, try again later")
	default:
		se.s.log.Error("login", "err", err)
		return smtpErr(454, 4, 7, 0, "Temporary authentication failure")
	}
}

func (se *session) Mail(from string, opts *smtp.MailOptions) error {
	if se.mode != ModeMX {
		if !se.isTLS() {
			// RFC 3207 section 4.
			return smtpErr(530, 5, 7, 0, "Must issue a STARTTLS command first")
		}
		if se.user == "" {
			// RFC 4954 section 6.
			return smtpErr(530, 5, 7, 0, "Authentication required")
		}
		if from == "" || !se.s.accounts.MaySendAs(se.s.ctx, se.user, from) {
			return smtpErr(553, 5, 7, 1, "Sender address not owned by authenticated user")
		}
	} else if from != "" {
		if _, err := auth.NormalizeAddress(from); err != nil {
			return smtpErr(553, 5, 1, 7, "Malformed sender address")
		}
	}
	// RFC 1870 section 6.1: a declared SIZE over the limit is refused
	// at once with 552 5.3.4 (go-smtp checks only its start-up ceiling).
	if opts != nil && opts.Size > se.s.limits.Load().MaxMessageBytes {
		return smtpErr(552, 5, 3, 4, "Message size exceeds fixed maximum message size")
	}
	if !se.s.msgRate.Allow(se.ip) {
		return smtpErr(450, 4, 7, 1, "Too many messages from your address, slow down")
	}
	se.from = from
	se.rcpts = nil
	return nil
}

func (se *session) Rcpt(to string, opts *smtp.RcptOptions) error {
	// RFC 5321 section 4.5.3.1.8 / 4.5.3.1.10: 452 for too many recipients.
	if max := se.s.limits.Load().MaxRecipients; len(se.rcpts) >= max {
		return smtpErr(452, 4, 5, 3, fmt.Sprintf("Maximum limit of %d recipients reached", max))
	}
	addr, err := auth.NormalizeAddress(to)
	if err != nil {
		return smtpErr(553, 5, 1, 3, "Malformed recipient address")
	}
	if !se.s.accounts.IsLocalDomain(addr[strings.LastIndexByte(addr, '@')+1:]) {
		if se.mode == ModeMX {
			// Never an open relay (RFC 5321 section 3.6.2, RFC 2505).
			return errRelayDenied
		}
		return smtpErr(550, 5, 7, 1, "Delivery to remote domains is not supported by this server yet")
	}
	users, err := se.s.accounts.Resolve(se.s.ctx, addr)
	if errors.Is(err, auth.ErrNotFound) {
		return errNoSuchUser
	}
	if err != nil {
		se.s.log.Error("resolve recipient", "err", err)
		return errTempFailure
	}
	se.rcpts = append(se.rcpts, recipient{address: addr, users: users})
	return nil
}

func (se *session) Data(r io.Reader) error {
	ctx := se.s.ctx
	spool, err := os.CreateTemp(se.s.cfg.SpoolDir, "smtp-*.eml")
	if err != nil {
		se.s.log.Error("spool", "err", err)
		io.Copy(io.Discard, r)
		return errTempFailure
	}
	defer func() {
		spool.Close()
		os.Remove(spool.Name())
	}()
	lim := se.s.limits.Load()
	bp, _ := se.s.spoolBufs.Get().(*[]byte)
	if bp == nil {
		b := make([]byte, 32<<10)
		bp = &b
	}
	// The struct hides the file's ReadFrom so that the pooled buffer is used.
	n, err := io.CopyBuffer(struct{ io.Writer }{spool}, io.LimitReader(r, lim.MaxMessageBytes+1), *bp)
	se.s.spoolBufs.Put(bp)
	if err == nil && n > lim.MaxMessageBytes {
		// RFC 5321 section 4.5.3.1.10 (go-smtp drains the rest).
		return smtpErr(552, 5, 3, 4, "Maximum message size exceeded")
	}
	if err != nil {
		var se2 *smtp.SMTPError
		if errors.As(err, &se2) {
			return se2 // e.g. 552 5.3.4 too large
		}
		if errors.Is(err, smtp.ErrTooLongLine) {
			// RFC 5321 section 4.5.3.1.6: text lines are at most 1000
			// octets; MaxLineLength allows some slack beyond that.
			return smtpErr(500, 5, 5, 2, "Line too long")
		}
		return smtpErr(451, 4, 3, 0, "Error reading message")
	}

	var prefix bytes.Buffer
	folder := store.Inbox
	if se.from != "" || se.mode == ModeMX {
		// RFC 5321 section 4.4: the delivering server adds Return-Path.
		fmt.Fprintf(&prefix, "Return-Path: <%s>\r\n", se.from)
	}
	skipHeader := false
	if se.mode == ModeMX {
		out := checkAuth(ctx, se.s.cfg.Resolver, se.s.cfg.DMARCSample, net.ParseIP(se.ip), se.helo, se.from, spool)
		if out.dmarcPolicy != "" {
			// What was done with a failing message, in the words of an
			// aggregate report's disposition (RFC 7489 appendix C):
			// "none" when not enforcing. It goes into the reason property
			// (RFC 8601 section 2.3, free text for humans), since
			// go-msgauth's authres writes no comments; Gmail writes the
			// same "dis=" in a comment. (mox, for comparison, does not
			// lower the policy of a sampled-out message: it skips it.)
			dis := dmarc.PolicyNone
			if lim.EnforceDMARC {
				dis = out.dmarcPolicy
			}
			out.dmarc.Reason += " dis=" + string(dis)
			switch dis {
			case dmarc.PolicyReject:
				se.s.log.Info("rejected by DMARC", "ip", se.ip, "from", out.fromDomain, "reason", out.dmarc.Reason)
				// RFC 7489 section 6.7 recommends 550 5.7.1.
				return smtpErr(550, 5, 7, 1, "Rejected by DMARC policy of "+out.fromDomain)
			case dmarc.PolicyQuarantine:
				// RFC 7489 section 6.3: quarantine is "the mailbox's spam
				// folder"; imapd lists this one with SPECIAL-USE \Junk
				// (RFC 6154) and Deliver creates it if missing.
				folder = store.Junk
			}
		}
		// RFC 8601 section 2.2; the header is folded by Format.
		fmt.Fprintf(&prefix, "Authentication-Results: %s\r\n", authres.Format(se.s.cfg.Hostname, out.results))
		skipHeader = hasForgedAuthResults(spool, se.s.cfg.Hostname)
	}
	writeReceived(&prefix, se)

	body, err := messageBody(spool, skipHeader, se.s.cfg.Hostname)
	if err != nil {
		return errTempFailure
	}
	seen := map[string]bool{}
	for _, rc := range se.rcpts {
		for _, u := range rc.users {
			if seen[u] {
				continue
			}
			seen[u] = true
			acct, err := store.AccountOf(u)
			if err != nil {
				return errTempFailure
			}
			if _, err := body.Seek(0, io.SeekStart); err != nil {
				return errTempFailure
			}
			d, err := se.s.store.Deliver(ctx, acct, folder, io.MultiReader(bytes.NewReader(prefix.Bytes()), body))
			if err != nil {
				se.s.log.Error("deliver", "to", u, "err", err)
				return errTempFailure
			}
			se.s.log.Info("delivered", "mode", se.mode.String(), "from", se.from, "to", u, "folder", folder, "size", d.Size, "ip", se.ip)
		}
	}
	return nil
}

func writeReceived(b *bytes.Buffer, se *session) {
	// RFC 5321 section 4.4 trace field; "with" keywords from RFC 3848.
	with := "ESMTP"
	tlsInfo := ""
	if st, ok := se.conn.TLSConnectionState(); ok {
		with += "S"
		tlsInfo = fmt.Sprintf("\r\n\t(using %s with cipher %s)", tls.VersionName(st.Version), tls.CipherSuiteName(st.CipherSuite))
	}
	if se.user != "" {
		with += "A"
	}
	fmt.Fprintf(b, "Received: from %s ([%s])\r\n\tby %s (mailvault) with %s%s;\r\n\t%s\r\n",
		sanitizeHeader(se.helo), se.ip, se.s.cfg.Hostname, with, tlsInfo, time.Now().Format(time.RFC1123Z))
}

func sanitizeHeader(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x21 || r > 0x7e || r == '(' || r == ')' {
			return '_'
		}
		return r
	}, s)
}

// hasForgedAuthResults reports whether the message carries an
// Authentication-Results field with our own authserv-id, which RFC 8601
// section 5 says to remove.
func hasForgedAuthResults(f *os.File, hostname string) bool {
	f.Seek(0, io.SeekStart)
	h, err := textproto.ReadHeader(bufioReader(f))
	if err != nil {
		return false
	}
	for _, v := range h.Values("Authentication-Results") {
		if id, _, err := authres.Parse(v); err == nil && strings.EqualFold(id, hostname) {
			return true
		} else if err != nil && strings.HasPrefix(strings.ToLower(strings.TrimSpace(v)), strings.ToLower(hostname)) {
			return true
		}
	}
	return false
}

// messageBody returns the spooled message to store, without forged
// Authentication-Results fields when strip is set.
func messageBody(f *os.File, strip bool, hostname string) (io.ReadSeeker, error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	if !strip {
		return f, nil
	}
	br := bufioReader(f)
	h, err := textproto.ReadHeader(br)
	if err != nil {
		return nil, err
	}
	fields := h.FieldsByKey("Authentication-Results")
	for fields.Next() {
		id, _, err := authres.Parse(fields.Value())
		if err != nil || strings.EqualFold(id, hostname) {
			fields.Del()
		}
	}
	var b bytes.Buffer
	if err := textproto.WriteHeader(&b, h); err != nil {
		return nil, err
	}
	if _, err := io.Copy(&b, br); err != nil {
		return nil, err
	}
	return bytes.NewReader(b.Bytes()), nil
}

func (se *session) Reset() {
	se.from = ""
	se.rcpts = nil
}

func (se *session) Logout() error { return nil }
