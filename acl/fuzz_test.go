package acl

import (
	"net/netip"
	"testing"

	"github.com/vswitch/vswitch/switch/header"
)

// byteReader hands out fuzz bytes, zeros once they run out.
type byteReader struct{ b []byte }

func (r *byteReader) u8() uint8 {
	if len(r.b) == 0 {
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

func (r *byteReader) u16() uint16 { return uint16(r.u8())<<8 | uint16(r.u8()) }

// addrFrom picks addresses from a small space so rules and packets overlap.
func (r *byteReader) addr(v6 bool) [16]byte {
	var a [16]byte
	if v6 {
		a[0], a[1], a[7], a[15] = 0x20, 0x01, r.u8()&3, r.u8()
		return a
	}
	a[0], a[1], a[2], a[3] = 10, r.u8()&1, r.u8()&3, r.u8()
	return a
}

func (r *byteReader) ports() PortRange {
	x := r.u8()
	switch x & 3 {
	case 0:
		return FullRange
	case 1:
		p := uint16(x>>2) + 20
		return PortRange{p, p}
	}
	lo := uint16(r.u8())
	return PortRange{lo, lo + uint16(r.u8())}
}

func fuzzRules(r *byteReader) []Rule {
	n := int(r.u8()%48) + 1
	rules := make([]Rule, n)
	for i := range rules {
		ru := Rule{Port: uint16(r.u8() & 1), Dir: Direction(r.u8() & 1), Priority: int32(r.u8() & 3),
			Proto: AnyProto, SrcPorts: FullRange, DstPorts: FullRange, ICMPType: AnyICMP, ICMPCode: AnyICMP,
			Action: Action(1 + r.u8()%3)}
		f := r.u8()
		ru.EthType = []uint8{EthAny, EthV4, EthV6, EthV4}[f&3]
		if ru.EthType != EthAny {
			v6 := ru.EthType == EthV6
			maxBits := 32
			if v6 {
				maxBits = 128
			}
			if f&4 != 0 {
				a := r.addr(v6)
				ru.Src = netip.PrefixFrom(addrOf(&a, ru.EthType), int(r.u8())%(maxBits+1)).Masked()
			}
			if f&8 != 0 {
				a := r.addr(v6)
				ru.Dst = netip.PrefixFrom(addrOf(&a, ru.EthType), int(r.u8())%(maxBits+1)).Masked()
			}
		}
		switch f >> 4 & 3 {
		case 1:
			ru.Proto = header.ProtoTCP
			ru.SrcPorts, ru.DstPorts = r.ports(), r.ports()
		case 2:
			ru.Proto = header.ProtoUDP
			ru.DstPorts = r.ports()
		case 3:
			ru.Proto = header.ProtoICMP
			if ru.EthType == EthV6 {
				ru.Proto = header.ProtoICMPv6
			}
			if x := r.u8(); x&1 != 0 {
				ru.ICMPType = int16(x >> 1 & 3)
				if x&8 != 0 {
					ru.ICMPCode = int16(x >> 4 & 1)
				}
			}
		}
		rules[i] = ru
	}
	return rules
}

func fuzzPacket(r *byteReader) (header.Parsed, Meta) {
	var p header.Parsed
	f := r.u8()
	v6 := f&1 != 0
	p.EthType = header.EtherTypeIPv4
	if v6 {
		p.EthType = header.EtherTypeIPv6
	}
	if f&2 != 0 && f&4 != 0 {
		p.EthType = header.EtherTypeARP
	}
	p.Src, p.Dst = r.addr(v6), r.addr(v6)
	p.Proto = []uint8{header.ProtoTCP, header.ProtoUDP, header.ProtoICMP, 47}[f>>3&3]
	if p.Proto == header.ProtoICMP && v6 {
		p.Proto = header.ProtoICMPv6
	}
	p.L4 = 34
	if f&0x20 != 0 {
		p.L4, p.Frag = 0, header.FragLater
	} else if isICMP(p.Proto) {
		p.ICMPType, p.ICMPCode = r.u8()&3, r.u8()&1
		p.SrcPort, p.DstPort = r.u16(), r.u16()
	} else if p.Proto != 47 {
		p.SrcPort, p.DstPort = uint16(r.u8()), uint16(r.u8())
	}
	return p, Meta{Port: uint16(f >> 6 & 1), Dir: Direction(f >> 7)}
}

// FuzzClassify compares the classifier with the linear reference over
// rules and packets decoded from the input.
func FuzzClassify(f *testing.F) {
	f.Add([]byte{3, 0, 0, 0, 1, 0x15, 1, 5, 5, 0, 0x20, 0, 1, 2, 3, 4})
	f.Add(make([]byte, 64))
	f.Fuzz(func(t *testing.T, b []byte) {
		r := &byteReader{b}
		rules := fuzzRules(r)
		c, err := CompileRules(rules)
		if err != nil {
			t.Fatal(err)
		}
		for range 64 {
			p, m := fuzzPacket(r)
			got := c.Lookup(&p, m)
			want := refLookup(rules, &p, m)
			if want < 0 {
				if got.Action != NoMatch {
					t.Fatalf("%+v %+v: got rule %d %+v, want none", p, m, got.Rule, rules[got.Rule])
				}
				continue
			}
			if got.Rule < 0 || c.rank[got.Rule] != c.rank[want] || got.Action != rules[want].Action {
				t.Fatalf("%+v %+v: got %+v, want rule %d %+v", p, m, got, want, rules[want])
			}
			if len(r.b) == 0 {
				return
			}
		}
	})
}

func TestAllocs(t *testing.T) {
	s := compileYAML(t, issueYAML)
	frames := [][]byte{craft(t, pkt{src: "10.10.0.2", dst: "192.0.2.1", dport: 80}), craft(t, pkt{v6: true, proto: "udp", dport: 9})}
	ps := []header.Parsed{parse(t, frames[0]), parse(t, frames[1])}
	meta := []Meta{{1, Egress}, {1, Ingress}}
	ct := []CTState{CTNew, CTNew}
	ds, vs := make([]DropReason, 2), make([]Verdict, 2)
	var cnt Counters
	buf := make([]byte, 2048)
	rules := sgLikeRules(1, 10000, 1)
	c, _ := CompileRules(rules)
	pk, pm := packetsFor(2, rules, 32)
	res := make([]Result, 32)
	if n := testing.AllocsPerRun(100, func() {
		s.PortSecurity(frames, ps, meta, ds, &cnt)
		s.Filter(ps, meta, ct, vs, &cnt)
		BuildReject(buf, frames[1], &ps[1])
		c.Classify(pk, pm, res)
	}); n != 0 {
		t.Errorf("%v allocs per batch", n)
	}
}
