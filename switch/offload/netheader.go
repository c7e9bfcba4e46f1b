// Package offload handles what the virtio-net header asks of the switch
// (virtio 1.2, 5.1.6): a checksum left partial by the sender
// (NEEDS_CSUM with csum_start/csum_offset) and TCP segmentation (gso_type
// TCPV4/TCPV6, gso_size). Check validates a sender's header against its
// frame; a receiver that cannot take a request gets the work done in
// software: Complete finishes a partial checksum, Segment builds the
// headers of each MSS-sized frame of a large TCP segment. Frames are a
// head (the switch's own copy of the first bytes, holding every header)
// followed by the sender's buffers, which are only read.
package offload

import (
	"encoding/binary"

	"github.com/vswitch/vswitch/switch/header"
)

// virtio_net_hdr flags and gso_type values.
const (
	FlagNeedsCsum = 1
	FlagDataValid = 2

	GSONone  = 0
	GSOTCPv4 = 1
	GSOUDP   = 3 // UFO: never offered
	GSOTCPv6 = 4
	GSOECN   = 0x80
)

// Caps are what a receiver negotiated, from its feature bits.
type Caps uint8

const (
	CapCsum Caps = 1 << iota // GUEST_CSUM: takes partial checksums
	CapTSO4                  // GUEST_TSO4
	CapTSO6                  // GUEST_TSO6
	CapECN                   // GUEST_ECN: TSO frames with CWR
)

// MaxSegments bounds the frames one TCP segment becomes in software. It
// means an MSS of at least 256 for a 64 KiB segment; a sender asking for
// more is refused rather than multiplying its frames unboundedly.
const MaxSegments = 256

// Meta is a validated offload request carried with a packet. It holds no
// pointers; the zero value is a complete frame with nothing to do.
type Meta struct {
	CsumStart  uint16 // with FlagNeedsCsum: sum from here to the end
	CsumOffset uint16 // and store the result at CsumStart+CsumOffset
	GSOSize    uint16 // MSS: payload bytes per segment
	HdrLen     uint16 // Ethernet+IP+TCP header bytes of a GSO frame
	L3         uint16 // IP header offset of a GSO frame
	Flags      uint8  // FlagNeedsCsum or 0
	GSO        uint8  // GSOTCPv4 or GSOTCPv6, with GSOECN; GSONone
}

// Hdr is a decoded virtio_net_hdr.
type Hdr struct {
	Flags, GSOType                         uint8
	HdrLen, GSOSize, CsumStart, CsumOffset uint16
}

// DecodeHdr reads the first 10 bytes of a virtio_net_hdr.
func DecodeHdr(b []byte) Hdr {
	_ = b[9]
	return Hdr{Flags: b[0], GSOType: b[1],
		HdrLen:     binary.LittleEndian.Uint16(b[2:]),
		GSOSize:    binary.LittleEndian.Uint16(b[4:]),
		CsumStart:  binary.LittleEndian.Uint16(b[6:]),
		CsumOffset: binary.LittleEndian.Uint16(b[8:])}
}

// Sender says which requests a sending guest may make: HOST_TSO4,
// HOST_TSO6, HOST_ECN as negotiated (CSUM is implied by any use of Check).
type Sender struct{ TSO4, TSO6, ECN bool }

