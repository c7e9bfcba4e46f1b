package acl

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/vswitch/vswitch/switch/header"
)

// portSec is a port's compiled anti-spoofing table: the source MACs its
// guest may use and the (MAC, prefix) pairs for source IPs.
type portSec struct {
	macs  []uint64 // MAC48 values
	pairs []ipPair
	lla   []ipPair // fe80::/64 + EUI-64 of each allowed MAC, as /128
	raw   []netip.Prefix
}

// ipPair is a (MAC, prefix) with the prefix as value and mask words:
// IPv4 in the top 32 bits of hi.
type ipPair struct {
	mac            uint64
	v6             bool
	hi, lo, mh, ml uint64
}

func (q *ipPair) contains(mac uint64, v6 bool, a *[16]byte) bool {
	return q.mac == mac && q.v6 == v6 &&
		binary.BigEndian.Uint64(a[0:8])&q.mh == q.hi && binary.BigEndian.Uint64(a[8:16])&q.ml == q.lo
}

func newPair(mac uint64, p netip.Prefix) ipPair {
	var v, m [2]uint64
	prefixWords(p, v[:], m[:])
	if p.Addr().Is4() { // only the first 4 bytes of the address are compared
		return ipPair{mac: mac, hi: v[0], mh: m[0]}
	}
	return ipPair{mac: mac, v6: true, hi: v[0], lo: v[1], mh: m[0], ml: m[1]}
}

// linkLocal is the EUI-64 link-local address of mac (RFC 4291 2.5.1).
func linkLocal(mac [6]byte) netip.Addr {
	return netip.AddrFrom16([16]byte{0: 0xfe, 1: 0x80, 8: mac[0] ^ 2, 9: mac[1], 10: mac[2], 11: 0xff, 12: 0xfe,
		13: mac[3], 14: mac[4], 15: mac[5]})
}

func compilePortSec(path string, c *PortSecurity) (*portSec, error) {
	if c.MAC == "" {
		return nil, ferr(path+".mac", "", "required")
	}
	mac, err := parseMAC(path+".mac", c.MAC)
	if err != nil {
		return nil, err
	}
	ps := &portSec{}
	addMAC := func(m [6]byte) uint64 {
		v := header.MAC48(m[:])
		for _, x := range ps.macs {
			if x == v {
				return v
			}
		}
		ps.macs = append(ps.macs, v)
		ps.lla = append(ps.lla, newPair(v, netip.PrefixFrom(linkLocal(m), 128)))
		return v
	}
	pm := addMAC(mac)
	for i, s := range c.IPs {
		f := fmt.Sprintf("%s.ips[%d]", path, i)
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return nil, ferr(f, s, "want an IP address")
		}
		p := netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
		ps.pairs, ps.raw = append(ps.pairs, newPair(pm, p)), append(ps.raw, p)
	}
	for i, ap := range c.AllowedAddressPairs {
		f := fmt.Sprintf("%s.allowed_address_pairs[%d]", path, i)
		m := pm
		if ap.MAC != "" {
			hw, err := parseMAC(f+".mac", ap.MAC)
			if err != nil {
				return nil, err
			}
			m = addMAC(hw)
		}
		if ap.IP == "" {
			return nil, ferr(f+".ip", "", "required")
		}
		p, err := parsePrefix(f+".ip", ap.IP)
		if err != nil {
			return nil, err
		}
		ps.pairs, ps.raw = append(ps.pairs, newPair(m, p)), append(ps.raw, p)
	}
	return ps, nil
}

// prefixes are the addresses the port may use, for remote_group rules.
func (ps *portSec) prefixes() []netip.Prefix { return ps.raw }

func (ps *portSec) macOK(m uint64) bool {
	for _, x := range ps.macs {
		if x == m {
			return true
		}
	}
	return false
}

func (ps *portSec) ipOK(mac uint64, v6 bool, a *[16]byte) bool {
	for i := range ps.pairs {
		if ps.pairs[i].contains(mac, v6, a) {
			return true
		}
	}
	if v6 {
		for i := range ps.lla {
			if ps.lla[i].contains(mac, true, a) {
				return true
			}
		}
	}
	return false
}

