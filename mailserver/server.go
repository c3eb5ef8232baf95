package mailserver

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/mailvault/mailvault/mailserver/audit"
	"github.com/mailvault/mailvault/mailserver/auth"
	"github.com/mailvault/mailvault/mailserver/control"
	"github.com/mailvault/mailvault/mailserver/imapd"
	"github.com/mailvault/mailvault/mailserver/pop3d"
	"github.com/mailvault/mailvault/mailserver/smtpd"
	"github.com/mailvault/mailvault/mailserver/store"
	"github.com/mailvault/mailvault/mailserver/tlsutil"
)

// Data is an opened data directory: accounts and audit log. The account
// commands use it without starting a server.
type Data struct {
	Dir      string
	Accounts *auth.DB
	Audit    *audit.Log
}

// OpenData opens (creating) a data directory. A new directory gets the
// example domain so that `user add alice@example.test` works at once.
func OpenData(dir string, opts auth.Options) (*Data, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	_, statErr := os.Stat(AccountsPath(dir))
	db, err := auth.Open(AccountsPath(dir), opts)
	if err != nil {
		return nil, err
	}
	al, err := audit.Open(AuditPath(dir))
	if err != nil {
		return nil, err
	}
	d := &Data{Dir: dir, Accounts: db, Audit: al}
	if errors.Is(statErr, fs.ErrNotExist) {
		ctx := context.Background()
		if err := db.AddDomain(ctx, ExampleDomain); err != nil && !errors.Is(err, auth.ErrExists) {
			al.Close()
			return nil, err
		}
		if err := al.Record(ctx, audit.Event{Kind: audit.KindAdmin, Action: "domain.add", Detail: ExampleDomain + " (new data directory)", Protocol: "serve", Success: true}); err != nil {
			al.Close()
			return nil, err
		}
	}
	return d, nil
}

// Close releases the data directory.
func (d *Data) Close() error { return d.Audit.Close() }

// Server is a running mail server.
type Server struct {
	cfg   Config // as started; listeners and paths come from it
	guard *auth.Guard
	log   *slog.Logger
	data  *Data
	store *store.Store
	certs *tlsutil.Certs
	smtp  *smtpd.Server
	imap  *imapd.Server
	pop3  *pop3d.Server

	liveMu sync.Mutex // serializes ReloadConfig, guards live
	live   Config     // the settings in force, after reloads

	mu    sync.Mutex
	addrs map[string]string
	wg    sync.WaitGroup
	errc  chan error
	// control is the control socket once started; mu guards it.
	control *control.Server
}

// Options are dependencies a caller (a test) may replace.
type Options struct {
	Logger   *slog.Logger
	Resolver smtpd.Resolver // DNS for SPF/DKIM/DMARC; the system's if nil
	Auth     auth.Options   // password hashing cost
}

