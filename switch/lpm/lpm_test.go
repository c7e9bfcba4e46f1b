package lpm

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// ref is the naive reference: a map probed from the longest length down.
type ref map[netip.Prefix]uint32

func (r ref) lookup(a netip.Addr) (uint32, bool) {
	for l := a.BitLen(); l >= 0; l-- {
		p, _ := a.Prefix(l)
		if v, ok := r[p]; ok {
			return v, true
		}
	}
	return 0, false
}

func (r ref) routes() []Route {
	var out []Route
	for p, v := range r {
		out = append(out, Route{p, v})
	}
	slices.SortFunc(out, func(a, b Route) int {
		if c := a.Prefix.Addr().Compare(b.Prefix.Addr()); c != 0 {
			return c
		}
		return a.Prefix.Bits() - b.Prefix.Bits()
	})
	return out
}

// table is what the differential tests need from both families.
type table interface {
	lookup(netip.Addr) (uint32, bool)
	lookupBatch([]netip.Addr) ([]uint32, []bool)
	Routes() []Route
	Len() int
}

type t4 struct{ *Table4 }

func (t t4) lookup(a netip.Addr) (uint32, bool) { return t.Lookup(a.As4()) }

func (t t4) lookupBatch(as []netip.Addr) ([]uint32, []bool) {
	in := make([][4]byte, len(as))
	for i, a := range as {
		in[i] = a.As4()
	}
	v, ok := make([]uint32, len(as)), make([]bool, len(as))
	if n := t.LookupBatch(in, v, ok); n != len(as) {
		panic(n)
	}
	return v, ok
}

type t6 struct{ *Table6 }

func (t t6) lookupBatch(as []netip.Addr) ([]uint32, []bool) {
	in := make([][16]byte, len(as))
	for i, a := range as {
		in[i] = a.As16()
	}
	v, ok := make([]uint32, len(as)), make([]bool, len(as))
	if n := t.LookupBatch(in, v, ok); n != len(as) {
		panic(n)
	}
	return v, ok
}

func (t t6) lookup(a netip.Addr) (uint32, bool) { return t.Lookup(a.As16()) }

type anyBuilder interface {
	Add(netip.Prefix, uint32) error
	Delete(netip.Prefix)
	build() table
}

type b4 struct{ *Builder4 }

func (b b4) build() table { return t4{b.Build()} }

type b6 struct{ *Builder6 }

func (b b6) build() table { return t6{b.Build()} }

// randAddr returns a random address of n bytes; for IPv6 the first bytes
// are often fixed so that routes share the trie's deeper levels.
func randAddr(rng *rand.Rand, n int) netip.Addr {
	var a [16]byte
	for i := range n {
		a[i] = byte(rng.Uint32())
	}
	if n == 4 {
		return netip.AddrFrom4([4]byte(a[:4]))
	}
	if rng.IntN(2) == 0 {
		a[0], a[1], a[2] = 0x20, 0x01, 0x0d
	}
	return netip.AddrFrom16(a)
}

// near returns addresses inside, at the edges of, and just outside p.
func near(p netip.Prefix) []netip.Addr {
	first := p.Masked().Addr()
	b := first.AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	last, _ := netip.AddrFromSlice(b)
	out := []netip.Addr{first, last}
	if q := first.Prev(); q.IsValid() {
		out = append(out, q)
	}
	if q := last.Next(); q.IsValid() {
		out = append(out, q)
	}
	return out
}

