// Package header holds zero-copy views over packet headers: each type is a
// byte slice with accessors (gVisor pkg/tcpip/header is the model), plus
// Parse, which walks a frame once and records where each layer starts.
// Nothing here allocates; every accessor assumes the view was checked with
// the Parse result or the type's IsValid.
package header

import "encoding/binary"

// EtherTypes and IP protocol numbers the pipeline looks at.
const (
	EtherTypeIPv4 = 0x0800
	EtherTypeARP  = 0x0806
	EtherTypeVLAN = 0x8100
	EtherTypeQinQ = 0x88a8
	EtherTypeIPv6 = 0x86dd
	EtherTypeRARP = 0x8035

	ProtoICMP   = 1
	ProtoTCP    = 6
	ProtoUDP    = 17
	ProtoICMPv6 = 58

	EthernetLen = 14
	VLANTagLen  = 4
	IPv4MinLen  = 20
	IPv6Len     = 40
	TCPMinLen   = 20
	UDPLen      = 8
	ICMPLen     = 8 // type, code, checksum and the 4-byte rest of header
	ARPLen      = 28
)

// Ethernet is an Ethernet II header.
type Ethernet []byte

// Dst is the destination MAC.
func (e Ethernet) Dst() [6]byte { return [6]byte(e[0:6]) }

// Src is the source MAC.
func (e Ethernet) Src() [6]byte { return [6]byte(e[6:12]) }

// Type is the EtherType (the outer one, before any VLAN tag).
func (e Ethernet) Type() uint16 { return binary.BigEndian.Uint16(e[12:14]) }

// SetDst rewrites the destination MAC.
func (e Ethernet) SetDst(m [6]byte) { copy(e[0:6], m[:]) }

// SetSrc rewrites the source MAC.
func (e Ethernet) SetSrc(m [6]byte) { copy(e[6:12], m[:]) }

// MAC48 packs a MAC into the low 48 bits of a uint64, first byte highest,
// so the group bit is bit 40.
func MAC48(b []byte) uint64 {
	_ = b[5]
	return uint64(b[0])<<40 | uint64(b[1])<<32 | uint64(b[2])<<24 |
		uint64(b[3])<<16 | uint64(b[4])<<8 | uint64(b[5])
}

// PutMAC48 writes a packed MAC back as six bytes.
func PutMAC48(b []byte, m uint64) {
	_ = b[5]
	b[0], b[1], b[2] = byte(m>>40), byte(m>>32), byte(m>>24)
	b[3], b[4], b[5] = byte(m>>16), byte(m>>8), byte(m)
}

// IPv4 is an IPv4 header with its options.
type IPv4 []byte

// IsValid says b holds a whole IPv4 header whose lengths agree with a
// packet of pktLen bytes starting at the header.
func (ip IPv4) IsValid(pktLen int) bool {
	if len(ip) < IPv4MinLen || ip[0]>>4 != 4 {
		return false
	}
	hl := ip.HeaderLen()
	tl := int(ip.TotalLen())
	return hl >= IPv4MinLen && hl <= len(ip) && tl >= hl && tl <= pktLen
}

func (ip IPv4) HeaderLen() int     { return int(ip[0]&0xf) * 4 }
func (ip IPv4) TOS() uint8         { return ip[1] }
func (ip IPv4) TotalLen() uint16   { return binary.BigEndian.Uint16(ip[2:4]) }
func (ip IPv4) ID() uint16         { return binary.BigEndian.Uint16(ip[4:6]) }
func (ip IPv4) TTL() uint8         { return ip[8] }
func (ip IPv4) Protocol() uint8    { return ip[9] }
func (ip IPv4) Checksum() uint16   { return binary.BigEndian.Uint16(ip[10:12]) }
func (ip IPv4) Src() [4]byte       { return [4]byte(ip[12:16]) }
func (ip IPv4) Dst() [4]byte       { return [4]byte(ip[16:20]) }
func (ip IPv4) FragOffset() uint16 { return binary.BigEndian.Uint16(ip[6:8]) & 0x1fff }
func (ip IPv4) MoreFragments() bool {
	return ip[6]&0x20 != 0
}

// DontFragment is the DF flag.
func (ip IPv4) DontFragment() bool { return ip[6]&0x40 != 0 }

// SetChecksum stores c.
func (ip IPv4) SetChecksum(c uint16) { binary.BigEndian.PutUint16(ip[10:12], c) }

// SetTotalLen stores the total length without touching the checksum.
func (ip IPv4) SetTotalLen(n uint16) { binary.BigEndian.PutUint16(ip[2:4], n) }

// ComputeChecksum sums the header with its checksum field as zero.
func (ip IPv4) ComputeChecksum() uint16 {
	hl := ip.HeaderLen()
	s := Sum(ip[:10], 0)
	s = Sum(ip[12:hl], s)
	return ^Fold(s)
}

// DecTTL lowers the TTL by one and patches the checksum (RFC 1624).
func (ip IPv4) DecTTL() {
	old := binary.BigEndian.Uint16(ip[8:10])
	ip[8]--
	ip.SetChecksum(Update16(ip.Checksum(), old, binary.BigEndian.Uint16(ip[8:10])))
}

