package vswitch

import (
	"encoding/binary"
	"net/netip"

	"github.com/vswitch/vswitch/switch/header"
	"github.com/vswitch/vswitch/switch/offload"
)

// icmpRate is how many ICMP errors, and separately how many ARP requests
// or neighbour solicitations, a worker makes per second.
const icmpRate = 100

// token takes one from a per-worker bucket refilled every coarse second.
func (p *pipe) token(now uint32, bucket *int) bool {
	if p.tokSec != now+1 { // +1: the zero value means never filled
		p.tokSec, p.icmpTok, p.resolveTok = now+1, icmpRate, icmpRate
	}
	if *bucket <= 0 {
		return false
	}
	*bucket--
	return true
}

// stageL3 hands frames for a router interface of the input bridge to the
// router: ARP and neighbour discovery for the router's addresses are
// answered in place, and IP packets to the interface's MAC are routed:
// LPM lookup, TTL decrement, MAC rewrite, and into the egress interface's
// bridge and VLAN, where stageL2 delivers them. Replies the router makes
// reuse the packet's head and go straight back out of the input port.
func stageL3(p *pipe, in *portEntry, b *Batch, now uint32, nt *neighTable) {
	if len(in.bridge.rifs) == 0 {
		return
	}
	p.rmemo = routeMemo{}
	n := 0
	for _, i := range p.live[:p.nlive] {
		if l3one(p, in, b, int(i), now, nt) {
			p.live[n] = i
			n++
		}
	}
	p.nlive = n
}

// l3one reports whether packet i goes on to the L2 stage.
func l3one(p *pipe, in *portEntry, b *Batch, i int, now uint32, nt *neighTable) bool {
	ri := in.bridge.rifFor(p.vlan[i])
	if ri == nil {
		return true
	}
	pkt := &b.Pkts[i]
	h := pkt.HeadBytes()
	ph := &p.parsed[i]
	ours := MAC48(h[0:6]) == ri.mac
	switch {
	case ph.EthType == header.EtherTypeARP:
		return arpIn(p, in, ri, pkt, ph, i, now, nt, ours)
	case ph.EthType == header.EtherTypeIPv6 && ph.Proto == header.ProtoICMPv6 && p.perr[i] == header.ParseOK &&
		(ph.ICMPType == header.ICMPv6NeighborSolicit || ph.ICMPType == header.ICMPv6NeighborAdvert):
		return ndIn(p, in, ri, pkt, ph, i, now, nt, ours)
	}
	if !ours {
		return true
	}
	return route(p, in, ri, pkt, ph, i, now, nt)
}

func (ri *rif) owns(a netip.Addr) bool {
	for _, pf := range ri.addrs {
		if pf.Addr() == a {
			return true
		}
	}
	return false
}

func (r *router) owns(a netip.Addr) bool {
	for _, ri := range r.ifs {
		if ri.owns(a) {
			return true
		}
	}
	return false
}

// srcFor is the interface address to answer peer from: one on peer's
// subnet, else the first of its family.
func (ri *rif) srcFor(peer netip.Addr) (netip.Addr, bool) {
	var first netip.Addr
	for _, pf := range ri.addrs {
		if pf.Addr().Is4() != peer.Is4() {
			continue
		}
		if pf.Contains(peer) {
			return pf.Addr(), true
		}
		if !first.IsValid() {
			first = pf.Addr()
		}
	}
	return first, first.IsValid()
}

func (ri *rif) onLink(a netip.Addr) bool {
	for _, pf := range ri.addrs {
		if pf.Contains(a) {
			return true
		}
	}
	return false
}

