// Package pop3d is mailvault's POP3 server (RFC 1939) over the INBOX of
// the Maildir store:
//
//   - port 110 with STLS (RFC 2595 section 4) and port 995 with implicit TLS
//     (RFC 8314 section 3.3); USER and PASS are refused until TLS is up;
//   - CAPA (RFC 2449) with the RESP-CODES and AUTH-RESP-CODE (RFC 3206)
//     extensions; logins through auth.Guard (lockout, delays, audit; one
//     answer for an unknown user and a wrong password; app passwords);
//   - STAT, LIST, UIDL, TOP, RETR (dot-stuffed, CRLF line ends), DELE, RSET,
//     NOOP, QUIT; deletions are applied only at QUIT, in the UPDATE state
//     (RFC 1939 section 6), and a broken connection applies none;
//   - UIDL is "<UIDVALIDITY>.<UID>" from the store's UID index, stable
//     across sessions;
//   - one session per maildrop at a time (RFC 1939 section 4, [IN-USE]);
//   - command lines are bounded (RFC 2449 section 4: 255 octets); an
//     over-long line or an unknown command gets -ERR, and a session that
//     keeps sending bad commands is closed.
package pop3d

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mailvault/mailvault/mailserver/auth"
	"github.com/mailvault/mailvault/mailserver/ratelimit"
	"github.com/mailvault/mailvault/mailserver/store"
)

// Config tunes the server. Zero values get the defaults noted.
type Config struct {
	Hostname string // in the greeting; "localhost"
	// TLSConfig is required: it serves STLS and the implicit-TLS port.
	TLSConfig *tls.Config
	// Per remote IP: new connections per minute (burst = same number) and
	// concurrent connections. 120 and 20.
	ConnsPerMinute float64
	MaxConnsPerIP  int
	// IdleTimeout is the autologout timer; RFC 1939 section 3 asks for at
	// least 10 minutes. 10 minutes.
	IdleTimeout time.Duration
	// MaxErrors closes a session after this many bad commands; 10.
	MaxErrors int
}

func (c *Config) setDefaults() {
	if c.Hostname == "" {
		c.Hostname = "localhost"
	}
	if c.ConnsPerMinute == 0 {
		c.ConnsPerMinute = 120
	}
	if c.MaxConnsPerIP == 0 {
		c.MaxConnsPerIP = 20
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = 10 * time.Minute
	}
	if c.MaxErrors == 0 {
		c.MaxErrors = 10
	}
}

// maxLine bounds a command line including CRLF (RFC 2449 section 4).
const maxLine = 255

// Limits are the settings that SetLimits can change while the server
// runs. Zero values get Config's defaults.
type Limits struct {
	ConnsPerMinute float64
	MaxConnsPerIP  int
	IdleTimeout    time.Duration // RFC 1939 section 3: at least 10 minutes
	MaxErrors      int
}

// Server serves POP3 on any number of listeners.
type Server struct {
	// cfg is fixed at New; the live values of its Limits fields are in
	// limits.
	cfg    Config
	limits atomic.Pointer[Limits]
	setMu  sync.Mutex // serializes SetLimits
	store  *store.Store
	guard  *auth.Guard
	log    *slog.Logger

	conns *ratelimit.Conns // per-IP limits of every listener

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu        sync.Mutex
	closing   bool
	listeners map[net.Listener]struct{}
	open      map[net.Conn]struct{}
	locked    map[string]bool // maildrops in use, by account
}

// New returns a server on st whose logins are checked by guard.
func New(cfg Config, st *store.Store, guard *auth.Guard, log *slog.Logger) *Server {
	cfg.setDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		cfg: cfg, store: st, guard: guard, log: log,
		conns:     ratelimit.NewConns(cfg.ConnsPerMinute, cfg.MaxConnsPerIP),
		ctx:       ctx,
		cancel:    cancel,
		listeners: map[net.Listener]struct{}{},
		open:      map[net.Conn]struct{}{},
		locked:    map[string]bool{},
	}
	s.limits.Store(&Limits{ConnsPerMinute: cfg.ConnsPerMinute, MaxConnsPerIP: cfg.MaxConnsPerIP, IdleTimeout: cfg.IdleTimeout, MaxErrors: cfg.MaxErrors})
	return s
}

