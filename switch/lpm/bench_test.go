package lpm

import (
	"math/rand/v2"
	"net/netip"
	"testing"
)

// bgpLen4 draws a prefix length shaped like a global IPv4 BGP table:
// about 60% /24, 30% /16../23, the rest shorter or longer.
func bgpLen4(rng *rand.Rand) int {
	switch r := rng.IntN(100); {
	case r < 60:
		return 24
	case r < 90:
		return 16 + rng.IntN(8)
	case r < 95:
		return 8 + rng.IntN(8)
	default:
		return 25 + rng.IntN(8)
	}
}

// bgpLen6 is the same for IPv6: mostly /48 and /32../47, a few longer.
func bgpLen6(rng *rand.Rand) int {
	switch r := rng.IntN(100); {
	case r < 50:
		return 48
	case r < 85:
		return 32 + rng.IntN(16)
	case r < 90:
		return 16 + rng.IntN(16)
	default:
		return 49 + rng.IntN(80)
	}
}

func routes4(n int, length func(*rand.Rand) int) *Builder4 {
	rng := rand.New(rand.NewPCG(42, 4))
	b := NewBuilder4()
	for b.Len() < n {
		a := netip.AddrFrom4([4]byte{byte(rng.Uint32()), byte(rng.Uint32()), byte(rng.Uint32()), byte(rng.Uint32())})
		b.Add(netip.PrefixFrom(a, length(rng)), rng.Uint32N(1024))
	}
	return b
}

func routes6(n int, length func(*rand.Rand) int) *Builder6 {
	rng := rand.New(rand.NewPCG(42, 6))
	b := NewBuilder6()
	for b.Len() < n {
		var a [16]byte
		for i := range a {
			a[i] = byte(rng.Uint32())
		}
		a[0] = 0x20 | a[0]&0x1f // global unicast, 2000::/3
		b.Add(netip.PrefixFrom(netip.AddrFrom16(a), length(rng)), rng.Uint32N(1024))
	}
	return b
}

func uniform(max int) func(*rand.Rand) int {
	return func(rng *rand.Rand) int { return rng.IntN(max + 1) }
}

func randAddrs4() [][4]byte {
	rng := rand.New(rand.NewPCG(7, 7))
	addrs := make([][4]byte, 1<<16)
	for i := range addrs {
		u := rng.Uint32()
		addrs[i] = [4]byte{byte(u >> 24), byte(u >> 16), byte(u >> 8), byte(u)}
	}
	return addrs
}

func benchLookup4(b *testing.B, t *Table4) {
	addrs := randAddrs4()
	var sink uint32
	cpu := startCPU()
	for i := 0; b.Loop(); i++ {
		v, _ := t.Lookup(addrs[i&(len(addrs)-1)])
		sink += v
	}
	cpu.report(b)
	_ = sink
	// After the loop: b.Loop's first call drops metrics reported earlier.
	b.ReportMetric(float64(t.Bytes()), "table-bytes")
	b.ReportMetric(float64(t.bytes()), "trie-bytes")
}

func benchLookup6(b *testing.B, t *Table6) {
	addrs := randAddrs6(t)
	var sink uint32
	cpu := startCPU()
	for i := 0; b.Loop(); i++ {
		v, _ := t.Lookup(addrs[i&(len(addrs)-1)])
		sink += v
	}
	cpu.report(b)
	_ = sink
	b.ReportMetric(float64(t.Bytes()), "table-bytes")
	b.ReportMetric(float64(t.bytes()), "trie-bytes")
}

func randAddrs6(t *Table6) [][16]byte {
	rng := rand.New(rand.NewPCG(7, 7))
	rs := t.routes
	addrs := make([][16]byte, 1<<16)
	for i := range addrs {
		// Half inside a route (deep walks), half random in 2000::/3.
		var a [16]byte
		for j := range a {
			a[j] = byte(rng.Uint32())
		}
		a[0] = 0x20 | a[0]&0x1f
		if i%2 == 0 {
			r := rs[rng.IntN(len(rs))]
			hi, lo := r.hi, r.lo
			for j := range 8 {
				a[j] = byte(hi >> (56 - 8*j))
				a[8+j] = byte(lo >> (56 - 8*j))
			}
		}
		addrs[i] = a
	}
	return addrs
}

func BenchmarkLookup4_1M(b *testing.B) {
	benchLookup4(b, routes4(1_000_000, bgpLen4).Build())
}

// Uniform lengths /0../32 put a quarter of the routes below /24: the
// worst case for memory.
func BenchmarkLookup4_1M_Uniform(b *testing.B) {
	benchLookup4(b, routes4(1_000_000, uniform(32)).Build())
}

func BenchmarkLookup6_100k(b *testing.B) {
	benchLookup6(b, routes6(100_000, bgpLen6).Build())
}

func BenchmarkLookup6_100k_Uniform(b *testing.B) {
	benchLookup6(b, routes6(100_000, uniform(128)).Build())
}

func BenchmarkBuild4_1M(b *testing.B) {
	bl := routes4(1_000_000, bgpLen4)
	b.ReportAllocs()
	cpu := startCPU()
	for b.Loop() {
		bl.Build()
	}
	cpu.report(b)
}

func BenchmarkBuild6_100k(b *testing.B) {
	bl := routes6(100_000, bgpLen6)
	b.ReportAllocs()
	cpu := startCPU()
	for b.Loop() {
		bl.Build()
	}
	cpu.report(b)
}

// The batch benchmarks count one op per address, like the others.
func BenchmarkLookupBatch4_1M(b *testing.B) {
	t := routes4(1_000_000, bgpLen4).Build()
	addrs := randAddrs4()
	vals, oks := make([]uint32, batch), make([]bool, batch)
	cpu := startCPU()
	for i := 0; b.Loop(); i += batch {
		t.LookupBatch(addrs[i&(len(addrs)-1):][:batch], vals, oks)
	}
	cpu.reportPer(b, batch)
}

func BenchmarkLookupBatch6_100k(b *testing.B) {
	t := routes6(100_000, bgpLen6).Build()
	addrs := randAddrs6(t)
	vals, oks := make([]uint32, batch), make([]bool, batch)
	cpu := startCPU()
	for i := 0; b.Loop(); i += batch {
		t.LookupBatch(addrs[i&(len(addrs)-1):][:batch], vals, oks)
	}
	cpu.reportPer(b, batch)
}