func arpIn(p *pipe, in *portEntry, ri *rif, pkt *Packet, ph *header.Parsed, i int, now uint32, nt *neighTable, ours bool) bool {
	h := pkt.HeadBytes()
	if p.perr[i] != header.ParseOK || !header.ARP(h[ph.L3:]).IsValid() {
		return true
	}
	a := header.ARP(h[ph.L3:])
	spa, tpa := netip.AddrFrom4(a.SenderIP()), netip.AddrFrom4(a.TargetIP())
	sha := a.SenderMAC()
	if m := MAC48(sha[:]); m&(1<<40) == 0 && m != 0 && ri.onLink(spa) && !p.dry {
		var k neighKey
		k.rif = ri.id
		copy(k.ip[:4], spa.AsSlice())
		nt.learn(k, m, now)
	}
	if !ri.answers(tpa) {
		if ours {
			p.drop(i, DropForRouter, "arp")
			return false
		}
		return true
	}
	if a.Op() != header.ARPRequest {
		p.drop(i, DropForRouter, "arp") // a reply for us: learned above
		return false
	}
	o := pkt.Head[HeadRoom:]
	clear(o[:60])
	copy(o[0:6], sha[:])
	header.PutMAC48(o[6:12], ri.mac)
	binary.BigEndian.PutUint16(o[12:], header.EtherTypeARP)
	r := header.ARP(o[14:])
	binary.BigEndian.PutUint16(r[0:], 1)
	binary.BigEndian.PutUint16(r[2:], header.EtherTypeIPv4)
	r[4], r[5] = 6, 4
	r.SetOp(header.ARPReply)
	var mine [6]byte
	header.PutMAC48(mine[:], ri.mac)
	r.SetSender(mine, tpa.As4())
	r.SetTarget(sha, spa.As4())
	pkt.Off, pkt.Len, pkt.NHead, pkt.NSegs = HeadRoom, 60, 60, 0
	if t := p.tr(i); t != nil {
		t.at("arp").s("reply for ").ip(tpa).s(" to ").s(in.Name)
	}
	p.add(in.ID, uint16(i))
	return false
}

func ndIn(p *pipe, in *portEntry, ri *rif, pkt *Packet, ph *header.Parsed, i int, now uint32, nt *neighTable, ours bool) bool {
	h := pkt.HeadBytes()
	l4 := int(ph.L4)
	if ph.TTL != 255 || len(h) < l4+header.NDPMinLen {
		return true // not valid neighbour discovery (RFC 4861 7.1): plain traffic
	}
	nd := header.NDP(h[l4:])
	tgt := netip.AddrFrom16(nd.Target())
	src := netip.AddrFrom16([16]byte(ph.Src))
	learn := func(ip netip.Addr, mac [6]byte) {
		if m := MAC48(mac[:]); m&(1<<40) == 0 && m != 0 && !p.dry {
			nt.learn(neighKey{rif: ri.id, ip: ip.As16(), v6: true}, m, now)
		}
	}
	if ph.ICMPType == header.ICMPv6NeighborAdvert {
		if tll, ok := nd.LinkLayerOption(header.NDOptTargetLL); ok {
			learn(tgt, tll)
		} else if ours && nd.Flags()&header.NASolicited != 0 && !p.dry {
			// The answer to the router's unicast solicitation may leave
			// the option out (RFC 4861 4.4; Linux does): it confirms the
			// MAC the entry has (7.2.5), if it comes from that MAC.
			k := neighKey{rif: ri.id, ip: tgt.As16(), v6: true}
			if e, ok := nt.lookup(k); ok && e.mac == MAC48(h[6:12]) {
				nt.learn(k, e.mac, now)
			}
		}
		if ours {
			p.drop(i, DropForRouter, "nd")
			return false
		}
		return true // unsolicited advertisements also reach the hosts
	}
	sll, hasSLL := nd.LinkLayerOption(header.NDOptSourceLL)
	if hasSLL && !src.IsUnspecified() {
		learn(src, sll)
	}
	if !ri.answers(tgt) {
		return true
	}
	// Answer with an advertisement, solicited unless the query came from
	// the unspecified address (duplicate address detection).
	var dstMAC [6]byte
	copy(dstMAC[:], h[6:12])
	dst, flags := src, byte(header.NARouter|header.NASolicited|header.NAOverride)
	if src.IsUnspecified() {
		dst = netip.AddrFrom16([16]byte{0xff, 2, 15: 1})
		dstMAC = [6]byte{0x33, 0x33, 0, 0, 0, 1}
		flags = header.NARouter | header.NAOverride
	}
	o := pkt.Head[HeadRoom:]
	n := 14 + 40 + 32
	clear(o[:n])
	copy(o[0:6], dstMAC[:])
	header.PutMAC48(o[6:12], ri.mac)
	binary.BigEndian.PutUint16(o[12:], header.EtherTypeIPv6)
	ipv6Hdr(o[14:], 32, header.ProtoICMPv6, 255, tgt.As16(), dst.As16())
	c := o[54:n]
	c[0], c[4] = header.ICMPv6NeighborAdvert, flags
	t16 := tgt.As16()
	copy(c[8:24], t16[:])
	c[24], c[25] = header.NDOptTargetLL, 1
	header.PutMAC48(c[26:32], ri.mac)
	icmp6Checksum(o[14:], c)
	pkt.Off, pkt.Len, pkt.NHead, pkt.NSegs = HeadRoom, n, n, 0
	if t := p.tr(i); t != nil {
		t.at("nd").s("advertisement for ").ip(tgt).s(" to ").s(in.Name)
	}
	p.add(in.ID, uint16(i))
	return false
}

