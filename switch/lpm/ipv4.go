package lpm

import (
	"fmt"
	"math/bits"
	"net/netip"
	"slices"
)

// Builder4 collects IPv4 routes; Build returns an immutable table that many
// goroutines may read while the control plane builds the next one. A
// Builder4 is not safe for concurrent use.
type Builder4 struct {
	routes map[uint64]uint32 // key: address<<8 | length
}

// NewBuilder4 returns an empty builder.
func NewBuilder4() *Builder4 {
	return &Builder4{routes: make(map[uint64]uint32)}
}

func key4(p netip.Prefix) (uint64, bool) {
	if !p.IsValid() || !p.Addr().Is4() {
		return 0, false
	}
	p = p.Masked()
	a := p.Addr().As4()
	return uint64(be32(a))<<8 | uint64(p.Bits()), true
}

func be32(a [4]byte) uint32 {
	return uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
}

// Add sets the route for p (host bits are masked off) to value, replacing
// an earlier value for the same prefix. value must be at most MaxValue.
func (b *Builder4) Add(p netip.Prefix, value uint32) error {
	k, ok := key4(p)
	if !ok {
		return fmt.Errorf("lpm: %v is not an IPv4 prefix", p)
	}
	if value > MaxValue {
		return fmt.Errorf("lpm: value %d for %v exceeds %d", value, p, MaxValue)
	}
	b.routes[k] = value
	return nil
}

// Delete removes the route for p, if any.
func (b *Builder4) Delete(p netip.Prefix) {
	if k, ok := key4(p); ok {
		delete(b.routes, k)
	}
}

// Len is the number of routes added and not deleted.
func (b *Builder4) Len() int { return len(b.routes) }

// Build returns a table of the current routes. The builder stays usable.
func (b *Builder4) Build() *Table4 {
	rs := make([]rt, 0, len(b.routes))
	for k, v := range b.routes {
		rs = append(rs, rt{hi: k >> 8 << 32, bits: uint8(k), val: v | validFlag})
	}
	slices.SortFunc(rs, cmpRT)
	t := &Table4{trie: build(rs), routes: make([]route4, len(rs))}
	for i, r := range rs {
		t.routes[i] = route4{addr: uint32(r.hi >> 32), bits: r.bits, val: r.val & valueMask}
	}
	return t
}

type route4 struct {
	addr uint32
	bits uint8
	val  uint32
}

// Table4 is an immutable IPv4 longest-prefix-match table. A nil *Table4 is
// an empty table.
type Table4 struct {
	trie
	routes []route4 // sorted by address, then length
}

// Lookup returns the value of the longest prefix containing a. It neither
// allocates nor locks, and reads at most 4 table entries.
func (t *Table4) Lookup(a [4]byte) (value uint32, ok bool) {
	if t == nil {
		return 0, false
	}
	e := t.dp[uint16(a[0])<<8|uint16(a[1])]
	if e&childFlag != 0 {
		s := &t.subs[(e&^childFlag)*4+uint32(a[2]>>6)]
		bit := uint64(1) << (a[2] & 63)
		if s.child&bit != 0 {
			n := s.childBase + uint32(bits.OnesCount64(s.child&(bit-1)))
			s = &t.subs[n*4+uint32(a[3]>>6)]
			e = t.leafAt(s, a[3])
		} else {
			e = t.leafAt(s, a[2])
		}
	}
	return e & valueMask, e&validFlag != 0
}

// Len is the number of routes.
func (t *Table4) Len() int {
	if t == nil {
		return 0
	}
	return len(t.routes)
}

// Bytes is the memory held by the lookup structure and the route list.
func (t *Table4) Bytes() int {
	if t == nil {
		return 0
	}
	return t.bytes() + len(t.routes)*12
}

// Routes returns all routes sorted by address, then prefix length.
func (t *Table4) Routes() []Route {
	if t == nil {
		return nil
	}
	out := make([]Route, len(t.routes))
	for i, r := range t.routes {
		a := [4]byte{byte(r.addr >> 24), byte(r.addr >> 16), byte(r.addr >> 8), byte(r.addr)}
		out[i] = Route{Prefix: netip.PrefixFrom(netip.AddrFrom4(a), int(r.bits)), Value: r.val}
	}
	return out
}
