package nat

import (
	"encoding/binary"
	"net/netip"
	"sync/atomic"

	"github.com/vswitch/vswitch/switch/header"
)

// Ports a masquerade allocates from (TCP and UDP ports, ICMP echo ids).
const (
	minPort = 1024
	maxPort = 65535
)

// portPool is the port bitmap of one (external address, protocol). Bits are
// claimed with CAS by Commit and cleared when the connection is deleted, so
// a port is reused as soon as its connection expires.
type portPool struct {
	addr  [16]byte
	proto uint8
	used  atomic.Int32
	bits  [65536 / 64]atomic.Uint64
}

func (p *portPool) take(port uint16) bool {
	w, m := &p.bits[port>>6], uint64(1)<<(port&63)
	for {
		o := w.Load()
		if o&m != 0 {
			return false
		}
		if w.CompareAndSwap(o, o|m) {
			p.used.Add(1)
			return true
		}
	}
}

func (p *portPool) put(port uint16) {
	w, m := &p.bits[port>>6], uint64(1)<<(port&63)
	if w.And(^m)&m != 0 {
		p.used.Add(-1)
	}
}

// alloc takes want if it is free and in range, else the first free port
// from a random start. It returns 0 when the pool is exhausted.
func (p *portPool) alloc(want uint16, rnd uint32) uint16 {
	if want >= minPort && p.take(want) {
		return want
	}
	n := uint32(maxPort - minPort + 1)
	start := rnd % n
	for i := uint32(0); i < n; {
		port := uint16(minPort + (start+i)%n)
		// Skip whole used words quickly.
		if port&63 == 0 && p.bits[port>>6].Load() == ^uint64(0) && i+64 <= n {
			i += 64
			continue
		}
		if p.take(port) {
			return port
		}
		i++
	}
	return 0
}

// free says port is not taken.
func (p *portPool) free(port uint16) bool { return p.bits[port>>6].Load()&(1<<(port&63)) == 0 }

// InUse is how many ports of the pool are taken.
func (p *portPool) InUse() int { return int(p.used.Load()) }

// pool returns the index of (addr, proto)'s pool, making it. Control plane.
func (t *Table) pool(addr [16]byte, proto uint8) uint16 {
	t.poolMu.Lock()
	defer t.poolMu.Unlock()
	old := *t.pools.Load()
	for i, p := range old {
		if p.addr == addr && p.proto == proto {
			return uint16(i)
		}
	}
	nw := append(old[:len(old):len(old)], &portPool{addr: addr, proto: proto})
	t.pools.Store(&nw)
	return uint16(len(nw) - 1)
}

func (t *Table) releasePort(pool uint16, reply *key) {
	ps := *t.pools.Load()
	if int(pool) < len(ps) {
		ps[pool].put(reply.dport())
	}
}

// PortsInUse is how many ports are allocated on addr for proto.
func (t *Table) PortsInUse(addr netip.Addr, proto uint8) int {
	a := addr16(addr)
	for _, p := range *t.pools.Load() {
		if p.addr == a && p.proto == proto {
			return p.InUse()
		}
	}
	return 0
}

func addr16(a netip.Addr) (b [16]byte) {
	if a.Is4() {
		v := a.As4()
		copy(b[:], v[:])
		return b
	}
	return a.As16()
}

// Rules is one router's compiled NAT configuration: an immutable value the
// control plane builds with Compile and the pipeline passes to Commit.
type Rules struct {
	snat []snatRule
	fip  []fipRule // 1:1 floating IPs
	fwd  []fwdRule // port forwards
}

type snatRule struct {
	src   netip.Prefix
	to    [16]byte
	pools [3]uint16 // tcp, udp, icmp
}

type fipRule struct {
	ext, in [16]byte
	v6      bool
	pools   [3]uint16 // for hairpin masquerade behind ext
}

type fwdRule struct {
	ext, in      [16]byte
	v6           bool
	proto        uint8
	port, inPort uint16
	pools        [3]uint16
}

