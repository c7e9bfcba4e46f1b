// Package lpm holds longest-prefix-match tables for IPv4 and IPv6 routes.
//
// A Builder collects routes; Build turns them into an immutable Table that
// any number of goroutines may read without locks while the control plane
// builds the next one and swaps it in (atomic.Pointer).
//
// Layout (the same for both families; a poptrie with 8-bit strides, Asai
// and Ohara, SIGCOMM 2015, on top of a 16-bit direct-pointing array):
//
//   - dp: 2^16 entries indexed by the first 16 address bits. An entry is a
//     leaf (value and valid flag) or the index of a node.
//   - node: covers the next 8 address bits and is stored as 4 subnodes of
//     64 positions. A subnode holds a child bitmap, a leaf-run bitmap and
//     the base indexes of its children and leaves, so one popcount finds
//     the next node or the leaf. Runs of equal leaves are stored once,
//     which keeps a million routes in tens of MiB instead of the fixed
//     64 MiB of DIR-24-8.
//
// Lookup touches the dp entry, one 24-byte subnode per further byte, then
// one leaf: at most 4 memory accesses for IPv4 and 16 for IPv6.
//
// Measured against DPDK's DIR-24-8 (dir248_test.go) with a million
// BGP-shaped IPv4 routes: DIR-24-8 needs 121 MB (534 MB with uniform
// prefix lengths) and one cache miss per lookup; this layout needs 19 MB
// (58 MB) and two dependent misses, so Lookup is slower at that size and
// faster for tables that fit in cache. LookupBatch overlaps the misses of
// 32 lookups and comes close to DIR-24-8 (see the benchmarks).
package lpm

import (
	"cmp"
	"math/bits"
	"net/netip"
	"unsafe"
)

// MaxValue is the largest value a route can carry: the low 24 bits of a
// 32-bit entry, the upper bits mark the entry as valid or as a node index.
const MaxValue = 1<<24 - 1

// Route is one prefix and its value, as returned by Routes.
type Route struct {
	Prefix netip.Prefix
	Value  uint32
}

const (
	childFlag = 1 << 31 // dp entry: low 31 bits index a node
	validFlag = 1 << 30 // leaf: a route matched; low 24 bits are its value
	valueMask = MaxValue
)

// sub is a quarter of a node: 64 positions of one address byte.
type sub struct {
	child     uint64 // bit i: position i descends into a child node
	leaf      uint64 // bit i: a new run of equal leaves starts at position i
	childBase uint32 // node index of this subnode's first child
	leafBase  uint32 // leaf index of this subnode's first run
}

// rt is a route during a build: the address left-aligned in 128 bits, so
// both families share the builder. val is already an encoded leaf.
type rt struct {
	hi, lo uint64
	bits   uint8
	val    uint32
}

// byteAt returns the address byte starting at bit d (a multiple of 8).
func (r *rt) byteAt(d uint) uint8 {
	if d < 64 {
		return uint8(r.hi >> (56 - d))
	}
	return uint8(r.lo >> (120 - d))
}

func cmpRT(a, b rt) int {
	if c := cmp.Compare(a.hi, b.hi); c != 0 {
		return c
	}
	if c := cmp.Compare(a.lo, b.lo); c != 0 {
		return c
	}
	return cmp.Compare(a.bits, b.bits)
}

// trie is the lookup structure shared by Table4 and Table6.
type trie struct {
	dp     []uint32
	subs   []sub
	leaves []uint32
}

func (t *trie) bytes() int {
	return len(t.dp)*4 + len(t.subs)*int(unsafe.Sizeof(sub{})) + len(t.leaves)*4
}

// leafAt returns the leaf for position b of the node whose subnode is s.
func (t *trie) leafAt(s *sub, b uint8) uint32 {
	bit := uint64(1) << (b & 63)
	return t.leaves[s.leafBase+uint32(bits.OnesCount64(s.leaf&(bit<<1-1)))-1]
}

type group struct {
	b      uint8
	lo, hi int
}

