package lpm

import "math/bits"

// batch is how many addresses LookupBatch resolves level by level. Each
// level's loads are independent across the batch, so the CPU overlaps
// their cache misses; one Lookup after another stalls on each miss.
const batch = 32

// LookupBatch looks up addrs[i] into values[i] and ok[i], like Lookup,
// for the first n = min(len(addrs), len(values), len(ok)) addresses, and
// returns n. It neither allocates nor locks.
func (t *Table4) LookupBatch(addrs [][4]byte, values []uint32, ok []bool) int {
	n := min(len(addrs), len(values), len(ok))
	if t == nil {
		clear(values[:n])
		clear(ok[:n])
		return n
	}
	var s [batch]*sub
	var pos [batch]uint8
	for base := 0; base < n; base += batch {
		a := addrs[base:min(base+batch, n)]
		v := values[base : base+len(a)]
		for i := range a {
			v[i] = t.dp[uint16(a[i][0])<<8|uint16(a[i][1])]
		}
		for i := range a {
			s[i] = nil
			if e := v[i]; e&childFlag != 0 {
				s[i] = &t.subs[(e&^childFlag)*4+uint32(a[i][2]>>6)]
			}
		}
		for i := range a {
			if p := s[i]; p != nil {
				bit := uint64(1) << (a[i][2] & 63)
				pos[i] = a[i][2]
				if p.child&bit != 0 {
					c := p.childBase + uint32(bits.OnesCount64(p.child&(bit-1)))
					s[i] = &t.subs[c*4+uint32(a[i][3]>>6)]
					pos[i] = a[i][3]
				}
			}
		}
		for i := range a {
			if p := s[i]; p != nil {
				v[i] = t.leafAt(p, pos[i])
			}
		}
		o := ok[base : base+len(a)]
		for i := range v {
			o[i] = v[i]&validFlag != 0
			v[i] &= valueMask
		}
	}
	return n
}

// LookupBatch looks up addrs[i] into values[i] and ok[i], like Lookup,
// for the first n = min(len(addrs), len(values), len(ok)) addresses, and
// returns n. It neither allocates nor locks.
func (t *Table6) LookupBatch(addrs [][16]byte, values []uint32, ok []bool) int {
	n := min(len(addrs), len(values), len(ok))
	if t == nil {
		clear(values[:n])
		clear(ok[:n])
		return n
	}
	var node [batch]uint32
	var walking [batch]bool
	for base := 0; base < n; base += batch {
		a := addrs[base:min(base+batch, n)]
		v := values[base : base+len(a)]
		more := false
		for i := range a {
			e := t.dp[uint16(a[i][0])<<8|uint16(a[i][1])]
			v[i] = e
			walking[i] = e&childFlag != 0
			node[i] = e &^ childFlag
			more = more || walking[i]
		}
		for d := 2; d < 16 && more; d++ {
			more = false
			for i := range a {
				if !walking[i] {
					continue
				}
				b := a[i][d]
				s := &t.subs[node[i]*4+uint32(b>>6)]
				bit := uint64(1) << (b & 63)
				if s.child&bit == 0 {
					v[i] = t.leafAt(s, b)
					walking[i] = false
					continue
				}
				node[i] = s.childBase + uint32(bits.OnesCount64(s.child&(bit-1)))
				more = true
			}
		}
		o := ok[base : base+len(a)]
		for i := range v {
			if walking[i] {
				v[i] = 0 // nodes at the last byte have no children
			}
			o[i] = v[i]&validFlag != 0
			v[i] &= valueMask
		}
	}
	return n
}
