// Package nat is connection tracking and network address translation as
// pipeline stages: a connection table shared by every worker (lock-free
// lookups, per-shard locks for inserts and deletes), TCP state and window
// tracking, UDP/ICMP timeouts, ICMP errors matched to their connection, and
// SNAT/DNAT/port forwarding/hairpin applied per connection with incremental
// checksum updates. Stages are methods on a per-worker Worker over a batch
// of frame heads and their header.Parsed; nothing allocates per packet.
package nat

import (
	"encoding/binary"
	"math/bits"

	"github.com/vswitch/vswitch/switch/header"
)

// key is a connection key packed into five words so the table can store
// and compare it with atomic loads: source address (w0,w1), destination
// address (w2,w3), then sport<<48 | dport<<32 | zone<<16 | proto<<8 | flags.
type key [5]uint64

// Key flags (low byte of w4).
const (
	keyV6      = 1 << 0
	keyEchoReq = 1 << 1 // ICMP echo request: the id is in sport
	keyEchoRep = 1 << 2 // ICMP echo reply: the id is in dport
)

// Key is the unpacked form of a connection key, for tests and the API.
type Key struct {
	Src, Dst         [16]byte // IPv4 in the first 4 bytes
	SrcPort, DstPort uint16
	Zone             uint16
	Proto            uint8
	V6               bool
}

func (k *key) sport() uint16 { return uint16(k[4] >> 48) }
func (k *key) dport() uint16 { return uint16(k[4] >> 32) }
func (k *key) zone() uint16  { return uint16(k[4] >> 16) }
func (k *key) proto() uint8  { return uint8(k[4] >> 8) }
func (k *key) flags() uint8  { return uint8(k[4]) }
func (k *key) v6() bool      { return k[4]&keyV6 != 0 }

func (k *key) setPorts(sp, dp uint16) {
	k[4] = uint64(sp)<<48 | uint64(dp)<<32 | k[4]&0xffffffff
}

// src and dst return the addresses as 16 bytes (IPv4 in the first 4).
func (k *key) src() (a [16]byte) {
	binary.BigEndian.PutUint64(a[0:], k[0])
	binary.BigEndian.PutUint64(a[8:], k[1])
	return a
}

func (k *key) dst() (a [16]byte) {
	binary.BigEndian.PutUint64(a[0:], k[2])
	binary.BigEndian.PutUint64(a[8:], k[3])
	return a
}

func (k *key) setSrc(a *[16]byte) {
	k[0], k[1] = binary.BigEndian.Uint64(a[0:]), binary.BigEndian.Uint64(a[8:])
}

func (k *key) setDst(a *[16]byte) {
	k[2], k[3] = binary.BigEndian.Uint64(a[0:]), binary.BigEndian.Uint64(a[8:])
}

// Unpack returns the readable form.
func (k *key) Unpack() Key {
	return Key{Src: k.src(), Dst: k.dst(), SrcPort: k.sport(), DstPort: k.dport(),
		Zone: k.zone(), Proto: k.proto(), V6: k.v6()}
}

// reverse is the key of the other direction: addresses and ports swapped,
// an echo request becomes an echo reply.
func (k *key) reverse() key {
	f := k.flags() &^ (keyEchoReq | keyEchoRep)
	if k.flags()&keyEchoReq != 0 {
		f |= keyEchoRep
	}
	if k.flags()&keyEchoRep != 0 {
		f |= keyEchoReq
	}
	return key{k[2], k[3], k[0], k[1],
		uint64(k.dport())<<48 | uint64(k.sport())<<32 | k[4]&0xffff0000 | uint64(k.proto())<<8 | uint64(f)}
}

func makeW4(sp, dp, zone uint16, proto, flags uint8) uint64 {
	return uint64(sp)<<48 | uint64(dp)<<32 | uint64(zone)<<16 | uint64(proto)<<8 | uint64(flags)
}

// keyKind says how a packet relates to conntrack.
type keyKind uint8

const (
	kindTracked   keyKind = iota // a connection packet: key filled
	kindUntracked                // not conntrack's business (non-IP, ND, other ICMP)
	kindICMPError                // an ICMP error: the key is the embedded packet's, reversed
	kindInvalid                  // malformed for conntrack
	kindFragment                 // a non-first fragment: no ports to track by
)

