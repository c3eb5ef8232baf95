package main

import (
	"runtime"
	"runtime/debug"
	"testing"
)

// gcPercent reads GOGC without changing it.
func gcPercent() int {
	p := debug.SetGCPercent(100)
	debug.SetGCPercent(p)
	return p
}

// TestGCTune: a backup's GOGC lets a small live heap grow by gcHeadroom
// (capped at 1000 %), and a live heap past four times gcHeadroom by 25 %.
func TestGCTune(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	runtime.GC()
	gcTune()
	if p := gcPercent(); p <= 100 || p > 1000 {
		t.Errorf("GOGC %d on a small heap, want above 100 and at most 1000", p)
	}
	big := make([]byte, 5*gcHeadroom)
	runtime.GC()
	gcTune()
	runtime.KeepAlive(big)
	if p := gcPercent(); p != gcFloor {
		t.Errorf("GOGC %d with %d MiB live, want %d", p, len(big)>>20, gcFloor)
	}
}
