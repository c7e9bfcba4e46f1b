package vswitch_test

import (
	"bytes"
	"net"
	"sync"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	vswitch "github.com/vswitch/vswitch/switch"
	"github.com/vswitch/vswitch/vhostuser/vhostusertest"
)

var bcast = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// vframe builds an Ethernet/IPv4/UDP frame, with an 802.1Q tag when
// vid >= 0 (vid 0: a priority tag).
func vframe(t testing.TB, src, dst net.HardwareAddr, vid int, payload int) []byte {
	t.Helper()
	ls := []gopacket.SerializableLayer{}
	eth := &layers.Ethernet{SrcMAC: src, DstMAC: dst, EthernetType: layers.EthernetTypeIPv4}
	ls = append(ls, eth)
	if vid >= 0 {
		eth.EthernetType = layers.EthernetTypeDot1Q
		ls = append(ls, &layers.Dot1Q{Priority: 3, VLANIdentifier: uint16(vid), Type: layers.EthernetTypeIPv4})
	}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP,
		SrcIP: net.IP{10, 0, 0, src[5]}, DstIP: net.IP{10, 0, 0, dst[5]}}
	udp := &layers.UDP{SrcPort: 40000, DstPort: 40001} // ports gopacket decodes as nothing
	udp.SetNetworkLayerForChecksum(ip)
	ls = append(ls, ip, udp, gopacket.Payload(bytes.Repeat([]byte{0xab}, payload)))
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// tagOf decodes f and returns its VLAN tag (-1 untagged) and the frame
// with the tag removed.
func tagOf(t *testing.T, f []byte) (int, []byte) {
	t.Helper()
	pkt := gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.Default)
	if el := pkt.ErrorLayer(); el != nil {
		t.Fatalf("received frame does not decode: %v", el.Error())
	}
	q, ok := pkt.Layer(layers.LayerTypeDot1Q).(*layers.Dot1Q)
	if !ok {
		return -1, f
	}
	plain := append(append([]byte(nil), f[:12]...), f[16:]...)
	return int(q.VLANIdentifier), plain
}

// VLAN membership by port mode, as OVS does it: what enters where, which
// ports a broadcast reaches and whether it leaves them tagged.
func TestVLANModes(t *testing.T) {
	popts := []vswitch.PortOptions{
		{VLAN: vswitch.VLANConfig{Tag: 10}},                                                       // p0 access 10
		{VLAN: vswitch.VLANConfig{Mode: vswitch.VLANAccess, Tag: 20}},                             // p1 access 20
		{VLAN: vswitch.VLANConfig{Trunks: []uint16{10, 20}}},                                      // p2 trunk 10,20
		{VLAN: vswitch.VLANConfig{}},                                                              // p3 trunk, all
		{VLAN: vswitch.VLANConfig{Tag: 10, Trunks: []uint16{20}}},                                 // p4 native-untagged 10
		{VLAN: vswitch.VLANConfig{Mode: vswitch.VLANNativeTagged, Tag: 20, Trunks: []uint16{10}}}, // p5 native-tagged 20
	}
	r := newRigPorts(t, popts, vhostusertest.Options{})
	for _, fe := range r.fes {
		fe.PostRxBuffers(0, 64, 2048)
	}
	for _, tc := range []struct {
		name string
		in   int
		vid  int         // input tag, -1 untagged
		want map[int]int // port -> tag (-1 untagged); nil map: dropped
		why  string      // the drop reason when dropped
	}{
		{"access untagged", 0, -1, map[int]int{2: 10, 3: 10, 4: -1, 5: 10}, ""},
		{"access tagged", 0, 10, nil, "vlan_not_allowed"},
		{"access priority tag", 0, 0, map[int]int{2: 10, 3: 10, 4: -1, 5: 10}, ""},
		{"trunk tagged 20", 2, 20, map[int]int{1: -1, 3: 20, 4: 20, 5: 20}, ""},
		{"trunk untagged, 0 not in trunks", 2, -1, nil, "vlan_not_allowed"},
		{"trunk tag not in trunks", 2, 30, nil, "vlan_not_allowed"},
		{"trunk-all untagged is vlan 0", 3, -1, nil, "no_output_port"},
		{"trunk-all tagged 30", 3, 30, nil, "no_output_port"},
		{"native-untagged untagged", 4, -1, map[int]int{0: -1, 2: 10, 3: 10, 5: 10}, ""},
		{"native-untagged tagged native", 4, 10, map[int]int{0: -1, 2: 10, 3: 10, 5: 10}, ""},
		{"native-untagged tagged 20", 4, 20, map[int]int{1: -1, 2: 20, 3: 20, 5: 20}, ""},
		{"native-tagged untagged", 5, -1, map[int]int{1: -1, 2: 20, 3: 20, 4: 20}, ""},
		{"native-tagged tagged 10", 5, 10, map[int]int{0: -1, 2: 10, 3: 10, 4: -1}, ""},
		{"native-tagged tag not carried", 5, 30, nil, "vlan_not_allowed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := r.drops(tc.in)[tc.why]
			// A large payload: the tag is pushed or popped in the head copy
			// while the rest comes from the sender's buffers.
			f := vframe(t, mac(tc.in), bcast, tc.vid, 1000)
			_, plain := tagOf(t, f)
			r.fes[tc.in].SendPacket(0, f)
			r.poll()
			for p := range r.fes {
				got := r.fes[p].Received(0)
				want, ok := tc.want[p]
				if !ok {
					if len(got) != 0 {
						t.Errorf("port p%d got %d frames, want none", p, len(got))
					}
					continue
				}
				if len(got) != 1 {
					t.Errorf("port p%d got %d frames, want 1", p, len(got))
					continue
				}
				tag, body := tagOf(t, got[0])
				if tag != want {
					t.Errorf("port p%d got tag %d, want %d", p, tag, want)
				}
				if !bytes.Equal(body, plain) {
					t.Errorf("port p%d: frame differs beyond its tag", p)
				}
			}
			if tc.want == nil && r.drops(tc.in)[tc.why] != before+1 {
				t.Errorf("drops %v, want one more %s", r.drops(tc.in), tc.why)
			}
		})
	}
}

