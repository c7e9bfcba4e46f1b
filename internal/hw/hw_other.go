//go:build !amd64

package hw

import (
	"sync/atomic"
	"time"
)

var base = time.Now()

// Cycles counts nanoseconds where no cheap cycle counter is wired up.
func Cycles() uint64 { return uint64(time.Since(base)) }

// PrefetchW is a no-op where it is not wired up.
func PrefetchW(p *byte, n int) {}

// Prefetch is a no-op where it is not wired up.
func Prefetch(p *byte, n int) {}

// StoreRelease32 is a sequentially consistent store where no cheaper
// release store is wired up.
func StoreRelease32(p *uint32, v uint32) { atomic.StoreUint32(p, v) }

var fenceWord uint32

// Fence is a full memory barrier: an atomic read-modify-write.
func Fence() { atomic.AddUint32(&fenceWord, 0) }
