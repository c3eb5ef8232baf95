package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/mailvault/mailvault/mailserver"
)

// dataDirDefault is --data's default: $MAILVAULT_DATA or ./mailvault-data.
func dataDirDefault() string {
	if v := os.Getenv("MAILVAULT_DATA"); v != "" {
		return v
	}
	return mailserver.DefaultDataDir
}

func newServeCmd() *cobra.Command {
	var (
		configFile string
		dataDir    string
		hostname   string
	)
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the mail server (SMTP MX and submission, IMAP, POP3)",
		Long: `Run the mail server.

With no configuration it starts on embedded defaults: data in ./mailvault-data
(or --data DIR), a self-signed certificate generated on first start under
DIR/tls, the domain example.test, and unprivileged ports on 127.0.0.1:

  2525  SMTP (MX, STARTTLS offered; mail for local domains only)
  2587  submission (STARTTLS required before AUTH PLAIN/LOGIN)
  2465  submissions (implicit TLS)
  2143  IMAP (STARTTLS required before LOGIN/AUTHENTICATE)
  2993  IMAPS (implicit TLS)
  2110  POP3 (STLS required before USER/PASS)
  2995  POP3S (implicit TLS)

IMAP offers IDLE, MOVE, UIDPLUS, SPECIAL-USE (Sent, Drafts, Trash, Junk,
Archive), NAMESPACE and LIST-STATUS; flags are kept in the Maildir file
names. POP3 serves the INBOX; deletions are applied at QUIT.

Mail is stored as Maildir++ under DIR/mail/<domain>/<user>/Maildir; a message
is acknowledged only once it is on disk. Accounts live in DIR/accounts.json
(manage them with "mailvault user" and "mailvault domain"), logins and admin
actions are recorded in DIR/audit.jsonl ("mailvault audit verify").

DIR/control.sock (mode 0600; the server's user and root only) lets
"mailvault backup --snapshot" and "mailvault snapshot take" pause deliveries
and mailbox changes for the instant of a snapshot: a pause ends when the
backup says so, when its connection closes (it crashed or was killed) or
after control.max_pause (default 30s); each pause is audited. Through it
too, "mailvault user unlock" lifts a login lockout: failed logins are
counted in memory, per name and per IP (auth.account_failures: 5,
auth.ip_failures: 20 lock out for auth.lock_duration: 15m).

Mail goes to local domains only: there is no outbound queue yet, so
submission refuses remote recipients (550 5.7.1).

A YAML file (--config) sets everything; environment variables override it:
` + mailserver.EnvVars + `

The file's keep: block (e.g. keep: {daily: 14, weekly: 8, monthly: 24})
is not the server's: it is the snapshot retention that "mailvault forget"
with the same --config applies to the backup repository (forget --help).

Signals: SIGHUP re-reads the configuration file and environment and applies
what can change while running (limits — smtp.max_message_bytes too,
announced as EHLO's SIZE to the sessions that start after it — rates,
DMARC enforcement, login
lockout settings, password hashing (auth.argon2 for new hashes,
auth.max_concurrent_hashes), the login cache (auth.cache_ttl), log level, drain timeout; a changed address, data
directory or host name is logged as needing a restart, and an invalid
file keeps the running configuration), then reloads the TLS certificate
(accounts are re-read whenever their file changes); SIGTERM or SIGINT stops accepting and lets sessions
finish for drain_timeout. SIGUSR1 writes the stack of every goroutine to
<data>/stacks-<time>.txt and logs its name, without stopping anything: what
to send, and attach to a bug report, if the server ever hangs (SIGQUIT
prints the same to stderr but ends the process).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			// load reads the file and the environment the same way at
			// start-up and on every SIGHUP.
			load := func() (mailserver.Config, error) {
				return loadConfig(configFile, os.Getenv, dataDir, cmd.Flags().Changed("data"), hostname)
			}
			cfg, err := load()
			if err != nil {
				return err
			}
			level := new(slog.LevelVar)
			level.Set(parseLevel(cfg.LogLevel))
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: level}))
			return runServer(cmd.Context(), cfg, load, level, log, cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.StringVarP(&configFile, "config", "c", os.Getenv("MAILVAULT_CONFIG"), "YAML configuration file (env MAILVAULT_CONFIG)")
	f.StringVar(&dataDir, "data", dataDirDefault(), "data directory (env MAILVAULT_DATA)")
	f.StringVar(&hostname, "hostname", "", "host name announced to clients (default from config, else localhost)")
	return cmd
}

// loadConfig builds the configuration from the embedded defaults, the
// YAML file (if any), the environment and the flags, in that order. serve
// calls it at start-up and on every SIGHUP.
func loadConfig(file string, getenv func(string) string, dataDir string, dataSet bool, hostname string) (mailserver.Config, error) {
	cfg := mailserver.DefaultConfig()
	if file != "" {
		if err := cfg.LoadFile(file); err != nil {
			return cfg, err
		}
	}
	if err := cfg.ApplyEnv(getenv); err != nil {
		return cfg, err
	}
	if dataSet {
		cfg.DataDir = dataDir
	}
	if hostname != "" {
		cfg.Hostname = hostname
	}
	return cfg, nil
}

func parseLevel(s string) slog.Level {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.ToUpper(s))); err != nil {
		return slog.LevelInfo
	}
	return l
}

// runServer serves until ctx ends (SIGTERM/SIGINT via main's context),
// reloading on SIGHUP: load (if not nil) gives the new configuration and
// level (if not nil) is the logger's level to update.
func runServer(ctx context.Context, cfg mailserver.Config, load func() (mailserver.Config, error), level *slog.LevelVar, log *slog.Logger, out io.Writer) error {
	if ctx == nil {
		ctx = context.Background()
	}
	// main.go's context covers SIGINT and SIGTERM; add them here too in
	// case the command runs under another root.
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	defer signal.Stop(usr1)
	srv, err := mailserver.New(ctx, cfg, mailserver.Options{Logger: log})
	if err != nil {
		return err
	}
	if err := srv.Start(ctx); err != nil {
		srv.Shutdown(context.Background())
		return err
	}
	addrs := srv.Addrs()
	for _, name := range []string{"smtp", "submission", "submissions", "imap", "imaps", "pop3", "pop3s"} {
		if a, ok := addrs[name]; ok {
			fmt.Fprintf(out, "%-12s %s\n", name, a)
		}
	}
	for {
		select {
		case <-hup:
			cfg = reload(ctx, srv, cfg, load, level, log)
		case <-usr1:
			// Here, not in a server goroutine: it must answer while
			// every one of those is stuck.
			if p, err := dumpStacks(cfg.DataDir, time.Now()); err != nil {
				log.Error("goroutine dump failed", "err", err)
			} else {
				log.Warn("goroutine dump written (SIGUSR1)", "file", p)
			}
		case err := <-srv.Errors():
			log.Error("listener failed", "err", err)
			drain(srv, cfg, log)
			return err
		case <-ctx.Done():
			log.Info("shutting down", "drain_timeout", cfg.DrainTimeout)
			return drain(srv, cfg, log)
		}
	}
}

// reload handles SIGHUP: the configuration, then the certificate. It
// returns the configuration in force, the old one if the new one could
// not be read or was refused.
func reload(ctx context.Context, srv *mailserver.Server, cfg mailserver.Config, load func() (mailserver.Config, error), level *slog.LevelVar, log *slog.Logger) mailserver.Config {
	if load != nil {
		next, err := load()
		if err == nil {
			err = srv.ReloadConfig(ctx, next)
		}
		if err != nil {
			log.Error("configuration reload failed; keeping the running configuration", "err", err)
		} else {
			cfg = srv.Config()
			if level != nil {
				level.Set(parseLevel(cfg.LogLevel))
			}
			log.Info("configuration reloaded")
		}
	}
	if err := srv.Reload(ctx); err != nil {
		log.Error("certificate reload failed; keeping the old certificate", "err", err)
	}
	return cfg
}

func drain(srv *mailserver.Server, cfg mailserver.Config, log *slog.Logger) error {
	ctx, cancel := context.WithTimeout(context.Background(), cfg.DrainTimeout)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		log.Warn("shutdown", "err", err)
	}
	return nil
}

// dumpStacks writes every goroutine's stack (runtime/pprof's "goroutine"
// profile, debug=2: as a crash prints them, with what each waits for) to
// a new file in dir and returns its path. The file appears under its name
// only once complete.
func dumpStacks(dir string, now time.Time) (string, error) {
	p := filepath.Join(dir, "stacks-"+now.UTC().Format("20060102T150405.000000000Z")+".txt")
	tmp := filepath.Join(dir, ".tmp-"+filepath.Base(p))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", err
	}
	err = pprof.Lookup("goroutine").WriteTo(f, 2)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, p)
	}
	if err != nil {
		os.Remove(tmp)
		return "", err
	}
	return p, nil
}
