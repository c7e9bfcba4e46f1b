package acl

import (
	"encoding/binary"

	"github.com/vswitch/vswitch/switch/header"
)

// Limits of the offending packet quoted in an ICMP error: the reply fits
// the minimum MTU (RFC 1812 4.3.2.3: 576; RFC 4443 2.4(c): 1280).
const (
	maxICMPv4Reply = 576
	maxICMPv6Reply = 1280
)

// BuildReject writes into buf the reply that rejects frame (parsed as p):
// a TCP RST for TCP, else an ICMP "administratively prohibited"
// unreachable (v4 type 3 code 13, v6 type 1 code 1). Addresses and ports
// are swapped, VLAN tags kept. It returns the reply's length, or 0 when
// no reply is due (RSTs, ICMP errors, later fragments, multicast or
// broadcast sources and destinations, non-IP) or buf is too small.
// frame may be only the headers; the ICMP quote takes what it holds.
func BuildReject(buf, frame []byte, p *header.Parsed) int {
	l3 := int(p.L3)
	if l3 < header.EthernetLen || len(frame) < l3 || frame[6]&1 != 0 || p.Frag == header.FragLater {
		return 0
	}
	tcp := p.Proto == header.ProtoTCP && p.L4 != 0
	if tcp && (p.TCPFlags&header.TCPRst != 0 || len(frame) < int(p.L4)+header.TCPMinLen) {
		return 0
	}
	var n int
	switch p.EthType {
	case header.EtherTypeIPv4:
		if len(frame) < l3+header.IPv4MinLen || p.Dst[0] >= 224 || p.Src[0] >= 224 ||
			p.Proto == header.ProtoICMP && (p.L4 == 0 || header.IsICMPv4Error(p.ICMPType)) {
			return 0
		}
		n = rejectV4(buf, frame, p, tcp)
	case header.EtherTypeIPv6:
		if len(frame) < l3+header.IPv6Len || p.Dst[0] == 0xff || p.Src[0] == 0xff ||
			p.Proto == header.ProtoICMPv6 && (p.L4 == 0 || header.IsICMPv6Error(p.ICMPType) ||
				p.ICMPType >= header.ICMPv6RouterSolicit && p.ICMPType <= 137) {
			return 0
		}
		n = rejectV6(buf, frame, p, tcp)
	default:
		return 0
	}
	if n == 0 {
		return 0
	}
	copy(buf[:l3], frame[:l3])
	copy(buf[0:6], frame[6:12])
	copy(buf[6:12], frame[0:6])
	return n
}

// tcpRST writes the RST answering the TCP header t of a segment carrying
// payload bytes (RFC 9293 3.10.7.1: seq from the ACK if there is one,
// else acknowledge what the segment occupied).
func tcpRST(out, t []byte, payload int) {
	in := header.TCP(t)
	binary.BigEndian.PutUint16(out[0:2], in.DstPort())
	binary.BigEndian.PutUint16(out[2:4], in.SrcPort())
	clear(out[4:header.TCPMinLen])
	out[12] = 5 << 4
	if in.Flags()&header.TCPAck != 0 {
		binary.BigEndian.PutUint32(out[4:8], in.Ack())
		out[13] = header.TCPRst
		return
	}
	seg := uint32(payload)
	if in.Flags()&header.TCPSyn != 0 {
		seg++
	}
	if in.Flags()&header.TCPFin != 0 {
		seg++
	}
	binary.BigEndian.PutUint32(out[8:12], in.Seq()+seg)
	out[13] = header.TCPRst | header.TCPAck
}

func rejectV4(buf, frame []byte, p *header.Parsed, tcp bool) int {
	l3 := int(p.L3)
	in := header.IPv4(frame[l3:])
	hl, tl := in.HeaderLen(), int(in.TotalLen())
	var l4len int
	if tcp {
		l4len = header.TCPMinLen
	} else {
		l4len = header.ICMPLen + min(tl, len(frame)-l3, maxICMPv4Reply-header.IPv4MinLen-header.ICMPLen)
	}
	total := header.IPv4MinLen + l4len
	if len(buf) < l3+total {
		return 0
	}
	ip := header.IPv4(buf[l3 : l3+header.IPv4MinLen])
	ip[0], ip[1] = 0x45, 0
	ip.SetTotalLen(uint16(total))
	binary.BigEndian.PutUint32(ip[4:8], 0x4000) // id 0, DF
	ip[8], ip[9] = 64, header.ProtoTCP
	if !tcp {
		ip[9] = header.ProtoICMP
	}
	copy(ip[12:16], in[16:20])
	copy(ip[16:20], in[12:16])
	ip.SetChecksum(0)
	ip.SetChecksum(ip.ComputeChecksum())
	l4 := buf[l3+header.IPv4MinLen : l3+total]
	if tcp {
		t := frame[p.L4:]
		tcpRST(l4, t, tl-hl-header.TCP(t).DataOffset())
		s := header.PseudoV4(ip[12:16], ip[16:20], header.ProtoTCP, header.TCPMinLen)
		header.TCP(l4).SetChecksum(header.Checksum(l4, s))
		return l3 + total
	}
	l4[0], l4[1] = header.ICMPv4DestUnreach, 13 // communication administratively prohibited
	clear(l4[2:header.ICMPLen])
	copy(l4[header.ICMPLen:], frame[l3:])
	header.ICMP(l4).SetChecksum(header.Checksum(l4, 0))
	return l3 + total
}

func rejectV6(buf, frame []byte, p *header.Parsed, tcp bool) int {
	l3 := int(p.L3)
	in := header.IPv6(frame[l3:])
	pl := int(in.PayloadLen())
	var l4len int
	if tcp {
		l4len = header.TCPMinLen
	} else {
		l4len = header.ICMPLen + min(header.IPv6Len+pl, len(frame)-l3, maxICMPv6Reply-header.IPv6Len-header.ICMPLen)
	}
	if len(buf) < l3+header.IPv6Len+l4len {
		return 0
	}
	ip := header.IPv6(buf[l3 : l3+header.IPv6Len])
	binary.BigEndian.PutUint32(ip[0:4], 6<<28)
	ip.SetPayloadLen(uint16(l4len))
	ip[6], ip[7] = header.ProtoTCP, 64
	if !tcp {
		ip[6] = header.ProtoICMPv6
	}
	copy(ip[8:24], in[24:40])
	copy(ip[24:40], in[8:24])
	l4 := buf[l3+header.IPv6Len : l3+header.IPv6Len+l4len]
	if tcp {
		t := frame[p.L4:]
		// The payload after any extension headers.
		tcpRST(l4, t, l3+header.IPv6Len+pl-int(p.L4)-header.TCP(t).DataOffset())
		s := header.PseudoV6(ip[8:24], ip[24:40], header.ProtoTCP, header.TCPMinLen)
		header.TCP(l4).SetChecksum(header.Checksum(l4, s))
		return l3 + header.IPv6Len + l4len
	}
	l4[0], l4[1] = header.ICMPv6DestUnreach, 1 // communication administratively prohibited
	clear(l4[2:header.ICMPLen])
	copy(l4[header.ICMPLen:], frame[l3:])
	s := header.PseudoV6(ip[8:24], ip[24:40], header.ProtoICMPv6, l4len)
	header.ICMP(l4).SetChecksum(header.Checksum(l4, s))
	return l3 + header.IPv6Len + l4len
}
