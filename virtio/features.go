package virtio

import (
	"fmt"
	"math/bits"
	"strings"
)

// Feature bits (virtio 1.2 spec, 5.1.3 and 6).
const (
	NetFCsum          = 0
	NetFGuestCsum     = 1
	NetFMTU           = 3
	NetFMAC           = 5
	NetFGuestTSO4     = 7
	NetFGuestTSO6     = 8
	NetFGuestECN      = 9
	NetFGuestUFO      = 10
	NetFHostTSO4      = 11
	NetFHostTSO6      = 12
	NetFHostECN       = 13
	NetFHostUFO       = 14
	NetFMrgRxbuf      = 15
	NetFStatus        = 16
	NetFCtrlVQ        = 17
	NetFGuestAnnounce = 21
	NetFMQ            = 22
	FNotifyOnEmpty    = 24
	FAnyLayout        = 27
	RingFIndirectDesc = 28
	RingFEventIdx     = 29
	FProtocolFeatures = 30 // vhost-user: VHOST_USER_F_PROTOCOL_FEATURES
	FVersion1         = 32
	FAccessPlatform   = 33
	FRingPacked       = 34
	FInOrder          = 35
	FNotificationData = 38
)

var featureNames = map[int]string{
	NetFCsum: "CSUM", NetFGuestCsum: "GUEST_CSUM", NetFMTU: "MTU", NetFMAC: "MAC",
	NetFGuestTSO4: "GUEST_TSO4", NetFGuestTSO6: "GUEST_TSO6", NetFGuestECN: "GUEST_ECN",
	NetFGuestUFO: "GUEST_UFO", NetFHostTSO4: "HOST_TSO4", NetFHostTSO6: "HOST_TSO6",
	NetFHostECN: "HOST_ECN", NetFHostUFO: "HOST_UFO", NetFMrgRxbuf: "MRG_RXBUF",
	NetFStatus: "STATUS", NetFCtrlVQ: "CTRL_VQ", NetFGuestAnnounce: "GUEST_ANNOUNCE",
	NetFMQ: "MQ", FNotifyOnEmpty: "NOTIFY_ON_EMPTY", FAnyLayout: "ANY_LAYOUT",
	RingFIndirectDesc: "INDIRECT_DESC", RingFEventIdx: "EVENT_IDX",
	FProtocolFeatures: "PROTOCOL_FEATURES", FVersion1: "VERSION_1",
	FAccessPlatform: "ACCESS_PLATFORM", FRingPacked: "RING_PACKED", FInOrder: "IN_ORDER",
	FNotificationData: "NOTIFICATION_DATA",
}

// Bit returns the mask of feature bit b.
func Bit(b int) uint64 { return 1 << uint(b) }

// FeatureNames lists the names of the bits set in f, for logs and status.
func FeatureNames(f uint64) []string {
	var out []string
	for f != 0 {
		b := bits.TrailingZeros64(f)
		f &^= 1 << uint(b)
		if n, ok := featureNames[b]; ok {
			out = append(out, n)
		} else {
			out = append(out, fmt.Sprintf("BIT%d", b))
		}
	}
	return out
}

// FeatureString is FeatureNames joined with spaces.
func FeatureString(f uint64) string { return strings.Join(FeatureNames(f), " ") }

// NetHdrLen is the size of struct virtio_net_hdr that precedes every packet:
// 12 bytes with VERSION_1 or MRG_RXBUF (it carries num_buffers), else 10.
func NetHdrLen(features uint64) int {
	if features&(Bit(FVersion1)|Bit(NetFMrgRxbuf)) != 0 {
		return 12
	}
	return 10
}

// virtio_net_hdr offsets.
const (
	NetHdrFlags      = 0
	NetHdrGSOType    = 1
	NetHdrNumBuffers = 10
)
