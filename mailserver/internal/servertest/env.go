package servertest

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailvault/mailvault/mailserver/audit"
	"github.com/mailvault/mailvault/mailserver/auth"
	"github.com/mailvault/mailvault/mailserver/store"
	"github.com/mailvault/mailvault/mailserver/tlsutil"
)

// Env is what every server's tests start from, under one temporary
// directory (Dir): a store, an account database with the domain
// example.test and the users alice and bob (passwords "alice password" and
// "bob password"), a self-signed certificate for mx.test and 127.0.0.1,
// an audit log, and a logger for the server under test (Log, read back
// with Logs).
type Env struct {
	Dir       string
	Store     *store.Store
	DB        *auth.DB
	Audit     *audit.Log
	ServerTLS *tls.Config
	Log       *slog.Logger

	logs *LogBuffer

	mu    sync.Mutex
	slept []time.Duration
}

// NewEnv builds the fixture; opts configures the store (its Hostname
// defaults to mx.test).
func NewEnv(t testing.TB, opts store.Options) *Env {
	t.Helper()
	dir := t.TempDir()
	ctx := context.Background()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	if opts.Hostname == "" {
		opts.Hostname = "mx.test"
	}
	st, err := store.Open(ctx, filepath.Join(dir, "mail"), opts)
	must(err)
	// Cheap hashing parameters: the tests log in hundreds of times.
	db, err := auth.Open(filepath.Join(dir, "accounts.json"), auth.Options{Params: auth.Params{Time: 1, Memory: 64, Threads: 1, KeyLen: 32}})
	must(err)
	must(db.AddDomain(ctx, "example.test"))
	for _, u := range []string{"alice", "bob"} {
		must(db.AddUser(ctx, u+"@example.test", u+" password", auth.RoleUser))
	}
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	_, err = tlsutil.EnsureSelfSigned(certFile, keyFile, []string{"mx.test", "127.0.0.1"}, time.Now())
	must(err)
	certs, err := tlsutil.Load(certFile, keyFile)
	must(err)
	al, err := audit.Open(filepath.Join(dir, "audit.jsonl"))
	must(err)
	t.Cleanup(func() { al.Close() })
	logs := &LogBuffer{}
	return &Env{Dir: dir, Store: st, DB: db, Audit: al, ServerTLS: certs.ServerConfig(),
		Log: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})), logs: logs}
}

// Logs returns what the server logged so far, one record a line.
func (e *Env) Logs() string { return e.logs.String() }

// Guard checks logins against the fixture's accounts with the given
// lockout policy; instead of sleeping it records each delay (see Slept),
// so tests can assert delays without waiting for them.
func (e *Env) Guard(cfg auth.LimiterConfig) *auth.Guard {
	return &auth.Guard{DB: e.DB, Limiter: auth.NewLimiter(cfg, nil), Audit: e.Audit,
		Sleep: func(_ context.Context, d time.Duration) error {
			e.mu.Lock()
			e.slept = append(e.slept, d)
			e.mu.Unlock()
			return nil
		}}
}

// Configure applies a test's changes (mutate, if not nil) to a server's
// configuration and to the default lockout policy.
func Configure[C any](cfg C, mutate func(*C, *auth.LimiterConfig)) (C, auth.LimiterConfig) {
	lcfg := auth.DefaultLimiterConfig()
	if mutate != nil {
		mutate(&cfg, &lcfg)
	}
	return cfg, lcfg
}

// Slept returns the delays the guard would have slept, in order.
func (e *Env) Slept() []time.Duration {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]time.Duration(nil), e.slept...)
}

// Deliver stores msg in a folder ("" is INBOX) as the SMTP server would.
func (e *Env) Deliver(t testing.TB, a store.Account, folder, msg string) {
	t.Helper()
	if _, err := e.Store.Deliver(t.Context(), a, folder, strings.NewReader(msg)); err != nil {
		t.Fatal(err)
	}
}

// Serve starts serve on a listener on a free port of 127.0.0.1 and returns
// the listener's address.
func Serve(t testing.TB, serve func(net.Listener) error) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go serve(ln)
	return ln.Addr().String()
}

// Ports are the addresses of a server with a cleartext port (with
// STARTTLS or STLS) and an implicit-TLS one, as imapd and pop3d have.
type Ports struct{ Plain, TLS string }

// Addr returns the implicit-TLS or the cleartext port.
func (p Ports) Addr(implicitTLS bool) string {
	if implicitTLS {
		return p.TLS
	}
	return p.Plain
}

// ServePorts starts a cleartext and an implicit-TLS listener and shuts the
// server down when the test ends.
func ServePorts(t testing.TB, serve func(ln net.Listener, implicitTLS bool) error, shutdown func(context.Context) error) Ports {
	t.Helper()
	p := Ports{
		Plain: Serve(t, func(ln net.Listener) error { return serve(ln, false) }),
		TLS:   Serve(t, func(ln net.Listener) error { return serve(ln, true) }),
	}
	ShutdownOnCleanup(t, shutdown)
	return p
}

// ShutdownOnCleanup stops a server when the test ends, without waiting
// for sessions that linger.
func ShutdownOnCleanup(t testing.TB, shutdown func(context.Context) error) {
	t.Cleanup(func() {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		shutdown(ctx)
	})
}
