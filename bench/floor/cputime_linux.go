package main

import "syscall"

// threadCPU is the calling thread's user+sys CPU time in seconds
// (getrusage RUSAGE_THREAD): measure runs on one locked thread, so the
// garbage collector's and other goroutines' time is not counted.
func threadCPU() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(1 /* RUSAGE_THREAD */, &ru); err != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}
