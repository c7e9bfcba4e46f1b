// Package vswitch is the data plane: packet batches, ports, the L2 bridge
// and the polling workers that move batches between ports. (The folder is
// "switch", a Go keyword, hence the package name.)
package vswitch

import (
	"sync/atomic"

	"github.com/vswitch/vswitch/acl"

	"github.com/vswitch/vswitch/switch/header"
	"github.com/vswitch/vswitch/switch/offload"
	"github.com/vswitch/vswitch/virtio"
)

// BatchSize is how many packets a worker takes from one queue per turn.
const BatchSize = 32

// HeadLen is how many leading bytes of a packet are copied out of the
// sender's memory. Every forwarding decision is made on that copy, which a
// guest cannot rewrite under us; the copy is then what the receiver gets
// for those bytes, so payload bytes are still copied only once.
const HeadLen = 128

// HeadRoom is the spare space in front of a packet's head copy: pushing an
// 802.1Q tag moves the 12 address bytes 4 bytes forward into it instead of
// shifting the whole head (or ever the payload).
const HeadRoom = 8

// EthHdrLen is the smallest frame we forward.
const EthHdrLen = 14

// MaxPorts bounds the ports of one switch.
const MaxPorts = 1024

// Packet is one frame in a batch. Its first NHead bytes live in
// Head[Off:]; the rest stays in the sender's buffers (Segs) until the batch
// is released. Ports receive into Head[HeadRoom:] and transmit HeadBytes.
type Packet struct {
	Len   int // frame length, without any virtio-net header
	NHead int
	Off   int // where the frame starts in Head
	NSegs int
	// Offload is what the sender's virtio-net header asked for (a partial
	// checksum, TCP segmentation), validated; zero for complete frames.
	// Its offsets count from the frame start (Head[Off]).
	Offload offload.Meta
	Head    [HeadRoom + HeadLen]byte
	Segs    [virtio.MaxSegs][]byte
}

// HeadBytes is the frame's head copy.
func (p *Packet) HeadBytes() []byte { return p.Head[p.Off : p.Off+p.NHead] }

// Batch is a worker's batch of packets from one input queue.
type Batch struct {
	N       int
	InPort  uint16
	InQueue int                 // the input port's queue the packets came from
	srcQ    *virtio.SplitQueue  // the queue the packets came from (vhost-user, split)
	srcPQ   *virtio.PackedQueue // or (packed)
	// ret lists the sender's chains to return, in the order they were
	// taken: refused ones too, so a driver that negotiated IN_ORDER gets
	// them back in ring order.
	ret  [BatchSize]uint16
	nret int
	Pkts [BatchSize]Packet
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
	DropNoTxFrame   // an AF_XDP port's TX ring or transmit frames are all in use
	DropVLANIngress // the port does not carry the frame's VLAN (or takes no tagged/untagged frames)
	DropTruncated   // a header ends past the frame or its head copy
	DropBadIPv4
	DropBadIPv6
	DropBadL4
	DropBadIPv6Ext
	DropForRouter          // ARP/ND or IP addressed to the router itself, answered or consumed
	DropTTLExceeded        // TTL or hop limit would reach 0
	DropNoRoute            // no FIB entry for the destination
	DropNeighborUnresolved // the next hop did not answer ARP/NS within the hold time
	DropNeighborHoldFull   // the next hop is being resolved and the packets held for it are at their bound
	DropBadOffload
	// Filters (package acl) and conntrack/NAT (package nat).
	DropACLDeny
	DropACLReject
	DropSGIngress
	DropSGEgress
	DropCTInvalid
	DropSpoofedSourceMAC
	DropSpoofedSourceIP
	DropSpoofedARPSenderMAC
	DropSpoofedARPSenderIP
	DropSpoofedNDTarget
	DropSpoofedNDLinkLayer
	DropGuestRouterAdvert
	DropGuestDHCPServer
	DropPortSecEtherType
	DropPortSecMalformed
	DropCTFragment
	DropCTTCPFlags
	DropCTTCPState
	DropCTTCPWindow
	DropCTICMPUnrelated
	DropCTFull
	DropCTZoneFull
	DropCTBucketFull
	DropNATNoPort
	DropCTGone
	NumDropReasons
)

var dropNames = [NumDropReasons]string{
	DropRunt:               "frame_too_short",
	DropAvailCorrupt:       "avail_index_corrupt",
	DropInvalidSrcMAC:      "invalid_source_mac",
	DropHairpin:            "destination_is_input_port",
	DropNoOutput:           "no_output_port",
	DropPortDown:           "output_port_down",
	DropNoRxBuffer:         "no_guest_rx_buffer",
	DropRxBufferTooSmall:   "guest_rx_buffer_too_small",
	DropPortFault:          "port_memory_fault",
	DropFrameTooLarge:      "frame_exceeds_mtu",
	DropNoTxFrame:          "no_tx_frame",
	DropVLANIngress:        "vlan_not_allowed",
	DropTruncated:          "truncated_header",
	DropBadIPv4:            "malformed_ipv4",
	DropBadIPv6:            "malformed_ipv6",
	DropBadL4:              "malformed_l4",
	DropBadIPv6Ext:         "bad_ipv6_ext_header",
	DropForRouter:          "for_router",
	DropTTLExceeded:        "ttl_exceeded",
	DropNoRoute:            "no_route",
	DropNeighborUnresolved: "neighbor_unresolved",
	DropNeighborHoldFull:   "neighbor_hold_full",
	DropBadOffload:         "bad_offload_header",
	DropCTFragment:         "ct_fragment",
	DropCTTCPFlags:         "ct_tcp_bad_flags",
	DropCTTCPState:         "ct_tcp_bad_state",
	DropCTTCPWindow:        "ct_tcp_out_of_window",
	DropCTICMPUnrelated:    "ct_icmp_unrelated",
	DropCTFull:             "conntrack_full",
	DropCTZoneFull:         "conntrack_zone_full",
	DropCTBucketFull:       "conntrack_bucket_full",
	DropNATNoPort:          "nat_no_port",
	DropCTGone:             "ct_connection_gone",
}

// parseDrop maps a parser error to its drop reason.
var parseDrop = [header.NumParseErrs]DropReason{
	header.ErrTruncated:  DropTruncated,
	header.ErrBadIPv4:    DropBadIPv4,
	header.ErrBadIPv6:    DropBadIPv6,
	header.ErrBadL4:      DropBadL4,
	header.ErrExtHeaders: DropBadIPv6Ext,
}

func init() {
	// The filter reasons are named as package acl names them.
	for r, d := range aclDrop {
		if d != 0 {
			dropNames[d] = acl.DropReason(r).String()
		}
	}
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

// dropTally counts a batch's drops by reason in plain fields; flush adds
// them to a port's counters, skipping the scan when nothing was dropped.
type dropTally struct {
	n   [NumDropReasons]uint64
	any bool
}

func (d *dropTally) add(r DropReason, k uint64) {
	d.n[r] += k
	d.any = true
}

func (d *dropTally) flush(c *PortCounters) {
	if !d.any {
		return
	}
	for r, n := range d.n {
		if n != 0 {
			c.Drops[r].Add(n)
			d.n[r] = 0
		}
	}
	d.any = false
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
