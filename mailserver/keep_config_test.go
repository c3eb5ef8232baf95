package mailserver

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailvault/mailvault/retention"
)

// TestConfigKeep: the keep: block (forget's configured policy) parses
// into a retention policy and bad values are errors at load.
func TestConfigKeep(t *testing.T) {
	dir := t.TempDir()
	load := func(yaml string) (Config, error) {
		p := filepath.Join(dir, "c.yaml")
		if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		c := DefaultConfig()
		err := c.LoadFile(p)
		return c, err
	}
	c, err := load("keep: {daily: 14, weekly: 8, monthly: 24, yearly: -1, within: 2d}\n")
	if err != nil {
		t.Fatal(err)
	}
	want := retention.Policy{Daily: 14, Weekly: 8, Monthly: 24, Yearly: retention.Unlimited, Within: retention.Duration{Days: 2}}
	if c.Keep == nil || c.Keep.String() != want.String() {
		t.Errorf("keep %+v, want %+v", c.Keep, want)
	}
	for yaml, msg := range map[string]string{
		"keep: {daily: -3}\n":   "keep daily -3",
		"keep: {within: 1w}\n":  "unknown unit",
		"keep: {hourlies: 1}\n": "hourlies",
	} {
		if _, err := load(yaml); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("%q: %v, want an error saying %q", yaml, err, msg)
		}
	}
}