// SetLimits replaces the limits while the server runs; per-IP rate and
// connection counts are kept, not reset.
func (s *Server) SetLimits(l Limits) {
	c := Config{ConnsPerMinute: l.ConnsPerMinute, MaxConnsPerIP: l.MaxConnsPerIP, IdleTimeout: l.IdleTimeout, MaxErrors: l.MaxErrors}
	c.setDefaults()
	l = Limits{ConnsPerMinute: c.ConnsPerMinute, MaxConnsPerIP: c.MaxConnsPerIP, IdleTimeout: c.IdleTimeout, MaxErrors: c.MaxErrors}
	s.setMu.Lock()
	defer s.setMu.Unlock()
	s.conns.SetLimits(l.ConnsPerMinute, l.MaxConnsPerIP)
	s.limits.Store(&l)
}

// Serve accepts connections on ln until Shutdown; with implicitTLS (port
// 995) each connection starts with a TLS handshake.
func (s *Server) Serve(ln net.Listener, implicitTLS bool) error {
	if s.cfg.TLSConfig == nil {
		return errors.New("pop3d: a TLS configuration is required")
	}
	// Connections over the per-IP limits are refused before the greeting:
	// -ERR [SYS/TEMP] (RFC 3206) on the cleartext port, a plain
	// close on the TLS port.
	ln = &ratelimit.Listener{
		Listener: ln, Conns: s.conns, ImplicitTLS: implicitTLS, Log: s.log,
		Replies: ratelimit.Replies{
			TooFast: "-ERR [SYS/TEMP] Too many connections from your address, try later\r\n",
			TooMany: "-ERR [SYS/TEMP] Too many concurrent connections from your address\r\n",
		},
	}
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		ln.Close()
		return nil
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	for {
		c, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closing := s.closing
			s.mu.Unlock()
			if closing || errors.Is(err, net.ErrClosed) {
				return nil
			}
			// ln waits out temporary errors (EMFILE) itself.
			return fmt.Errorf("pop3d: accept: %w", err)
		}
		ip := ratelimit.RemoteIP(c.RemoteAddr())
		s.mu.Lock()
		if s.closing {
			s.mu.Unlock()
			c.Close() // gives back its per-IP slot
			return nil
		}
		s.open[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			defer func() {
				c.Close()
				s.mu.Lock()
				delete(s.open, c)
				s.mu.Unlock()
			}()
			var conn net.Conn = c
			if implicitTLS {
				conn = tls.Server(c, s.cfg.TLSConfig)
			}
			sess := &session{srv: s, conn: conn, ip: ip}
			sess.serve()
		}()
	}
}

// Shutdown stops accepting and lets sessions finish until ctx ends, then
// closes them; a session closed before QUIT deletes nothing (RFC 1939
// section 6).
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	for l := range s.listeners {
		l.Close()
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		s.mu.Lock()
		for c := range s.open {
			c.Close()
		}
		s.mu.Unlock()
		s.cancel()
		<-done
	}
	s.cancel()
	return nil
}

// lock takes the maildrop of a for one session (RFC 1939 section 4).
func (s *Server) lock(a store.Account) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.locked[a.String()] {
		return false
	}
	s.locked[a.String()] = true
	return true
}

func (s *Server) unlock(a store.Account) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.locked, a.String())
}

// lineReader reads CRLF (or LF) terminated lines of at most max octets.
type lineReader struct {
	r   *bufio.Reader
	max int
}

var errLineTooLong = errors.New("pop3d: line too long")

// readLine returns a line without its terminator. An over-long line is
// consumed to its end and reported as errLineTooLong.
func (lr *lineReader) readLine() (string, error) {
	var buf []byte
	tooLong := false
	for {
		frag, err := lr.r.ReadSlice('\n')
		if !tooLong {
			buf = append(buf, frag...)
			if len(buf) > lr.max {
				tooLong, buf = true, nil
			}
		}
		if err == nil {
			break
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		return "", err
	}
	if tooLong {
		return "", errLineTooLong
	}
	return strings.TrimRight(string(buf), "\r\n"), nil
}
