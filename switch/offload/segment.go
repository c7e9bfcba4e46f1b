package offload

import (
	"encoding/binary"

	"github.com/vswitch/vswitch/switch/header"
)

// TCP flags that segmentation touches.
const (
	tcpFIN = 0x01
	tcpPSH = 0x08
	tcpCWR = 0x80
)

// Segments is how many frames a GSO frame of frameLen bytes becomes.
func (m *Meta) Segments(frameLen int) int {
	if m.GSO == GSONone {
		return 1
	}
	pay := frameLen - int(m.HdrLen)
	return (pay + int(m.GSOSize) - 1) / int(m.GSOSize)
}

// SegPayload is where segment i's payload lies in the GSO frame: offset
// and length.
func (m *Meta) SegPayload(frameLen, i int) (off, n int) {
	off = int(m.HdrLen) + i*int(m.GSOSize)
	return off, min(int(m.GSOSize), frameLen-off)
}

// SegHeader writes the headers of segment i of the GSO frame head ++ segs
// (frameLen bytes) into dst, which holds m.HdrLen bytes, the way Linux's
// tcp_gso_segment cuts one: the IP length and (IPv4) an ID that grows by
// one per segment with its header checksum, the TCP sequence number
// advanced by the payload before it, CWR only on the first segment,
// FIN and PSH only on the last, and the TCP checksum over the segment's
// payload, which is read from head and segs and not copied here.
func (m *Meta) SegHeader(dst, head []byte, segs [][]byte, frameLen, i int) {
	hl := int(m.HdrLen)
	dst = dst[:hl]
	copy(dst, head[:hl])
	off, n := m.SegPayload(frameLen, i)
	l3, l4 := int(m.L3), int(m.CsumStart)
	tcpLen := hl - l4 + n
	var pseudo uint32
	if m.GSO&^GSOECN == GSOTCPv4 {
		ip := header.IPv4(dst[l3:])
		ip.SetTotalLen(uint16(hl - l3 + n))
		binary.BigEndian.PutUint16(ip[4:6], ip.ID()+uint16(i))
		ip.SetChecksum(ip.ComputeChecksum())
		pseudo = header.PseudoV4(ip[12:16], ip[16:20], header.ProtoTCP, tcpLen)
	} else {
		ip := header.IPv6(dst[l3:])
		ip.SetPayloadLen(uint16(hl - l3 - header.IPv6Len + n))
		pseudo = header.PseudoV6(ip[8:24], ip[24:40], header.ProtoTCP, tcpLen)
	}
	t := header.TCP(dst[l4:])
	binary.BigEndian.PutUint32(t[4:8], t.Seq()+uint32(i)*uint32(m.GSOSize))
	if i > 0 {
		t[13] &^= tcpCWR
	}
	if off+n < frameLen {
		t[13] &^= tcpFIN | tcpPSH
	}
	t.SetChecksum(0)
	s := header.Sum(t, pseudo)
	s = uint32(header.Fold(s)) + SumRange(head, segs, off, n)
	t.SetChecksum(^header.Fold(s))
}
