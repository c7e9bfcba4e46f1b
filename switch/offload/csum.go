package offload

import (
	"encoding/binary"

	"github.com/vswitch/vswitch/switch/header"
)

// SumRange is the unfolded Internet checksum sum of bytes [off, off+n) of
// the frame head ++ segs[0] ++ segs[1] ... A piece that starts at an odd
// position of the range is summed byte-swapped (RFC 1071, 2(B)).
func SumRange(head []byte, segs [][]byte, off, n int) uint32 {
	var s uint64
	pos := 0
	add := func(b []byte) {
		if off >= len(b) {
			off -= len(b)
			return
		}
		b = b[off:]
		off = 0
		if len(b) > n-pos {
			b = b[:n-pos]
		}
		v := uint32(header.Fold(header.Sum(b, 0)))
		if pos&1 == 1 {
			v = v>>8 | (v&0xff)<<8
		}
		s += uint64(v)
		pos += len(b)
	}
	add(head)
	for i := 0; i < len(segs) && pos < n; i++ {
		add(segs[i])
	}
	for s>>32 != 0 {
		s = s&0xffffffff + s>>32
	}
	return uint32(s)
}

// Complete finishes the partial checksum m asks for, over the frame of
// frameLen bytes (head ++ segs), and stores it in head. The field holds
// the pseudo-header sum the sender put there; a zero result is sent as
// 0xffff as Linux does (for UDP, 0 would mean no checksum). It clears the
// request, so a frame sent to several ports is summed once.
func Complete(m *Meta, head []byte, segs [][]byte, frameLen int) {
	if m.Flags&FlagNeedsCsum == 0 {
		return
	}
	start := int(m.CsumStart)
	c := ^header.Fold(SumRange(head, segs, start, frameLen-start))
	if c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(head[start+int(m.CsumOffset):], c)
	m.Flags &^= FlagNeedsCsum
}

// CopyRange copies bytes [off, off+len(dst)) of head ++ segs into dst and
// returns how many it copied.
func CopyRange(dst, head []byte, segs [][]byte, off int) int {
	n := 0
	if off < len(head) {
		n = copy(dst, head[off:])
		off = 0
	} else {
		off -= len(head)
	}
	for i := 0; i < len(segs) && n < len(dst); i++ {
		if off >= len(segs[i]) {
			off -= len(segs[i])
			continue
		}
		n += copy(dst[n:], segs[i][off:])
		off = 0
	}
	return n
}
