package hw

import (
	"sync/atomic"
	"testing"
	"time"
)

func TestCyclesAdvance(t *testing.T) {
	c0 := Cycles()
	time.Sleep(2 * time.Millisecond)
	if c1 := Cycles(); c1 <= c0 {
		t.Fatalf("Cycles did not advance: %d then %d", c0, c1)
	}
	r := CyclesPerSecond()
	if r < 1e8 || r > 1e11 {
		t.Fatalf("CyclesPerSecond = %g, not a plausible clock", r)
	}
	if ns := Nanos(uint64(r)); ns < 0.99e9 || ns > 1.01e9 {
		t.Fatalf("Nanos(one second of cycles) = %g", ns)
	}
}

func TestStoreRelease(t *testing.T) {
	var a uint32
	var b uint64
	StoreRelease32(&a, 0xdeadbeef)
	StoreRelease64(&b, 1<<40|7)
	if atomic.LoadUint32(&a) != 0xdeadbeef || atomic.LoadUint64(&b) != 1<<40|7 {
		t.Fatalf("got %#x %#x", a, b)
	}
}

// The release store is published to another goroutine that polls it, as a
// guest's driver polls used.idx.
func TestStoreReleasePublishes(t *testing.T) {
	var data [64]uint64
	var flag uint32
	done := make(chan bool)
	go func() {
		for atomic.LoadUint32(&flag) == 0 {
		}
		ok := true
		for i := range data {
			ok = ok && atomic.LoadUint64(&data[i]) == uint64(i)+1
		}
		done <- ok
	}()
	for i := range data {
		atomic.StoreUint64(&data[i], uint64(i)+1)
	}
	StoreRelease32(&flag, 1)
	if !<-done {
		t.Fatal("the reader saw the flag before the data")
	}
}

func BenchmarkCycles(b *testing.B) {
	for i := 0; i < b.N; i++ {
		Cycles()
	}
}

func BenchmarkTimeNow(b *testing.B) {
	for i := 0; i < b.N; i++ {
		time.Now()
	}
}

func TestPrefetchIsHarmless(t *testing.T) {
	b := make([]byte, 300)
	PrefetchW(&b[0], len(b))
	Prefetch(&b[1], 200)
	PrefetchW(&b[299], 1)
	Prefetch(&b[0], 0)
	b[0] = 1
	if b[0] != 1 {
		t.Fatal("memory changed under a prefetch")
	}
}
