package acl

import (
	"math/rand/v2"
	"net/netip"
	"slices"

	"github.com/vswitch/vswitch/switch/header"
)

// refLookup is the naive reference: rules by priority then order, first
// Matches wins.
func refLookup(rules []Rule, p *header.Parsed, m Meta) int {
	best := -1
	for i := range rules {
		if rules[i].Matches(p, m) && (best < 0 || rules[i].Priority > rules[best].Priority) {
			best = i
		}
	}
	return best
}

// sgLikeRules makes n rules shaped like OpenStack security group and ACL
// rules, spread over ports 0..nports-1, with a fixed seed.
func sgLikeRules(seed uint64, n, nports int) []Rule {
	rng := rand.New(rand.NewPCG(seed, 1))
	wellKnown := []uint16{22, 53, 80, 443, 3306, 5432, 6379, 8080, 8443, 9090}
	rules := make([]Rule, 0, n)
	for len(rules) < n {
		r := Rule{Port: uint16(rng.IntN(nports)), Dir: Direction(rng.IntN(2)), Priority: int32(rng.IntN(4) * 100),
			Proto: AnyProto, SrcPorts: FullRange, DstPorts: FullRange, ICMPType: AnyICMP, ICMPCode: AnyICMP, Action: Allow}
		if rng.IntN(10) == 0 {
			r.Action = Deny
		}
		r.EthType = EthV4
		if rng.IntN(5) == 0 {
			r.EthType = EthV6
		}
		switch x := rng.IntN(10); {
		case x < 6:
			r.Proto = header.ProtoTCP
		case x < 8:
			r.Proto = header.ProtoUDP
		case x < 9:
			r.Proto = header.ProtoICMP
			if r.EthType == EthV6 {
				r.Proto = header.ProtoICMPv6
			}
			if rng.IntN(2) == 0 {
				r.ICMPType = int16(rng.IntN(16))
				if rng.IntN(2) == 0 {
					r.ICMPCode = int16(rng.IntN(4))
				}
			}
		}
		if r.Proto == header.ProtoTCP || r.Proto == header.ProtoUDP {
			switch x := rng.IntN(10); {
			case x < 5:
				p := wellKnown[rng.IntN(len(wellKnown))]
				r.DstPorts = PortRange{p, p}
			case x < 7:
				p := uint16(1024 + rng.IntN(60000))
				r.DstPorts = PortRange{p, p}
			case x < 9:
				lo := uint16(1024 + rng.IntN(50000))
				r.DstPorts = PortRange{lo, lo + uint16(rng.IntN(2000))}
			}
		}
		remote := randPrefix(rng, r.EthType)
		if r.Dir == Ingress {
			r.Src = remote
		} else {
			r.Dst = remote
		}
		rules = append(rules, r)
	}
	return rules
}

func randPrefix(rng *rand.Rand, et uint8) netip.Prefix {
	var a netip.Addr
	var bits int
	if et == EthV4 {
		a = netip.AddrFrom4([4]byte{10, byte(rng.IntN(4)), byte(rng.IntN(256)), byte(rng.IntN(256))})
		bits = []int{0, 8, 16, 24, 24, 32, 32, 32}[rng.IntN(8)]
	} else {
		a = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, byte(rng.IntN(4)), 7: byte(rng.IntN(256)), 15: byte(rng.IntN(256))})
		bits = []int{0, 32, 48, 64, 64, 128, 128}[rng.IntN(7)]
	}
	return netip.PrefixFrom(a, bits).Masked()
}

// packetsFor makes n parsed packets: most aimed at a random rule (so they
// hit it or a neighbour), the rest random, which mostly miss.
func packetsFor(seed uint64, rules []Rule, n int) ([]header.Parsed, []Meta) {
	rng := rand.New(rand.NewPCG(seed, 2))
	ps, ms := make([]header.Parsed, n), make([]Meta, n)
	for i := range ps {
		r := rules[rng.IntN(len(rules))]
		p := &ps[i]
		ms[i] = Meta{Port: r.Port, Dir: r.Dir}
		et := r.EthType
		if et == EthAny {
			et = EthV4
		}
		p.EthType = header.EtherTypeIPv4
		if et == EthV6 {
			p.EthType = header.EtherTypeIPv6
		}
		fill := func(dst *[16]byte, pf netip.Prefix) {
			rp := randPrefix(rng, et)
			if pf.IsValid() && rng.IntN(4) != 0 {
				rp = pf
			}
			a := rp.Addr().AsSlice()
			copy(dst[:], a)
			for b := rp.Bits(); b < len(a)*8; b++ { // random host bits
				if rng.IntN(2) == 0 {
					dst[b/8] ^= 0x80 >> (b % 8)
				}
			}
		}
		fill(&p.Src, r.Src)
		fill(&p.Dst, r.Dst)
		p.Proto = uint8(r.Proto)
		if r.Proto == AnyProto {
			p.Proto = []uint8{header.ProtoTCP, header.ProtoUDP, 47}[rng.IntN(3)]
		}
		p.L4 = 34
		p.SrcPort = uint16(32768 + rng.IntN(28000))
		p.DstPort = r.DstPorts.Lo + uint16(rng.IntN(int(r.DstPorts.Hi-r.DstPorts.Lo)+1))
		if rng.IntN(4) == 0 {
			p.DstPort = uint16(rng.IntN(65536))
		}
		if isICMP(p.Proto) {
			p.ICMPType, p.ICMPCode = uint8(max(r.ICMPType, 0)), uint8(max(r.ICMPCode, 0))
			p.SrcPort, p.DstPort = 0, 0
		}
	}
	return ps, ms
}

// byRank returns rule indices in lookup order (tests only).
func byRank(rules []Rule) []int {
	o := make([]int, len(rules))
	for i := range o {
		o[i] = i
	}
	slices.SortStableFunc(o, func(a, b int) int { return int(rules[b].Priority) - int(rules[a].Priority) })
	return o
}
