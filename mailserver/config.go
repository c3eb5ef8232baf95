// Package mailserver assembles mailvault's mail server: configuration
// (embedded defaults, a YAML file, environment overrides), the data
// directory, and the listeners built from the sub-packages store, auth,
// audit and smtpd.
package mailserver

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/mailvault/mailvault/mailserver/auth"
	"github.com/mailvault/mailvault/retention"
)

// DefaultDataDir is used when neither --data nor the config names one.
const DefaultDataDir = "./mailvault-data"

// ExampleDomain is created in a new data directory so that a fresh
// install can be tried at once.
const ExampleDomain = "example.test"

// Listen holds listener addresses; an empty address (or "off") disables
// that listener.
type Listen struct {
	SMTP        string `yaml:"smtp"`        // MX, plain with STARTTLS
	Submission  string `yaml:"submission"`  // STARTTLS required before AUTH
	Submissions string `yaml:"submissions"` // implicit TLS
	IMAP        string `yaml:"imap"`        // STARTTLS required before LOGIN
	IMAPS       string `yaml:"imaps"`       // implicit TLS
	POP3        string `yaml:"pop3"`        // STLS required before USER/PASS
	POP3S       string `yaml:"pop3s"`       // implicit TLS
}

// AccessConfig are the per-IP connection limits of IMAP or POP3.
type AccessConfig struct {
	ConnsPerMinute float64 `yaml:"connections_per_minute"`
	MaxConnsPerIP  int     `yaml:"max_connections_per_ip"`
}

// IMAPConfig is IMAP's per-IP limits and the cache FETCH answers headers
// and ENVELOPEs from (imapd.Config.MetaCacheBytes).
type IMAPConfig struct {
	AccessConfig `yaml:",inline"`
	// HeaderCacheBytes bounds that cache, shared by all sessions: 0
	// means imapd's default (32 MiB, about 20,000 messages), negative
	// turns it off. Read at start; a reload does not resize it.
	HeaderCacheBytes int64 `yaml:"header_cache_bytes"`
}