func check(t *testing.T, got table, want ref, probes []netip.Addr) {
	t.Helper()
	var tr *trie
	switch x := got.(type) {
	case t4:
		tr = &x.trie
	case t6:
		tr = &x.trie
	}
	if len(tr.subs) != cap(tr.subs) {
		t.Fatalf("countNodes reserved %d subnodes, build used %d", cap(tr.subs), len(tr.subs))
	}
	if got.Len() != len(want) {
		t.Fatalf("Len = %d, want %d", got.Len(), len(want))
	}
	if g, w := got.Routes(), want.routes(); !slices.Equal(g, w) {
		t.Fatalf("Routes differ:\n got %v\nwant %v", g, w)
	}
	bv, bok := got.lookupBatch(probes)
	for i, a := range probes {
		gv, gok := got.lookup(a)
		wv, wok := want.lookup(a)
		if gv != wv || gok != wok {
			t.Fatalf("Lookup(%v) = %d,%v; want %d,%v", a, gv, gok, wv, wok)
		}
		if bv[i] != wv || bok[i] != wok {
			t.Fatalf("LookupBatch(%v) = %d,%v; want %d,%v", a, bv[i], bok[i], wv, wok)
		}
	}
}

func differential(t *testing.T, newB func() anyBuilder, n int) {
	rng := rand.New(rand.NewPCG(1, 2))
	bits := n * 8
	for round := range 20 {
		b, want := newB(), ref{}
		var added []netip.Prefix
		var probes []netip.Addr
		count := 1 + rng.IntN(600)
		if round == 0 {
			count = 3000
		}
		for range count {
			var p netip.Prefix
			switch r := rng.IntN(10); {
			case r == 0:
				p = netip.PrefixFrom(randAddr(rng, n), 0)
			case r == 1:
				p = netip.PrefixFrom(randAddr(rng, n), bits)
			case r <= 3 && len(added) > 0:
				// Nest a longer prefix inside an existing one.
				q := added[rng.IntN(len(added))]
				a := near(q)[rng.IntN(2)]
				if rng.IntN(2) == 0 {
					a = randInside(rng, q)
				}
				p = netip.PrefixFrom(a, q.Bits()+rng.IntN(bits-q.Bits()+1))
			default:
				p = netip.PrefixFrom(randAddr(rng, n), rng.IntN(bits+1))
			}
			p = p.Masked()
			v := rng.Uint32N(MaxValue + 1)
			if err := b.Add(p, v); err != nil {
				t.Fatal(err)
			}
			want[p] = v
			added = append(added, p)
			probes = append(probes, near(p)...)
			probes = append(probes, randAddr(rng, n))
			switch rng.IntN(8) {
			case 0: // replace
				q := added[rng.IntN(len(added))]
				if _, ok := want[q]; ok {
					v := rng.Uint32N(MaxValue + 1)
					b.Add(q, v)
					want[q] = v
				}
			case 1: // delete
				q := added[rng.IntN(len(added))]
				b.Delete(q)
				delete(want, q)
			}
		}
		check(t, b.build(), want, probes)
	}
}