// The FDB is per VLAN: a MAC learned in VLAN 10 is unknown in VLAN 20, so
// a frame to it there floods within 20 and never reaches VLAN 10's port.
func TestFDBPerVLAN(t *testing.T) {
	popts := []vswitch.PortOptions{
		{VLAN: vswitch.VLANConfig{Tag: 10}},
		{VLAN: vswitch.VLANConfig{Tag: 20}},
		{VLAN: vswitch.VLANConfig{Trunks: []uint16{10, 20}}},
		{VLAN: vswitch.VLANConfig{Tag: 20}},
	}
	r := newRigPorts(t, popts, vhostusertest.Options{})
	for _, fe := range r.fes {
		fe.PostRxBuffers(0, 64, 2048)
	}
	r.fes[0].SendPacket(0, vframe(t, mac(0), bcast, -1, 50)) // learn mac0 in 10 on p0
	r.poll()
	for _, fe := range r.fes {
		fe.Received(0)
	}
	// From the trunk in VLAN 20 to mac0: unknown there, flooded in 20.
	r.fes[2].SendPacket(0, vframe(t, mac(2), mac(0), 20, 50))
	r.poll()
	if n := len(r.fes[0].Received(0)); n != 0 {
		t.Fatalf("VLAN 10's port got %d frames sent in VLAN 20", n)
	}
	if len(r.fes[1].Received(0)) != 1 || len(r.fes[3].Received(0)) != 1 {
		t.Fatal("the frame was not flooded within VLAN 20")
	}
	// In VLAN 10 it is known: unicast to p0 only, untagged.
	f := vframe(t, mac(2), mac(0), 10, 50)
	r.fes[2].SendPacket(0, f)
	r.poll()
	got := r.fes[0].Received(0)
	if len(got) != 1 {
		t.Fatalf("p0 got %d frames, want the unicast", len(got))
	}
	if tag, _ := tagOf(t, got[0]); tag != -1 {
		t.Fatalf("access port got tag %d", tag)
	}
	if len(r.fes[1].Received(0))+len(r.fes[3].Received(0)) != 0 {
		t.Fatal("a known unicast was flooded")
	}
}

func TestFDBLimit(t *testing.T) {
	f := vswitch.NewFDB(1024, 2)
	f.Learn(1, 0x525400000001, 1, 0)
	f.Learn(1, 0x525400000002, 1, 0)
	f.Learn(2, 0x525400000001, 2, 0) // same MAC, other VLAN: a third entry
	if f.Len() != 2 || f.Refused.Load() != 1 {
		t.Fatalf("len %d refused %d, want 2 and 1", f.Len(), f.Refused.Load())
	}
	if _, ok := f.Lookup(2, 0x525400000001); ok {
		t.Fatal("a refused entry was learned")
	}
	if p, ok := f.Lookup(1, 0x525400000001); !ok || p != 1 {
		t.Fatalf("lookup = %d %v", p, ok)
	}
	f.Learn(1, 0x525400000001, 3, 5) // a move is not a new entry
	if p, _ := f.Lookup(1, 0x525400000001); p != 3 || f.Moves.Load() != 1 {
		t.Fatalf("after a move port %d moves %d", p, f.Moves.Load())
	}
	if n := f.Age(10, 6); n != 1 || f.Len() != 1 {
		t.Fatalf("aged %d, len %d", n, f.Len())
	}
	f.Learn(2, 0x525400000001, 2, 10)
	if p, ok := f.Lookup(2, 0x525400000001); !ok || p != 2 {
		t.Fatal("room made by aging was not reused")
	}
	f.FlushPort(2)
	if f.Len() != 1 {
		t.Fatalf("len %d after flush", f.Len())
	}
}

// Workers learning new MACs at once never take the table past its limit:
// each reserves its entry before claiming a slot.
func TestFDBLimitExactConcurrent(t *testing.T) {
	const workers, each, max = 8, 2000, 100
	for round := 0; round < 20; round++ {
		f := vswitch.NewFDB(1<<16, max)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				for i := 0; i < each; i++ {
					f.Learn(1, uint64(0x525400000000+w*each+i), uint16(w), 0)
				}
			}()
		}
		close(start)
		wg.Wait()
		if n, e := f.Len(), len(f.Entries(0)); n != max || e != max {
			t.Fatalf("round %d: len %d, %d entries, want %d", round, n, e, max)
		}
		if f.Refused.Load() == 0 {
			t.Fatal("no learning refused")
		}
	}
}

func TestVLANConfigErrors(t *testing.T) {
	sw := vswitch.New(vswitch.Options{Manual: true})
	defer sw.Close()
	if err := sw.AddBridge("br0", 0, 0); err != nil {
		t.Fatal(err)
	}
	for _, v := range []vswitch.VLANConfig{
		{Mode: vswitch.VLANAccess},
		{Mode: vswitch.VLANAccess, Tag: 5, Trunks: []uint16{6}},
		{Mode: vswitch.VLANTrunk, Tag: 5},
		{Mode: vswitch.VLANNativeTagged},
		{Tag: 4095},
		{Trunks: []uint16{5000}},
		{Mode: "hybrid", Tag: 3},
	} {
		if _, err := sw.AddPort("x", "vhostuser", "br0", nil, vswitch.PortOptions{VLAN: v}); err == nil {
			t.Errorf("%+v accepted", v)
		}
	}
}
