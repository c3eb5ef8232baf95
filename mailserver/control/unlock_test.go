package control_test

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/mailvault/mailvault/mailserver/control"
)

// TestUnlock: UNLOCK ACCOUNT and UNLOCK IP reach the server's Unlock,
// answer what was counted, and are audited; bad forms are refused.
func TestUnlock(t *testing.T) {
	until := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	type call struct {
		key string
		ip  bool
	}
	var calls []call
	f := newFixture(t, "", control.Options{Unlock: func(key string, ip bool) (control.Lockout, error) {
		calls = append(calls, call{key, ip})
		if key == "bad" {
			return control.Lockout{}, errors.New("not an IP address")
		}
		return control.Lockout{Key: strings.ToLower(key), Failures: 5, LockedUntil: until}, nil
	}})
	c := f.dial(t)
	got, err := c.Unlock(t.Context(), "Alice@Example.Test", false)
	if err != nil || got != (control.Lockout{Key: "alice@example.test", Failures: 5, LockedUntil: until}) {
		t.Fatalf("Unlock account: %+v, %v", got, err)
	}
	if _, err := c.Unlock(t.Context(), "192.0.2.1", true); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Unlock(t.Context(), "bad", true); err == nil || !strings.Contains(err.Error(), "not an IP address") {
		t.Fatalf("a refused unlock: %v", err)
	}
	if _, err := c.Unlock(t.Context(), "two words", false); err == nil {
		t.Fatal("a key with a space was sent")
	}
	r := dialRaw(t, f.dir)
	for _, step := range []struct{ send, want string }{
		{"UNLOCK", "ERR usage"},
		{"UNLOCK ACCOUNT", "ERR usage"},
		{"UNLOCK USER x", "ERR usage"},
		{"unlock account " + strings.Repeat("a", 64) + "@" + strings.Repeat("b", 189), `OK {"key":"aaaa`}, // 254 bytes
	} {
		if got := r.cmd(t, step.send); !strings.HasPrefix(got, step.want) {
			t.Fatalf("%.30s: got %q, want %q…", step.send, got, step.want)
		}
	}
	if len(calls) != 4 || calls[0] != (call{"Alice@Example.Test", false}) || calls[1] != (call{"192.0.2.1", true}) {
		t.Fatalf("calls %+v", calls)
	}
	raw, _ := os.ReadFile(f.audit)
	for _, want := range []string{`"action":"user.unlock","user":"alice@example.test","protocol":"control","success":true,"detail":"by uid=`,
		`"action":"ip.unlock","ip":"192.0.2.1"`, `lockout until 2026-01-02T03:04:05Z lifted`,
		`"action":"ip.unlock","protocol":"control","success":false`} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("audit log lacks %s:\n%s", want, raw)
		}
	}

	// A server without lockouts (Unlock nil) says so.
	g := newFixture(t, "", control.Options{})
	if _, err := g.dial(t).Unlock(t.Context(), "x@y.test", false); err == nil || !strings.Contains(err.Error(), "no login lockouts") {
		t.Fatalf("without Unlock: %v", err)
	}
}