func ipv6Hdr(b []byte, plen int, nh, hop uint8, src, dst [16]byte) {
	b[0], b[1], b[2], b[3] = 0x60, 0, 0, 0
	binary.BigEndian.PutUint16(b[4:], uint16(plen))
	b[6], b[7] = nh, hop
	copy(b[8:24], src[:])
	copy(b[24:40], dst[:])
}

// icmp6Checksum fills the checksum of ICMPv6 message c inside IPv6 packet ip.
func icmp6Checksum(ip, c []byte) {
	c[2], c[3] = 0, 0
	s := header.PseudoV6(ip[8:24], ip[24:40], header.ProtoICMPv6, len(c))
	binary.BigEndian.PutUint16(c[2:], header.Checksum(c, s))
}

func route(p *pipe, in *portEntry, ri *rif, pkt *Packet, ph *header.Parsed, i int, now uint32, nt *neighTable) bool {
	if e := p.perr[i]; e != header.ParseOK {
		p.drop(i, parseDrop[e], "route")
		return false
	}
	r := ri.r
	h := pkt.HeadBytes()
	var dst netip.Addr
	var nhIdx uint32
	var found bool
	// A burst is mostly one flow: a destination routed by the packet
	// before skips the address checks, the LPM and the neighbour lookup.
	if m := &p.rmemo; m.r == r && ph.TTL > 1 && m.dst.IsValid() {
		switch ph.EthType {
		case header.EtherTypeIPv4:
			dst = netip.AddrFrom4([4]byte(ph.Dst[:4]))
		case header.EtherTypeIPv6:
			dst = netip.AddrFrom16(ph.Dst)
		}
		if dst == m.dst {
			forwardRouted(p, ph, h, i, m.out, m.e, dst.Is4())
			return true
		}
	}
	switch ph.EthType {
	case header.EtherTypeIPv4:
		dst = netip.AddrFrom4([4]byte(ph.Dst[:4]))
		if ph.Proto == header.ProtoICMP && ph.ICMPType == header.ICMPv4Echo && r.owns(dst) {
			echoReply(p, in, ri, pkt, ph, i, now)
			return false
		}
		if r.owns(dst) || dst.IsMulticast() || dst == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
			p.drop(i, DropForRouter, "route")
			return false
		}
		if ph.TTL <= 1 {
			icmpError(p, in, ri, pkt, ph, i, now, header.ICMPv4TimeExceeded, 0, DropTTLExceeded)
			return false
		}
		nhIdx, found = r.fib4.Lookup(dst.As4())
	case header.EtherTypeIPv6:
		dst = netip.AddrFrom16(ph.Dst)
		if ph.Proto == header.ProtoICMPv6 && ph.ICMPType == header.ICMPv6EchoRequest && r.owns(dst) {
			echoReply(p, in, ri, pkt, ph, i, now)
			return false
		}
		if r.owns(dst) || dst.IsMulticast() || dst.IsLinkLocalUnicast() {
			p.drop(i, DropForRouter, "route")
			return false
		}
		if ph.TTL <= 1 {
			icmpError(p, in, ri, pkt, ph, i, now, header.ICMPv6TimeExceeded, 0, DropTTLExceeded)
			return false
		}
		nhIdx, found = r.fib6.Lookup(dst.As16())
	default:
		p.drop(i, DropForRouter, "route")
		return false
	}
	if !found {
		code := uint8(0) // network unreachable (v4); no route (v6)
		typ := uint8(header.ICMPv4DestUnreach)
		if dst.Is6() {
			typ = header.ICMPv6DestUnreach
		}
		icmpError(p, in, ri, pkt, ph, i, now, typ, code, DropNoRoute)
		return false
	}
	nh := r.nh[nhIdx]
	out := r.ifs[nh.rif]
	if out.br == nil {
		p.drop(i, DropNoOutput, "route")
		return false
	}
	k := neighKey{rif: out.id, v6: dst.Is6()}
	switch {
	case nh.hasVia:
		k.ip = nh.via
	case dst.Is4():
		a := dst.As4()
		copy(k.ip[:4], a[:])
	default:
		k.ip = dst.As16()
	}
	e, ok := nt.lookup(k)
	if resolved := ok && now-e.seen <= neighExpire; !resolved || p.hold != nil && p.hold.waiting(k) {
		return hold(p, in, out, pkt, ph, i, k, now, resolved)
	}
	if now-e.seen >= neighRefresh {
		refresh(p, in, out, k, e, now)
	}
	p.rmemo = routeMemo{r: r, dst: dst, out: out, e: e}
	forwardRouted(p, ph, h, i, out, e, dst.Is4())
	return true
}

