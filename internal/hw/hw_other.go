//go:build !amd64

package hw

import "time"

var base = time.Now()

// Cycles counts nanoseconds where no cheap cycle counter is wired up.
func Cycles() uint64 { return uint64(time.Since(base)) }

// PrefetchW is a no-op where it is not wired up.
func PrefetchW(p *byte, n int) {}

// Prefetch is a no-op where it is not wired up.
func Prefetch(p *byte, n int) {}
