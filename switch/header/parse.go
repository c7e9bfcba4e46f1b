package header

import "encoding/binary"

// Parsed is what one walk over a frame learned: where each layer starts
// and the fields every stage matches on. It holds no pointers into the
// frame, so a batch of them is not scanned by the GC.
type Parsed struct {
	VLAN     uint16 // VLAN ID of the outer 802.1Q tag, 0 if untagged
	PCP      uint8  // priority of that tag
	Tagged   bool
	EthType  uint16 // the EtherType after any VLAN tags
	L3       uint16 // offset of the L3 header
	L4       uint16 // offset of the L4 header (0 when there is none)
	Proto    uint8  // IP protocol (after IPv6 extension headers)
	Frag     uint8  // FragFirst, FragLater or 0
	TTL      uint8  // IPv4 TTL or IPv6 hop limit
	TCPFlags uint8
	SrcPort  uint16 // TCP/UDP ports; ICMP echo identifier in SrcPort and DstPort
	DstPort  uint16
	ICMPType uint8
	ICMPCode uint8
	// Addresses: IPv4 in the first 4 bytes; ARP sender/target for ARP.
	Src, Dst [16]byte
}

// Fragment kinds.
const (
	FragFirst = 1 // offset 0, more fragments follow: L4 header present
	FragLater = 2 // non-zero offset: no L4 header
)

// ParseErr says why a frame could not be parsed. Each has a drop reason in
// the stage that parses.
type ParseErr uint8

const (
	ParseOK ParseErr = iota
	ErrTruncated
	ErrBadIPv4
	ErrBadIPv6
	ErrBadL4
	ErrExtHeaders // an IPv6 extension header chain we refuse (too long, malformed)
	NumParseErrs
)

var parseErrNames = [NumParseErrs]string{
	ParseOK:       "ok",
	ErrTruncated:  "truncated_header",
	ErrBadIPv4:    "malformed_ipv4",
	ErrBadIPv6:    "malformed_ipv6",
	ErrBadL4:      "malformed_l4",
	ErrExtHeaders: "bad_ipv6_ext_header",
}

func (e ParseErr) String() string {
	if e < NumParseErrs {
		return parseErrNames[e]
	}
	return "unknown"
}

// maxExtHeaders bounds the IPv6 extension header walk.
const maxExtHeaders = 8

// ParseL2 fills only the Ethernet and VLAN fields of p (EthType, L3, the
// tags), for a bridge where no stage looks further.
func ParseL2(b []byte, p *Parsed) ParseErr {
	*p = Parsed{}
	if len(b) < EthernetLen {
		return ErrTruncated
	}
	off := 12
	et := binary.BigEndian.Uint16(b[off:])
	if et == EtherTypeVLAN || et == EtherTypeQinQ {
		if len(b) < off+6 {
			return ErrTruncated
		}
		tci := binary.BigEndian.Uint16(b[off+2:])
		p.Tagged, p.VLAN, p.PCP = true, tci&0xfff, uint8(tci>>13)
		off += 4
		et = binary.BigEndian.Uint16(b[off:])
		if et == EtherTypeVLAN { // inner tag of a QinQ frame
			if len(b) < off+6 {
				return ErrTruncated
			}
			off += 4
			et = binary.BigEndian.Uint16(b[off:])
		}
	}
	off += 2
	p.EthType, p.L3 = et, uint16(off)
	return ParseOK
}

// Parse walks frame b (whole length pktLen; b may be only its head) and
// fills p. Headers that do not fit in b are ErrTruncated; lengths that
// disagree with pktLen are malformed. A frame that is neither IPv4, IPv6
// nor ARP parses with only the L2 fields set.
func Parse(b []byte, pktLen int, p *Parsed) ParseErr {
	if e := ParseL2(b, p); e != ParseOK {
		return e
	}
	off, et := int(p.L3), p.EthType
	switch et {
	case EtherTypeIPv4:
		return parseIPv4(b, off, pktLen, p)
	case EtherTypeIPv6:
		return parseIPv6(b, off, pktLen, p)
	case EtherTypeARP:
		a := ARP(b[off:])
		if len(a) < ARPLen {
			return ErrTruncated
		}
		if a.IsValid() {
			copy(p.Src[:4], a[14:18])
			copy(p.Dst[:4], a[24:28])
		}
	}
	return ParseOK
}