// routeMemo is the last destination a batch routed and where it went;
// stageL3 forgets it at each batch.
type routeMemo struct {
	r   *router
	dst netip.Addr
	out *rif
	e   *neighEntry
}

// forwardRouted sends packet i out of router interface out to neighbour
// e: TTL or hop limit decremented, MACs rewritten, into out's bridge.
func forwardRouted(p *pipe, ph *header.Parsed, h []byte, i int, out *rif, e *neighEntry, v4 bool) {
	if v4 {
		header.IPv4(h[ph.L3:]).DecTTL()
	} else {
		header.IPv6(h[ph.L3:]).DecHopLimit()
	}
	header.PutMAC48(h[0:6], e.mac)
	header.PutMAC48(h[6:12], out.mac)
	p.routed[i], p.br[i], p.vlan[i] = true, out.br, out.vlan
	if t := p.tr(i); t != nil {
		t.at("route").s("via ").s(out.name).s(" vlan ").n(int(out.vlan))
	}
}

// echoReply answers an ICMP or ICMPv6 echo request to one of the router's
// addresses in place: MACs and addresses swapped, the type and TTL patched
// with incremental checksum updates, so the payload, however long, stays
// where it is (in the sender's buffers past the head). Replies share the
// ICMP error rate; a request over it, fragmented, or from a multicast or
// unspecified source is dropped as for_router.
func echoReply(p *pipe, in *portEntry, ri *rif, pkt *Packet, ph *header.Parsed, i int, now uint32) {
	h := pkt.HeadBytes()
	l3, l4 := int(ph.L3), int(ph.L4)
	v4 := ph.EthType == header.EtherTypeIPv4
	var src netip.Addr
	if v4 {
		src = netip.AddrFrom4([4]byte(ph.Src[:4]))
	} else {
		src = netip.AddrFrom16(ph.Src)
	}
	if ph.Frag != 0 || l4 == 0 || len(h) < l4+header.ICMPLen || (!v4 && l4 != l3+header.IPv6Len) ||
		pkt.Offload.GSO != offload.GSONone || src.IsMulticast() || src.IsUnspecified() ||
		src == netip.AddrFrom4([4]byte{255, 255, 255, 255}) || !p.token(now, &p.icmpTok) {
		p.drop(i, DropForRouter, "route")
		return
	}
	copy(h[0:6], h[6:12])
	header.PutMAC48(h[6:12], ri.mac)
	c := header.ICMP(h[l4:])
	oldType := binary.BigEndian.Uint16(c[0:2])
	if v4 {
		ip := header.IPv4(h[l3:])
		s, d := ip.Src(), ip.Dst()
		copy(ip[12:16], d[:]) // a swap leaves the header checksum as it is
		copy(ip[16:20], s[:])
		old := binary.BigEndian.Uint16(ip[8:10])
		ip[8] = 64
		ip.SetChecksum(header.Update16(ip.Checksum(), old, binary.BigEndian.Uint16(ip[8:10])))
		c[0] = header.ICMPv4EchoReply
	} else {
		ip := header.IPv6(h[l3:])
		s, d := ip.Src(), ip.Dst()
		ip.SetSrc(d) // the pseudo-header sum does not change either
		ip.SetDst(s)
		ip[7] = 64
		c[0] = header.ICMPv6EchoReply
	}
	// A partial checksum left to offload is completed over the new bytes.
	if pkt.Offload.Flags&offload.FlagNeedsCsum == 0 {
		c.SetChecksum(header.Update16(c.Checksum(), oldType, binary.BigEndian.Uint16(c[0:2])))
	}
	if t := p.tr(i); t != nil {
		me := netip.AddrFrom16(ph.Dst)
		if v4 {
			me = netip.AddrFrom4([4]byte(ph.Dst[:4]))
		}
		t.at("route").s("echo reply from ").ip(me).s(" to ").s(in.Name)
	}
	p.add(in.ID, uint16(i))
}

