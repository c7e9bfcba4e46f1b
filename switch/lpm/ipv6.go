package lpm

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"net/netip"
	"slices"
)

// Builder6 collects IPv6 routes; Build returns an immutable table that many
// goroutines may read while the control plane builds the next one. A
// Builder6 is not safe for concurrent use.
type Builder6 struct {
	routes map[key6]uint32
}

type key6 struct {
	hi, lo uint64
	bits   uint8
}

// NewBuilder6 returns an empty builder.
func NewBuilder6() *Builder6 {
	return &Builder6{routes: make(map[key6]uint32)}
}

// IPv4-mapped prefixes are refused: the router looks those up in Table4.
func toKey6(p netip.Prefix) (key6, bool) {
	if !p.IsValid() || !p.Addr().Is6() || p.Addr().Is4In6() {
		return key6{}, false
	}
	p = p.Masked()
	a := p.Addr().As16()
	return key6{binary.BigEndian.Uint64(a[:8]), binary.BigEndian.Uint64(a[8:]), uint8(p.Bits())}, true
}

// Add sets the route for p (host bits are masked off) to value, replacing
// an earlier value for the same prefix. value must be at most MaxValue.
func (b *Builder6) Add(p netip.Prefix, value uint32) error {
	k, ok := toKey6(p)
	if !ok {
		return fmt.Errorf("lpm: %v is not an IPv6 prefix", p)
	}
	if value > MaxValue {
		return fmt.Errorf("lpm: value %d for %v exceeds %d", value, p, MaxValue)
	}
	b.routes[k] = value
	return nil
}

// Delete removes the route for p, if any.
func (b *Builder6) Delete(p netip.Prefix) {
	if k, ok := toKey6(p); ok {
		delete(b.routes, k)
	}
}

// Len is the number of routes added and not deleted.
func (b *Builder6) Len() int { return len(b.routes) }

// Build returns a table of the current routes. The builder stays usable.
func (b *Builder6) Build() *Table6 {
	rs := make([]rt, 0, len(b.routes))
	for k, v := range b.routes {
		rs = append(rs, rt{hi: k.hi, lo: k.lo, bits: k.bits, val: v | validFlag})
	}
	slices.SortFunc(rs, cmpRT)
	t := &Table6{trie: build(rs), routes: rs}
	return t
}

// Table6 is an immutable IPv6 longest-prefix-match table. A nil *Table6 is
// an empty table.
type Table6 struct {
	trie
	routes []rt // sorted by address, then length
}

// Lookup returns the value of the longest prefix containing a. It neither
// allocates nor locks, and reads at most 16 table entries.
func (t *Table6) Lookup(a [16]byte) (value uint32, ok bool) {
	if t == nil {
		return 0, false
	}
	e := t.dp[uint16(a[0])<<8|uint16(a[1])]
	if e&childFlag != 0 {
		n := e &^ childFlag
		// Nodes at the last byte have no children, so the loop always
		// ends in a leaf.
		for i := 2; i < 16; i++ {
			b := a[i]
			s := &t.subs[n*4+uint32(b>>6)]
			bit := uint64(1) << (b & 63)
			if s.child&bit == 0 {
				e = t.leafAt(s, b)
				return e & valueMask, e&validFlag != 0
			}
			n = s.childBase + uint32(bits.OnesCount64(s.child&(bit-1)))
		}
		return 0, false
	}
	return e & valueMask, e&validFlag != 0
}

// Len is the number of routes.
func (t *Table6) Len() int {
	if t == nil {
		return 0
	}
	return len(t.routes)
}

// Bytes is the memory held by the lookup structure and the route list.
func (t *Table6) Bytes() int {
	if t == nil {
		return 0
	}
	return t.bytes() + len(t.routes)*24
}

// Routes returns all routes sorted by address, then prefix length.
func (t *Table6) Routes() []Route {
	if t == nil {
		return nil
	}
	out := make([]Route, len(t.routes))
	for i, r := range t.routes {
		var a [16]byte
		binary.BigEndian.PutUint64(a[:8], r.hi)
		binary.BigEndian.PutUint64(a[8:], r.lo)
		out[i] = Route{Prefix: netip.PrefixFrom(netip.AddrFrom16(a), int(r.bits)), Value: r.val & valueMask}
	}
	return out
}
