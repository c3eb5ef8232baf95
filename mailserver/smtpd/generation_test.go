package smtpd

import (
	"bufio"
	"context"
	"io"
	"net"
	"slices"
	"strings"
	"testing"

	"github.com/mailvault/mailvault/mailserver/auth"
)

// ehlo opens a session and returns its EHLO reply lines without their
// "250-" or "250 ".
func ehlo(t *testing.T, addr string) (net.Conn, *bufio.Reader, []string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(c)
	if l, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(l, "220 ") {
		t.Fatalf("greeting %q %v", l, err)
	}
	io.WriteString(c, "EHLO client.test\r\n")
	var lines []string
	for {
		l, err := r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, strings.TrimSpace(l[min(4, len(l)):]))
		if strings.HasPrefix(l, "250 ") {
			return c, r, lines
		}
	}
}

// A change of the size or recipient limit reaches new sessions' EHLO
// (SIZE, LIMITS RCPTMAX) on every listener; a session under way keeps
// what it was told, and Shutdown ends it too.
func TestLimitsRenewEHLO(t *testing.T) {
	e := newTestEnv(t, func(c *Config, _ *auth.LimiterConfig) {
		c.MaxMessageBytes, c.MaxRecipients = 1000, 5
	})
	old, oldR, lines := ehlo(t, e.addr[ModeMX])
	defer old.Close()
	if !slices.Contains(lines, "SIZE 1000") || !slices.Contains(lines, "LIMITS RCPTMAX=5") {
		t.Fatalf("EHLO at start: %q", lines)
	}
	e.srv.SetLimits(Limits{MaxMessageBytes: 3000, MaxRecipients: 7})
	for _, m := range []Mode{ModeMX, ModeSubmission} {
		c, _, lines := ehlo(t, e.addr[m])
		c.Close()
		if !slices.Contains(lines, "SIZE 3000") || !slices.Contains(lines, "LIMITS RCPTMAX=7") {
			t.Fatalf("%s EHLO after SetLimits: %q", m, lines)
		}
	}
	// Limits that go-smtp does not announce start no new generation.
	e.srv.mu.Lock()
	gens := len(e.srv.gens)
	e.srv.mu.Unlock()
	e.srv.SetLimits(Limits{MaxMessageBytes: 3000, MaxRecipients: 7, MessagesPerMinute: 5})
	e.srv.mu.Lock()
	if n := len(e.srv.gens); n > gens {
		t.Fatalf("%d generations after a rate change, %d before", n, gens)
	}
	e.srv.mu.Unlock()

	// The old session still works, under its own SIZE.
	io.WriteString(old, "MAIL FROM:<a@remote.test> SIZE=2000\r\n")
	if l, _ := oldR.ReadString('\n'); !strings.HasPrefix(l, "552 ") {
		t.Fatalf("old session, SIZE=2000: %q", l)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	e.srv.Shutdown(ctx)
	if _, err := io.ReadAll(oldR); err != nil {
		t.Fatalf("old session after Shutdown: %v", err)
	}
	e.srv.mu.Lock()
	defer e.srv.mu.Unlock()
	if len(e.srv.listeners) != 0 {
		t.Fatalf("%d listeners after Shutdown", len(e.srv.listeners))
	}
}
