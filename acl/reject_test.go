package acl

import (
	"bytes"
	"net"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

func TestBuildReject(t *testing.T) {
	buf := make([]byte, 2048)
	for _, tc := range []struct {
		name string
		p    pkt
		want gopacket.LayerType // 0: no reply
	}{
		{"tcp syn", pkt{src: "10.0.0.1", dst: "10.0.0.2", sport: 40000, dport: 23, tcpFlags: "S"}, layers.LayerTypeTCP},
		{"tcp ack data", pkt{src: "10.0.0.1", dst: "10.0.0.2", sport: 40000, dport: 23, tcpFlags: "A", payload: []byte("hello")}, layers.LayerTypeTCP},
		{"tcp v6 vlan", pkt{v6: true, vlan: 5, sport: 40000, dport: 23, tcpFlags: "S", payload: []byte("abc")}, layers.LayerTypeTCP},
		{"udp", pkt{proto: "udp", src: "10.0.0.1", dst: "10.0.0.2", sport: 5000, dport: 53, payload: bytes.Repeat([]byte{7}, 1000)}, layers.LayerTypeICMPv4},
		{"udp v6", pkt{v6: true, proto: "udp", sport: 5000, dport: 53, payload: bytes.Repeat([]byte{7}, 1500)}, layers.LayerTypeICMPv6},
		{"echo", pkt{proto: "icmp", icmpType: 8}, layers.LayerTypeICMPv4},
		{"rst", pkt{tcpFlags: "R"}, 0},
		{"icmp error", pkt{proto: "icmp", icmpType: 3}, 0},
		{"icmpv6 error", pkt{v6: true, proto: "icmp", icmpType: 1}, 0},
		{"NS", pkt{v6: true, proto: "icmp", icmpType: 135}, 0},
		{"later fragment", pkt{fragLater: true}, 0},
		{"multicast dst", pkt{proto: "udp", src: "10.0.0.1", dst: "224.0.0.5", dport: 5}, 0},
	} {
		in := craft(t, tc.p)
		p := parse(t, in)
		n := BuildReject(buf, in, &p)
		if tc.want == 0 {
			if n != 0 {
				t.Errorf("%s: built a %d-byte reply", tc.name, n)
			}
			continue
		}
		if n == 0 {
			t.Fatalf("%s: no reply", tc.name)
		}
		orig := gopacket.NewPacket(in, layers.LayerTypeEthernet, gopacket.Default)
		rep := gopacket.NewPacket(buf[:n], layers.LayerTypeEthernet, gopacket.Default)
		if el := rep.ErrorLayer(); el != nil {
			t.Fatalf("%s: %v", tc.name, el.Error())
		}
		oe, re := orig.Layer(layers.LayerTypeEthernet).(*layers.Ethernet), rep.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
		if !bytes.Equal(oe.SrcMAC, re.DstMAC) || !bytes.Equal(oe.DstMAC, re.SrcMAC) {
			t.Errorf("%s: MACs not swapped", tc.name)
		}
		if tc.p.vlan != 0 {
			if d, ok := rep.Layer(layers.LayerTypeDot1Q).(*layers.Dot1Q); !ok || d.VLANIdentifier != tc.p.vlan {
				t.Errorf("%s: VLAN tag lost", tc.name)
			}
		}
		var osrc, odst, rsrc, rdst net.IP
		var nl gopacket.NetworkLayer
		if ip, ok := rep.Layer(layers.LayerTypeIPv4).(*layers.IPv4); ok {
			if _, v := ip.VerifyChecksum(); !v.Valid {
				t.Errorf("%s: bad IPv4 checksum", tc.name)
			}
			if ip.Length > maxICMPv4Reply {
				t.Errorf("%s: reply of %d bytes", tc.name, ip.Length)
			}
			o := orig.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
			osrc, odst, rsrc, rdst, nl = o.SrcIP, o.DstIP, ip.SrcIP, ip.DstIP, ip
		} else {
			ip := rep.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
			if int(ip.Length)+40 > maxICMPv6Reply {
				t.Errorf("%s: reply of %d bytes", tc.name, ip.Length)
			}
			o := orig.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
			osrc, odst, rsrc, rdst, nl = o.SrcIP, o.DstIP, ip.SrcIP, ip.DstIP, ip
		}
		if !osrc.Equal(rdst) || !odst.Equal(rsrc) {
			t.Errorf("%s: addresses not swapped: %v>%v vs %v>%v", tc.name, osrc, odst, rsrc, rdst)
		}
		switch l := rep.Layer(tc.want).(type) {
		case *layers.TCP:
			o := orig.Layer(layers.LayerTypeTCP).(*layers.TCP)
			l.SetNetworkLayerForChecksum(nl)
			if _, v := l.VerifyChecksum(); !v.Valid {
				t.Errorf("%s: bad TCP checksum", tc.name)
			}
			if !l.RST || l.SrcPort != o.DstPort || l.DstPort != o.SrcPort {
				t.Errorf("%s: bad RST %+v", tc.name, l)
			}
			if o.ACK && (l.Seq != o.Ack || l.ACK) {
				t.Errorf("%s: RST seq %d ack %v, want seq %d", tc.name, l.Seq, l.ACK, o.Ack)
			}
			if !o.ACK {
				want := o.Seq + uint32(len(o.Payload)) + 1
				if !l.ACK || l.Ack != want {
					t.Errorf("%s: RST ack %d, want %d", tc.name, l.Ack, want)
				}
			}
		case *layers.ICMPv4:
			if _, v := l.VerifyChecksum(); !v.Valid || l.TypeCode != layers.CreateICMPv4TypeCode(3, 13) {
				t.Errorf("%s: bad ICMP %v valid=%v", tc.name, l.TypeCode, v.Valid)
			}
		case *layers.ICMPv6:
			l.SetNetworkLayerForChecksum(nl)
			if _, v := l.VerifyChecksum(); !v.Valid || l.TypeCode != layers.CreateICMPv6TypeCode(1, 1) {
				t.Errorf("%s: bad ICMPv6 %v valid=%v", tc.name, l.TypeCode, v.Valid)
			}
		default:
			t.Errorf("%s: reply has no %v layer", tc.name, tc.want)
		}
	}
	// A buffer too small gives no reply rather than a panic.
	in := craft(t, pkt{proto: "udp", dport: 53, payload: make([]byte, 200)})
	p := parse(t, in)
	if n := BuildReject(buf[:60], in, &p); n != 0 {
		t.Errorf("short buffer: %d", n)
	}
}
