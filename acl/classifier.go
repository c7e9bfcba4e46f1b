package acl

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
	"net/netip"
	"slices"
	"sync/atomic"

	"github.com/vswitch/vswitch/switch/header"
)

// The classifier is tuple space search (Srinivasan et al. 1999; OVS
// lib/classifier.c): rules are split by (port, direction) into partitions;
// inside a partition every rule becomes one or more (mask, value) entries,
// entries with the same mask share a hash table (a "tuple"), and a lookup
// masks the packet key once per tuple and probes. Tuples are visited in
// order of the best rule they hold, so the scan stops as soon as no later
// tuple can beat the match found. Port ranges are split into prefix-aligned
// blocks (at most 30 per range) so that every field is a mask.
//
// Partitions with few entries skip the hashing and scan their entries in
// rank order (see linearMax and BenchmarkClassify for why).

// key is the packet's match fields packed into words:
// w0-1 source address, w2-3 destination address (IPv4 in the top 32
// bits of w0/w2), w4 = IP version<<56 | proto<<48 | l4a<<32 | l4b<<16,
// where l4a/l4b are the TCP/UDP source/destination ports or the ICMP
// type/code.
type key [5]uint64

const (
	shVer   = 56
	shProto = 48
	shL4A   = 32
	shL4B   = 16
)

// linearMax is the largest partition (in entries) scanned linearly.
const linearMax = 16

type entry struct {
	k    key
	rank int32 // 0 marks an empty slot in a hash table; ranks start at 1
	rule int32
}

type tuple struct {
	mask    key
	minRank int32
	l4      bool   // the mask covers L4 fields: skipped for packets without them
	slots   uint64 // table size - 1 (a power of two minus one)
	table   []entry
}

type partition struct {
	linear []entry // entries with their masks in tuple[i]; used when tuples is nil
	lmask  []key
	ll4    []bool
	tuples []tuple
}

// Classifier is an immutable compiled rule set. Lookups are safe from any
// number of goroutines; only the hit counters are written, atomically.
type Classifier struct {
	rules []Rule
	rank  []int32 // per rule
	parts []partition
	index []int32 // port<<1|dir -> partition, -1 when the port has no rules
	hits  []atomic.Uint64
	stats Stats
}

// Stats describe a compiled classifier.
type Stats struct {
	Rules, Entries, Partitions, Tuples, MaxTuples int
}

// Result of a lookup: the action of the winning rule and its index in the
// rule slice given to Compile (-1 with NoMatch).
type Result struct {
	Action Action
	Rule   int32
}

// Compile builds a classifier over rules. It checks the field combinations
// the packed key cannot express (ports need TCP/UDP-like protocols, ICMP
// fields need ICMP, prefixes need their ethertype).
func Compile(rules []Rule) (*Classifier, error) {
	for i := range rules {
		if err := checkRule(&rules[i]); err != nil {
			return nil, fmt.Errorf("rule %d (%s): %w", i, rules[i].Name, err)
		}
	}
	c := &Classifier{rules: slices.Clone(rules), rank: make([]int32, len(rules)), hits: make([]atomic.Uint64, len(rules))}
	c.stats.Rules = len(rules)

	// Rank: by priority (high first), then config order; consecutive
	// rules with equal priority and action share a rank, since either
	// one decides the same way and the lookup may stop at whichever it
	// finds first.
	order := make([]int32, len(rules))
	for i := range order {
		order[i] = int32(i)
	}
	slices.SortStableFunc(order, func(a, b int32) int { return int(rules[b].Priority) - int(rules[a].Priority) })
	var r int32
	for i, ri := range order {
		if i == 0 || rules[ri].Priority != rules[order[i-1]].Priority || rules[ri].Action != rules[order[i-1]].Action {
			r++
		}
		c.rank[ri] = r
	}

	byPart := map[uint32][]int32{}
	maxPort := -1
	for _, ri := range order {
		pk := uint32(rules[ri].Port)<<1 | uint32(rules[ri].Dir)
		byPart[pk] = append(byPart[pk], ri)
		maxPort = max(maxPort, int(rules[ri].Port))
	}
	c.index = make([]int32, (maxPort+1)*2)
	for i := range c.index {
		c.index[i] = -1
	}
	pks := make([]uint32, 0, len(byPart))
	for pk := range byPart {
		pks = append(pks, pk)
	}
	slices.Sort(pks)
	for _, pk := range pks {
		c.index[pk] = int32(len(c.parts))
		c.parts = append(c.parts, c.buildPartition(byPart[pk]))
	}
	c.stats.Partitions = len(c.parts)
	return c, nil
}

