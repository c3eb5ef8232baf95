package local

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/mailvault/mailvault/archive"
	"github.com/mailvault/mailvault/archive/backendtest"
)

func TestBackend(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "repo")
	b := New(dir)
	if err := b.Create(); err != nil {
		t.Fatal(err)
	}
	backendtest.Run(t, b)
	if _, err := os.Stat(filepath.Join(dir, "data", "ab", backendtest.Pack)); err != nil {
		t.Errorf("pack not stored below its prefix directory: %v", err)
	}
	// Temporary files of an interrupted Put are not listed.
	if err := os.WriteFile(filepath.Join(dir, "data", "ab", tmpPrefix+"123"), []byte("partial"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := backendtest.List(t, b, archive.PackFile); len(got) != 1 || got[0] != backendtest.Pack {
		t.Errorf("List = %q, want [%s]", got, backendtest.Pack)
	}
}

// TestBackendRefusesUnsafeNames: names come from the repository's own
// listings and IDs; anything that could leave its directory is refused.
func TestBackendRefusesUnsafeNames(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "repo")
	b := New(dir)
	if err := b.Create(); err != nil {
		t.Fatal(err)
	}
	backendtest.RefusesUnsafeNames(t, b)
	if _, err := os.Stat(filepath.Join(filepath.Dir(dir), "evil")); err == nil {
		t.Error("a file was written outside the repository")
	}
}
