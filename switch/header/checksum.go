package header

import "encoding/binary"

// Sum adds b as big-endian 16-bit words to initial (RFC 1071), without
// folding; an odd last byte is padded with zero.
func Sum(b []byte, initial uint32) uint32 {
	s := uint64(initial)
	for len(b) >= 8 {
		v := binary.BigEndian.Uint64(b)
		s += v>>48 + (v>>32)&0xffff + (v>>16)&0xffff + v&0xffff
		b = b[8:]
	}
	for len(b) >= 2 {
		s += uint64(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		s += uint64(b[0]) << 8
	}
	for s>>32 != 0 {
		s = s&0xffffffff + s>>32
	}
	return uint32(s)
}

// Fold folds a 32-bit sum to 16 bits (not complemented).
func Fold(s uint32) uint16 {
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}

// Checksum is the Internet checksum of b starting from initial.
func Checksum(b []byte, initial uint32) uint16 { return ^Fold(Sum(b, initial)) }

// PseudoV4 is the unfolded sum of the IPv4 pseudo-header.
func PseudoV4(src, dst []byte, proto uint8, length int) uint32 {
	s := Sum(src[:4], 0)
	s = Sum(dst[:4], s)
	return s + uint32(proto) + uint32(length)
}

// PseudoV6 is the unfolded sum of the IPv6 pseudo-header.
func PseudoV6(src, dst []byte, proto uint8, length int) uint32 {
	s := Sum(src[:16], 0)
	s = Sum(dst[:16], s)
	return s + uint32(proto) + uint32(length>>16) + uint32(length&0xffff)
}

// Update16 patches checksum c for a 16-bit field changed from old to new
// (RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m')).
func Update16(c, old, new uint16) uint16 {
	s := uint32(^c) + uint32(^old) + uint32(new)
	return ^Fold(s)
}

// Update32 patches checksum c for a field of any even length changed from
// old to new (an IPv4 or IPv6 address, a port pair).
func Update32(c uint16, old, new []byte) uint16 {
	s := uint32(^c)
	for i := 0; i+1 < len(old); i += 2 {
		s += uint32(^binary.BigEndian.Uint16(old[i:])) & 0xffff
		s += uint32(binary.BigEndian.Uint16(new[i:]))
	}
	return ^Fold(s)
}