// Compile checks rules (errors name fields under path, e.g.
// "routers[0].nat") and builds them against t's port pools.
func Compile(t *Table, path string, cfg []RuleConfig) (*Rules, error) {
	rs, err := parseRules(path, cfg)
	if err != nil {
		return nil, err
	}
	pools := func(a [16]byte, v6 bool) [3]uint16 {
		ic := uint8(header.ProtoICMP)
		if v6 {
			ic = header.ProtoICMPv6
		}
		return [3]uint16{t.pool(a, protoTCP), t.pool(a, header.ProtoUDP), t.pool(a, ic)}
	}
	out := &Rules{}
	for _, r := range rs {
		v6 := !r.to.Is4()
		switch {
		case r.snat:
			to := addr16(r.to)
			out.snat = append(out.snat, snatRule{src: r.src, to: to, pools: pools(to, v6)})
		case r.port == 0:
			ext := addr16(r.dst)
			out.fip = append(out.fip, fipRule{ext: ext, in: addr16(r.to), v6: v6, pools: pools(ext, v6)})
		default:
			ext := addr16(r.dst)
			out.fwd = append(out.fwd, fwdRule{ext: ext, in: addr16(r.to), v6: v6, proto: r.proto,
				port: r.port, inPort: r.toPort, pools: pools(ext, v6)})
		}
	}
	return out, nil
}

func addrOf(a [16]byte, v6 bool) netip.Addr {
	if v6 {
		return netip.AddrFrom16(a)
	}
	return netip.AddrFrom4([4]byte(a[:4]))
}

// inside says a is on the router's inside: in a masqueraded prefix or
// the target of a DNAT.
func (rs *Rules) inside(a [16]byte, v6 bool) bool {
	ip := addrOf(a, v6)
	for i := range rs.snat {
		if rs.snat[i].src.Contains(ip) {
			return true
		}
	}
	for i := range rs.fip {
		if rs.fip[i].in == a && rs.fip[i].v6 == v6 {
			return true
		}
	}
	for i := range rs.fwd {
		if rs.fwd[i].in == a && rs.fwd[i].v6 == v6 {
			return true
		}
	}
	return false
}

func poolIdx(proto uint8) int {
	switch proto {
	case protoTCP:
		return 0
	case header.ProtoUDP:
		return 1
	case header.ProtoICMP, header.ProtoICMPv6:
		return 2
	}
	return -1
}

// natNew decides a new connection's translation and rewrites its reply key
// (the key the translated replies will carry). It runs once per connection.
//
// DNAT first: a port forward on (destination, protocol, port), else a
// floating IP on the destination. Then SNAT when the (translated)
// destination is outside, or when an inside host reached another inside
// host through a DNAT (hairpin: without SNAT the answer would bypass the
// router): a floating IP's own host leaves as its floating IP (port kept);
// anything else in a snat source prefix is masqueraded behind the rule's
// address with a port from its pool; a hairpin with no rule covering the
// source is masqueraded behind the DNAT's external address.
//
// With dry set nothing is allocated (Table.Peek): the source port is kept
// in the reply key, and the pool result is 1 when Commit would have to
// take another port from the pool, else 0.
func (w *Worker) natNew(rs *Rules, orig, reply *key, st uint32, dry bool) (uint32, uint16, Reason) {
	v6 := orig.v6()
	src, dst := orig.src(), orig.dst()
	proto := orig.proto()
	newDst, newDport := dst, orig.dport()
	echo := orig.flags()&keyEchoReq != 0
	var hairPools *[3]uint16
	var hairAddr [16]byte
	dnat := false
	if proto == protoTCP || proto == header.ProtoUDP {
		for i := range rs.fwd {
			f := &rs.fwd[i]
			if f.ext == dst && f.v6 == v6 && f.proto == proto && f.port == orig.dport() {
				newDst, newDport, dnat = f.in, f.inPort, true
				hairPools, hairAddr = &f.pools, f.ext
				break
			}
		}
	}
	if !dnat {
		for i := range rs.fip {
			f := &rs.fip[i]
			if f.ext == dst && f.v6 == v6 {
				newDst, dnat = f.in, true
				hairPools, hairAddr = &f.pools, f.ext
				break
			}
		}
	}
	newSrc, newSport := src, orig.sport()
	var pool uint16
	snat := false
	if !rs.inside(newDst, v6) || (dnat && rs.inside(src, v6)) {
		for i := range rs.fip {
			if f := &rs.fip[i]; f.in == src && f.v6 == v6 {
				newSrc, snat = f.ext, true
				break
			}
		}
		if !snat {
			var pools *[3]uint16
			ip := addrOf(src, v6)
			for i := range rs.snat {
				if s := &rs.snat[i]; s.src.Contains(ip) {
					pools, newSrc = &s.pools, s.to
					break
				}
			}
			if pools == nil && dnat && rs.inside(src, v6) {
				pools, newSrc = hairPools, hairAddr
			}
			if pools != nil {
				snat = true
				if pi := poolIdx(proto); pi >= 0 && (proto != header.ProtoICMP && proto != header.ProtoICMPv6 || echo) {
					p := (*w.t.pools.Load())[pools[pi]]
					switch {
					case !dry:
						w.rnd = w.rnd*1664525 + 1013904223
						port := p.alloc(newSport, w.rnd>>8)
						if port == 0 {
							return st, 0, ReasonNoPort
						}
						newSport, pool = port, pools[pi]+1
					case newSport >= minPort && p.free(newSport):
					case p.InUse() > maxPort-minPort:
						return st, 0, ReasonNoPort
					default:
						pool = 1
					}
				}
			}
		}
	}
	if !dnat && !snat {
		return st, 0, 0
	}
	// The reply comes from the new destination to the new source.
	reply.setSrc(&newDst)
	reply.setDst(&newSrc)
	if echo {
		reply.setPorts(0, newSport)
	} else if proto == protoTCP || proto == header.ProtoUDP {
		reply.setPorts(newDport, newSport)
	}
	if dnat {
		st |= flDNAT
	}
	if snat {
		st |= flSNAT
	}
	return st, pool, 0
}

