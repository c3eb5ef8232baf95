// Package imapd is mailvault's IMAP server (RFC 9051 / RFC 3501), built on
// emersion/go-imap/v2's imapserver over the Maildir++ store:
//
//   - port 143 with STARTTLS (RFC 9051 section 6.2.1) and port 993 with
//     implicit TLS (RFC 8314 section 3.3); LOGIN and AUTHENTICATE are
//     refused before TLS and LOGINDISABLED is advertised (RFC 9051
//     section 6.2.3, RFC 8314 section 4.1);
//   - logins through auth.Guard (lockout, delays, audit; one answer for an
//     unknown user and a wrong password; app passwords);
//   - IDLE (RFC 2177), MOVE (RFC 6851), UIDPLUS (RFC 4315), SPECIAL-USE
//     (RFC 6154), NAMESPACE (RFC 2342), LIST-EXTENDED (RFC 5258),
//     LIST-STATUS (RFC 5819), CHILDREN (RFC 3348), APPENDLIMIT (RFC 7889),
//     ID (RFC 2971; third_party/go-imap adds it to the library), NOTIFY
//     (RFC 5465, notify.go);
//   - flags live in the Maildir file names, keywords (RFC 9051 section
//     2.3.2) too, as Dovecot's letters a–z named per folder (see store); a
//     folder holds 26, and a 27th is refused with NO [LIMIT];
//   - sessions that select the same folder share one view of it, and each
//     its own queue of the others' changes (views.go): EXISTS, EXPUNGE,
//     FETCH, FLAGS and PERMANENTFLAGS, and IMAP4rev1's \Recent and RECENT
//     (RFC 3501 section 2.3.2), one session's per message, as Dovecot has it.
//
// Command lines and literals are bounded (imapserver: 50 KiB per command,
// 4 KiB literals except APPEND, whose literal is bounded by the maximum
// message size), and connections are limited per IP.
package imapd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/mailvault/mailvault/mailserver/auth"
	"github.com/mailvault/mailvault/mailserver/internal/handshake"
	"github.com/mailvault/mailvault/mailserver/ratelimit"
	"github.com/mailvault/mailvault/mailserver/store"
)

// Config tunes the server. Zero values get the defaults noted.
type Config struct {
	// TLSConfig is required: it serves STARTTLS and the implicit-TLS port.
	TLSConfig *tls.Config
	// MaxMessageBytes bounds an APPENDed message (RFC 7889 APPENDLIMIT);
	// 25 MiB.
	MaxMessageBytes int64
	// Per remote IP: new connections per minute (burst = same number) and
	// concurrent connections. 120 and 20.
	ConnsPerMinute float64
	MaxConnsPerIP  int
	// IdlePoll is how often a session in IDLE rescans its folder for
	// changes made outside this process (changes made through the store
	// are pushed at once); 30 seconds.
	IdlePoll time.Duration
	// SpoolDir holds APPEND literals while they are received, so that a
	// slow upload does not hold up store.Quiesce. os.TempDir() if empty.
	SpoolDir string
	// MetaCacheBytes bounds the cache of message header blocks, sizes and
	// internal dates that header and ENVELOPE FETCHes are answered from
	// without opening message files (headercache.go), shared by all
	// sessions; about 1.6 KB per message with a 500-byte header. 32 MiB;
	// negative disables it.
	MetaCacheBytes int64
	// NotifyQueue bounds the events a NOTIFY session has queued and not
	// yet been sent (folders to send STATUS for, LISTs); past it the
	// session gets NOTIFICATIONOVERFLOW and NOTIFY is off (RFC 5465
	// section 5.8). 1,000.
	NotifyQueue int
}

func (c *Config) setDefaults() {
	if c.MaxMessageBytes == 0 {
		c.MaxMessageBytes = 25 << 20
	}
	if c.MaxMessageBytes > math.MaxUint32 {
		c.MaxMessageBytes = math.MaxUint32
	}
	if c.ConnsPerMinute == 0 {
		c.ConnsPerMinute = 120
	}
	if c.MaxConnsPerIP == 0 {
		c.MaxConnsPerIP = 20
	}
	if c.IdlePoll == 0 {
		c.IdlePoll = 30 * time.Second
	}
	if c.SpoolDir == "" {
		c.SpoolDir = os.TempDir()
	}
	if c.MetaCacheBytes == 0 {
		c.MetaCacheBytes = 32 << 20
	}
	if c.NotifyQueue == 0 {
		c.NotifyQueue = 1000
	}
}

