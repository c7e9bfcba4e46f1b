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

// StoreRelease32 stores v at p with release ordering: every earlier store
// is visible before it. On amd64 that is a plain MOV (stores are never
// reordered with stores), where atomic.StoreUint32 is an XCHG that also
// waits for the store buffer to drain. Being an assembly call, it is also
// a compiler barrier.
//
//go:noescape
func StoreRelease32(p *uint32, v uint32)

// Fence is a full memory barrier (a locked instruction): stores before it
// are visible before loads after it.
//
//go:noescape
func Fence()
