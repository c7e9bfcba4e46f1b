// Package hw reads the CPU's cycle counter and prefetches cache lines: what
// the data plane needs that Go has no cheap way to say (a time.Now is a
// vDSO call; Go has no prefetch instruction).
package hw

import (
	"sync"
	"time"
)

var (
	calOnce sync.Once
	perSec  float64
)

// CyclesPerSecond is the rate of Cycles, measured once over 20 ms.
func CyclesPerSecond() float64 {
	calOnce.Do(func() {
		t0, c0 := time.Now(), Cycles()
		time.Sleep(20 * time.Millisecond)
		c1, t1 := Cycles(), time.Now()
		perSec = float64(c1-c0) / t1.Sub(t0).Seconds()
	})
	return perSec
}

// Nanos converts a count of Cycles to nanoseconds.
func Nanos(cycles uint64) float64 {
	return float64(cycles) / CyclesPerSecond() * 1e9
}
