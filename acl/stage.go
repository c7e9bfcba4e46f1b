package acl

import (
	"github.com/vswitch/vswitch/switch/header"
)

// DropReason says why this package dropped a packet.
type DropReason uint8

const (
	Pass DropReason = iota
	DropACLDeny
	DropACLReject
	DropSGIngress
	DropSGEgress
	DropCTInvalid
	DropSpoofedSourceMAC
	DropSpoofedSourceIP
	DropSpoofedARPSenderMAC
	DropSpoofedARPSenderIP
	DropSpoofedNDTarget
	DropSpoofedNDLinkLayer
	DropGuestRouterAdvert
	DropGuestDHCPServer
	DropEtherType
	DropMalformed
	NumDropReasons
)

var dropNames = [NumDropReasons]string{
	Pass:                    "pass",
	DropACLDeny:             "acl_deny",
	DropACLReject:           "acl_reject",
	DropSGIngress:           "sg_ingress_denied",
	DropSGEgress:            "sg_egress_denied",
	DropCTInvalid:           "ct_invalid",
	DropSpoofedSourceMAC:    "spoofed_source_mac",
	DropSpoofedSourceIP:     "spoofed_source_ip",
	DropSpoofedARPSenderMAC: "spoofed_arp_sender_mac",
	DropSpoofedARPSenderIP:  "spoofed_arp_sender_ip",
	DropSpoofedNDTarget:     "spoofed_nd_target",
	DropSpoofedNDLinkLayer:  "spoofed_nd_link_layer",
	DropGuestRouterAdvert:   "guest_router_advert",
	DropGuestDHCPServer:     "guest_dhcp_server",
	DropEtherType:           "port_security_ethertype",
	DropMalformed:           "port_security_malformed",
}

func (r DropReason) String() string {
	if r < NumDropReasons {
		return dropNames[r]
	}
	return "unknown"
}

// Counters are one worker's drop counts: plain adds, read by the metrics
// collector with the usual per-worker snapshot.
type Counters struct {
	Drops [NumDropReasons]uint64
}

// CTState is what conntrack (package nat) said about a packet before the
// security group stage.
type CTState uint8

const (
	CTNew         CTState = iota // no connection yet: the rules decide
	CTEstablished                // part of a committed connection
	CTRelated                    // an ICMP error or expectation of one
	CTInvalid                    // conntrack refused it (bad TCP state...)
)

// Verdict is the filter stages' decision on one packet.
type Verdict struct {
	Drop    DropReason
	ACLRule int32 // matching ACL rule, -1 if none
	SGRule  int32 // SG rule that admitted a new connection, -1 if none
	// Commit asks conntrack to create the connection: a security group
	// admitted a new one. Later packets come back as CTEstablished.
	Commit bool
	// Reject asks for a TCP RST / ICMP unreachable (see BuildReject).
	Reject bool
}

// PortSecurity checks frames the guest of each packet's port sent
// (meta[i].Dir must be Egress; others pass). frames[i] holds at least
// the headers ps[i] describes. out[i] is Pass or the reason to drop.
func (s *Snapshot) PortSecurity(frames [][]byte, ps []header.Parsed, meta []Meta, out []DropReason, cnt *Counters) {
	frames, meta, out = frames[:len(ps)], meta[:len(ps)], out[:len(ps)]
	for i := range ps {
		out[i] = Pass
		port := int(meta[i].Port)
		if meta[i].Dir != Egress || port >= len(s.portSec) || s.portSec[port] == nil {
			continue
		}
		if r := s.portSec[port].check(frames[i], &ps[i]); r != Pass {
			out[i] = r
			cnt.Drops[r]++
		}
	}
}

// Filter runs the stateless ACLs and then the security groups over a
// batch. ct[i] is conntrack's state for packet i (nil: every packet is
// new). Packets already dropped by an earlier stage are not given here.
//
// Security groups, for a port that has any (a port without groups is
// not filtered): established and related packets pass without a lookup;
// invalid ones drop; new ones pass if a rule of the port's groups allows
// them (ingress rules for traffic to the guest, egress rules for traffic
// from it) and are marked Commit; the rest drop. Ingress is denied unless
// a rule allows it; egress is allowed while none of the port's groups has
// an egress rule, and limited to the egress rules once one does (an
// OpenStack group's default allow-all egress rules behave the same way).
// Whatever the rules,
// DHCP and IPv6 neighbour discovery pass (alwaysAllowed), as with
// neutron's firewall drivers. Security groups filter IP only: ARP and
// other EtherTypes pass this stage (port security checks what a guest
// sends).
func (s *Snapshot) Filter(ps []header.Parsed, meta []Meta, ct []CTState, out []Verdict, cnt *Counters) {
	s.filter(ps, meta, ct, out, cnt, true)
}