// builder turns routes sorted by (address, length) into a trie. In that
// order a prefix comes before every prefix it contains, so painting the
// routes in order leaves each position with its longest match.
type builder struct {
	t      trie
	groups [16][]group // scratch per depth
}

// build makes a trie over rs, which must be sorted with cmpRT and free of
// duplicates.
func build(rs []rt) trie {
	var b builder
	b.t.dp = make([]uint32, 1<<16)
	b.t.subs = make([]sub, 0, 4*countNodes(rs))
	b.t.leaves = make([]uint32, 0, len(rs)/2+16)
	dp := b.t.dp
	for i := 0; i < len(rs); {
		r := &rs[i]
		k := int(r.hi >> 48)
		if r.bits <= 16 {
			fill(dp[k:k+1<<(16-r.bits)], r.val)
			i++
			continue
		}
		j := i + 1
		for j < len(rs) && int(rs[j].hi>>48) == k {
			j++
		}
		// Every route covering k sorted before this group, so dp[k] is final.
		idx := b.alloc(1)
		inh := dp[k]
		dp[k] = childFlag | idx
		b.node(idx, 16, inh, rs[i:j])
		i = j
	}
	return b.t
}

func fill(s []uint32, v uint32) {
	for i := range s {
		s[i] = v
	}
}

// alloc reserves n consecutive nodes and returns the first one's index.
// countNodes sized subs, so this never copies.
func (b *builder) alloc(n int) uint32 {
	idx := uint32(len(b.t.subs) / 4)
	b.t.subs = b.t.subs[:len(b.t.subs)+4*n]
	return idx
}

// countNodes returns how many nodes build makes for rs: one per distinct
// d-bit prefix (d = 16, 24, ..., 120) of the routes longer than d. Sorting
// keeps the routes sharing a d-bit prefix together, so comparing with the
// previous one per depth is enough.
func countNodes(rs []rt) int {
	var last [16]struct {
		hi, lo uint64
		ok     bool
	}
	n := 0
	for i := range rs {
		r := &rs[i]
		for d := uint(16); d < uint(r.bits); d += 8 {
			hi, lo := r.hi, uint64(0)
			if d < 64 {
				hi &^= 1<<(64-d) - 1
			} else {
				lo = r.lo &^ (1<<(128-d) - 1)
			}
			l := &last[d/8]
			if !l.ok || l.hi != hi || l.lo != lo {
				l.hi, l.lo, l.ok = hi, lo, true
				n++
			}
		}
	}
	return n
}

// node fills node idx covering the byte at bit d, given the leaf inherited
// from shorter prefixes and the routes longer than d inside the node.
func (b *builder) node(idx uint32, d uint, inh uint32, rs []rt) {
	var e [256]uint32
	fill(e[:], inh)
	var isChild [4]uint64
	gs := b.groups[d/8][:0]
	for i := 0; i < len(rs); {
		r := &rs[i]
		k := int(r.byteAt(d))
		if uint(r.bits) <= d+8 {
			fill(e[k:k+1<<(d+8-uint(r.bits))], r.val)
			i++
			continue
		}
		j := i + 1
		for j < len(rs) && int(rs[j].byteAt(d)) == k {
			j++
		}
		isChild[k>>6] |= 1 << (k & 63)
		gs = append(gs, group{uint8(k), i, j})
		i = j
	}
	b.groups[d/8] = gs

	first := b.alloc(len(gs))
	child := first
	var last uint32
	started := false
	for s := range 4 {
		sb := sub{child: isChild[s], childBase: child, leafBase: uint32(len(b.t.leaves))}
		child += uint32(bits.OnesCount64(isChild[s]))
		for i := range 64 {
			if isChild[s]&(1<<i) != 0 {
				continue
			}
			v := e[s*64+i]
			if !started || v != last {
				sb.leaf |= 1 << i
				b.t.leaves = append(b.t.leaves, v)
				last, started = v, true
			}
		}
		b.t.subs[int(idx)*4+s] = sb
	}
	// Recursing reuses b.groups[d/8+1..]; our own groups stay untouched.
	for gi, g := range gs {
		b.node(first+uint32(gi), d+8, e[g.b], rs[g.lo:g.hi])
	}
}