// spoolPrefix names APPEND spool files; New removes stale ones.
const spoolPrefix = "imap-append-"

// Limits are the settings that SetLimits can change while the server
// runs. Zero values get Config's defaults.
type Limits struct {
	MaxMessageBytes int64 // APPENDLIMIT (RFC 7889)
	ConnsPerMinute  float64
	MaxConnsPerIP   int
}

// Server serves IMAP on any number of listeners.
type Server struct {
	// cfg is fixed at New; the live values of its Limits fields are in
	// limits.
	cfg    Config
	limits atomic.Pointer[Limits]
	setMu  sync.Mutex // serializes SetLimits
	store  *store.Store
	guard  *auth.Guard
	log    *slog.Logger
	imap   *imapserver.Server
	meta   *metaCache // nil when disabled
	// listings counts the folder listings that refreshes made (tests
	// assert that an unchanged folder is not listed again).
	listings atomic.Int64

	conns *ratelimit.Conns // per-IP limits of every listener

	ctx         context.Context
	cancel      context.CancelFunc
	stopWatch   func()
	shutdownErr error

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	sessions  map[*session]struct{}
	mailboxes map[string]*mailbox               // selected folders by mailboxKey
	notifiers map[string]map[*notifier]struct{} // NOTIFY sessions by account (notify.go)
	subMu     sync.Mutex                        // serializes subscription file updates
	closing   bool
	drained   chan struct{} // closed when closing and no session is left
}

