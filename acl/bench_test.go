package acl

import (
	"fmt"
	"runtime"
	"syscall"
	"testing"
)

const benchBatch = 32

// BenchmarkClassify reports ns/packet over batches of 32 at 10, 1,000 and
// 10,000 SG-like rules, all on one port (the worst case: one partition)
// and spread over 64 ports.
func BenchmarkClassify(b *testing.B) {
	for _, nports := range []int{1, 64} {
		for _, n := range []int{10, 1000, 10000} {
			rules := sgLikeRules(42, n, nports)
			c, err := CompileRules(rules)
			if err != nil {
				b.Fatal(err)
			}
			ps, ms := packetsFor(43, rules, 4096)
			out := make([]Result, benchBatch)
			b.Run(fmt.Sprintf("ports=%d/rules=%d", nports, n), func(b *testing.B) {
				b.ReportAllocs()
				runtime.LockOSThread()
				defer runtime.UnlockOSThread()
				t0 := threadCPU()
				i := 0
				for b.Loop() {
					c.Classify(ps[i:i+benchBatch], ms[i:i+benchBatch], out)
					i = (i + benchBatch) & 4095
				}
				// CPU time of this thread: the machine is shared, so wall
				// time per packet mostly measures the neighbours.
				b.ReportMetric(float64(threadCPU()-t0)/float64(b.N*benchBatch), "cpu-ns/pkt")
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*benchBatch), "ns/pkt")
			})
		}
	}
}

// BenchmarkLinear is the naive scan the classifier replaces.
func BenchmarkLinear(b *testing.B) {
	for _, n := range []int{10, 1000, 10000} {
		rules := sgLikeRules(42, n, 1)
		ps, ms := packetsFor(43, rules, 4096)
		b.Run(fmt.Sprintf("rules=%d", n), func(b *testing.B) {
			i := 0
			for b.Loop() {
				refLookup(rules, &ps[i], ms[i])
				i = (i + 1) & 4095
			}
		})
	}
}

func BenchmarkCompile10k(b *testing.B) {
	rules := sgLikeRules(42, 10000, 1)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := CompileRules(rules); err != nil {
			b.Fatal(err)
		}
	}
}

// threadCPU is the calling thread's CPU time in ns.
func threadCPU() int64 {
	var ru syscall.Rusage
	syscall.Getrusage(1, &ru) // RUSAGE_THREAD
	return ru.Utime.Nano() + ru.Stime.Nano()
}
