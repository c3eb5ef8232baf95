package snapshot_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestListingRetriedWhenAPoolGoesAway: a listing of every pool that fails
// because a pool went away under it — "no such pool", or zfs-fuse's zfs
// dying of SIGSEGV, as a CI run saw while another package's test destroyed
// its pool — is asked again, and Locate answers. Any other failure is not
// retried. The zfs in front of the real one (a shell script first in
// PATH) only fails the first listing of each case, then runs the real
// command.
func TestListingRetriedWhenAPoolGoesAway(t *testing.T) {
	_, root := mailPool(t)
	tool := newTool(t)
	real, err := exec.LookPath("zfs")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	tests := []struct {
		name    string
		fail    string // what the first "zfs list" does instead
		retried bool
	}{
		{"no such pool", `echo "cannot open 'gone': no such pool" >&2; exit 1`, true},
		{"SIGSEGV", `kill -SEGV $$`, true},
		{"other failure", `echo "permission denied" >&2; exit 1`, false},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls := filepath.Join(dir, "calls"+string(rune('0'+i)))
			script := "#!/bin/sh\n" +
				"echo \"$1\" >>" + calls + "\n" +
				"if [ \"$1\" = list ] && [ \"$(wc -l <" + calls + ")\" -eq 1 ]; then " + tt.fail + "; fi\n" +
				"exec " + real + " \"$@\"\n"
			if err := os.WriteFile(filepath.Join(dir, "zfs"), []byte(script), 0o755); err != nil {
				t.Fatal(err)
			}
			loc, err := tool.Locate(t.Context(), root)
			got, _ := os.ReadFile(calls)
			lists := strings.Count(string(got), "list\n")
			if tt.retried {
				if err != nil || lists != 2 {
					t.Fatalf("Locate: %v after %d listings, want an answer after 2", err, lists)
				}
				if !strings.HasSuffix(loc.Dataset.Name, "/mail") {
					t.Errorf("located %q", loc.Dataset.Name)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), "permission denied") || lists != 1 {
				t.Fatalf("Locate: %v after %d listings, want the failure after 1", err, lists)
			}
		})
	}
}
