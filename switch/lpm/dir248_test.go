package lpm

import (
	"os"
	"slices"
	"testing"
)

// dir248 is DPDK rte_lpm's layout (2^24 tbl24 + 256-entry tbl8 groups),
// kept only to measure the chosen layout against it.
type dir248 struct {
	tbl24 []uint32
	tbl8  []uint32
}

func buildDir248(b *Builder4) *dir248 {
	rs := make([]rt, 0, len(b.routes))
	for k, v := range b.routes {
		rs = append(rs, rt{hi: k >> 8 << 32, bits: uint8(k), val: v | validFlag})
	}
	slices.SortFunc(rs, cmpRT)
	d := &dir248{tbl24: make([]uint32, 1<<24)}
	for _, r := range rs {
		a := uint32(r.hi >> 32)
		k := a >> 8
		if r.bits <= 24 {
			fill(d.tbl24[k:k+1<<(24-r.bits)], r.val)
			continue
		}
		e := d.tbl24[k]
		if e&childFlag == 0 {
			g := uint32(len(d.tbl8) / 256)
			d.tbl8 = append(d.tbl8, make([]uint32, 256)...)
			fill(d.tbl8[g*256:], e)
			e = childFlag | g
			d.tbl24[k] = e
		}
		i := (e&^childFlag)*256 + a&255
		fill(d.tbl8[i:i+1<<(32-r.bits)], r.val)
	}
	return d
}

func (d *dir248) lookup(a [4]byte) (uint32, bool) {
	e := d.tbl24[uint32(a[0])<<16|uint32(a[1])<<8|uint32(a[2])]
	if e&childFlag != 0 {
		e = d.tbl8[(e&^childFlag)*256+uint32(a[3])]
	}
	return e & valueMask, e&validFlag != 0
}

func TestDir248MatchesTable4(t *testing.T) {
	if testing.Short() && os.Getenv("CI") != "true" {
		t.Skip("fills a 64 MiB tbl24 (runs without -short, and always with CI=true)")
	}
	b := routes4(20000, uniform(32))
	tb, d := b.Build(), buildDir248(b)
	for i := range uint32(50000) {
		a := [4]byte{byte(i * 2654435761 >> 24), byte(i >> 8), byte(i), byte(i * 7)}
		v1, ok1 := tb.Lookup(a)
		v2, ok2 := d.lookup(a)
		if v1 != v2 || ok1 != ok2 {
			t.Fatalf("%v: table %d,%v dir248 %d,%v", a, v1, ok1, v2, ok2)
		}
	}
}

func benchDir248(b *testing.B, d *dir248) {
	addrs := randAddrs4()
	var sink uint32
	cpu := startCPU()
	for i := 0; b.Loop(); i++ {
		v, _ := d.lookup(addrs[i&(len(addrs)-1)])
		sink += v
	}
	cpu.report(b)
	_ = sink
	b.ReportMetric(float64(4*(len(d.tbl24)+len(d.tbl8))), "trie-bytes")
}

func BenchmarkDir248Lookup4_1M(b *testing.B) {
	benchDir248(b, buildDir248(routes4(1_000_000, bgpLen4)))
}

func BenchmarkDir248Lookup4_1M_Uniform(b *testing.B) {
	benchDir248(b, buildDir248(routes4(1_000_000, uniform(32))))
}

// Small tables fit in cache: these measure the instructions, not misses.
func BenchmarkLookup4_10k(b *testing.B) {
	benchLookup4(b, routes4(10_000, bgpLen4).Build())
}

func BenchmarkDir248Lookup4_10k(b *testing.B) {
	benchDir248(b, buildDir248(routes4(10_000, bgpLen4)))
}