// Explain is Filter for a dry run (a packet trace): the same verdicts,
// with no drop and no rule hit counted.
func (s *Snapshot) Explain(ps []header.Parsed, meta []Meta, ct []CTState, out []Verdict) {
	var cnt Counters
	s.filter(ps, meta, ct, out, &cnt, false)
}

func (s *Snapshot) filter(ps []header.Parsed, meta []Meta, ct []CTState, out []Verdict, cnt *Counters, hits bool) {
	meta, out = meta[:len(ps)], out[:len(ps)]
	var aclRun, sgRun hitRun
	for i := range ps {
		p, m := &ps[i], meta[i]
		v := Verdict{ACLRule: -1, SGRule: -1}
		r := s.ACL.Lookup(p, m)
		v.ACLRule = r.Rule
		if hits {
			aclRun.add(s.ACL, r.Rule)
		}
		switch r.Action {
		case Deny:
			v.Drop = DropACLDeny
		case Reject:
			v.Drop, v.Reject = DropACLReject, true
		default:
			run := &sgRun
			if !hits {
				run = nil
			}
			v.Drop, v.SGRule, v.Commit = s.sgDecide(p, m, ct, i, run)
		}
		if v.Drop != Pass {
			cnt.Drops[v.Drop]++
		}
		out[i] = v
	}
	aclRun.flush(s.ACL)
	sgRun.flush(s.SG)
}

func (s *Snapshot) sgDecide(p *header.Parsed, m Meta, ct []CTState, i int, run *hitRun) (DropReason, int32, bool) {
	if int(m.Port) >= len(s.sgPort) || !s.sgPort[m.Port] || ipVersion(p.EthType) == 0 {
		return Pass, -1, false
	}
	if ct != nil {
		switch ct[i] {
		case CTEstablished, CTRelated:
			return Pass, -1, false
		case CTInvalid:
			return DropCTInvalid, -1, false
		}
	}
	if alwaysAllowed(p, m.Dir) {
		return Pass, -1, false
	}
	if m.Dir == Egress && int(m.Port) < len(s.egressOpen) && s.egressOpen[m.Port] {
		return Pass, -1, true
	}
	r := s.SG.Lookup(p, m)
	if run != nil {
		run.add(s.SG, r.Rule)
	}
	if r.Action == Allow {
		return Pass, r.Rule, true
	}
	if m.Dir == Ingress {
		return DropSGIngress, -1, false
	}
	return DropSGEgress, -1, false
}

// alwaysAllowed is the traffic neutron's firewall drivers admit on every
// port whatever its groups: DHCP client requests out and replies in
// (v4 68->67 / 67->68, v6 546->547 / 547->546), and IPv6 neighbour
// discovery: RS, NS, NA and MLD out; RA, NS, NA and MLD queries in.
// (Guests acting as DHCP servers or routers are stopped by port security.)
func alwaysAllowed(p *header.Parsed, d Direction) bool {
	if p.L4 == 0 {
		return false
	}
	switch p.Proto {
	case header.ProtoUDP:
		if d == Egress {
			return p.SrcPort == 68 && p.DstPort == 67 || p.SrcPort == 546 && p.DstPort == 547
		}
		return p.SrcPort == 67 && p.DstPort == 68 || p.SrcPort == 547 && p.DstPort == 546
	case header.ProtoICMPv6:
		switch p.ICMPType {
		case header.ICMPv6NeighborSolicit, header.ICMPv6NeighborAdvert, 130: // 130: MLD query
			return true
		case header.ICMPv6RouterSolicit, 131, 132, 143: // MLD reports and done
			return d == Egress
		case header.ICMPv6RouterAdvert:
			return d == Ingress
		}
	}
	return false
}
