// Package vswitch is the data plane: packet batches, ports, the L2 bridge
// and the polling workers that move batches between ports. (The folder is
// "switch", a Go keyword, hence the package name.)
package vswitch

import (
	"sync/atomic"

	"github.com/vswitch/vswitch/switch/offload"
	"github.com/vswitch/vswitch/virtio"
)

// BatchSize is how many packets a worker takes from one queue per turn.
const BatchSize = 64

// HeadLen is how many leading bytes of a packet are copied out of the
// sender's memory. Every forwarding decision is made on that copy, which a
// guest cannot rewrite under us; the copy is then what the receiver gets
// for those bytes, so payload bytes are still copied only once.
const HeadLen = 128

// EthHdrLen is the smallest frame we forward.
const EthHdrLen = 14

// MaxPorts bounds the ports of one switch.
const MaxPorts = 1024

// Packet is one frame in a batch. Its first NHead bytes live in Head; the
// rest stays in the sender's buffers (Segs) until the batch is released.
type Packet struct {
	Len   int // frame length, without any virtio-net header
	NHead int
	NSegs int
	desc  uint16 // the sender's descriptor head, returned on release
	local bool   // made by the switch (RARP): nothing to release
	// Off is what the sender's virtio-net header asked for (a partial
	// checksum, TCP segmentation), validated; zero for complete frames.
	Off  offload.Meta
	Head [HeadLen]byte
	Segs [virtio.MaxSegs][]byte
}

// Batch is a worker's batch of packets from one input queue.
type Batch struct {
	N       int
	InPort  uint16
	InQueue int                 // the input port's queue the packets came from
	srcQ    *virtio.SplitQueue  // the queue the packets came from (vhost-user, split)
	srcPQ   *virtio.PackedQueue // or (packed)
	Pkts    [BatchSize]Packet
}

// DropReason says why a packet was dropped. Every drop is counted with one.
type DropReason uint8

// Drop reasons. The first virtio.NumChainErrs mirror virtio.ChainErr: a
// descriptor chain the guest got wrong.
const (
	DropRunt DropReason = DropReason(virtio.NumChainErrs) + iota
	DropAvailCorrupt
	DropInvalidSrcMAC
	DropHairpin
	DropNoOutput
	DropPortDown
	DropNoRxBuffer
	DropRxBufferTooSmall
	DropPortFault
	DropFrameTooLarge
	DropNoTxFrame // an AF_XDP port's TX ring or transmit frames are all in use
	DropBadOffload
	NumDropReasons
)

var dropNames = [NumDropReasons]string{
	DropRunt:             "frame_too_short",
	DropAvailCorrupt:     "avail_index_corrupt",
	DropInvalidSrcMAC:    "invalid_source_mac",
	DropHairpin:          "destination_is_input_port",
	DropNoOutput:         "no_output_port",
	DropPortDown:         "output_port_down",
	DropNoRxBuffer:       "no_guest_rx_buffer",
	DropRxBufferTooSmall: "guest_rx_buffer_too_small",
	DropPortFault:        "port_memory_fault",
	DropFrameTooLarge:    "frame_exceeds_mtu",
	DropNoTxFrame:        "no_tx_frame",
	DropBadOffload:       "bad_offload_header",
}

func init() {
	for e := virtio.ChainErr(1); e < virtio.NumChainErrs; e++ {
		dropNames[e] = e.String()
	}
}

func (r DropReason) String() string {
	if r < NumDropReasons && dropNames[r] != "" {
		return dropNames[r]
	}
	return "unknown"
}

// PortCounters are one port's counters. Workers add once per batch.
type PortCounters struct {
	RxPackets atomic.Uint64
	RxBytes   atomic.Uint64
	TxPackets atomic.Uint64
	TxBytes   atomic.Uint64
	Drops     [NumDropReasons]atomic.Uint64
}

// DropMap returns the non-zero drop counters by reason name.
func (c *PortCounters) DropMap() map[string]uint64 {
	m := map[string]uint64{}
	for r := DropReason(1); r < NumDropReasons; r++ {
		if v := c.Drops[r].Load(); v != 0 {
			m[r.String()] = v
		}
	}
	return m
}

// TotalDrops sums every drop counter.
func (c *PortCounters) TotalDrops() uint64 {
	var t uint64
	for r := range c.Drops {
		t += c.Drops[r].Load()
	}
	return t
}
