package hw

// Cycles reads the time-stamp counter (RDTSC): constant-rate on every CPU
// that has one worth using, and about ten times cheaper than time.Now.
//
//go:noescape
func Cycles() uint64

// PrefetchW asks for the cache lines of [p, p+n) in exclusive state,
// ready to be written (PREFETCHW): issued for a whole batch before the
// copies, the lines of a guest's buffers travel from its CPU in parallel
// instead of one store miss at a time. It never faults.
//
//go:noescape
func PrefetchW(p *byte, n int)

// Prefetch asks for the cache lines of [p, p+n) for reading (PREFETCHT0).
//
//go:noescape
func Prefetch(p *byte, n int)