// Translate rewrites every packet whose connection has a translation:
// addresses and ports (or echo ids), with incremental checksum updates; for
// an ICMP error, also the embedded packet and its checksums. Run it after
// Commit.
func (w *Worker) Translate(frames [][]byte, ps []header.Parsed, res []Result) {
	t := w.t
	res = res[:len(frames)]
	ps = ps[:len(frames)]
	for i, b := range frames {
		r := &res[i]
		if r.Conn == 0 || r.State&(StateSNAT|StateDNAT) == 0 || r.Reason != 0 {
			continue
		}
		c := &t.conns[r.Conn.idx()]
		dir := 0
		if r.State&StateRpl != 0 {
			dir = 1
		}
		cur, other := c.loadKey(dir), c.loadKey(1-dir)
		if c.gen.Load() != r.Conn.gen() {
			w.mark(r, ReasonGone)
			continue
		}
		tgt := other.reverse()
		p := &ps[i]
		if r.kind == kindICMPError {
			w.rewriteError(b, p, &cur, &tgt)
		} else {
			rewrite(b, int(p.L3), int(p.L4), p.Proto, &cur, &tgt)
		}
	}
}

// rewrite turns a packet with key cur into one with key tgt.
func rewrite(b []byte, l3, l4 int, proto uint8, cur, tgt *key) {
	rewriteInner(b, l3, l4, proto, cur, tgt)
}

// put16 stores v at b[off:] and returns checksum c patched for the change.
func put16(b []byte, off int, v, c uint16) uint16 {
	old := binary.BigEndian.Uint16(b[off:])
	if old == v {
		return c
	}
	binary.BigEndian.PutUint16(b[off:], v)
	return header.Update16(c, old, v)
}

