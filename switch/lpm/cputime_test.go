package lpm

import (
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// threadCPU measures the CPU time of the benchmark loop's own thread. On a
// shared machine wall-clock ns/op mostly measures the other tenants; the
// thread's CPU time still includes its cache and TLB misses.
type threadCPU struct{ start int64 }

func startCPU() threadCPU {
	runtime.LockOSThread()
	return threadCPU{cpuNow()}
}

func cpuNow() int64 {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_THREAD, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// report adds cpu-ns/op; call it after the b.Loop loop.
func (c threadCPU) report(b *testing.B) { c.reportPer(b, 1) }

// reportPer is report for loops doing per operations an iteration; it
// replaces ns/op with the time per operation.
func (c threadCPU) reportPer(b *testing.B, per int) {
	ops := float64(b.N * per)
	b.ReportMetric(float64(cpuNow()-c.start)/ops, "cpu-ns/op")
	if per > 1 {
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/ops, "ns/op")
	}
	runtime.UnlockOSThread()
}