// check decides one frame the guest sent. frame holds at least the
// headers Parse read; p is its parse.
func (ps *portSec) check(frame []byte, p *header.Parsed) DropReason {
	if len(frame) < header.EthernetLen {
		return DropMalformed
	}
	src := header.MAC48(frame[6:12])
	if !ps.macOK(src) {
		return DropSpoofedSourceMAC
	}
	switch p.EthType {
	case header.EtherTypeARP:
		a := header.ARP(frame[p.L3:])
		if !a.IsValid() {
			return DropMalformed
		}
		if header.MAC48(a[8:14]) != src {
			return DropSpoofedARPSenderMAC
		}
		var ip [16]byte
		copy(ip[:4], a[14:18])
		if ip != ([16]byte{}) && !ps.ipOK(src, false, &ip) { // 0.0.0.0: an RFC 5227 probe
			return DropSpoofedARPSenderIP
		}
		return Pass
	case header.EtherTypeIPv4:
		if p.Proto == header.ProtoUDP && p.L4 != 0 && p.SrcPort == 67 && p.DstPort == 68 {
			return DropGuestDHCPServer
		}
		if ps.ipOK(src, false, &p.Src) {
			return Pass
		}
		if binary.BigEndian.Uint32(p.Src[:4]) == 0 && p.Proto == header.ProtoUDP && p.L4 != 0 &&
			p.SrcPort == 68 && p.DstPort == 67 {
			return Pass // DHCP discover/request before the guest has an address
		}
		return DropSpoofedSourceIP
	case header.EtherTypeIPv6:
		return ps.checkIPv6(frame, p, src)
	}
	return DropEtherType
}

func (ps *portSec) checkIPv6(frame []byte, p *header.Parsed, src uint64) DropReason {
	if p.Proto == header.ProtoUDP && p.L4 != 0 && p.SrcPort == 547 && p.DstPort == 546 {
		return DropGuestDHCPServer
	}
	icmp := p.Proto == header.ProtoICMPv6 && p.L4 != 0
	if icmp && p.ICMPType == header.ICMPv6RouterAdvert {
		return DropGuestRouterAdvert
	}
	unspecified := p.Src == [16]byte{}
	switch {
	case ps.ipOK(src, true, &p.Src):
	case unspecified && icmp && (p.ICMPType == header.ICMPv6NeighborSolicit || p.ICMPType == 143 || p.ICMPType == 131):
		// DAD probes and MLD reports are sent from :: (RFC 4862, 3810).
	default:
		return DropSpoofedSourceIP
	}
	if !icmp {
		return Pass
	}
	var llOpt uint8
	switch p.ICMPType {
	case header.ICMPv6NeighborAdvert:
		llOpt = header.NDOptTargetLL
	case header.ICMPv6NeighborSolicit, header.ICMPv6RouterSolicit:
		llOpt = header.NDOptSourceLL
	default:
		return Pass
	}
	end := int(p.L3) + header.IPv6Len + int(header.IPv6(frame[p.L3:]).PayloadLen())
	end = min(end, len(frame))
	optOff := header.NDPMinLen // NS and NA: type, code, sum, flags, target
	if p.ICMPType == header.ICMPv6RouterSolicit {
		optOff = 8
	}
	if int(p.L4)+optOff > end {
		return DropMalformed
	}
	if p.ICMPType == header.ICMPv6NeighborAdvert {
		t := header.NDP(frame[p.L4:end]).Target()
		if !ps.ipOK(src, true, &t) {
			return DropSpoofedNDTarget
		}
	}
	if mac, ok := llOption(frame[int(p.L4)+optOff:end], llOpt); ok && mac != src {
		return DropSpoofedNDLinkLayer
	}
	return Pass
}

// llOption finds a link-layer address option of type typ in ND options.
func llOption(opts []byte, typ uint8) (uint64, bool) {
	for len(opts) >= 8 {
		l := int(opts[1]) * 8
		if l == 0 || l > len(opts) {
			return 0, false
		}
		if opts[0] == typ {
			return header.MAC48(opts[2:8]), true
		}
		opts = opts[l:]
	}
	return 0, false
}
