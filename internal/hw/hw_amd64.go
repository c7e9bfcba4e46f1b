package hw

// Cycles reads the time-stamp counter (RDTSC): constant-rate on every CPU
// that has one worth using, and about ten times cheaper than time.Now.
//
//go:noescape
func Cycles() uint64

// StoreRelease32 stores v at *p with release order: no earlier load or
// store is seen after it. On amd64 a plain MOV is that (TSO), while
// sync/atomic's store is an XCHG. Readers must load *p atomically.
//
//go:noescape
func StoreRelease32(p *uint32, v uint32)

// StoreRelease64 is StoreRelease32 for a 64-bit word (aligned).
//
//go:noescape
func StoreRelease64(p *uint64, v uint64)