// solicit turns the packet's head into an ARP request or a neighbour
// solicitation for k's address from interface out: broadcast (ARP) or to
// the solicited-node multicast group (ND) when mac is 0, else unicast to
// mac, the address the entry being refreshed has (RFC 4861 7.3.3).
func solicit(pkt *Packet, out *rif, k neighKey, mac uint64) bool {
	o := pkt.Head[HeadRoom:]
	if !k.v6 {
		target := netip.AddrFrom4([4]byte(k.ip[:4]))
		src, ok := out.srcFor(target)
		if !ok {
			return false
		}
		clear(o[:60])
		if mac != 0 {
			header.PutMAC48(o[0:6], mac)
		} else {
			copy(o[0:6], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
		}
		header.PutMAC48(o[6:12], out.mac)
		binary.BigEndian.PutUint16(o[12:], header.EtherTypeARP)
		r := header.ARP(o[14:])
		binary.BigEndian.PutUint16(r[0:], 1)
		binary.BigEndian.PutUint16(r[2:], header.EtherTypeIPv4)
		r[4], r[5] = 6, 4
		r.SetOp(header.ARPRequest)
		var mine [6]byte
		header.PutMAC48(mine[:], out.mac)
		r.SetSender(mine, src.As4())
		r.SetTarget([6]byte{}, target.As4())
		pkt.Off, pkt.Len, pkt.NHead, pkt.NSegs = HeadRoom, 60, 60, 0
		return true
	}
	target := netip.AddrFrom16(k.ip)
	src, ok := out.srcFor(target)
	if !ok {
		return false
	}
	n := 14 + 40 + 32
	clear(o[:n])
	dst := k.ip
	if mac != 0 {
		header.PutMAC48(o[0:6], mac)
	} else {
		o[0], o[1], o[2], o[3], o[4], o[5] = 0x33, 0x33, 0xff, k.ip[13], k.ip[14], k.ip[15]
		dst = [16]byte{0xff, 2, 11: 1, 12: 0xff, 13: k.ip[13], 14: k.ip[14], 15: k.ip[15]} // solicited-node group
	}
	header.PutMAC48(o[6:12], out.mac)
	binary.BigEndian.PutUint16(o[12:], header.EtherTypeIPv6)
	ipv6Hdr(o[14:], 32, header.ProtoICMPv6, 255, src.As16(), dst)
	c := o[54:n]
	c[0] = header.ICMPv6NeighborSolicit
	copy(c[8:24], k.ip[:])
	c[24], c[25] = header.NDOptSourceLL, 1
	header.PutMAC48(c[26:32], out.mac)
	icmp6Checksum(o[14:], c)
	pkt.Off, pkt.Len, pkt.NHead, pkt.NSegs = HeadRoom, n, n, 0
	return true
}

// icmpError drops packet i with reason and, within the worker's rate,
// turns its head into an ICMP or ICMPv6 error (RFC 792 / RFC 4443) back to
// its sender, out of the input port. It never answers an ICMP error, a
// non-first fragment, or a multicast or unspecified source.
func icmpError(p *pipe, in *portEntry, ri *rif, pkt *Packet, ph *header.Parsed, i int, now uint32, typ, code uint8, reason DropReason) {
	p.drop(i, reason, "route")
	h := pkt.HeadBytes()
	v4 := ph.EthType == header.EtherTypeIPv4
	var src netip.Addr
	if v4 {
		src = netip.AddrFrom4([4]byte(ph.Src[:4]))
		if ph.Proto == header.ProtoICMP && header.IsICMPv4Error(ph.ICMPType) {
			return
		}
	} else {
		src = netip.AddrFrom16(ph.Src)
		if ph.Proto == header.ProtoICMPv6 && header.IsICMPv6Error(ph.ICMPType) {
			return
		}
	}
	if ph.Frag == header.FragLater || src.IsMulticast() || src.IsUnspecified() || src == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		return
	}
	from, ok := ri.srcFor(src)
	if !ok || !p.token(now, &p.icmpTok) {
		return
	}
	l3 := int(ph.L3)
	ipHdr, ipOut := 20, 0
	if !v4 {
		ipHdr = 40
	}
	// Quote the offending packet: IPv4 header + 8 bytes, or as much of the
	// IPv6 packet as fits in the head.
	q := len(h) - l3
	if v4 {
		q = min(q, header.IPv4(h[l3:]).HeaderLen()+8)
	} else {
		q = min(q, HeadLen-14-ipHdr-8)
	}
	copy(p.scratch[:q], h[l3:l3+q])
	var peerMAC [6]byte
	copy(peerMAC[:], h[6:12])
	o := pkt.Head[HeadRoom:]
	n := max(14+ipHdr+8+q, 60)
	clear(o[:n])
	copy(o[0:6], peerMAC[:])
	header.PutMAC48(o[6:12], ri.mac)
	c := o[14+ipHdr : 14+ipHdr+8+q]
	c[0], c[1] = typ, code
	copy(c[8:], p.scratch[:q])
	if v4 {
		binary.BigEndian.PutUint16(o[12:], header.EtherTypeIPv4)
		ip := header.IPv4(o[14:34])
		ip[0], ip[8], ip[9] = 0x45, 64, header.ProtoICMP
		ip.SetTotalLen(uint16(20 + len(c)))
		copy(ip[12:16], from.AsSlice())
		copy(ip[16:20], src.AsSlice())
		ip.SetChecksum(ip.ComputeChecksum())
		binary.BigEndian.PutUint16(c[2:], header.Checksum(c, 0))
		ipOut = 14 + 20 + len(c)
	} else {
		binary.BigEndian.PutUint16(o[12:], header.EtherTypeIPv6)
		ipv6Hdr(o[14:], len(c), header.ProtoICMPv6, 64, from.As16(), src.As16())
		icmp6Checksum(o[14:], c)
		ipOut = 14 + 40 + len(c)
	}
	pkt.Off, pkt.Len, pkt.NHead, pkt.NSegs = HeadRoom, max(ipOut, 60), max(ipOut, 60), 0
	if t := p.tr(i); t != nil {
		t.at("route").s("icmp error to ").s(in.Name)
	}
	p.add(in.ID, uint16(i))
}
