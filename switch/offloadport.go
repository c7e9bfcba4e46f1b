package vswitch

import (
	"github.com/vswitch/vswitch/switch/offload"
	"github.com/vswitch/vswitch/vhostuser"
	"github.com/vswitch/vswitch/virtio"
)

// sender is what a guest may ask of the switch in its transmit headers.
type sender struct {
	on bool // CSUM negotiated: the header is read at all
	s  offload.Sender
}

func senderOf(st *vhostuser.State) sender {
	f := st.Features
	return sender{on: f&virtio.Bit(virtio.NetFCsum) != 0, s: offload.Sender{
		TSO4: f&virtio.Bit(virtio.NetFHostTSO4) != 0,
		TSO6: f&virtio.Bit(virtio.NetFHostTSO6) != 0,
		ECN:  f&virtio.Bit(virtio.NetFHostECN) != 0}}
}

// receiverCaps is what a guest that negotiated features f takes in its
// receive headers.
func receiverCaps(f uint64) offload.Caps {
	var c offload.Caps
	if f&virtio.Bit(virtio.NetFGuestCsum) != 0 {
		c |= offload.CapCsum
	}
	if f&virtio.Bit(virtio.NetFGuestTSO4) != 0 {
		c |= offload.CapTSO4
	}
	if f&virtio.Bit(virtio.NetFGuestTSO6) != 0 {
		c |= offload.CapTSO6
	}
	if f&virtio.Bit(virtio.NetFGuestECN) != 0 {
		c |= offload.CapECN
	}
	return c
}

// plan says how pkt goes to a receiver: as itself (whole; its header
// passes the offload request on), or as nf segments made in software
// (whole false). A partial checksum the receiver does not take is
// completed here, in the switch's copy of the head. nf is 0 when a frame
// (or a segment) exceeds the receiver's MTU, counted.
func (t *txTally) plan(pkt *Packet) (nf int, whole bool) {
	if m := &pkt.Offload; m.Flags|m.GSO == 0 && pkt.Len <= t.maxLen {
		return 1, true // no request: the frame goes as it is
	}
	if pkt.Offload.SegLen(pkt.Len) > t.maxLen {
		t.tooBig++
		return 0, true
	}
	switch pkt.Offload.For(t.caps) {
	case offload.CompleteCsum:
		offload.Complete(&pkt.Offload, pkt.HeadBytes(), pkt.Segs[:pkt.NSegs], pkt.Len)
	case offload.Segment:
		return pkt.Offload.Segments(pkt.Len), false
	}
	return 1, true
}

// segFrameLen is the length of segment s of a frame segmented in software.
func segFrameLen(pkt *Packet, s int) int {
	_, n := pkt.Offload.SegPayload(pkt.Len, s)
	return int(pkt.Offload.HdrLen) + n
}

// compact removes the refused packets from b.Pkts[first:b.N], keeping the
// order of the others, and returns the new b.N.
func compact(b *Batch, first int, refused *[BatchSize]bool) int {
	n := first
	for i := first; i < b.N; i++ {
		if refused[i] {
			continue
		}
		if n != i {
			b.Pkts[n] = b.Pkts[i]
		}
		n++
	}
	return n
}
