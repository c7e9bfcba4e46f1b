// Package hw reads the CPU's cycle counter and publishes with release
// stores: the two things the data plane needs that sync/atomic and time
// make too costly per batch (a time.Now is a vDSO call; an atomic store on
// amd64 is an XCHG, a full fence that waits for every store before it,
// including copies into guest memory still fetching their cache lines).
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
