//go:build !amd64

package hw

import (
	"sync/atomic"
	"time"
)

var base = time.Now()

// Cycles counts nanoseconds where no cheap cycle counter is wired up.
func Cycles() uint64 { return uint64(time.Since(base)) }

// StoreRelease32 stores v at *p with (at least) release order.
func StoreRelease32(p *uint32, v uint32) { atomic.StoreUint32(p, v) }

// StoreRelease64 stores v at *p with (at least) release order.
func StoreRelease64(p *uint64, v uint64) { atomic.StoreUint64(p, v) }

// PrefetchW is a no-op where it is not wired up.
func PrefetchW(p *byte, n int) {}

// Prefetch is a no-op where it is not wired up.
func Prefetch(p *byte, n int) {}
