package local_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mailvault/mailvault/archive"
	"github.com/mailvault/mailvault/archive/local"
)

// TestPutFileAndCleanTemp: a pack written to a temporary file is renamed
// into place; temporary files are invisible to List, and CleanTemp removes
// only old ones.
func TestPutFileAndCleanTemp(t *testing.T) {
	dir := t.TempDir()
	be := local.New(dir)
	if err := be.Create(); err != nil {
		t.Fatal(err)
	}
	f, err := be.TempFile()
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("pack bytes")
	name := "abcdef"
	if err := be.PutFile(t.Context(), archive.PackFile, name, f); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(dir, "data", "ab", name)); err != nil || string(got) != "pack bytes" {
		t.Fatalf("after PutFile: %q, %v", got, err)
	}
	if _, err := os.Stat(f.Name()); !os.IsNotExist(err) {
		t.Fatalf("temporary file still there: %v", err)
	}

	old, _ := be.TempFile()
	old.Close()
	young, _ := be.TempFile()
	young.Close()
	past := time.Now().Add(-2 * time.Hour)
	os.Chtimes(old.Name(), past, past)
	var listed []string
	be.List(t.Context(), archive.PackFile, func(n string, _ int64) error { listed = append(listed, n); return nil })
	if len(listed) != 1 || listed[0] != name {
		t.Fatalf("List shows %q, want only %q", listed, name)
	}
	n, err := be.CleanTemp(time.Hour)
	if err != nil || n != 1 {
		t.Fatalf("CleanTemp removed %d (%v), want 1", n, err)
	}
	if _, err := os.Stat(old.Name()); !os.IsNotExist(err) {
		t.Error("old temporary file survived")
	}
	if _, err := os.Stat(young.Name()); err != nil {
		t.Error("young temporary file (maybe a running backup's) was removed")
	}
}
