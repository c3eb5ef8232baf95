package main

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/mailvault/mailvault/mailserver"
)

// TestSIGHUPReload drives serve's SIGHUP handling: the file is re-read,
// its valid settings apply, and a bad file keeps the running
// configuration.
func TestSIGHUPReload(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "mailvault.yaml")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(file, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	noEnv := func(string) string { return "" }
	data := filepath.Join(dir, "data")
	write("listen: {smtp: off, submission: off, submissions: off, imap: off, imaps: off, pop3: off, pop3s: off}\nsmtp: {max_message_bytes: 20000}\n")
	load := func() (mailserver.Config, error) { return loadConfig(file, noEnv, data, true, "") }
	cfg, err := load()
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	srv, err := mailserver.New(t.Context(), cfg, mailserver.Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(context.Background())
	if err := srv.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	level := new(slog.LevelVar)

	write("listen: {smtp: off, submission: off, submissions: off, imap: off, imaps: off, pop3: off, pop3s: off}\nsmtp: {max_message_bytes: 10000}\nlog_level: debug\n")
	cfg = reload(t.Context(), srv, cfg, load, level, log)
	if cfg.SMTP.MaxMessageBytes != 10000 || srv.Config().SMTP.MaxMessageBytes != 10000 || level.Level() != slog.LevelDebug {
		t.Fatalf("reload not applied: %d %d %v", cfg.SMTP.MaxMessageBytes, srv.Config().SMTP.MaxMessageBytes, level.Level())
	}

	for _, bad := range []string{"smtp: {max_message_bytes: -1}\n", "smtp: {no_such_key: 1}\n", "smtp: [\n"} {
		write(bad)
		cfg = reload(t.Context(), srv, cfg, load, level, log)
		if cfg.SMTP.MaxMessageBytes != 10000 || srv.Config().SMTP.MaxMessageBytes != 10000 {
			t.Fatalf("bad file %q changed the configuration: %d", bad, srv.Config().SMTP.MaxMessageBytes)
		}
	}
}
