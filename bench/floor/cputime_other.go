//go:build !linux

package main

// threadCPU reports 0 where there is no per-thread CPU clock: the sizes
// are still measured, the CPU column is not.
func threadCPU() float64 { return 0 }