func checkRule(r *Rule) error {
	ports := !r.SrcPorts.Full() || !r.DstPorts.Full()
	icmp := r.ICMPType != AnyICMP || r.ICMPCode != AnyICMP
	switch {
	case r.Dir > Egress:
		return fmt.Errorf("bad direction %d", r.Dir)
	case r.Action < Allow || r.Action > Reject:
		return fmt.Errorf("bad action %d", r.Action)
	case r.EthType != EthAny && r.EthType != EthV4 && r.EthType != EthV6:
		return fmt.Errorf("bad ethertype %d", r.EthType)
	case r.Proto < AnyProto || r.Proto > 255:
		return fmt.Errorf("bad protocol %d", r.Proto)
	case ports && (r.Proto == AnyProto || isICMP(uint8(r.Proto))):
		return fmt.Errorf("ports need a protocol with ports")
	case ports && (r.SrcPorts.Lo > r.SrcPorts.Hi || r.DstPorts.Lo > r.DstPorts.Hi):
		return fmt.Errorf("empty port range")
	case icmp && (r.Proto == AnyProto || !isICMP(uint8(r.Proto))):
		return fmt.Errorf("icmp_type/icmp_code need protocol icmp or icmpv6")
	case r.ICMPType < AnyICMP || r.ICMPType > 255 || r.ICMPCode < AnyICMP || r.ICMPCode > 255:
		return fmt.Errorf("bad icmp type or code")
	}
	if err := checkPrefix(r.Src, r.EthType); err != nil {
		return fmt.Errorf("source: %w", err)
	}
	if err := checkPrefix(r.Dst, r.EthType); err != nil {
		return fmt.Errorf("destination: %w", err)
	}
	return nil
}

// checkPrefix wants a prefix (when set) of the rule's IP version.
func checkPrefix(p netip.Prefix, et uint8) error {
	if !p.IsValid() {
		return nil
	}
	if p.Addr().Is4() != (et == EthV4) || (et == EthAny) {
		return fmt.Errorf("prefix %s does not match ethertype", p)
	}
	if p.Addr().Zone() != "" {
		return fmt.Errorf("prefix %s has a zone", p)
	}
	return nil
}

// block is a value/mask pair over a 16-bit field.
type block struct{ v, m uint16 }

// rangeBlocks splits [lo, hi] into prefix-aligned blocks.
func rangeBlocks(r PortRange) []block {
	if r.Full() {
		return []block{{0, 0}}
	}
	var out []block
	lo, hi := uint32(r.Lo), uint32(r.Hi)
	for lo <= hi {
		size := uint32(1) << 16
		if lo != 0 {
			size = uint32(1) << bits.TrailingZeros32(lo)
		}
		for lo+size-1 > hi {
			size >>= 1
		}
		out = append(out, block{uint16(lo), uint16(^(size - 1))})
		lo += size
	}
	return out
}

// icmpBlock is an exact ICMP type/code or the wildcard.
func icmpBlock(v int16) []block {
	if v == AnyICMP {
		return []block{{0, 0}}
	}
	return []block{{uint16(v), 0xffff}}
}