// SetSrcWithChecksum rewrites the source address and patches the header
// checksum; the caller patches any transport checksum with the old and new
// addresses (they are in its pseudo-header).
func (ip IPv4) SetSrcWithChecksum(a [4]byte) {
	ip.SetChecksum(Update32(ip.Checksum(), ip[12:16], a[:]))
	copy(ip[12:16], a[:])
}

// SetDstWithChecksum is SetSrcWithChecksum for the destination.
func (ip IPv4) SetDstWithChecksum(a [4]byte) {
	ip.SetChecksum(Update32(ip.Checksum(), ip[16:20], a[:]))
	copy(ip[16:20], a[:])
}

// IPv6 is the fixed IPv6 header.
type IPv6 []byte

// IsValid says b holds the fixed header and the payload length fits a
// packet of pktLen bytes starting at the header.
func (ip IPv6) IsValid(pktLen int) bool {
	return len(ip) >= IPv6Len && ip[0]>>4 == 6 && IPv6Len+int(ip.PayloadLen()) <= pktLen
}

func (ip IPv6) PayloadLen() uint16 { return binary.BigEndian.Uint16(ip[4:6]) }
func (ip IPv6) NextHeader() uint8  { return ip[6] }
func (ip IPv6) HopLimit() uint8    { return ip[7] }
func (ip IPv6) Src() [16]byte      { return [16]byte(ip[8:24]) }
func (ip IPv6) Dst() [16]byte      { return [16]byte(ip[24:40]) }

// SetPayloadLen stores the payload length.
func (ip IPv6) SetPayloadLen(n uint16) { binary.BigEndian.PutUint16(ip[4:6], n) }

// DecHopLimit lowers the hop limit; IPv6 has no header checksum.
func (ip IPv6) DecHopLimit() { ip[7]-- }

// SetSrc and SetDst rewrite addresses; the caller patches the transport
// checksum.
func (ip IPv6) SetSrc(a [16]byte) { copy(ip[8:24], a[:]) }
func (ip IPv6) SetDst(a [16]byte) { copy(ip[24:40], a[:]) }

// TCP is a TCP header.
type TCP []byte

func (t TCP) SrcPort() uint16  { return binary.BigEndian.Uint16(t[0:2]) }
func (t TCP) DstPort() uint16  { return binary.BigEndian.Uint16(t[2:4]) }
func (t TCP) Seq() uint32      { return binary.BigEndian.Uint32(t[4:8]) }
func (t TCP) Ack() uint32      { return binary.BigEndian.Uint32(t[8:12]) }
func (t TCP) DataOffset() int  { return int(t[12]>>4) * 4 }
func (t TCP) Flags() uint8     { return t[13] }
func (t TCP) Window() uint16   { return binary.BigEndian.Uint16(t[14:16]) }
func (t TCP) Checksum() uint16 { return binary.BigEndian.Uint16(t[16:18]) }

// TCP flags.
const (
	TCPFin = 1 << iota
	TCPSyn
	TCPRst
	TCPPsh
	TCPAck
	TCPUrg
)

// SetChecksum stores c.
func (t TCP) SetChecksum(c uint16) { binary.BigEndian.PutUint16(t[16:18], c) }

// SetSrcPort rewrites the source port and patches the checksum.
func (t TCP) SetSrcPort(p uint16) {
	t.SetChecksum(Update16(t.Checksum(), t.SrcPort(), p))
	binary.BigEndian.PutUint16(t[0:2], p)
}

// SetDstPort rewrites the destination port and patches the checksum.
func (t TCP) SetDstPort(p uint16) {
	t.SetChecksum(Update16(t.Checksum(), t.DstPort(), p))
	binary.BigEndian.PutUint16(t[2:4], p)
}

// UDP is a UDP header. A zero checksum (IPv4) means none and stays zero.
type UDP []byte

func (u UDP) SrcPort() uint16  { return binary.BigEndian.Uint16(u[0:2]) }
func (u UDP) DstPort() uint16  { return binary.BigEndian.Uint16(u[2:4]) }
func (u UDP) Length() uint16   { return binary.BigEndian.Uint16(u[4:6]) }
func (u UDP) Checksum() uint16 { return binary.BigEndian.Uint16(u[6:8]) }

// SetChecksum stores c.
func (u UDP) SetChecksum(c uint16) { binary.BigEndian.PutUint16(u[6:8], c) }

// SetSrcPort rewrites the source port, patching a checksum that is in use.
func (u UDP) SetSrcPort(p uint16) {
	if c := u.Checksum(); c != 0 {
		u.SetChecksum(nonZero(Update16(c, u.SrcPort(), p)))
	}
	binary.BigEndian.PutUint16(u[0:2], p)
}

// SetDstPort rewrites the destination port, patching a checksum in use.
func (u UDP) SetDstPort(p uint16) {
	if c := u.Checksum(); c != 0 {
		u.SetChecksum(nonZero(Update16(c, u.DstPort(), p)))
	}
	binary.BigEndian.PutUint16(u[2:4], p)
}