// New opens the data directory, generates the self-signed certificate on
// first start, and builds the listeners (not yet listening).
func New(ctx context.Context, cfg Config, opts Options) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.Auth.MaxConcurrentHashes == 0 {
		opts.Auth.MaxConcurrentHashes = cfg.Auth.MaxConcurrentHashes
	}
	if opts.Auth.CacheTTL == 0 {
		opts.Auth.CacheTTL = cfg.Auth.CacheTTL
	}
	if opts.Auth.Params == (auth.Params{}) {
		opts.Auth.Params = cfg.Auth.Argon2.Params()
	}
	data, err := OpenData(cfg.DataDir, opts.Auth)
	if err != nil {
		return nil, err
	}
	certFile, keyFile := cfg.certFiles()
	if cfg.TLS.Cert == "" {
		created, err := tlsutil.EnsureSelfSigned(certFile, keyFile, []string{cfg.Hostname, "localhost", "127.0.0.1", "::1"}, time.Now())
		if err != nil {
			data.Close()
			return nil, err
		}
		if created {
			log.Warn("generated a self-signed certificate; configure tls.cert and tls.key for production", "cert", certFile)
		}
	}
	certs, err := tlsutil.Load(certFile, keyFile)
	if err != nil {
		data.Close()
		return nil, err
	}
	st, err := store.Open(ctx, cfg.mailDir(), store.Options{Hostname: cfg.Hostname, MaxMessageBytes: cfg.SMTP.MaxMessageBytes + 64*1024, Logger: log})
	if err != nil {
		data.Close()
		return nil, err
	}
	if err := os.MkdirAll(cfg.spoolDir(), 0o700); err != nil {
		data.Close()
		return nil, fmt.Errorf("spool: %w", err)
	}
	// Spooled messages of a previous run were never acknowledged (they
	// are only acknowledged once delivered into a Maildir): drop them.
	if old, err := filepath.Glob(filepath.Join(cfg.spoolDir(), "smtp-*.eml")); err == nil {
		for _, p := range old {
			os.Remove(p)
		}
	}
	guard := &auth.Guard{
		DB: data.Accounts, Audit: data.Audit, Log: log,
		Limiter: auth.NewLimiter(limiterConfig(cfg.Auth), nil),
	}
	smtpSrv := smtpd.New(smtpd.Config{
		Hostname: cfg.Hostname, TLSConfig: certs.ServerConfig(),
		MaxMessageBytes: cfg.SMTP.MaxMessageBytes, MaxRecipients: cfg.SMTP.MaxRecipients,
		ConnsPerMinute: cfg.SMTP.ConnsPerMinute, MaxConnsPerIP: cfg.SMTP.MaxConnsPerIP,
		MessagesPerMinute: cfg.SMTP.MessagesPerMinute, EnforceDMARC: cfg.SMTP.EnforceDMARC,
		Resolver: opts.Resolver, SpoolDir: cfg.spoolDir(),
	}, st, data.Accounts, guard, log.With("server", "smtp"))
	imapSrv := imapd.New(imapd.Config{
		TLSConfig: certs.ServerConfig(), MaxMessageBytes: cfg.SMTP.MaxMessageBytes,
		ConnsPerMinute: cfg.IMAP.ConnsPerMinute, MaxConnsPerIP: cfg.IMAP.MaxConnsPerIP,
		SpoolDir: cfg.spoolDir(), MetaCacheBytes: cfg.IMAP.HeaderCacheBytes,
	}, st, guard, log.With("server", "imap"))
	pop3Srv := pop3d.New(pop3d.Config{
		Hostname: cfg.Hostname, TLSConfig: certs.ServerConfig(),
		ConnsPerMinute: cfg.POP3.ConnsPerMinute, MaxConnsPerIP: cfg.POP3.MaxConnsPerIP,
	}, st, guard, log.With("server", "pop3"))
	return &Server{cfg: cfg, live: cfg, guard: guard, log: log, data: data, store: st, certs: certs, smtp: smtpSrv, imap: imapSrv, pop3: pop3Srv, addrs: map[string]string{}, errc: make(chan error, 8)}, nil
}

// Store is the mail store, e.g. for Quiesce before a snapshot.
func (s *Server) Store() *store.Store { return s.store }

// Data is the opened data directory.
func (s *Server) Data() *Data { return s.data }

// Start binds every enabled listener (all or none) and serves them.
func (s *Server) Start(ctx context.Context) error {
	type lis struct {
		name  string
		addr  string
		serve func(net.Listener) error
	}
	smtpMode := func(m smtpd.Mode) func(net.Listener) error {
		return func(ln net.Listener) error { return s.smtp.Serve(ln, m) }
	}
	var want []lis
	for _, l := range []lis{
		{"smtp", s.cfg.Listen.SMTP, smtpMode(smtpd.ModeMX)},
		{"submission", s.cfg.Listen.Submission, smtpMode(smtpd.ModeSubmission)},
		{"submissions", s.cfg.Listen.Submissions, smtpMode(smtpd.ModeSubmissions)},
		{"imap", s.cfg.Listen.IMAP, func(ln net.Listener) error { return s.imap.Serve(ln, false) }},
		{"imaps", s.cfg.Listen.IMAPS, func(ln net.Listener) error { return s.imap.Serve(ln, true) }},
		{"pop3", s.cfg.Listen.POP3, func(ln net.Listener) error { return s.pop3.Serve(ln, false) }},
		{"pop3s", s.cfg.Listen.POP3S, func(ln net.Listener) error { return s.pop3.Serve(ln, true) }},
	} {
		if enabled(l.addr) {
			want = append(want, l)
		}
	}
	// The control socket first: it refuses to start when another server
	// runs on the same data directory.
	ctl, err := control.Listen(s.cfg.DataDir, s.store, control.Options{
		MaxPause: s.Config().Control.MaxPause, Logger: s.log.With("server", "control"), Audit: s.data.Audit,
		Unlock: s.unlock,
	})
	if err != nil {
		return err
	}
	var lc net.ListenConfig
	var bound []net.Listener
	for _, l := range want {
		ln, err := lc.Listen(ctx, "tcp", l.addr)
		if err != nil {
			for _, b := range bound {
				b.Close()
			}
			ctl.Close()
			return fmt.Errorf("listen %s on %s: %w", l.name, l.addr, err)
		}
		bound = append(bound, ln)
	}
	s.mu.Lock()
	s.control = ctl
	s.mu.Unlock()
	for i, l := range want {
		ln := bound[i]
		s.mu.Lock()
		s.addrs[l.name] = ln.Addr().String()
		s.mu.Unlock()
		s.log.Info("listening", "service", l.name, "addr", ln.Addr().String())
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := l.serve(ln); err != nil {
				s.errc <- fmt.Errorf("%s: %w", l.name, err)
			}
		}()
	}
	return nil
}

