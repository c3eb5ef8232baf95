package mailserver

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailvault/mailvault/mailserver/control"
	"github.com/mailvault/mailvault/mailserver/smtpd"
)

// TestControlSocket: Start opens <data>/control.sock, a second server on
// the same data directory is refused, a reload changes the maximum pause,
// and Shutdown resumes a pause a backup holds (the delivery waiting on it
// is acknowledged) and removes the socket.
func TestControlSocket(t *testing.T) {
	srv, cfg := startServer(t, nil)
	ctx := t.Context()
	c, err := control.Dial(ctx, cfg.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	st, err := c.Status(ctx)
	if err != nil || st.PID != os.Getpid() || st.MaxPause != cfg.Control.MaxPause {
		t.Fatalf("status: %+v %v", st, err)
	}

	next := cfg
	next.Control.MaxPause = 5 * time.Second
	if err := srv.ReloadConfig(ctx, next); err != nil {
		t.Fatal(err)
	}
	if st, err := c.Status(ctx); err != nil || st.MaxPause != 5*time.Second {
		t.Fatalf("after reload: %+v %v", st, err)
	}

	second, err := New(ctx, cfg, Options{Resolver: &smtpd.StaticResolver{}, Auth: cheapHash})
	if err != nil {
		t.Fatal(err)
	}
	if err := second.Start(ctx); !errors.Is(err, control.ErrRunning) {
		t.Fatalf("second server on the same data directory: %v", err)
	}
	second.Shutdown(ctx)

	if _, err := c.Quiesce(ctx); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		done <- submit(srv.Addrs()["submission"], "alice@example.test", "alice password", "alice@example.test", []string{"bob@example.test"}, "Subject: held\r\n\r\nheld\r\n")
	}()
	// Shutdown waits for the session, which waits for the pause: it must
	// end the pause first. Wait until the message is spooled (it is
	// delivered next, and the delivery waits).
	for {
		if spooled, _ := filepath.Glob(filepath.Join(cfg.spoolDir(), "smtp-*.eml")); len(spooled) > 0 {
			break
		}
		time.Sleep(time.Millisecond) // a poll, not a bound
	}
	if err := srv.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("delivery held by the pause: %v", err)
	}
	if _, err := os.Lstat(control.SocketPath(cfg.DataDir)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("socket after Shutdown: %v", err)
	}
	// The pause ended because of the shutdown, not the maximum pause.
	if raw, err := os.ReadFile(AuditPath(cfg.DataDir)); err != nil || !strings.Contains(string(raw), "resumed: server shutting down") {
		t.Fatalf("audit log lacks the pause ended by the shutdown (%v):\n%s", err, raw)
	}
}
