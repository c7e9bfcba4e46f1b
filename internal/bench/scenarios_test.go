package bench

import (
	"bytes"
	"encoding/binary"
	"os"
	"strings"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// The routed generator's pcap files hold one gratuitous ARP and then
// UDP frames of exactly the frame size, addressed to the router, TTL 64,
// with correct checksums, as net_pcap will replay them.
func TestGenPcaps(t *testing.T) {
	for _, frame := range []int{64, 512, 1518} {
		a, b, err := writeGenPcaps(t.TempDir(), frame)
		if err != nil {
			t.Fatal(err)
		}
		for k, c := range []struct {
			file, mac, router, src, dst string
			sport, dport                uint16
		}{
			{a, macA, routerMACA, hostIPA, hostIPB, 1024, 1025},
			{b, macB, routerMACB, hostIPB, hostIPA, 1025, 1024},
		} {
			frames := readPcap(t, c.file)
			for n, data := range frames {
				p := gopacket.NewPacket(data, layers.LayerTypeEthernet, gopacket.Default)
				eth := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
				if eth.SrcMAC.String() != c.mac {
					t.Fatalf("%d/%d frame %d: source %s", frame, k, n, eth.SrcMAC)
				}
				if n == 0 {
					arp, ok := p.Layer(layers.LayerTypeARP).(*layers.ARP)
					if !ok || len(data) != 60 || !bytes.Equal(arp.SourceProtAddress, arp.DstProtAddress) ||
						!bytes.Equal(arp.SourceHwAddress, eth.SrcMAC) || eth.DstMAC.String() != "ff:ff:ff:ff:ff:ff" {
						t.Fatalf("%d/%d: the first frame is not a gratuitous ARP: %v", frame, k, p)
					}
				} else {
					ip, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
					udp, _ := p.Layer(layers.LayerTypeUDP).(*layers.UDP)
					if ip == nil || udp == nil || len(data) != frame || eth.DstMAC.String() != c.router || ip.TTL != 64 ||
						ip.SrcIP.String() != c.src || ip.DstIP.String() != c.dst || uint16(udp.SrcPort) != c.sport || uint16(udp.DstPort) != c.dport {
						t.Fatalf("%d/%d frame %d (%d bytes): %v", frame, k, n, len(data), p)
					}
					checksumsOK(t, p)
				}
			}
			if len(frames) != genARPEvery {
				t.Fatalf("%d/%d: %d frames, want %d", frame, k, len(frames), genARPEvery)
			}
		}
	}
}

// readPcap reads a classic little-endian pcap file of Ethernet frames.
func readPcap(t *testing.T, path string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 24 || binary.LittleEndian.Uint32(b) != 0xa1b2c3d4 || binary.LittleEndian.Uint32(b[20:]) != 1 {
		t.Fatalf("%s: not a little-endian Ethernet pcap file", path)
	}
	var frames [][]byte
	for b = b[24:]; len(b) > 0; {
		if len(b) < 16 {
			t.Fatalf("%s: truncated record header", path)
		}
		incl, orig := int(binary.LittleEndian.Uint32(b[8:])), int(binary.LittleEndian.Uint32(b[12:]))
		if incl != orig || len(b) < 16+incl {
			t.Fatalf("%s: record of %d/%d bytes, %d left", path, incl, orig, len(b)-16)
		}
		frames = append(frames, b[16:16+incl])
		b = b[16+incl:]
	}
	return frames
}

// checksumsOK serializes p's IPv4 and UDP layers again with computed
// checksums and compares.
func checksumsOK(t *testing.T, p gopacket.Packet) {
	t.Helper()
	ip := *p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	udp := *p.Layer(layers.LayerTypeUDP).(*layers.UDP)
	if err := udp.SetNetworkLayerForChecksum(&ip); err != nil {
		t.Fatal(err)
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{ComputeChecksums: true}, &ip, &udp, gopacket.Payload(udp.Payload)); err != nil {
		t.Fatal(err)
	}
	if got := p.Data()[14:]; !bytes.Equal(got[:len(buf.Bytes())], buf.Bytes()) {
		t.Fatalf("checksums differ:\n got %x\nwant %x", got, buf.Bytes())
	}
}

// Each vswitchd row is compared with the OVS switch doing the same job,
// and the notes say what every row's traffic is.
func TestTableRatios(t *testing.T) {
	r := &Report{Cores: 2, RunCount: 1, Secs: 2}
	for _, c := range []struct {
		sw   string
		mpps float64
	}{{Vswitchd, 4}, {OVSNormal, 2}, {VswitchdRouted, 3}, {OVSRouted, 2}, {VswitchdSG, 1}, {OVSCT, 4}, {Testpmd, 8}, {TestpmdGen, 6}} {
		p := &Point{Switch: c.sw, Ring: Split, Frame: 64, Traffic: Traffic(c.sw), Runs: []Run{{Port0Mpps: c.mpps, Port1Mpps: c.mpps}}}
		p.summarize()
		r.Points = append(r.Points, p)
	}
	tab := r.Table()
	flat := strings.Join(strings.Fields(tab), " ") // columns, one space apart
	for _, want := range []string{
		"split 64 vswitchd 4.000 4.10 2.00 0.50 4.00",        // vs ovs-normal and testpmd
		"split 64 vswitchd-routed 3.000 3.07 1.50 0.50 3.00", // vs ovs-routed and testpmd-gen
		"split 64 vswitchd-sg 1.000 1.02 0.25 1.00",
		"ovs-routed: routed, open loop",
		"vswitchd-sg: stateful, 5tswap loop",
	} {
		if !strings.Contains(flat, want) {
			t.Errorf("table lacks %q:\n%s", want, tab)
		}
	}
}