// Check validates h, the header a guest sent with a frame of frameLen
// bytes whose first len(head) bytes are in head, and returns what the
// switch must honour. A header that does not describe the frame (offsets
// outside it, a TCP segmentation request on a frame that is not TCP, a
// gso_size of 0, UFO) is refused: ok is false and the frame is dropped.
// The sender's hdr_len is only a hint (virtio 1.2, 5.1.6.2.1); the header
// length is computed from the frame.
func Check(h Hdr, s Sender, head []byte, frameLen int) (m Meta, ok bool) {
	if h.Flags&FlagNeedsCsum != 0 {
		end := int(h.CsumStart) + int(h.CsumOffset) + 2
		// The checksum field must lie in the switch's copy: completing it
		// never writes into the sender's memory.
		if int(h.CsumStart) >= frameLen || end > len(head) || end > frameLen {
			return Meta{}, false
		}
		m.Flags, m.CsumStart, m.CsumOffset = FlagNeedsCsum, h.CsumStart, h.CsumOffset
	}
	switch h.GSOType &^ GSOECN {
	case GSONone:
		if h.GSOType&GSOECN != 0 {
			return Meta{}, false
		}
		return m, true
	case GSOTCPv4:
		if !s.TSO4 {
			return Meta{}, false
		}
	case GSOTCPv6:
		if !s.TSO6 {
			return Meta{}, false
		}
	default: // UFO and USO were not offered
		return Meta{}, false
	}
	if h.GSOType&GSOECN != 0 && !s.ECN {
		return Meta{}, false
	}
	if m.Flags == 0 || h.GSOSize == 0 {
		return Meta{}, false
	}
	var p header.Parsed
	if header.Parse(head, frameLen, &p) != header.ParseOK || p.Proto != header.ProtoTCP || p.Frag != 0 || p.L4 == 0 {
		return Meta{}, false
	}
	var ipEnd int
	switch {
	case h.GSOType&^GSOECN == GSOTCPv4 && p.EthType == header.EtherTypeIPv4:
		ipEnd = int(p.L3) + int(header.IPv4(head[p.L3:]).TotalLen())
	case h.GSOType&^GSOECN == GSOTCPv6 && p.EthType == header.EtherTypeIPv6:
		ipEnd = int(p.L3) + header.IPv6Len + int(header.IPv6(head[p.L3:]).PayloadLen())
	default:
		return Meta{}, false
	}
	if int(h.CsumStart) != int(p.L4) || h.CsumOffset != 16 {
		return Meta{}, false
	}
	hl := int(p.L4) + header.TCP(head[p.L4:]).DataOffset()
	// Every segment gets a copy of the headers, so they must all be in
	// head; the IP length must end the frame (no trailer to replicate).
	if hl > len(head) || hl >= frameLen || ipEnd != frameLen {
		return Meta{}, false
	}
	if (frameLen-hl+int(h.GSOSize)-1)/int(h.GSOSize) > MaxSegments {
		return Meta{}, false
	}
	m.GSO, m.GSOSize, m.HdrLen, m.L3 = h.GSOType, h.GSOSize, uint16(hl), p.L3
	return m, true
}

// Need is what a receiver with caps needs done to a frame carrying m.
type Need uint8

const (
	PassThrough  Need = iota // nothing, or the receiver finishes it
	CompleteCsum             // finish the checksum, then send whole
	Segment                  // segment in software
)

// For says what a receiver with caps needs done.
func (m *Meta) For(c Caps) Need {
	if m.GSO != GSONone {
		ok := c&CapCsum != 0
		switch m.GSO &^ GSOECN {
		case GSOTCPv4:
			ok = ok && c&CapTSO4 != 0
		default:
			ok = ok && c&CapTSO6 != 0
		}
		if m.GSO&GSOECN != 0 && c&CapECN == 0 {
			ok = false
		}
		if ok {
			return PassThrough
		}
		return Segment
	}
	if m.Flags&FlagNeedsCsum != 0 && c&CapCsum == 0 {
		return CompleteCsum
	}
	return PassThrough
}

// SegLen is the length of the frames a GSO frame is cut into (the
// largest, all but the last): what a receiver's MTU is checked against.
func (m *Meta) SegLen(frameLen int) int {
	if m.GSO == GSONone {
		return frameLen
	}
	return min(frameLen, int(m.HdrLen)+int(m.GSOSize))
}

// PutHdr writes the first 10 bytes of a virtio_net_hdr into b: m's
// request when pass is set (the receiver takes it), else none.
func PutHdr(b []byte, m *Meta, pass bool) {
	_ = b[9]
	if !pass || m.Flags == 0 {
		binary.LittleEndian.PutUint64(b[0:8], 0)
		binary.LittleEndian.PutUint16(b[8:10], 0)
		return
	}
	b[0], b[1] = m.Flags, m.GSO
	binary.LittleEndian.PutUint16(b[2:], m.HdrLen)
	binary.LittleEndian.PutUint16(b[4:], m.GSOSize)
	binary.LittleEndian.PutUint16(b[6:], m.CsumStart)
	binary.LittleEndian.PutUint16(b[8:], m.CsumOffset)
}

// Shift moves the frame offsets by d bytes, for a VLAN tag pushed (4) or
// popped (-4) in front of the L3 header.
func (m *Meta) Shift(d int) {
	if m.Flags == 0 && m.GSO == GSONone {
		return
	}
	m.CsumStart = uint16(int(m.CsumStart) + d)
	m.L3 = uint16(int(m.L3) + d)
	if m.HdrLen != 0 {
		m.HdrLen = uint16(int(m.HdrLen) + d)
	}
}