func randInside(rng *rand.Rand, p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		if rng.IntN(2) == 0 {
			b[i/8] |= 0x80 >> (i % 8)
		}
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

func TestDifferential4(t *testing.T) {
	differential(t, func() anyBuilder { return b4{NewBuilder4()} }, 4)
}

func TestDifferential6(t *testing.T) {
	differential(t, func() anyBuilder { return b6{NewBuilder6()} }, 16)
}

func TestOverlap4(t *testing.T) {
	routes := []struct {
		p string
		v uint32
	}{
		{"0.0.0.0/0", 1},
		{"10.0.0.0/8", 2},
		{"10.1.0.0/16", 3},
		{"10.1.2.0/24", 4},
		{"10.1.2.128/25", 5},
		{"10.1.2.129/32", 6},
		{"10.1.3.0/24", 7},
		{"192.168.0.0/17", 8},
		{"10.1.2.3/31", 9},
		{"10.0.0.1/24", 10}, // host bits masked: 10.0.0.0/24
		{"10.1.2.0/24", 11}, // replaces 4
	}
	cases := []struct {
		a  string
		v  uint32
		ok bool
	}{
		{"1.2.3.4", 1, true},
		{"10.255.0.0", 2, true},
		{"10.1.255.255", 3, true},
		{"10.1.2.0", 11, true},
		{"10.1.2.2", 9, true},
		{"10.1.2.3", 9, true},
		{"10.1.2.4", 11, true},
		{"10.1.2.127", 11, true},
		{"10.1.2.128", 5, true},
		{"10.1.2.129", 6, true},
		{"10.1.2.130", 5, true},
		{"10.1.3.9", 7, true},
		{"10.1.4.0", 3, true},
		{"10.0.0.200", 10, true},
		{"192.168.127.255", 8, true},
		{"192.168.128.0", 1, true},
	}
	b := NewBuilder4()
	for _, r := range routes {
		if err := b.Add(netip.MustParsePrefix(r.p), r.v); err != nil {
			t.Fatal(err)
		}
	}
	tb := b.Build()
	for _, c := range cases {
		v, ok := tb.Lookup(netip.MustParseAddr(c.a).As4())
		if v != c.v || ok != c.ok {
			t.Errorf("Lookup(%s) = %d,%v; want %d,%v", c.a, v, ok, c.v, c.ok)
		}
	}
	if tb.Len() != 10 {
		t.Errorf("Len = %d, want 10", tb.Len())
	}
	// Without the default route, misses report ok=false.
	b.Delete(netip.MustParsePrefix("0.0.0.0/0"))
	tb = b.Build()
	if v, ok := tb.Lookup([4]byte{1, 2, 3, 4}); ok {
		t.Errorf("miss returned %d", v)
	}
	if v, ok := tb.Lookup([4]byte{10, 1, 2, 129}); v != 6 || !ok {
		t.Errorf("host route after delete: %d,%v", v, ok)
	}
	if got := tb.Routes()[0]; got != (Route{netip.MustParsePrefix("10.0.0.0/8"), 2}) {
		t.Errorf("first route %v", got)
	}
}

func TestOverlap6(t *testing.T) {
	b := NewBuilder6()
	for _, r := range []struct {
		p string
		v uint32
	}{
		{"::/0", 1},
		{"2001:db8::/32", 2},
		{"2001:db8:1::/48", 3},
		{"2001:db8:1::1/128", 4},
		{"2001:db8:1::ff/121", 5}, // masked to 2001:db8:1::80/121
		{"fd00::/8", 6},
	} {
		if err := b.Add(netip.MustParsePrefix(r.p), r.v); err != nil {
			t.Fatal(err)
		}
	}
	tb := b.Build()
	for _, c := range []struct {
		a string
		v uint32
	}{
		{"::1", 1},
		{"2001:db8:ffff::", 2},
		{"2001:db8:1:2::", 3},
		{"2001:db8:1::1", 4},
		{"2001:db8:1::2", 3},
		{"2001:db8:1::80", 5},
		{"2001:db8:1::ff", 5},
		{"2001:db8:1::100", 3},
		{"fdff::1", 6},
	} {
		if v, ok := tb.Lookup(netip.MustParseAddr(c.a).As16()); v != c.v || !ok {
			t.Errorf("Lookup(%s) = %d,%v; want %d", c.a, v, ok, c.v)
		}
	}
	if got := tb.Routes()[4].Prefix.String(); got != "2001:db8:1::80/121" {
		t.Errorf("masked route = %s", got)
	}
}

func TestReject(t *testing.T) {
	b4, b6 := NewBuilder4(), NewBuilder6()
	for _, p := range []string{"2001:db8::/32", "::ffff:10.0.0.0/104"} {
		err := b4.Add(netip.MustParsePrefix(p), 1)
		if err == nil || !strings.Contains(err.Error(), p) {
			t.Errorf("Builder4.Add(%s) error %v", p, err)
		}
	}
	for _, p := range []string{"10.0.0.0/8", "::ffff:10.0.0.0/104"} {
		err := b6.Add(netip.MustParsePrefix(p), 1)
		if err == nil || !strings.Contains(err.Error(), p) {
			t.Errorf("Builder6.Add(%s) error %v", p, err)
		}
	}
	if b4.Add(netip.Prefix{}, 1) == nil || b6.Add(netip.Prefix{}, 1) == nil {
		t.Error("invalid prefix accepted")
	}
	if b4.Add(netip.MustParsePrefix("10.0.0.0/8"), MaxValue+1) == nil {
		t.Error("value above MaxValue accepted")
	}
	if err := b4.Add(netip.MustParsePrefix("10.0.0.0/8"), MaxValue); err != nil {
		t.Error(err)
	}
	if v, ok := b4.Build().Lookup([4]byte{10}); v != MaxValue || !ok {
		t.Errorf("MaxValue round trip: %d,%v", v, ok)
	}
}

func TestNilAndEmpty(t *testing.T) {
	var n4 *Table4
	var n6 *Table6
	if _, ok := n4.Lookup([4]byte{1}); ok || n4.Len() != 0 || n4.Routes() != nil {
		t.Error("nil Table4 not empty")
	}
	if _, ok := n6.Lookup([16]byte{1}); ok || n6.Len() != 0 || n6.Routes() != nil {
		t.Error("nil Table6 not empty")
	}
	v, ok := []uint32{7, 7}, []bool{true, true}
	if n := n4.LookupBatch(make([][4]byte, 3), v, ok); n != 2 || v[0] != 0 || ok[1] {
		t.Error("nil Table4 batch not empty")
	}
	v, ok = []uint32{7, 7}, []bool{true, true}
	if n := n6.LookupBatch(make([][16]byte, 1), v, ok); n != 1 || v[0] != 0 || ok[0] || !ok[1] {
		t.Error("nil Table6 batch wrong")
	}
	if _, ok := NewBuilder4().Build().Lookup([4]byte{1}); ok {
		t.Error("empty Table4 matched")
	}
	if _, ok := NewBuilder6().Build().Lookup([16]byte{1}); ok {
		t.Error("empty Table6 matched")
	}
}

func TestLookupAllocs(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	b4, b6 := NewBuilder4(), NewBuilder6()
	for range 1000 {
		b4.Add(netip.PrefixFrom(randAddr(rng, 4), rng.IntN(33)), 1)
		b6.Add(netip.PrefixFrom(randAddr(rng, 16), rng.IntN(129)), 1)
	}
	tb4, tb6 := b4.Build(), b6.Build()
	var a4 [4]byte
	var a6 [16]byte
	var sink uint32
	if n := testing.AllocsPerRun(1000, func() {
		a4[3]++
		v, _ := tb4.Lookup(a4)
		sink += v
	}); n != 0 {
		t.Errorf("Lookup4 allocs = %v", n)
	}
	if n := testing.AllocsPerRun(1000, func() {
		a6[15]++
		v, _ := tb6.Lookup(a6)
		sink += v
	}); n != 0 {
		t.Errorf("Lookup6 allocs = %v", n)
	}
	addrs4 := make([][4]byte, 100)
	addrs6 := make([][16]byte, 100)
	vals := make([]uint32, 100)
	oks := make([]bool, 100)
	if n := testing.AllocsPerRun(100, func() {
		tb4.LookupBatch(addrs4, vals, oks)
		tb6.LookupBatch(addrs6, vals, oks)
	}); n != 0 {
		t.Errorf("LookupBatch allocs = %v", n)
	}
	_ = sink
}

// TestBuilderReuse checks that a table does not change when its anyBuilder
// goes on to build the next one.
func TestBuilderReuse(t *testing.T) {
	b := NewBuilder4()
	b.Add(netip.MustParsePrefix("10.0.0.0/8"), 1)
	old := b.Build()
	b.Add(netip.MustParsePrefix("10.0.0.0/8"), 2)
	b.Add(netip.MustParsePrefix("10.1.0.0/16"), 3)
	nw := b.Build()
	if v, _ := old.Lookup([4]byte{10, 1}); v != 1 || old.Len() != 1 {
		t.Errorf("old table changed: %d", v)
	}
	if v, _ := nw.Lookup([4]byte{10, 1}); v != 3 {
		t.Errorf("new table: %d", v)
	}
}