// Addrs returns the bound address of each listener by name ("smtp",
// "submission", "submissions", "imap", "imaps", "pop3", "pop3s").
func (s *Server) Addrs() map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]string{}
	for k, v := range s.addrs {
		out[k] = v
	}
	return out
}

// Errors reports listeners that stopped with an error.
func (s *Server) Errors() <-chan error { return s.errc }

// Config returns the configuration in force: the start-up one with the
// settings that ReloadConfig changed live.
func (s *Server) Config() Config {
	s.liveMu.Lock()
	defer s.liveMu.Unlock()
	return s.live
}

// ReloadConfig applies a new configuration to the running server. It is
// validated first: an invalid one changes nothing and is returned as an
// error. SMTP, IMAP and POP3 limits, rates, DMARC enforcement and the
// login limiter change at once (per-IP counters and lockouts in force are
// kept), and so do the argon2id cost of new hashes (and of the dummy
// hash for unknown users) and the bound on concurrent hashes (a lower one
// as running checks end). Settings that only a restart can change (listen addresses, data
// directory, host name, TLS file names) keep their running values and
// are named in a warning. smtp.max_message_bytes, raised or lowered,
// applies to the store, IMAP APPEND and the SMTP sessions that start
// after the reload, whose EHLO announces it as SIZE (smtpd.Limits).
func (s *Server) ReloadConfig(ctx context.Context, cfg Config) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("reload config: %w", err)
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("reload config: %w", err)
	}
	s.liveMu.Lock()
	defer s.liveMu.Unlock()
	start := s.cfg
	var restart []string
	keep := func(name string, changed bool) {
		if changed {
			restart = append(restart, name)
		}
	}
	keep("data_dir", cfg.DataDir != start.DataDir)
	keep("hostname", cfg.Hostname != start.Hostname)
	keep("listen.smtp", cfg.Listen.SMTP != start.Listen.SMTP)
	keep("listen.submission", cfg.Listen.Submission != start.Listen.Submission)
	keep("listen.submissions", cfg.Listen.Submissions != start.Listen.Submissions)
	keep("listen.imap", cfg.Listen.IMAP != start.Listen.IMAP)
	keep("listen.imaps", cfg.Listen.IMAPS != start.Listen.IMAPS)
	keep("listen.pop3", cfg.Listen.POP3 != start.Listen.POP3)
	keep("listen.pop3s", cfg.Listen.POP3S != start.Listen.POP3S)
	keep("tls.cert", cfg.TLS.Cert != start.TLS.Cert)
	keep("tls.key", cfg.TLS.Key != start.TLS.Key)
	cfg.DataDir, cfg.Hostname, cfg.Listen, cfg.TLS = start.DataDir, start.Hostname, start.Listen, start.TLS
	for _, name := range restart {
		s.log.Warn("setting changed in the configuration needs a restart; keeping the running value", "setting", name)
	}

	// The store's bound leaves room for the trace fields the server adds,
	// as at start (New).
	s.store.SetMaxMessageBytes(cfg.SMTP.MaxMessageBytes + 64*1024)
	s.smtp.SetLimits(smtpd.Limits{
		MaxMessageBytes: cfg.SMTP.MaxMessageBytes, MaxRecipients: cfg.SMTP.MaxRecipients,
		ConnsPerMinute: cfg.SMTP.ConnsPerMinute, MaxConnsPerIP: cfg.SMTP.MaxConnsPerIP,
		MessagesPerMinute: cfg.SMTP.MessagesPerMinute, EnforceDMARC: cfg.SMTP.EnforceDMARC,
	})
	s.imap.SetLimits(imapd.Limits{
		MaxMessageBytes: cfg.SMTP.MaxMessageBytes,
		ConnsPerMinute:  cfg.IMAP.ConnsPerMinute, MaxConnsPerIP: cfg.IMAP.MaxConnsPerIP,
	})
	s.pop3.SetLimits(pop3d.Limits{ConnsPerMinute: cfg.POP3.ConnsPerMinute, MaxConnsPerIP: cfg.POP3.MaxConnsPerIP})
	s.guard.Limiter.SetConfig(limiterConfig(cfg.Auth))
	// Applied only when changed, so that a cost or bound a caller (a
	// test) gave New in Options.Auth stays until the file changes it.
	if cfg.Auth.Argon2 != s.live.Auth.Argon2 {
		s.data.Accounts.SetParams(cfg.Auth.Argon2.Params())
	}
	if cfg.Auth.MaxConcurrentHashes != s.live.Auth.MaxConcurrentHashes {
		s.data.Accounts.SetMaxConcurrentHashes(cfg.Auth.MaxConcurrentHashes)
	}
	if cfg.Auth.CacheTTL != s.live.Auth.CacheTTL {
		s.data.Accounts.SetCacheTTL(cfg.Auth.CacheTTL)
	}
	s.mu.Lock()
	if s.control != nil {
		s.control.SetMaxPause(cfg.Control.MaxPause)
	}
	s.mu.Unlock()
	s.live = cfg
	s.log.Info("reloaded configuration")
	return nil
}