// packetKey builds the key of a parsed packet. For an ICMP error it builds
// the key of the embedded packet, reversed, which is the key of the
// direction the error travels in.
func packetKey(b []byte, p *header.Parsed, zone uint16, k *key) keyKind {
	var fl uint8
	switch p.EthType {
	case header.EtherTypeIPv4:
	case header.EtherTypeIPv6:
		fl = keyV6
	default:
		return kindUntracked
	}
	if p.Frag == header.FragLater {
		return kindFragment
	}
	k.setSrc(&p.Src)
	k.setDst(&p.Dst)
	sp, dp := p.SrcPort, p.DstPort
	switch p.Proto {
	case header.ProtoTCP, header.ProtoUDP:
		if p.L4 == 0 {
			return kindFragment // a first fragment too short for its ports
		}
	case header.ProtoICMP, header.ProtoICMPv6:
		if p.L4 == 0 || (p.Proto == header.ProtoICMP) == (fl == keyV6) {
			return kindInvalid
		}
		switch {
		case p.Proto == header.ProtoICMP && (p.ICMPType == header.ICMPv4Echo),
			p.Proto == header.ProtoICMPv6 && p.ICMPType == header.ICMPv6EchoRequest:
			fl |= keyEchoReq
			dp = 0
		case p.Proto == header.ProtoICMP && p.ICMPType == header.ICMPv4EchoReply,
			p.Proto == header.ProtoICMPv6 && p.ICMPType == header.ICMPv6EchoReply:
			fl |= keyEchoRep
			sp = 0
		case p.Proto == header.ProtoICMP && header.IsICMPv4Error(p.ICMPType),
			p.Proto == header.ProtoICMPv6 && header.IsICMPv6Error(p.ICMPType):
			return innerKey(b, p, zone, fl, k)
		default:
			return kindUntracked
		}
	default:
		sp, dp = 0, 0
	}
	k[4] = makeW4(sp, dp, zone, p.Proto, fl)
	return kindTracked
}

// innerKey reads the packet embedded in an ICMP error and stores the
// reverse of its key in k. The embedded packet must be whole up to its
// ports within the head b.
func innerKey(b []byte, p *header.Parsed, zone uint16, fl uint8, k *key) keyKind {
	b = b[:min(len(b), ipEnd(b, p))] // never read past the outer packet (padding)
	off := int(p.L4) + header.ICMPLen
	var proto uint8
	var l4 int
	if fl&keyV6 == 0 {
		if len(b) < off+header.IPv4MinLen {
			return kindInvalid
		}
		ip := header.IPv4(b[off:])
		hl := ip.HeaderLen()
		if ip[0]>>4 != 4 || hl < header.IPv4MinLen || ip.FragOffset() != 0 {
			return kindInvalid
		}
		proto, l4 = ip.Protocol(), off+hl
		k[0], k[1] = uint64(binary.BigEndian.Uint32(ip[12:16]))<<32, 0
		k[2], k[3] = uint64(binary.BigEndian.Uint32(ip[16:20]))<<32, 0
	} else {
		if len(b) < off+header.IPv6Len {
			return kindInvalid
		}
		ip := header.IPv6(b[off:])
		if ip[0]>>4 != 6 {
			return kindInvalid
		}
		// Extension headers in an embedded packet are not walked.
		proto, l4 = ip.NextHeader(), off+header.IPv6Len
		k[0], k[1] = binary.BigEndian.Uint64(ip[8:]), binary.BigEndian.Uint64(ip[16:])
		k[2], k[3] = binary.BigEndian.Uint64(ip[24:]), binary.BigEndian.Uint64(ip[32:])
	}
	if len(b) < l4+8 {
		return kindInvalid
	}
	var sp, dp uint16
	ifl := fl
	switch proto {
	case header.ProtoTCP, header.ProtoUDP:
		sp, dp = binary.BigEndian.Uint16(b[l4:]), binary.BigEndian.Uint16(b[l4+2:])
	case header.ProtoICMP, header.ProtoICMPv6:
		t := b[l4]
		id := binary.BigEndian.Uint16(b[l4+4:])
		switch {
		case t == header.ICMPv4Echo && proto == header.ProtoICMP,
			t == header.ICMPv6EchoRequest && proto == header.ProtoICMPv6:
			ifl |= keyEchoReq
			sp = id
		case t == header.ICMPv4EchoReply && proto == header.ProtoICMP,
			t == header.ICMPv6EchoReply && proto == header.ProtoICMPv6:
			ifl |= keyEchoRep
			dp = id
		default:
			return kindInvalid // an error about an error is never related
		}
	}
	k[4] = makeW4(sp, dp, zone, proto, ifl)
	*k = k.reverse()
	return kindICMPError
}

// hash mixes a key with the table's seed (wyhash-style multiply-fold). The
// low bits pick the bucket, the high 32 bits are the slot tag.
func hash(k *key, seed *[6]uint64) uint64 {
	a := mum(k[0]^seed[0], k[1]^seed[1])
	b := mum(k[2]^seed[2], k[3]^seed[3])
	c := mum(k[4]^seed[4], a^seed[5])
	h := mum(b^seed[5], c^seed[0])
	// splitmix64's finalizer: the bucket index takes the low bits.
	h = (h ^ h>>30) * 0xbf58476d1ce4e5b9
	h = (h ^ h>>27) * 0x94d049bb133111eb
	return h ^ h>>31
}

func mum(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	return hi ^ lo
}

// ipEnd is the offset just past the IP packet of a parsed frame.
func ipEnd(b []byte, p *header.Parsed) int {
	l3 := int(p.L3)
	if p.EthType == header.EtherTypeIPv4 {
		return l3 + int(header.IPv4(b[l3:]).TotalLen())
	}
	return l3 + header.IPv6Len + int(header.IPv6(b[l3:]).PayloadLen())
}