// New returns a server on st whose logins are checked by guard.
func New(cfg Config, st *store.Store, guard *auth.Guard, log *slog.Logger) *Server {
	cfg.setDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// APPEND spool files of a previous run were never acknowledged.
	if old, err := filepath.Glob(filepath.Join(cfg.SpoolDir, spoolPrefix+"*")); err == nil {
		for _, p := range old {
			os.Remove(p)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		cfg: cfg, store: st, guard: guard, log: log,
		conns:     ratelimit.NewConns(cfg.ConnsPerMinute, cfg.MaxConnsPerIP),
		ctx:       ctx,
		cancel:    cancel,
		listeners: map[net.Listener]struct{}{},
		sessions:  map[*session]struct{}{},
		mailboxes: map[string]*mailbox{},
	}
	if cfg.MetaCacheBytes > 0 {
		s.meta = newMetaCache(cfg.MetaCacheBytes)
	}
	s.imap = imapserver.New(&imapserver.Options{
		NewSession: s.newSession,
		Caps: imap.CapSet{
			imap.CapIMAP4rev1:       {},
			imap.CapNamespace:       {},
			imap.CapUIDPlus:         {},
			imap.CapMove:            {},
			imap.CapSpecialUse:      {},
			imap.CapListExtended:    {},
			imap.CapListStatus:      {},
			imap.CapChildren:        {},
			imap.CapStatusSize:      {},
			imap.CapID:              {}, // RFC 2971, id.go
			imap.CapESearch:         {}, // RFC 4731, search.go
			imap.CapLiteralPlus:     {}, // RFC 7888
			imap.CapSort:            {}, // RFC 5256, sort.go
			imap.CapSortDisplay:     {}, // RFC 5957
			imap.CapESort:           {}, // RFC 5267, sort.go
			"THREAD=ORDEREDSUBJECT": {}, // RFC 5256, thread.go
			"THREAD=REFERENCES":     {},
			imap.CapBinary:          {}, // RFC 3516, binary.go
			imap.CapMultiAppend:     {}, // RFC 3502, multiappend.go
			imap.CapWithin:          {}, // RFC 5032, within.go
			imap.CapCatenate:        {}, // RFC 4469, catenate.go
			imap.CapCondStore:       {}, // RFC 7162, condstore.go
			imap.CapQResync:         {}, // RFC 7162, condstore.go
			imap.CapSearchRes:       {}, // RFC 5182, searchres.go
			imap.CapContextSearch:   {}, // RFC 5267, context.go
			imap.CapContextSort:     {}, // RFC 5267, context.go (SORT RETURN (UPDATE))
			imap.CapNotify:          {}, // RFC 5465, notify.go
		},
		Logger:    printfLogger{log},
		TLSConfig: cfg.TLSConfig,
		// RFC 9051 section 11.1 / RFC 8314: no credentials in cleartext.
		InsecureAuth: false,
	})
	s.limits.Store(&Limits{MaxMessageBytes: cfg.MaxMessageBytes, ConnsPerMinute: cfg.ConnsPerMinute, MaxConnsPerIP: cfg.MaxConnsPerIP})
	stopChanges, stopDeliveries := st.Watch(s.folderChanged), st.WatchDeliveries(s.warmMeta)
	stopFolders := st.WatchFolders(s.notifyFolder)
	s.stopWatch = func() { stopChanges(); stopDeliveries(); stopFolders() }
	return s
}

// Limits returns the limits in force.
func (s *Server) Limits() Limits { return *s.limits.Load() }

// SetLimits replaces the limits while the server runs; per-IP rate and
// connection counts are kept, not reset.
func (s *Server) SetLimits(l Limits) {
	c := Config{MaxMessageBytes: l.MaxMessageBytes, ConnsPerMinute: l.ConnsPerMinute, MaxConnsPerIP: l.MaxConnsPerIP, IdlePoll: s.cfg.IdlePoll, SpoolDir: s.cfg.SpoolDir}
	c.setDefaults()
	l = Limits{MaxMessageBytes: c.MaxMessageBytes, ConnsPerMinute: c.ConnsPerMinute, MaxConnsPerIP: c.MaxConnsPerIP}
	s.setMu.Lock()
	defer s.setMu.Unlock()
	s.conns.SetLimits(l.ConnsPerMinute, l.MaxConnsPerIP)
	s.limits.Store(&l)
}

// Serve accepts connections on ln until Shutdown. With implicitTLS (port
// 993) ln is a plain listener that Serve wraps in TLS.
func (s *Server) Serve(ln net.Listener, implicitTLS bool) error {
	if s.cfg.TLSConfig == nil {
		return errors.New("imapd: a TLS configuration is required")
	}
	// Connections over the per-IP limits are refused before any session
	// starts: "* BYE" on the cleartext port (RFC 9051 section 7.1.5), a
	// plain close on the TLS port.
	var l net.Listener = &ratelimit.Listener{
		Listener: ln, Conns: s.conns, ImplicitTLS: implicitTLS, Log: s.log,
		Replies: ratelimit.Replies{
			TooFast: "* BYE Too many connections from your address, try later\r\n",
			TooMany: "* BYE Too many concurrent connections from your address\r\n",
		},
	}
	if implicitTLS {
		// Handshake before imapserver sees the connection (see package
		// handshake), after the per-IP limits.
		l = handshake.NewListener(batchListener{l}, s.cfg.TLSConfig, handshake.Timeout, s.log)
	} else {
		l = batchListener{l}
	}
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		ln.Close()
		return nil
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	err := s.imap.Serve(l)
	if err != nil && (errors.Is(err, net.ErrClosed) || s.ctx.Err() != nil) {
		return nil
	}
	return err
}

// Shutdown stops accepting, says BYE to every session (RFC 9051 section
// 7.1.5) once its current response is written, waits for the sessions to
// end until ctx ends, then closes what is left. A command whose store
// operation has begun completes it (each is atomic and durable).
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return nil
	}
	s.closing = true
	s.drained = make(chan struct{})
	if len(s.sessions) == 0 {
		close(s.drained)
	}
	for l := range s.listeners {
		l.Close()
	}
	var conns []*imapserver.Conn
	for sess := range s.sessions {
		conns = append(conns, sess.conn)
	}
	s.mu.Unlock()
	for _, c := range conns {
		go c.Bye("Server shutting down")
	}
	select {
	case <-s.drained:
	case <-ctx.Done():
	}
	s.stopWatch()
	s.cancel()
	if err := s.imap.Close(); err != nil && !errors.Is(err, net.ErrClosed) && !strings.Contains(err.Error(), "server closed") {
		return fmt.Errorf("imapd: close: %w", err)
	}
	return nil
}

func (s *Server) newSession(c *imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
	sess := &session{srv: s, conn: c, ip: ratelimit.RemoteIP(c.NetConn().RemoteAddr()), out: batchConnOf(c.NetConn())}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return nil, nil, &imap.Error{Type: imap.StatusResponseTypeBye, Text: "Server shutting down"}
	}
	s.sessions[sess] = struct{}{}
	return sess, nil, nil
}

func (s *Server) endSession(sess *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.sessions, sess)
	if s.closing && len(s.sessions) == 0 {
		select {
		case <-s.drained:
		default:
			close(s.drained)
		}
	}
}

// appendLimit is the APPENDLIMIT value (RFC 7889).
func (s *Server) appendLimit() uint32 { return uint32(s.limits.Load().MaxMessageBytes) }

type printfLogger struct{ log *slog.Logger }

func (l printfLogger) Printf(format string, args ...any) {
	l.log.Warn(fmt.Sprintf(format, args...))
}
