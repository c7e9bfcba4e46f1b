package hw

import (
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

func TestStoreRelease32AndFence(t *testing.T) {
	var x uint32
	StoreRelease32(&x, 7)
	Fence()
	if x != 7 {
		t.Fatalf("StoreRelease32 stored %d, want 7", x)
	}
}
