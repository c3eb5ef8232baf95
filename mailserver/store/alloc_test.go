package store

import (
	"bytes"
	"runtime"
	"testing"
)

// TestDeliverAllocation: delivering a message allocates far less than the
// 32 KiB copy buffer that io.Copy into the message file used to allocate
// for every message (bench/mailserver's profile: a tenth of the SMTP path's
// CPU went to allocating and collecting them). Measured in bytes, not time.
func TestDeliverAllocation(t *testing.T) {
	s, err := Open(t.Context(), t.TempDir(), Options{Hostname: "mx.test"})
	if err != nil {
		t.Fatal(err)
	}
	a := Account{Domain: "example.test", User: "alice"}
	msg := bytes.Repeat([]byte("Subject: x\r\n\r\nbody line of a message\r\n"), 100) // 4 KB
	deliver := func() {
		if _, err := s.Deliver(t.Context(), a, "", bytes.NewReader(msg)); err != nil {
			t.Fatal(err)
		}
	}
	deliver() // creates the Maildir and warms the pool
	const n = 50
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range n {
		deliver()
	}
	runtime.ReadMemStats(&after)
	perMsg := (after.TotalAlloc - before.TotalAlloc) / n
	if perMsg >= 16<<10 {
		t.Fatalf("Deliver allocates %d bytes per message, want well under a 32 KiB copy buffer", perMsg)
	}
	t.Logf("%d bytes allocated per delivered message", perMsg)
}
