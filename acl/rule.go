package acl

import (
	"net/netip"

	"github.com/vswitch/vswitch/switch/header"
)

// Direction is relative to the guest behind a port, as in OpenStack:
// Ingress traffic is about to be delivered to the port, Egress traffic
// arrived from it.
type Direction uint8

const (
	Ingress Direction = iota
	Egress
)

func (d Direction) String() string {
	if d == Egress {
		return "egress"
	}
	return "ingress"
}

// Action is what a matching rule does.
type Action uint8

const (
	NoMatch Action = iota // no rule matched; the stage applies its default
	Allow
	Deny
	Reject // deny and answer with a TCP RST or an ICMP unreachable
)

var actionNames = [...]string{NoMatch: "no_match", Allow: "allow", Deny: "deny", Reject: "reject"}

func (a Action) String() string {
	if int(a) < len(actionNames) {
		return actionNames[a]
	}
	return "unknown"
}

// EtherType values of a rule: any IP, IPv4 only, IPv6 only.
const (
	EthAny uint8 = 0
	EthV4  uint8 = 4
	EthV6  uint8 = 6
)

// AnyProto in Rule.Proto and AnyICMP in ICMPType/ICMPCode are wildcards.
const (
	AnyProto = -1
	AnyICMP  = -1
)

// PortRange is an inclusive range of L4 ports; the zero value is empty,
// FullRange matches every port.
type PortRange struct{ Lo, Hi uint16 }

// FullRange is the wildcard port range.
var FullRange = PortRange{0, 65535}

// Full says r matches every port.
func (r PortRange) Full() bool { return r.Lo == 0 && r.Hi == 65535 }

// Rule is one compiled match plus its action. Higher Priority wins; among
// equal priorities the earlier rule wins. Src and Dst are packet fields
// (not "remote"): the invalid Prefix is the wildcard.
type Rule struct {
	Name     string
	Port     uint16
	Dir      Direction
	Priority int32
	EthType  uint8 // EthAny, EthV4, EthV6
	Proto    int16 // IP protocol or AnyProto
	Src, Dst netip.Prefix
	SrcPorts PortRange // TCP/UDP only; FullRange otherwise
	DstPorts PortRange
	ICMPType int16 // ICMP/ICMPv6 only; AnyICMP otherwise
	ICMPCode int16
	Action   Action
}

// hasL4 says the rule looks at L4 fields, which later fragments lack.
func (r *Rule) hasL4() bool {
	return !r.SrcPorts.Full() || !r.DstPorts.Full() || r.ICMPType != AnyICMP || r.ICMPCode != AnyICMP
}

// Meta is the per-packet input besides the headers.
type Meta struct {
	Port uint16
	Dir  Direction
}

// ipVersion maps an EtherType to EthV4/EthV6, 0 for non-IP.
func ipVersion(et uint16) uint8 {
	switch et {
	case header.EtherTypeIPv4:
		return EthV4
	case header.EtherTypeIPv6:
		return EthV6
	}
	return 0
}

// isICMP says proto is ICMP or ICMPv6.
func isICMP(proto uint8) bool { return proto == header.ProtoICMP || proto == header.ProtoICMPv6 }

// noL4 says the packet has no L4 fields to match: a later fragment, or a
// first fragment too short to hold the TCP/UDP/ICMP header.
func noL4(p *header.Parsed) bool { return p.L4 == 0 }

// addrOf returns the packet address as a netip.Addr of the IP version v.
func addrOf(b *[16]byte, v uint8) netip.Addr {
	if v == EthV4 {
		return netip.AddrFrom4([4]byte(b[:4]))
	}
	return netip.AddrFrom16(*b)
}

// Matches is the reference semantics of a rule, one field at a time. The
// classifier must agree with it (FuzzClassify checks that).
func (r *Rule) Matches(p *header.Parsed, m Meta) bool {
	if m.Port != r.Port || m.Dir != r.Dir {
		return false
	}
	v := ipVersion(p.EthType)
	if v == 0 || (r.EthType != EthAny && r.EthType != v) {
		return false
	}
	if r.Proto != AnyProto && uint8(r.Proto) != p.Proto {
		return false
	}
	if r.Src.IsValid() && !r.Src.Contains(addrOf(&p.Src, v)) {
		return false
	}
	if r.Dst.IsValid() && !r.Dst.Contains(addrOf(&p.Dst, v)) {
		return false
	}
	if !r.hasL4() {
		return true
	}
	if noL4(p) {
		return false
	}
	if isICMP(p.Proto) {
		return (r.ICMPType == AnyICMP || uint8(r.ICMPType) == p.ICMPType) &&
			(r.ICMPCode == AnyICMP || uint8(r.ICMPCode) == p.ICMPCode) &&
			r.SrcPorts.Full() && r.DstPorts.Full()
	}
	return r.ICMPType == AnyICMP && r.ICMPCode == AnyICMP &&
		p.SrcPort >= r.SrcPorts.Lo && p.SrcPort <= r.SrcPorts.Hi &&
		p.DstPort >= r.DstPorts.Lo && p.DstPort <= r.DstPorts.Hi
}