// prefixWords puts prefix p into words w[0], w[1] as value and mask.
func prefixWords(p netip.Prefix, val, mask []uint64) {
	if !p.IsValid() {
		return
	}
	p = p.Masked()
	n := p.Bits()
	if p.Addr().Is4() {
		a := p.Addr().As4()
		val[0] = uint64(binary.BigEndian.Uint32(a[:])) << 32
		if n > 0 {
			mask[0] = ^uint64(0) << (64 - n)
		}
		return
	}
	a := p.Addr().As16()
	val[0], val[1] = binary.BigEndian.Uint64(a[:8]), binary.BigEndian.Uint64(a[8:])
	switch {
	case n == 0:
	case n <= 64:
		mask[0] = ^uint64(0) << (64 - n)
	default:
		mask[0], mask[1] = ^uint64(0), ^uint64(0)<<(128-n)
	}
}

// entries expands a rule into (value, mask) pairs: one per combination of
// source and destination L4 blocks.
func ruleEntries(r *Rule) (vals, masks []key) {
	var v, m key
	prefixWords(r.Src, v[0:2], m[0:2])
	prefixWords(r.Dst, v[2:4], m[2:4])
	if r.EthType != EthAny {
		v[4] |= uint64(r.EthType) << shVer
		m[4] |= 0xff << shVer
	}
	if r.Proto != AnyProto {
		v[4] |= uint64(r.Proto) << shProto
		m[4] |= 0xff << shProto
	}
	as, bs := rangeBlocks(r.SrcPorts), rangeBlocks(r.DstPorts)
	if r.Proto != AnyProto && isICMP(uint8(r.Proto)) {
		as, bs = icmpBlock(r.ICMPType), icmpBlock(r.ICMPCode)
	}
	for _, a := range as {
		for _, b := range bs {
			vv, mm := v, m
			vv[4] |= uint64(a.v)<<shL4A | uint64(b.v)<<shL4B
			mm[4] |= uint64(a.m)<<shL4A | uint64(b.m)<<shL4B
			vals, masks = append(vals, vv), append(masks, mm)
		}
	}
	return vals, masks
}

const l4Bits = 0xffffffff << shL4B

func (c *Classifier) buildPartition(ris []int32) partition {
	var p partition
	type pending struct {
		mask key
		es   []entry
	}
	var tuples []*pending
	byMask := map[key]*pending{}
	for _, ri := range ris {
		vals, masks := ruleEntries(&c.rules[ri])
		for i := range vals {
			e := entry{k: vals[i], rank: c.rank[ri], rule: ri}
			p.linear, p.lmask, p.ll4 = append(p.linear, e), append(p.lmask, masks[i]), append(p.ll4, masks[i][4]&l4Bits != 0)
			t := byMask[masks[i]]
			if t == nil {
				t = &pending{mask: masks[i]}
				byMask[masks[i]] = t
				tuples = append(tuples, t) // in rank order of their best entry
			}
			t.es = append(t.es, e)
		}
	}
	c.stats.Entries += len(p.linear)
	if len(p.linear) <= linearMax {
		return p
	}
	p.linear, p.lmask, p.ll4 = nil, nil, nil
	for _, pt := range tuples {
		size := 1 << bits.Len(uint(2*len(pt.es)-1))
		t := tuple{mask: pt.mask, minRank: pt.es[0].rank, l4: pt.mask[4]&l4Bits != 0,
			slots: uint64(size - 1), table: make([]entry, size)}
		for _, e := range pt.es {
			j := hashKey(&e.k) & t.slots
			for t.table[j].rank != 0 && t.table[j].k != e.k {
				j = (j + 1) & t.slots
			}
			if t.table[j].rank == 0 { // the first entry of a key has the best rank
				t.table[j] = e
			}
		}
		p.tuples = append(p.tuples, t)
	}
	c.stats.Tuples += len(p.tuples)
	c.stats.MaxTuples = max(c.stats.MaxTuples, len(p.tuples))
	return p
}

func hashKey(k *key) uint64 {
	h := k[0]*0x9e3779b97f4a7c15 ^ k[1]*0xc2b2ae3d27d4eb4f ^ k[2]*0x165667b19e3779f9 ^
		k[3]*0x27d4eb2f165667c5 ^ k[4]*0x94d049bb133111eb
	h ^= h >> 31
	h *= 0xbf58476d1ce4e5b9
	return h ^ h>>29
}