// TLSFiles names the certificate and key; empty means the self-signed
// pair generated under <data>/tls on first start.
type TLSFiles struct {
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

// SMTPConfig are the SMTP limits and policies.
type SMTPConfig struct {
	MaxMessageBytes   int64   `yaml:"max_message_bytes"`
	MaxRecipients     int     `yaml:"max_recipients"`
	ConnsPerMinute    float64 `yaml:"connections_per_minute"`
	MaxConnsPerIP     int     `yaml:"max_connections_per_ip"`
	MessagesPerMinute float64 `yaml:"messages_per_minute"`
	EnforceDMARC      bool    `yaml:"enforce_dmarc"`
}

// AuthConfig tunes brute-force protection and password checking.
type AuthConfig struct {
	AccountFailures int           `yaml:"account_failures"`
	IPFailures      int           `yaml:"ip_failures"`
	LockDuration    time.Duration `yaml:"lock_duration"`
	BaseDelay       time.Duration `yaml:"base_delay"`
	MaxDelay        time.Duration `yaml:"max_delay"`
	// MaxConcurrentHashes bounds the argon2id password checks running at
	// once, each holding its hash's memory (64 MiB with the default
	// cost): the server's login memory is at most this many times that.
	// 0: GOMAXPROCS / the hash's lanes (auth.Options). A reload
	// applies it: a lower bound as running checks end.
	MaxConcurrentHashes int `yaml:"max_concurrent_hashes"`
	// CacheTTL is how long a verified login (account and password) is
	// remembered, so that logging in again within it costs no argon2id
	// check (auth.DefaultCacheTTL, 60 s; 0 turns the cache off). The
	// cache holds keyed HMACs, never passwords; see README "Login cache".
	CacheTTL time.Duration `yaml:"cache_ttl"`
	// Argon2 is the cost of new password hashes (user add, user passwd)
	// and of the dummy hash an unknown user's login is checked against.
	Argon2 Argon2Config `yaml:"argon2"`
}

// Argon2Config is the argon2id cost of new password hashes (RFC 9106
// section 3.1). Stored hashes keep verifying with their own cost, which
// each PHC string records, so changing it re-hashes nothing: a user gets
// the new cost at the next password change.
type Argon2Config struct {
	Memory  uint32 `yaml:"memory"`  // MiB
	Time    uint32 `yaml:"time"`    // passes
	Threads uint32 `yaml:"threads"` // lanes, 1-255
}

// Params is the auth cost of c.
func (c Argon2Config) Params() auth.Params {
	return auth.Params{Memory: c.Memory * 1024, Time: c.Time, Threads: uint8(c.Threads), KeyLen: auth.DefaultParams().KeyLen}
}

// ControlConfig tunes the control socket <data>/control.sock, through
// which a backup pauses the server's writers (package control).
type ControlConfig struct {
	// MaxPause ends a pause that the backup did not end itself
	// (0: control.DefaultMaxPause).
	MaxPause time.Duration `yaml:"max_pause"`
}

// Config is the whole server configuration.
type Config struct {
	DataDir  string       `yaml:"data_dir"`
	Hostname string       `yaml:"hostname"`
	Listen   Listen       `yaml:"listen"`
	TLS      TLSFiles     `yaml:"tls"`
	SMTP     SMTPConfig   `yaml:"smtp"`
	IMAP     IMAPConfig   `yaml:"imap"`
	POP3     AccessConfig `yaml:"pop3"`
	Auth     AuthConfig   `yaml:"auth"`
	LogLevel string       `yaml:"log_level"` // debug, info, warn, error
	// DrainTimeout is how long SIGTERM waits for sessions to finish.
	DrainTimeout time.Duration `yaml:"drain_timeout"`
	// Control tunes the control socket.
	Control ControlConfig `yaml:"control"`
	// Keep is the snapshot retention that `mailvault forget --config`
	// (with no keep-* flags and no targets file) applies to the
	// repository it opens; the server itself does not use it.
	Keep *retention.Policy `yaml:"keep"`
}

// DefaultConfig returns the embedded defaults: unprivileged ports on
// 127.0.0.1.
func DefaultConfig() Config {
	return Config{
		DataDir:  DefaultDataDir,
		Hostname: "localhost",
		Listen: Listen{
			SMTP: "127.0.0.1:2525", Submission: "127.0.0.1:2587", Submissions: "127.0.0.1:2465",
			IMAP: "127.0.0.1:2143", IMAPS: "127.0.0.1:2993", POP3: "127.0.0.1:2110", POP3S: "127.0.0.1:2995",
		},
		SMTP: SMTPConfig{
			MaxMessageBytes: 25 << 20, MaxRecipients: 100,
			ConnsPerMinute: 60, MaxConnsPerIP: 20, MessagesPerMinute: 120,
		},
		IMAP: IMAPConfig{AccessConfig: AccessConfig{ConnsPerMinute: 120, MaxConnsPerIP: 20}},
		POP3: AccessConfig{ConnsPerMinute: 120, MaxConnsPerIP: 20},
		Auth: AuthConfig{
			AccountFailures: 5, IPFailures: 20, LockDuration: 15 * time.Minute,
			BaseDelay: 250 * time.Millisecond, MaxDelay: 8 * time.Second,
			CacheTTL: auth.DefaultCacheTTL,
			Argon2:   Argon2Config{Memory: auth.DefaultParams().Memory / 1024, Time: auth.DefaultParams().Time, Threads: uint32(auth.DefaultParams().Threads)},
		},
		Control:      ControlConfig{MaxPause: 30 * time.Second},
		LogLevel:     "info",
		DrainTimeout: 30 * time.Second,
	}
}

// LoadFile overlays the YAML file at path on c. Unknown keys are errors,
// so that a typo does not silently keep a default.
func (c *Config) LoadFile(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && err.Error() != "EOF" {
		return fmt.Errorf("config %s: %w", path, err)
	}
	if c.Keep != nil {
		if err := c.Keep.Validate(); err != nil {
			return fmt.Errorf("config %s: %w", path, err)
		}
	}
	return nil
}

// EnvVars lists the environment overrides, for --help.
const EnvVars = `  MAILVAULT_DATA                 data directory
  MAILVAULT_HOSTNAME             server host name
  MAILVAULT_LISTEN_SMTP          MX listener address ("off" disables)
  MAILVAULT_LISTEN_SUBMISSION    submission (STARTTLS) listener address
  MAILVAULT_LISTEN_SUBMISSIONS   submissions (implicit TLS) listener address
  MAILVAULT_LISTEN_IMAP, MAILVAULT_LISTEN_IMAPS   IMAP (STARTTLS), IMAPS listeners
  MAILVAULT_LISTEN_POP3, MAILVAULT_LISTEN_POP3S   POP3 (STLS), POP3S listeners
  MAILVAULT_TLS_CERT, MAILVAULT_TLS_KEY   certificate and key files
  MAILVAULT_SMTP_MAX_MESSAGE_BYTES        message size limit
  MAILVAULT_SMTP_ENFORCE_DMARC            true/false
  MAILVAULT_LOG_LEVEL            debug, info, warn, error`

// ApplyEnv overlays environment overrides (see EnvVars) using getenv.
func (c *Config) ApplyEnv(getenv func(string) string) error {
	str := map[string]*string{
		"MAILVAULT_DATA":               &c.DataDir,
		"MAILVAULT_HOSTNAME":           &c.Hostname,
		"MAILVAULT_LISTEN_SMTP":        &c.Listen.SMTP,
		"MAILVAULT_LISTEN_SUBMISSION":  &c.Listen.Submission,
		"MAILVAULT_LISTEN_SUBMISSIONS": &c.Listen.Submissions,
		"MAILVAULT_LISTEN_IMAP":        &c.Listen.IMAP,
		"MAILVAULT_LISTEN_IMAPS":       &c.Listen.IMAPS,
		"MAILVAULT_LISTEN_POP3":        &c.Listen.POP3,
		"MAILVAULT_LISTEN_POP3S":       &c.Listen.POP3S,
		"MAILVAULT_TLS_CERT":           &c.TLS.Cert,
		"MAILVAULT_TLS_KEY":            &c.TLS.Key,
		"MAILVAULT_LOG_LEVEL":          &c.LogLevel,
	}
	for k, p := range str {
		if v := getenv(k); v != "" {
			*p = v
		}
	}
	if v := getenv("MAILVAULT_SMTP_MAX_MESSAGE_BYTES"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			return fmt.Errorf("config: MAILVAULT_SMTP_MAX_MESSAGE_BYTES=%q: want a positive integer", v)
		}
		c.SMTP.MaxMessageBytes = n
	}
	if v := getenv("MAILVAULT_SMTP_ENFORCE_DMARC"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("config: MAILVAULT_SMTP_ENFORCE_DMARC=%q: %w", v, err)
		}
		c.SMTP.EnforceDMARC = b
	}
	return nil
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	if c.DataDir == "" {
		return fmt.Errorf("config: data_dir is empty")
	}
	if (c.TLS.Cert == "") != (c.TLS.Key == "") {
		return fmt.Errorf("config: tls.cert and tls.key go together")
	}
	if c.SMTP.MaxMessageBytes <= 0 || c.SMTP.MaxRecipients <= 0 {
		return fmt.Errorf("config: smtp limits must be positive")
	}
	for name, v := range map[string]float64{
		"smtp.connections_per_minute": c.SMTP.ConnsPerMinute,
		"smtp.max_connections_per_ip": float64(c.SMTP.MaxConnsPerIP),
		"smtp.messages_per_minute":    c.SMTP.MessagesPerMinute,
		"imap.connections_per_minute": c.IMAP.ConnsPerMinute,
		"imap.max_connections_per_ip": float64(c.IMAP.MaxConnsPerIP),
		"pop3.connections_per_minute": c.POP3.ConnsPerMinute,
		"pop3.max_connections_per_ip": float64(c.POP3.MaxConnsPerIP),
		"auth.account_failures":       float64(c.Auth.AccountFailures),
		"auth.ip_failures":            float64(c.Auth.IPFailures),
		"auth.lock_duration":          float64(c.Auth.LockDuration),
		"auth.base_delay":             float64(c.Auth.BaseDelay),
		"auth.max_delay":              float64(c.Auth.MaxDelay),
		"auth.max_concurrent_hashes":  float64(c.Auth.MaxConcurrentHashes),
		"auth.cache_ttl":              float64(c.Auth.CacheTTL),
		"drain_timeout":               float64(c.DrainTimeout),
		"control.max_pause":           float64(c.Control.MaxPause),
	} {
		if v < 0 {
			return fmt.Errorf("config: %s must not be negative", name)
		}
	}
	if a := c.Auth.Argon2; a.Threads < 1 || a.Threads > 255 || a.Memory > auth.MaxMemory/1024 {
		return fmt.Errorf("config: auth.argon2: threads must be 1-255 and memory at most %d MiB", auth.MaxMemory/1024)
	}
	if err := c.Auth.Argon2.Params().CheckMinimum(); err != nil {
		return fmt.Errorf("config: auth.argon2: %w", err)
	}
	return nil
}

func enabled(addr string) bool {
	return addr != "" && !strings.EqualFold(addr, "off")
}

// Paths inside the data directory.
func (c *Config) mailDir() string  { return filepath.Join(c.DataDir, "mail") }
func (c *Config) spoolDir() string { return filepath.Join(c.DataDir, "spool") }
func (c *Config) tlsDir() string   { return filepath.Join(c.DataDir, "tls") }
func (c *Config) certFiles() (string, string) {
	if c.TLS.Cert != "" {
		return c.TLS.Cert, c.TLS.Key
	}
	return filepath.Join(c.tlsDir(), "cert.pem"), filepath.Join(c.tlsDir(), "key.pem")
}

// AccountsPath is the account database of a data directory.
func AccountsPath(dataDir string) string { return filepath.Join(dataDir, "accounts.json") }

// AuditPath is the audit log of a data directory.
func AuditPath(dataDir string) string { return filepath.Join(dataDir, "audit.jsonl") }
