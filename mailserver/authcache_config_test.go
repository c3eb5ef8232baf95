package mailserver

import (
	"testing"
	"time"

	"github.com/mailvault/mailvault/mailserver/auth"
)

// auth.cache_ttl defaults to a minute, is refused when negative, and a
// reload applies it (0 turns the login cache off).
func TestAuthCacheTTLConfig(t *testing.T) {
	if got := DefaultConfig().Auth.CacheTTL; got != auth.DefaultCacheTTL {
		t.Fatalf("default auth.cache_ttl %v", got)
	}
	bad := DefaultConfig()
	bad.Auth.CacheTTL = -time.Second
	if err := bad.Validate(); err == nil {
		t.Fatal("negative auth.cache_ttl accepted")
	}
	srv, cfg := startServer(t, func(c *Config) { c.Auth.CacheTTL = 30 * time.Second })
	db := srv.data.Accounts
	if got := db.CacheTTL(); got != 30*time.Second {
		t.Fatalf("cache TTL %v at start, want 30s", got)
	}
	next := cfg
	next.Auth.CacheTTL = 0
	if err := srv.ReloadConfig(t.Context(), next); err != nil {
		t.Fatal(err)
	}
	if got := db.CacheTTL(); got != 0 {
		t.Fatalf("cache TTL %v after reloading 0", got)
	}
}
