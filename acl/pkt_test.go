package acl

import (
	"net"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/vswitch/vswitch/switch/header"
)

var (
	macA = net.HardwareAddr{2, 0, 0, 0, 0, 0x0a}
	macB = net.HardwareAddr{2, 0, 0, 0, 0, 0x0b}
)

// pkt describes a test packet; zero fields take defaults.
type pkt struct {
	v6               bool
	src, dst         string
	srcMAC           net.HardwareAddr
	proto            string // tcp, udp, icmp, gre
	sport, dport     uint16
	icmpType, icmpCd uint8
	tcpFlags         string // "S", "A", "SA", "R", "F"
	payload          []byte
	fragLater        bool
	vlan             uint16
}

func craft(t testing.TB, p pkt) []byte {
	t.Helper()
	if p.srcMAC == nil {
		p.srcMAC = macA
	}
	eth := &layers.Ethernet{SrcMAC: p.srcMAC, DstMAC: macB, EthernetType: layers.EthernetTypeIPv4}
	var ls []gopacket.SerializableLayer
	ls = append(ls, eth)
	if p.vlan != 0 {
		eth.EthernetType = layers.EthernetTypeDot1Q
		et := layers.EthernetTypeIPv4
		if p.v6 {
			et = layers.EthernetTypeIPv6
		}
		ls = append(ls, &layers.Dot1Q{VLANIdentifier: p.vlan, Type: et})
	}
	var nl gopacket.NetworkLayer
	proto := map[string]uint8{"tcp": 6, "udp": 17, "icmp": 1, "gre": 47, "": 6}[p.proto]
	if p.v6 {
		if p.proto == "icmp" {
			proto = 58
		}
		if p.vlan == 0 {
			eth.EthernetType = layers.EthernetTypeIPv6
		}
		if p.src == "" {
			p.src, p.dst = "2001:db8::1", "2001:db8::2"
		}
		ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocol(proto),
			SrcIP: net.ParseIP(p.src), DstIP: net.ParseIP(p.dst)}
		ls, nl = append(ls, ip), ip
		if p.fragLater {
			ip.NextHeader = layers.IPProtocolIPv6Fragment
			ls = append(ls, &layers.IPv6Fragment{NextHeader: layers.IPProtocol(proto), FragmentOffset: 100})
			return serialize(t, append(ls, gopacket.Payload(make([]byte, 16))))
		}
	} else {
		if p.src == "" {
			p.src, p.dst = "10.0.0.1", "10.0.0.2"
		}
		ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocol(proto),
			SrcIP: net.ParseIP(p.src).To4(), DstIP: net.ParseIP(p.dst).To4()}
		if p.fragLater {
			ip.FragOffset = 100
			return serialize(t, append(ls, ip, gopacket.Payload(make([]byte, 16))))
		}
		ls, nl = append(ls, ip), ip
	}
	switch p.proto {
	case "udp":
		u := &layers.UDP{SrcPort: layers.UDPPort(p.sport), DstPort: layers.UDPPort(p.dport)}
		u.SetNetworkLayerForChecksum(nl)
		ls = append(ls, u)
	case "icmp":
		if p.v6 {
			c := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(p.icmpType, p.icmpCd)}
			c.SetNetworkLayerForChecksum(nl)
			ls = append(ls, c, gopacket.Payload(make([]byte, 4)))
		} else {
			ls = append(ls, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(p.icmpType, p.icmpCd)})
		}
	case "gre":
		ls = append(ls, gopacket.Payload(make([]byte, 8)))
	default:
		tc := &layers.TCP{SrcPort: layers.TCPPort(p.sport), DstPort: layers.TCPPort(p.dport), Seq: 1000, Ack: 5000, Window: 100}
		for _, f := range p.tcpFlags {
			switch f {
			case 'S':
				tc.SYN = true
			case 'A':
				tc.ACK = true
			case 'R':
				tc.RST = true
			case 'F':
				tc.FIN = true
			}
		}
		tc.SetNetworkLayerForChecksum(nl)
		ls = append(ls, tc)
	}
	if p.payload != nil {
		ls = append(ls, gopacket.Payload(p.payload))
	}
	return serialize(t, ls)
}

func serialize(t testing.TB, ls []gopacket.SerializableLayer) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func parse(t testing.TB, b []byte) header.Parsed {
	t.Helper()
	var p header.Parsed
	if e := header.Parse(b, len(b), &p); e != header.ParseOK {
		t.Fatalf("parse: %v", e)
	}
	return p
}