// rewriteError translates an ICMP error travelling as key cur into one
// travelling as tgt: the outer addresses that are the connection's, and the
// embedded packet (the reverse of cur becomes the reverse of tgt) with its
// IP and transport checksums; the outer ICMP checksum is patched by the sum
// of the embedded bytes before and after.
func (w *Worker) rewriteError(b []byte, p *header.Parsed, cur, tgt *key) {
	l3, l4 := int(p.L3), int(p.L4)
	v6 := cur.v6()
	n, so, do := 4, 12, 16
	if v6 {
		n, so, do = 16, 8, 24
	}
	in := l4 + header.ICMPLen
	end := min(len(b), ipEnd(b, p))
	icmp := header.ICMP(b[l4:])
	ic := icmp.Checksum()
	before := header.Fold(header.Sum(b[in:end], 0))

	// Embedded packet: reverse(cur) -> reverse(tgt).
	rc, rt := cur.reverse(), tgt.reverse()
	var il4 int
	if v6 {
		il4 = in + header.IPv6Len
	} else {
		il4 = in + header.IPv4(b[in:]).HeaderLen()
	}
	var innerProto uint8
	if v6 {
		innerProto = header.IPv6(b[in:]).NextHeader()
	} else {
		innerProto = header.IPv4(b[in:]).Protocol()
	}
	rewriteInner(b[:end], in, il4, innerProto, &rc, &rt)
	after := header.Fold(header.Sum(b[in:end], 0))
	ic = header.Update16(ic, before, after)

	// Outer addresses that belong to the connection.
	cs, cd := cur.src(), cur.dst()
	ts, td := tgt.src(), tgt.dst()
	for _, f := range [2]struct {
		off      int
		was, now []byte
	}{{so, cs[:n], ts[:n]}, {do, cd[:n], td[:n]}} {
		old := b[l3+f.off : l3+f.off+n]
		if string(old) != string(f.was) || string(f.was) == string(f.now) {
			continue
		}
		if v6 {
			ic = header.Update32(ic, old, f.now) // ICMPv6 sums a pseudo-header
		} else {
			ip := header.IPv4(b[l3:])
			ip.SetChecksum(header.Update32(ip.Checksum(), old, f.now))
		}
		copy(old, f.now)
	}
	icmp.SetChecksum(ic)
}

// rewriteInner rewrites the IP packet at l3 (transport header at l4) from
// key cur to key tgt with incremental checksum updates. The packet may be
// cut short (an ICMP error's embedded packet): fields beyond b stay.
func rewriteInner(b []byte, l3, l4 int, proto uint8, cur, tgt *key) {
	v6 := cur.v6()
	n, so, do := 4, 12, 16
	if v6 {
		n, so, do = 16, 8, 24
	}
	cs, pseudo := -1, true
	switch proto {
	case protoTCP:
		cs = 16
	case header.ProtoUDP:
		cs = 6
	case header.ProtoICMP:
		cs, pseudo = 2, false
	case header.ProtoICMPv6:
		cs = 2
	}
	if cs >= 0 && len(b) < l4+cs+2 {
		cs = -1
	}
	if proto == header.ProtoUDP && cs >= 0 && !v6 && binary.BigEndian.Uint16(b[l4+6:]) == 0 {
		cs = -1
	}
	var l4c uint16
	if cs >= 0 {
		l4c = binary.BigEndian.Uint16(b[l4+cs:])
	}
	ts, td := tgt.src(), tgt.dst()
	for _, f := range [2]struct {
		off int
		a   []byte
	}{{so, ts[:n]}, {do, td[:n]}} {
		old := b[l3+f.off : l3+f.off+n]
		if string(old) == string(f.a) {
			continue
		}
		if !v6 {
			ip := header.IPv4(b[l3:])
			ip.SetChecksum(header.Update32(ip.Checksum(), old, f.a))
		}
		if cs >= 0 && pseudo {
			l4c = header.Update32(l4c, old, f.a)
		}
		copy(old, f.a)
	}
	if len(b) < l4+8 {
		return
	}
	switch proto {
	case protoTCP, header.ProtoUDP:
		l4c = put16(b, l4, tgt.sport(), l4c)
		l4c = put16(b, l4+2, tgt.dport(), l4c)
	case header.ProtoICMP, header.ProtoICMPv6:
		id := tgt.sport()
		if tgt.flags()&keyEchoRep != 0 {
			id = tgt.dport()
		}
		l4c = put16(b, l4+4, id, l4c)
	}
	if cs >= 0 {
		if proto == header.ProtoUDP && l4c == 0 {
			l4c = 0xffff
		}
		binary.BigEndian.PutUint16(b[l4+cs:], l4c)
	}
}
