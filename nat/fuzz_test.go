package nat

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket/layers"

	"github.com/vswitch/vswitch/switch/header"
)

var fuzzHosts = []string{"10.10.0.2", "10.10.0.3", "10.20.0.1", "10.20.0.100", "8.8.8.8", "1.2.3.4"}
var fuzzHosts6 = []string{"fd00::1", "fd00::2", "2001:db8::1", "2001:db8::9"}
var fuzzPorts = []uint16{80, 8080, 1024, 40000, 53}

// FuzzConntrack drives conntrack and NAT with a random packet sequence.
// Each op is 8 bytes: kind, hosts, ports, flags, seq, clock step, admit.
// Invariants: no panic; live connections never exceed the capacity and
// the zone counts add up; translated packets keep valid checksums; after
// everything expires, the table and every port pool are empty.
func FuzzConntrack(f *testing.F) {
	f.Add([]byte("\x00\x01\x02\x02\x00\x00\x01\x00\x00\x04\x02\x12\x00\x00\x01\x00"))
	f.Add([]byte("\x01\x03\x04\x00\x00\x00\x01\x00\x05\x00\x00\x00\x00\x00\x01\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		const capacity = 12
		r := newRig(t, Config{Capacity: capacity, ZoneLimit: 10, Window: WindowCheck(len(data) % 3), SweepBatch: 4})
		rs, err := Compile(r.tab, "nat", exampleRules)
		if err != nil {
			t.Fatal(err)
		}
		var last []byte
		for len(data) >= 8 {
			op := data[:8]
			data = data[8:]
			var b []byte
			hs := fuzzHosts
			if op[0]&0x80 != 0 {
				hs = fuzzHosts6
			}
			src, dst := hs[int(op[1]&0xf)%len(hs)], hs[int(op[1]>>4)%len(hs)]
			sp, dp := fuzzPorts[int(op[2]&0xf)%len(fuzzPorts)], fuzzPorts[int(op[2]>>4)%len(fuzzPorts)]
			seq := uint32(binary.BigEndian.Uint16(op[4:])) << 8
			switch op[0] & 7 {
			case 0, 1:
				b = build(t, seg{src: src, dst: dst, sport: sp, dport: dp, flags: op[3], seq: seq, ack: seq ^ 0x5555,
					win: 4000, wscale: int(op[3]>>6) - 1, payload: int(op[3] & 7)}, layers.IPProtocolTCP)
			case 2:
				b = udpPkt(t, src, dst, sp, dp)
			case 3:
				b = echoPkt(t, src, dst, sp, op[3]&1 != 0)
			case 4:
				if last != nil {
					b = icmpErrRaw(t, src, dst, last)
				}
			case 5:
				// A raw frame: the previous packet with one byte changed.
				if last != nil {
					b = append([]byte(nil), last...)
					b[int(op[4])%len(b)] ^= op[5] | 1
				}
			}
			r.now += uint32(op[6] & 0x3f)
			r.zone = uint16(op[6] >> 7)
			if b == nil {
				continue
			}
			last = append(last[:0], b...)
			var p header.Parsed
			if header.Parse(b, len(b), &p) != header.ParseOK {
				continue
			}
			r.ps[0] = p
			r.rules = nil
			if op[7]&2 == 0 {
				r.rules = rs
			}
			peeked := append([]byte(nil), b...)
			pk := r.tab.Peek(peeked, &p, r.zone, r.rules, r.now)
			fr := [][]byte{b}
			r.w.Lookup(fr, r.ps[:], r.zone, r.now, r.res[:])
			r.res[0].Admit = op[7]&1 == 0
			r.w.Commit(fr, r.ps[:], r.res[:], r.rules, r.now)
			r.w.Translate(fr, r.ps[:], r.res[:])
			peekAgrees(t, pk, r.res[0], peeked, b)
			if res := r.res[0]; res.State&(StateSNAT|StateDNAT) != 0 && res.Reason == 0 && op[0]&7 != 5 {
				checkSums(t, b)
			}
			if n := r.tab.Len(); n > capacity || n != r.tab.ZoneLen(0)+r.tab.ZoneLen(1) {
				t.Fatalf("len %d zones %d+%d", n, r.tab.ZoneLen(0), r.tab.ZoneLen(1))
			}
		}
		r.now += 500000
		sweepAll(r)
		if r.tab.Len() != 0 {
			t.Fatalf("%d connections left after expiry", r.tab.Len())
		}
		for _, a := range []string{"10.20.0.1", "10.20.0.100"} {
			for _, pr := range []uint8{6, 17, 1} {
				if n := r.tab.PortsInUse(netip.MustParseAddr(a), pr); n != 0 {
					t.Fatalf("%d ports of %s/%d leaked", n, a, pr)
				}
			}
		}
	})
}

// icmpErrRaw is icmpErr for a frame that may not be a clean IP packet.
func icmpErrRaw(t testing.TB, src, dst string, inner []byte) []byte {
	var p header.Parsed
	if header.Parse(inner, len(inner), &p) != header.ParseOK || p.L3 == 0 ||
		(p.EthType == header.EtherTypeIPv4) != netip.MustParseAddr(src).Is4() {
		return nil
	}
	return icmpErr(t, src, dst, inner)
}

// peekAgrees holds Table.Peek to what Lookup, Commit and Translate did
// with the same packet right after it. Outcomes Peek cannot foresee are
// let through: a commit refused for room when the sweep at the end of
// Lookup or the replacement of an expired entry changes the count, a
// bucket overflow, a reply key taken (ReasonGone), and the port a
// masquerade takes from its pool.
func peekAgrees(t *testing.T, pk Peek, res Result, peeked, got []byte) {
	t.Helper()
	room := func(r Reason) bool {
		return r == ReasonFull || r == ReasonZoneFull || r == ReasonBucketFull || r == ReasonGone
	}
	if room(res.Reason) || room(pk.CommitReason) {
		return
	}
	nat := StateSNAT | StateDNAT
	if !res.Admit {
		if pk.State&^nat != res.State&^nat || pk.Found && pk.State != res.State || pk.Reason != res.Reason {
			t.Fatalf("peek %s %v, lookup (not admitted) %s %v", pk.State, pk.Reason, res.State, res.Reason)
		}
		return
	}
	if pk.Reason != res.Reason && pk.CommitReason != res.Reason {
		t.Fatalf("peek reason %v (commit %v), lookup %v", pk.Reason, pk.CommitReason, res.Reason)
	}
	if res.Reason != 0 {
		return
	}
	if pk.State != res.State {
		t.Fatalf("peek %s, lookup %s", pk.State, res.State)
	}
	if !pk.PortFromPool && string(peeked) != string(got) {
		t.Fatalf("peek rewrote\n%x\nTranslate\n%x", peeked, got)
	}
}