// unlock lifts a login lockout for the control socket's UNLOCK (`mailvault
// user unlock`): the lockouts live in the limiter's memory only.
func (s *Server) unlock(key string, ip bool) (control.Lockout, error) {
	var l auth.Lockout
	if ip {
		if _, err := netip.ParseAddr(key); err != nil {
			return control.Lockout{}, fmt.Errorf("%q is not an IP address", key)
		}
		l = s.guard.Limiter.UnlockIP(key)
	} else {
		l = s.guard.Limiter.UnlockAccount(key)
	}
	return control.Lockout{Key: l.Key, Failures: l.Failures, LockedUntil: l.LockedUntil}, nil
}

func limiterConfig(a AuthConfig) auth.LimiterConfig {
	return auth.LimiterConfig{
		BaseDelay: a.BaseDelay, MaxDelay: a.MaxDelay,
		AccountFailures: a.AccountFailures, IPFailures: a.IPFailures,
		LockDuration: a.LockDuration, Window: time.Hour, MaxEntries: 100000,
	}
}

// Reload re-reads the certificate (accounts are re-read automatically
// when their file changes).
func (s *Server) Reload(ctx context.Context) error {
	if err := s.certs.Reload(); err != nil {
		return err
	}
	s.log.Info("reloaded certificate")
	return nil
}

// Shutdown closes the control socket (resuming any pause it holds), stops
// accepting, waits for sessions until ctx ends (then closes them), and
// closes the data directory.
func (s *Server) Shutdown(ctx context.Context) error {
	// The control socket first: a pause it holds would keep the sessions
	// below from finishing their deliveries.
	s.mu.Lock()
	ctl := s.control
	s.mu.Unlock()
	var ctlErr error
	if ctl != nil {
		ctlErr = ctl.Close()
	}
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i, shut := range []func(context.Context) error{s.smtp.Shutdown, s.imap.Shutdown, s.pop3.Shutdown} {
		wg.Go(func() { errs[i] = shut(ctx) })
	}
	wg.Wait()
	s.wg.Wait()
	return errors.Join(errors.Join(errs...), ctlErr, s.data.Close())
}