// nonZero maps a computed UDP checksum of 0 to 0xffff (RFC 768).
func nonZero(c uint16) uint16 {
	if c == 0 {
		return 0xffff
	}
	return c
}

// ICMP is an ICMPv4 or ICMPv6 header (same first 8 bytes).
type ICMP []byte

func (c ICMP) Type() uint8      { return c[0] }
func (c ICMP) Code() uint8      { return c[1] }
func (c ICMP) Checksum() uint16 { return binary.BigEndian.Uint16(c[2:4]) }

// Ident is the echo identifier (bytes 4-5), which conntrack and NAT use
// as the port of an echo flow.
func (c ICMP) Ident() uint16 { return binary.BigEndian.Uint16(c[4:6]) }

// SetChecksum stores s.
func (c ICMP) SetChecksum(s uint16) { binary.BigEndian.PutUint16(c[2:4], s) }

// SetIdent rewrites the echo identifier and patches the checksum.
func (c ICMP) SetIdent(id uint16) {
	c.SetChecksum(Update16(c.Checksum(), c.Ident(), id))
	binary.BigEndian.PutUint16(c[4:6], id)
}

// ICMP types the switch makes or matches.
const (
	ICMPv4EchoReply       = 0
	ICMPv4DestUnreach     = 3
	ICMPv4Echo            = 8
	ICMPv4TimeExceeded    = 11
	ICMPv4ParamProblem    = 12
	ICMPv6DestUnreach     = 1
	ICMPv6PacketTooBig    = 2
	ICMPv6TimeExceeded    = 3
	ICMPv6ParamProblem    = 4
	ICMPv6EchoRequest     = 128
	ICMPv6EchoReply       = 129
	ICMPv6RouterSolicit   = 133
	ICMPv6RouterAdvert    = 134
	ICMPv6NeighborSolicit = 135
	ICMPv6NeighborAdvert  = 136
)

// IsICMPv4Error says whether an ICMPv4 type carries an offending packet.
func IsICMPv4Error(t uint8) bool {
	return t == ICMPv4DestUnreach || t == ICMPv4TimeExceeded || t == ICMPv4ParamProblem || t == 4 || t == 5
}

// IsICMPv6Error says whether an ICMPv6 type carries an offending packet.
func IsICMPv6Error(t uint8) bool { return t < 128 }

// ARP is an Ethernet/IPv4 ARP packet.
type ARP []byte

// ARP operations.
const (
	ARPRequest = 1
	ARPReply   = 2
)

// IsValid says a is Ethernet/IPv4 ARP.
func (a ARP) IsValid() bool {
	return len(a) >= ARPLen && binary.BigEndian.Uint16(a[0:2]) == 1 &&
		binary.BigEndian.Uint16(a[2:4]) == EtherTypeIPv4 && a[4] == 6 && a[5] == 4
}

func (a ARP) Op() uint16         { return binary.BigEndian.Uint16(a[6:8]) }
func (a ARP) SenderMAC() [6]byte { return [6]byte(a[8:14]) }
func (a ARP) SenderIP() [4]byte  { return [4]byte(a[14:18]) }
func (a ARP) TargetMAC() [6]byte { return [6]byte(a[18:24]) }
func (a ARP) TargetIP() [4]byte  { return [4]byte(a[24:28]) }
func (a ARP) SetOp(op uint16)    { binary.BigEndian.PutUint16(a[6:8], op) }
func (a ARP) SetSender(m [6]byte, ip [4]byte) {
	copy(a[8:14], m[:])
	copy(a[14:18], ip[:])
}
func (a ARP) SetTarget(m [6]byte, ip [4]byte) {
	copy(a[18:24], m[:])
	copy(a[24:28], ip[:])
}

// NDP is an ICMPv6 neighbour solicitation or advertisement: the 8-byte
// ICMPv6 header, the 16-byte target, then options.
type NDP []byte

// NDPMinLen is the length of an NS/NA without options.
const NDPMinLen = 24

// Target is the target address.
func (n NDP) Target() [16]byte { return [16]byte(n[8:24]) }

// Flags of a neighbour advertisement (router, solicited, override).
func (n NDP) Flags() uint8 { return n[4] }

// NA flags.
const (
	NARouter    = 0x80
	NASolicited = 0x40
	NAOverride  = 0x20
)

// Link-layer address option types.
const (
	NDOptSourceLL = 1
	NDOptTargetLL = 2
)

// LinkLayerOption finds option typ (source or target link-layer address)
// and returns its MAC.
func (n NDP) LinkLayerOption(typ uint8) (mac [6]byte, ok bool) {
	opts := n[NDPMinLen:]
	for len(opts) >= 8 {
		l := int(opts[1]) * 8
		if l == 0 || l > len(opts) {
			return mac, false
		}
		if opts[0] == typ && l >= 8 {
			return [6]byte(opts[2:8]), true
		}
		opts = opts[l:]
	}
	return mac, false
}