func parseIPv4(b []byte, off, pktLen int, p *Parsed) ParseErr {
	if len(b) < off+IPv4MinLen {
		return ErrTruncated
	}
	ip := IPv4(b[off:])
	hl := ip.HeaderLen()
	if ip[0]>>4 != 4 || hl < IPv4MinLen || int(ip.TotalLen()) < hl || off+int(ip.TotalLen()) > pktLen {
		return ErrBadIPv4
	}
	if len(b) < off+hl {
		return ErrTruncated
	}
	p.Proto, p.TTL = ip.Protocol(), ip.TTL()
	copy(p.Src[:4], ip[12:16])
	copy(p.Dst[:4], ip[16:20])
	if ip.FragOffset() != 0 {
		p.Frag = FragLater
		return ParseOK
	}
	if ip.MoreFragments() {
		p.Frag = FragFirst
	}
	return parseL4(b, off+hl, off+int(ip.TotalLen()), p)
}

func parseIPv6(b []byte, off, pktLen int, p *Parsed) ParseErr {
	if len(b) < off+IPv6Len {
		return ErrTruncated
	}
	ip := IPv6(b[off:])
	end := off + IPv6Len + int(ip.PayloadLen())
	if ip[0]>>4 != 6 || end > pktLen {
		return ErrBadIPv6
	}
	p.TTL = ip.HopLimit()
	copy(p.Src[:], ip[8:24])
	copy(p.Dst[:], ip[24:40])
	nh := ip.NextHeader()
	l4 := off + IPv6Len
	for i := 0; ; i++ {
		switch nh {
		case 0, 43, 60: // hop-by-hop, routing, destination options
			if i == maxExtHeaders {
				return ErrExtHeaders
			}
			if len(b) < l4+8 {
				return ErrTruncated
			}
			n := (int(b[l4+1]) + 1) * 8
			if l4+n > end {
				return ErrExtHeaders
			}
			nh = b[l4]
			l4 += n
			continue
		case 44: // fragment
			if i == maxExtHeaders {
				return ErrExtHeaders
			}
			if len(b) < l4+8 {
				return ErrTruncated
			}
			if l4+8 > end {
				return ErrExtHeaders
			}
			fo := binary.BigEndian.Uint16(b[l4+2:])
			nh = b[l4]
			l4 += 8
			if fo&0xfff8 != 0 {
				p.Proto, p.Frag = nh, FragLater
				return ParseOK
			}
			if fo&1 != 0 {
				p.Frag = FragFirst
			}
			continue
		}
		break
	}
	p.Proto = nh
	return parseL4(b, l4, end, p)
}

// parseL4 reads the transport header at off of an IP packet ending at end.
func parseL4(b []byte, off, end int, p *Parsed) ParseErr {
	need := 0
	switch p.Proto {
	case ProtoTCP:
		need = TCPMinLen
	case ProtoUDP:
		need = UDPLen
	case ProtoICMP, ProtoICMPv6:
		need = ICMPLen
	default:
		p.L4 = uint16(off)
		return ParseOK
	}
	if off+need > end {
		if p.Frag == FragFirst {
			return ParseOK // a tiny first fragment: matched on L3 only
		}
		return ErrBadL4
	}
	if len(b) < off+need {
		return ErrTruncated
	}
	p.L4 = uint16(off)
	switch p.Proto {
	case ProtoTCP:
		t := TCP(b[off:])
		if t.DataOffset() < TCPMinLen || off+t.DataOffset() > end {
			return ErrBadL4
		}
		p.SrcPort, p.DstPort, p.TCPFlags = t.SrcPort(), t.DstPort(), t.Flags()
	case ProtoUDP:
		u := UDP(b[off:])
		p.SrcPort, p.DstPort = u.SrcPort(), u.DstPort()
	default:
		c := ICMP(b[off:])
		p.ICMPType, p.ICMPCode = c.Type(), c.Code()
		if IsEcho(p.Proto, p.ICMPType) {
			p.SrcPort, p.DstPort = c.Ident(), c.Ident()
		}
	}
	return ParseOK
}

// IsEcho says whether an ICMP type is an echo request or reply.
func IsEcho(proto, typ uint8) bool {
	if proto == ProtoICMP {
		return typ == ICMPv4Echo || typ == ICMPv4EchoReply
	}
	return typ == ICMPv6EchoRequest || typ == ICMPv6EchoReply
}
