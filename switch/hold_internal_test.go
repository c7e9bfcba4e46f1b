package vswitch

import (
	"bytes"
	"testing"

	"github.com/vswitch/vswitch/switch/header"
)

// The hold's byte ring: per-next-hop and total byte bounds, wrapping at
// its end once the oldest packets are gone, and frames intact.
func TestHoldQRing(t *testing.T) {
	q := newHoldQ()
	const rest = 60000
	frame := func(seq byte) *Packet {
		pkt := &Packet{Off: HeadRoom, NHead: HeadLen, Len: HeadLen + rest, NSegs: 1}
		for i := range pkt.Head {
			pkt.Head[i] = seq
		}
		pkt.Segs[0] = bytes.Repeat([]byte{seq}, rest)
		return pkt
	}
	hop := func(n byte) neighKey { return neighKey{rif: 1, ip: [16]byte{10, 20, 0, n}} }
	put := func(k neighKey, seq byte) bool {
		held, _ := q.put(k, 0, frame(seq), &header.Parsed{L3: 14}, 0, 0)
		return held
	}
	// 2 frames per next hop fit its byte bound, a third does not.
	if !put(hop(1), 1) || !put(hop(1), 2) || put(hop(1), 3) {
		t.Fatal("per-hop byte bound")
	}
	for n := byte(2); n <= 4; n++ {
		if !put(hop(n), 2*n+1) || !put(hop(n), 2*n+2) {
			t.Fatalf("hop %d refused", n)
		}
	}
	// 8 frames of 60128 bytes: a ninth is over the ring.
	if put(hop(5), 11) || !q.waiting(hop(1)) || q.waiting(hop(9)) {
		t.Fatal("total byte bound")
	}
	// Hop 1's frames leave; the next frame wraps to the ring's start.
	for j := 0; j < q.n; j++ {
		if hp := &q.pkts[(q.first+j)%holdMax]; hp.k == hop(1) {
			hp.gone = true
		}
	}
	q.hops[0] = q.hops[q.nhops-1]
	q.nhops--
	q.reclaim()
	if !put(hop(5), 11) {
		t.Fatal("no room after reclaim")
	}
	last := q.pkts[(q.first+q.n-1)%holdMax]
	if last.pos != 0 {
		t.Fatalf("wrapped frame at %d", last.pos)
	}
	for j := 0; j < q.n; j++ {
		hp := q.pkts[(q.first+j)%holdMax]
		if f := q.arena[hp.pos : hp.pos+hp.len]; hp.len != HeadLen+rest || !bytes.Equal(f, bytes.Repeat(f[:1], len(f))) {
			t.Fatalf("frame %d damaged", j)
		}
	}
	// Next hops are bounded too; one not tracked is still solicited.
	q = newHoldQ()
	small := &Packet{Off: HeadRoom, NHead: 60, Len: 60}
	for n := 0; n < holdHops; n++ {
		if held, ask := q.put(hop(byte(n)), 0, small, &header.Parsed{}, 0, 7); !held || !ask {
			t.Fatalf("hop %d: held %v ask %v", n, held, ask)
		}
	}
	if held, ask := q.put(hop(200), 0, small, &header.Parsed{}, 0, 7); held || !ask {
		t.Fatalf("hop past the bound: held %v ask %v", held, ask)
	}
	// A tracked next hop is asked once a second.
	if _, ask := q.put(hop(0), 0, small, &header.Parsed{}, 0, 7); ask {
		t.Fatal("asked twice in a second")
	}
	if _, ask := q.put(hop(0), 0, small, &header.Parsed{}, 0, 8); !ask {
		t.Fatal("not asked again a second later")
	}
}