// packetKey packs p's match fields; v is its IP version.
func packetKey(p *header.Parsed, v uint8) key {
	a, b := p.SrcPort, p.DstPort
	if isICMP(p.Proto) {
		a, b = uint16(p.ICMPType), uint16(p.ICMPCode)
	}
	return key{
		binary.BigEndian.Uint64(p.Src[0:8]), binary.BigEndian.Uint64(p.Src[8:16]),
		binary.BigEndian.Uint64(p.Dst[0:8]), binary.BigEndian.Uint64(p.Dst[8:16]),
		uint64(v)<<shVer | uint64(p.Proto)<<shProto | uint64(a)<<shL4A | uint64(b)<<shL4B,
	}
}

func (p *partition) lookup(k *key, nol4 bool) (int32, int32) {
	if p.tuples == nil {
		for i := range p.linear {
			e, m := &p.linear[i], &p.lmask[i]
			if k[4]&m[4] == e.k[4] && k[0]&m[0] == e.k[0] && k[2]&m[2] == e.k[2] &&
				k[1]&m[1] == e.k[1] && k[3]&m[3] == e.k[3] && !(nol4 && p.ll4[i]) {
				return e.rank, e.rule
			}
		}
		return 0, -1
	}
	best, rule := int32(math.MaxInt32), int32(-1)
	for i := range p.tuples {
		t := &p.tuples[i]
		if t.minRank >= best {
			break
		}
		if nol4 && t.l4 {
			continue
		}
		mk := key{k[0] & t.mask[0], k[1] & t.mask[1], k[2] & t.mask[2], k[3] & t.mask[3], k[4] & t.mask[4]}
		for j := hashKey(&mk) & t.slots; ; j = (j + 1) & t.slots {
			e := &t.table[j]
			if e.rank == 0 {
				break
			}
			if e.k == mk {
				if e.rank < best {
					best, rule = e.rank, e.rule
				}
				break
			}
		}
	}
	return best, rule
}

// Lookup classifies one packet.
func (c *Classifier) Lookup(p *header.Parsed, m Meta) Result {
	v := ipVersion(p.EthType)
	pi := int(m.Port)<<1 | int(m.Dir&1)
	if v == 0 || pi >= len(c.index) || c.index[pi] < 0 {
		return Result{NoMatch, -1}
	}
	k := packetKey(p, v)
	_, ri := c.parts[c.index[pi]].lookup(&k, noL4(p))
	if ri < 0 {
		return Result{NoMatch, -1}
	}
	return Result{c.rules[ri].Action, ri}
}

// Classify looks up a batch (ps, meta and out have the same length) and
// counts rule hits, one atomic add per run of packets hitting one rule.
func (c *Classifier) Classify(ps []header.Parsed, meta []Meta, out []Result) {
	meta, out = meta[:len(ps)], out[:len(ps)]
	var run hitRun
	for i := range ps {
		out[i] = c.Lookup(&ps[i], meta[i])
		run.add(c, out[i].Rule)
	}
	run.flush(c)
}

// hitRun batches hit counter updates: consecutive packets of one batch
// usually belong to one flow and hit one rule.
type hitRun struct {
	rule int32
	n    uint64
}

func (h *hitRun) add(c *Classifier, rule int32) {
	if rule != h.rule || h.n == 0 {
		h.flush(c)
		h.rule = rule
	}
	h.n++
}

func (h *hitRun) flush(c *Classifier) {
	if h.n != 0 && h.rule >= 0 {
		c.hits[h.rule].Add(h.n)
	}
	h.n = 0
}

// Rules returns the compiled rules (do not modify).
func (c *Classifier) Rules() []Rule { return c.rules }

// Hits returns rule i's hit count.
func (c *Classifier) Hits(i int) uint64 { return c.hits[i].Load() }

// Stats describes the compiled structure.
func (c *Classifier) Stats() Stats { return c.stats }
