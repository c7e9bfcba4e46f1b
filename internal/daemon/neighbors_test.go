package daemon

import (
	"encoding/json"
	"io"
	"net"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/sirupsen/logrus"

	"github.com/vswitch/vswitch/api"
	"github.com/vswitch/vswitch/vhostuser/vhostusertest"
	"github.com/vswitch/vswitch/virtio/virtiotest"
)

const routed = `bridges: [{name: br0}]
ports:
  - {name: vm1, type: vhostuser, bridge: br0, socket: vm1.sock, tag: 10}
  - {name: vm2, type: vhostuser, bridge: br0, socket: vm2.sock, tag: 20}
routers:
  - name: r1
    interfaces:
      - {name: r1-v10, bridge: br0, vlan: 10, addresses: [10.10.0.1/24]}
      - {name: r1-v20, bridge: br0, vlan: 20, addresses: [10.20.0.1/24]}
`

func serialize(t *testing.T, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// A packet routed to a next hop not resolved yet shows in the neighbour
// statistics (API and metrics) while it is held, and as released once
// the next hop answers.
func TestNeighborStats(t *testing.T) {
	dir := shortDir(t)
	log := logrus.New()
	log.SetOutput(io.Discard)
	d, err := Start(load(t, dir, routed), logrus.NewEntry(log))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	fe1 := vhostusertest.Connect(t, dir+"/vm1.sock", virtiotest.NewGuest(t, 4<<20), vhostusertest.Options{})
	fe2 := vhostusertest.Connect(t, dir+"/vm2.sock", virtiotest.NewGuest(t, 4<<20), vhostusertest.Options{})
	waitRunning(t, d, "vm1")
	waitRunning(t, d, "vm2")
	fe2.PostRxBuffers(0, 16, 2048)
	r, err := d.Router("r1")
	if err != nil {
		t.Fatal(err)
	}
	m10, _ := net.ParseMAC(r.Interfaces[0].MAC)
	m20, _ := net.ParseMAC(r.Interfaces[1].MAC)
	a, b := net.HardwareAddr{0x52, 0x54, 0, 0, 0, 1}, net.HardwareAddr{0x52, 0x54, 0, 0, 0, 2}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: net.IP{10, 10, 0, 2}, DstIP: net.IP{10, 20, 0, 2}}
	u := &layers.UDP{SrcPort: 1000, DstPort: 2000}
	u.SetNetworkLayerForChecksum(ip)
	fe1.SendPacket(0, serialize(t, &layers.Ethernet{SrcMAC: a, DstMAC: m10, EthernetType: layers.EthernetTypeIPv4}, ip, u, gopacket.Payload(make([]byte, 100))))
	ask := gopacket.NewPacket(waitFrames(t, fe2, 1)[0], layers.LayerTypeEthernet, gopacket.Default)
	if arp, ok := ask.Layer(layers.LayerTypeARP).(*layers.ARP); !ok || arp.Operation != layers.ARPRequest {
		t.Fatalf("not an ARP request: %v", ask)
	}

	h := api.NewHandler(api.Options{Source: d})
	get := func() api.NeighborStats {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/v1/neighbors/stats", nil))
		var st api.NeighborStats
		if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &st) != nil {
			t.Fatalf("GET /v1/neighbors/stats: %d %s", rec.Code, rec.Body)
		}
		return st
	}
	if st := get(); st.HeldPackets != 1 || st.HeldBytes != 142 || st.PendingNextHops != 1 || st.HeldTotal != 1 || st.ARPRequests != 1 ||
		st.Drops["neighbor_unresolved"] != 0 || len(st.Drops) != 3 {
		t.Fatalf("while held: %+v", st)
	}
	rec := httptest.NewRecorder()
	d.MetricsHandler(nil).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	for _, want := range []string{"vswitch_neighbor_queued_packets 1", "vswitch_neighbor_queued_bytes 142", "vswitch_neighbor_pending_next_hops 1",
		`vswitch_neighbor_solicitations_total{protocol="arp"} 1`, `vswitch_neighbor_drops_total{reason="neighbor_hold_full"} 0`} {
		if !strings.Contains(rec.Body.String(), want) {
			t.Errorf("metrics lack %q", want)
		}
	}

	fe2.SendPacket(0, serialize(t, &layers.Ethernet{SrcMAC: b, DstMAC: m20, EthernetType: layers.EthernetTypeARP},
		&layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4, Operation: layers.ARPReply,
			SourceHwAddress: b, SourceProtAddress: net.IP{10, 20, 0, 2}, DstHwAddress: m20, DstProtAddress: net.IP{10, 20, 0, 1}}))
	if p := gopacket.NewPacket(waitFrames(t, fe2, 1)[0], layers.LayerTypeEthernet, gopacket.Default); p.Layer(layers.LayerTypeUDP) == nil {
		t.Fatalf("not the held packet: %v", p)
	}
	if st := get(); st.HeldPackets != 0 || st.HeldBytes != 0 || st.PendingNextHops != 0 || st.Released != 1 {
		t.Fatalf("after the answer: %+v", st)
	}
}
