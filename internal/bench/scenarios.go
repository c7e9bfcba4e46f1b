package bench

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/vswitch/vswitch/api"
	"github.com/vswitch/vswitch/internal/testutil"
)

// The routed and stateful scenarios (issues 7 and 8): each has a vswitchd
// switch and an OVS-DPDK switch doing the same job, measured with the same
// frontend, so their rows compare with each other (not with the L2 rows).
//
// Routed: ports A and B are on two subnets, 10.10.0.0/24 behind VLAN 10
// and 10.20.0.0/24 behind VLAN 20. A router cannot sit in the
// learned-unicast loop: every pass would decrement the TTL, and the loop
// would die after 63 passes (no testpmd forward mode restores it). So the
// frontend generates: it replays one UDP frame per port from memory
// (net_pcap infinite_rx, io forward) and drops what it receives, counting
// it. Into A: 02:00:00:00:00:01 -> router A MAC, 10.10.0.2:1024 ->
// 10.20.0.2:1025, TTL 64; into B the mirror image. Every 1024th frame is a
// gratuitous ARP for the sender, from which vswitchd's router learns (and
// keeps) its neighbours, as it would from a guest.
//
// Stateful: an L2 bridge with a stateful filter on both ports. The
// frontend runs the loop in 5tswap mode on each port (loop topology):
// each packet comes back out of the port it arrived on with its MACs, IPs
// and UDP ports swapped, so it crosses the switch in alternate
// directions, and the two directions carry one UDP connection,
// 10.0.0.1:1024 <-> 10.0.0.2:1025, which conntrack sees established.
const (
	VswitchdRouted = "vswitchd-routed" // vswitchd router r1 between VLAN 10 and VLAN 20
	OVSRouted      = "ovs-routed"      // OVS-DPDK, OpenFlow routing flows (dec_ttl, mod_dl_src/dst)
	VswitchdSG     = "vswitchd-sg"     // vswitchd L2 bridge, a stateful security group on both ports
	OVSCT          = "ovs-ct"          // OVS-DPDK, conntrack flows (ct(commit), ct_state) then NORMAL
	// TestpmdGen is testpmd's net_vhost io forward fed by the routed
	// scenario's generator: no lookup, no routing, so it shows the
	// frontend's ceiling for the routed rows. It runs only on request.
	TestpmdGen = "testpmd-gen"
)

// Routed scenario addresses: A is frontend port 0 (vm1, OVS ofport 1).
const (
	routerMACA = "02:00:00:00:01:01"
	routerMACB = "02:00:00:00:01:02"
	hostIPA    = "10.10.0.2"
	hostIPB    = "10.20.0.2"
	// genARPEvery: one frame in this many of the generator's is a
	// gratuitous ARP.
	genARPEvery = 1024
)

// Stateful scenario addresses (the frontend's txonly template, which
// primes the loop: A sends sgIPA:sgPortA -> sgIPB:sgPortB).
const (
	sgIPA   = "10.0.0.1"
	sgIPB   = "10.0.0.2"
	sgPortA = 1024
	sgPortB = 1025
)

// Frontend kinds: how the testpmd frontend makes its traffic.
type feKind int

const (
	feMac  feKind = iota // mac forward across the two ports, primed by tx_first: the learned-unicast loop
	feSwap               // 5tswap on each port, primed by tx_first: one connection, both directions
	feGen                // replay generators into each port, receive and drop: open loop
)

func frontendKind(sw string) feKind {
	switch sw {
	case VswitchdRouted, OVSRouted, TestpmdGen:
		return feGen
	case VswitchdSG, OVSCT:
		return feSwap
	}
	return feMac
}

// ovsPeerOf is the OVS-DPDK switch doing sw's job, "" if sw is not a
// vswitchd switch.
func ovsPeerOf(sw string) string {
	switch sw {
	case Vswitchd:
		return OVSNormal
	case VswitchdXC:
		return OVSXC
	case VswitchdRouted:
		return OVSRouted
	case VswitchdSG:
		return OVSCT
	}
	return ""
}

// testpmdPeerOf is the testpmd io-forward row measured with sw's frontend,
// "" if sw is not a vswitchd switch or has none.
func testpmdPeerOf(sw string) string {
	switch sw {
	case Vswitchd, VswitchdXC:
		return Testpmd
	case VswitchdRouted:
		return TestpmdGen
	}
	return ""
}

// Traffic describes what sw's rows measure (the report's notes and JSON).
func Traffic(sw string) string {
	switch sw {
	case VswitchdRouted, OVSRouted:
		what := "vswitchd router r1: r1-a VLAN 10 10.10.0.1/24, r1-b VLAN 20 10.20.0.1/24 (vm1 access VLAN 10, vm2 access VLAN 20), neighbours learned from the gratuitous ARPs"
		if sw == OVSRouted {
			what = "OVS flows: ip,in_port=1,dl_dst=ROUTER_A,nw_dst=10.20.0.0/24 actions=dec_ttl,mod_dl_src:ROUTER_B,mod_dl_dst:B,output:2 and the mirror; everything else dropped"
		}
		return fmt.Sprintf("routed, open loop: the frontend replays one UDP flow per direction (A %s:1024 -> %s:1025 to the router MAC, B the mirror, TTL 64; 1 frame in %d a gratuitous ARP) and counts what comes back; %s",
			hostIPA, hostIPB, genARPEvery, what)
	case VswitchdSG, OVSCT:
		what := "vswitchd L2 bridge, security group on both ports (ingress udp from 10.0.0.0/24, egress ipv4), conntrack in each port's zone: two lookups per packet"
		if sw == OVSCT {
			what = "OVS flows: table 0 ip,ct_state=-trk actions=ct(table=1); table 1 +trk+new actions=ct(commit),NORMAL, +trk+est actions=NORMAL: one lookup per packet (zone 0)"
		}
		return fmt.Sprintf("stateful, 5tswap loop: each packet bounces with addresses and ports swapped, so both directions carry one UDP connection %s:%d <-> %s:%d (established); %s",
			sgIPA, sgPortA, sgIPB, sgPortB, what)
	case Testpmd:
		return "learned-unicast loop (mac forward, crossing --eth-peer); testpmd net_vhost io forward, no lookup"
	case TestpmdGen:
		return "the routed rows' open-loop generator into testpmd net_vhost io forward (no lookup, no routing): the frontend's ceiling for those rows"
	}
	return "learned-unicast loop (mac forward, crossing --eth-peer)"
}

// vswitchdYAML is vswitchd's config for sw; the ports' sockets are A.sock
// and B.sock in the run directory.
func vswitchdYAML(sw string) string {
	head := "log: {level: info}\ndataplane: {workers: 1, poll: busy, cpus: [0]}\n"
	switch sw {
	case VswitchdXC:
		return head + `bridges: [{name: br0, mode: xconnect}]
ports:
  - {name: vm1, type: vhostuser, bridge: br0, socket: A.sock}
  - {name: vm2, type: vhostuser, bridge: br0, socket: B.sock}
`
	case VswitchdRouted:
		return head + fmt.Sprintf(`bridges: [{name: br0}]
ports:
  - {name: vm1, type: vhostuser, bridge: br0, socket: A.sock, tag: 10}
  - {name: vm2, type: vhostuser, bridge: br0, socket: B.sock, tag: 20}
routers:
  - name: r1
    interfaces:
      - {name: r1-a, bridge: br0, vlan: 10, mac: "%s", addresses: [10.10.0.1/24]}
      - {name: r1-b, bridge: br0, vlan: 20, mac: "%s", addresses: [10.20.0.1/24]}
`, routerMACA, routerMACB)
	case VswitchdSG:
		return head + `bridges: [{name: br0}]
security_groups:
  - name: bench
    rules:
      - {direction: ingress, ethertype: ipv4, protocol: udp, remote: 10.0.0.0/24}
      - {direction: egress, ethertype: ipv4}
ports:
  - {name: vm1, type: vhostuser, bridge: br0, socket: A.sock, security_groups: [bench]}
  - {name: vm2, type: vhostuser, bridge: br0, socket: B.sock, security_groups: [bench]}
`
	}
	return head + `bridges: [{name: br0, mode: learning}]
ports:
  - {name: vm1, type: vhostuser, bridge: br0, socket: A.sock}
  - {name: vm2, type: vhostuser, bridge: br0, socket: B.sock}
`
}

// ovsFlows is the OpenFlow table of OVS switch sw (ofport 1 is A, 2 is B).
func ovsFlows(sw string) []string {
	switch sw {
	case OVSXC:
		return []string{"in_port=1,actions=output:2", "in_port=2,actions=output:1"}
	case OVSRouted:
		return []string{
			fmt.Sprintf("priority=100,ip,in_port=1,dl_dst=%s,nw_dst=10.20.0.0/24,actions=dec_ttl,mod_dl_src:%s,mod_dl_dst:%s,output:2", routerMACA, routerMACB, macB),
			fmt.Sprintf("priority=100,ip,in_port=2,dl_dst=%s,nw_dst=10.10.0.0/24,actions=dec_ttl,mod_dl_src:%s,mod_dl_dst:%s,output:1", routerMACB, routerMACA, macA),
			"priority=0,actions=drop",
		}
	case OVSCT:
		return []string{
			"table=0,priority=100,ip,ct_state=-trk,actions=ct(table=1)",
			"table=0,priority=0,actions=NORMAL",
			"table=1,priority=100,ip,ct_state=+trk+new,actions=ct(commit),NORMAL",
			"table=1,priority=100,ip,ct_state=+trk+est,actions=NORMAL",
			"table=1,priority=0,actions=drop",
		}
	}
	return []string{"actions=NORMAL"}
}

// writeGenPcaps writes the routed generator's frames of frame bytes for
// ports A and B into dir and returns the two files.
func writeGenPcaps(dir string, frame int) (string, string, error) {
	var files [2]string
	for k, side := range []struct {
		mac, router, src, dst string
		sport, dport          uint16
	}{
		{macA, routerMACA, hostIPA, hostIPB, 1024, 1025},
		{macB, routerMACB, hostIPB, hostIPA, 1025, 1024},
	} {
		udp, err := udpFrame(side.mac, side.router, side.src, side.dst, side.sport, side.dport, frame)
		if err != nil {
			return "", "", err
		}
		garp, err := garpFrame(side.mac, side.src)
		if err != nil {
			return "", "", err
		}
		frames := [][]byte{garp}
		for len(frames) < genARPEvery {
			frames = append(frames, udp)
		}
		files[k] = filepath.Join(dir, fmt.Sprintf("gen%c.pcap", 'A'+k))
		if err := writePcap(files[k], frames); err != nil {
			return "", "", err
		}
	}
	return files[0], files[1], nil
}

// udpFrame is an Ethernet/IPv4/UDP frame of frame bytes (no FCS), TTL 64,
// with checksums.
func udpFrame(src, dst, srcIP, dstIP string, sport, dport uint16, frame int) ([]byte, error) {
	s, err1 := net.ParseMAC(src)
	d, err2 := net.ParseMAC(dst)
	if err := cmpErr(err1, err2); err != nil {
		return nil, err
	}
	const hdr = 14 + 20 + 8
	if frame < hdr {
		return nil, fmt.Errorf("bench: a %d-byte frame has no room for UDP", frame)
	}
	eth := &layers.Ethernet{SrcMAC: s, DstMAC: d, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: net.ParseIP(srcIP).To4(), DstIP: net.ParseIP(dstIP).To4()}
	udp := &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}
	if err := udp.SetNetworkLayerForChecksum(ip); err != nil {
		return nil, err
	}
	buf := gopacket.NewSerializeBuffer()
	err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		eth, ip, udp, gopacket.Payload(make([]byte, frame-hdr)))
	return buf.Bytes(), err
}

// garpFrame is a gratuitous ARP request from mac for ip, padded to 60 bytes.
func garpFrame(mac, ip string) ([]byte, error) {
	m, err := net.ParseMAC(mac)
	if err != nil {
		return nil, err
	}
	a := net.ParseIP(ip).To4()
	buf := gopacket.NewSerializeBuffer()
	err = gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true},
		&layers.Ethernet{SrcMAC: m, DstMAC: layers.EthernetBroadcast, EthernetType: layers.EthernetTypeARP},
		&layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
			Operation: layers.ARPRequest, SourceHwAddress: m, SourceProtAddress: a,
			DstHwAddress: make([]byte, 6), DstProtAddress: a},
		gopacket.Payload(make([]byte, 60-42)))
	return buf.Bytes(), err
}

func cmpErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

// writePcap writes frames as a classic pcap file (microsecond stamps,
// Ethernet), the format DPDK's net_pcap reads.
func writePcap(path string, frames [][]byte) error {
	b := make([]byte, 24, 24+len(frames)*(16+1518))
	binary.LittleEndian.PutUint32(b[0:], 0xa1b2c3d4)
	binary.LittleEndian.PutUint16(b[4:], 2)
	binary.LittleEndian.PutUint16(b[6:], 4)
	binary.LittleEndian.PutUint32(b[16:], 65535)
	binary.LittleEndian.PutUint32(b[20:], 1) // LINKTYPE_ETHERNET
	for _, f := range frames {
		var rec [16]byte
		binary.LittleEndian.PutUint32(rec[8:], uint32(len(f)))
		binary.LittleEndian.PutUint32(rec[12:], uint32(len(f)))
		b = append(append(b, rec[:]...), f...)
	}
	return os.WriteFile(path, b, 0o644)
}

// frontendArgs are the testpmd vdevs (beyond the two virtio_user ports),
// app arguments and priming command of kind at frame bytes; feGen writes
// its pcap files into dir.
func frontendArgs(kind feKind, dir string, frame int) (vdevs, args []string, start string, err error) {
	common := []string{"--nb-cores=1", "--burst=64", "--total-num-mbufs=32768"}
	switch kind {
	case feSwap:
		return nil, append(common, "--forward-mode=5tswap", "--port-topology=loop",
			"--eth-peer=0,"+macB, "--eth-peer=1,"+macA,
			fmt.Sprintf("--tx-ip=%s,%s", sgIPA, sgIPB), fmt.Sprintf("--tx-udp=%d,%d", sgPortA, sgPortB),
			fmt.Sprintf("--txpkts=%d", frame)), "start tx_first", nil
	case feGen:
		a, b, err := writeGenPcaps(dir, frame)
		if err != nil {
			return nil, nil, "", err
		}
		// Ports 2 and 3 replay into 0 and 1 (paired in the port list);
		// what 0 and 1 receive goes to the pcap ports, which drop it.
		return []string{"net_pcap0,rx_pcap=" + a + ",infinite_rx=1", "net_pcap1,rx_pcap=" + b + ",infinite_rx=1"},
			append(common, "--forward-mode=io", "--portlist=2,0,3,1"), "start", nil
	}
	return nil, append(common, "--forward-mode=mac", "--eth-peer=0,"+macB, "--eth-peer=1,"+macA,
		fmt.Sprintf("--txpkts=%d", frame)), "start tx_first", nil
}

// liveTrace captures n packets received on port (POST, then GET until
// they are in) and disarms the trace.
func liveTrace(v *testutil.Vswitchd, port string, n int) (*api.LiveTrace, error) {
	path := "/v1/ports/" + port + "/trace"
	code, body, _, err := v.Do("POST", path, fmt.Sprintf(`{"count": %d}`, n))
	if err != nil {
		return nil, err
	}
	if code != 201 {
		return nil, fmt.Errorf("POST %s: %d %s", path, code, body)
	}
	defer v.Do("DELETE", path, "")
	deadline := time.Now().Add(5 * time.Second)
	for {
		code, body, _, err = v.Do("GET", path, "")
		if err != nil {
			return nil, err
		}
		var lt api.LiveTrace
		if code != 200 || json.Unmarshal(body, &lt) != nil {
			return nil, fmt.Errorf("GET %s: %d %s", path, code, body)
		}
		if lt.Captured >= n {
			return &lt, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("live trace on %s: %d of %d packets within 5 s", port, lt.Captured, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stageOf is the decision of the record's stage named stage ("" if none).
func stageOf(r api.LiveTraceRecord, stage string) string {
	for _, s := range r.Stages {
		if s.Stage == stage {
			return s.Decision
		}
	}
	return ""
}

// hasDecision says whether one of r's entries for stage starts with
// prefix (a stage such as the filter may record several decisions).
func hasDecision(r api.LiveTraceRecord, stage, prefix string) bool {
	for _, s := range r.Stages {
		if s.Stage == stage && strings.HasPrefix(s.Decision, prefix) {
			return true
		}
	}
	return false
}

func outputsOf(r api.LiveTraceRecord) string {
	var o []string
	for _, out := range r.Outputs {
		o = append(o, out.Port)
	}
	return strings.Join(o, ",")
}

// verifyVswitchd checks, while the traffic runs, that vswitchd's path is
// the scenario's: a live trace of packets from each port shows the route
// (or the filter with conntrack established) and the other port as the
// output. It returns what it saw.
func verifyVswitchd(sw string, v *testutil.Vswitchd) (string, error) {
	const n = 8
	type side struct{ in, out, via string }
	sides := []side{{"vm1", "vm2", "via r1-b vlan 20"}, {"vm2", "vm1", "via r1-a vlan 10"}}
	var seen []string
	if sw == VswitchdRouted {
		code, body, _, err := v.Do("GET", "/v1/routers/r1/neighbors", "")
		if err != nil || code != 200 {
			return "", fmt.Errorf("GET /v1/routers/r1/neighbors: %d %s %v", code, body, err)
		}
		var ns []api.Neighbor
		if err := json.Unmarshal(body, &ns); err != nil {
			return "", err
		}
		for _, want := range []api.Neighbor{{IP: hostIPA, MAC: macA, Interface: "r1-a"}, {IP: hostIPB, MAC: macB, Interface: "r1-b"}} {
			if !slices.ContainsFunc(ns, func(x api.Neighbor) bool {
				return x.IP == want.IP && strings.EqualFold(x.MAC, want.MAC) && x.Interface == want.Interface
			}) {
				return "", fmt.Errorf("router r1 has no neighbour %s %s on %s: %s", want.IP, want.MAC, want.Interface, body)
			}
		}
		seen = append(seen, "r1 neighbours "+hostIPA+" and "+hostIPB+" resolved")
	}
	for _, s := range sides {
		lt, err := liveTrace(v, s.in, n)
		if err != nil {
			return "", err
		}
		good := 0
		for _, r := range lt.Records {
			if strings.Contains(r.Headers, ", arp ") {
				continue // the generator's gratuitous ARP
			}
			var ok bool
			switch sw {
			case VswitchdRouted:
				ok = strings.HasPrefix(stageOf(r, "route"), s.via)
			case VswitchdSG:
				ok = strings.Contains(stageOf(r, "conntrack"), "+est") && hasDecision(r, "filter", "egress: pass (part of a connection)")
			}
			if !ok || outputsOf(r) != s.out || len(r.Dropped) > 0 {
				b, _ := json.Marshal(r)
				return "", fmt.Errorf("%s: a packet from %s did not take the scenario's path: %s", sw, s.in, b)
			}
			good++
		}
		if good == 0 {
			return "", fmt.Errorf("%s: the live trace on %s caught only ARP", sw, s.in)
		}
		var what string
		if sw == VswitchdRouted {
			what = "route " + s.via
		} else {
			what = "filter " + stageOf(lt.Records[len(lt.Records)-1], "filter")
		}
		seen = append(seen, fmt.Sprintf("%d/%d traced from %s: %s -> %s", good, len(lt.Records), s.in, what, s.out))
	}
	ports, err := v.Ports()
	if err != nil {
		return "", err
	}
	var drops []string
	for _, p := range []string{"vm1", "vm2"} {
		reasons := slices.Sorted(maps.Keys(ports[p].Drops))
		for _, r := range reasons {
			n := ports[p].Drops[r]
			if n == 0 {
				continue
			}
			if sw == VswitchdSG && (strings.HasPrefix(r, "sg_") || strings.HasPrefix(r, "ct_")) {
				return "", fmt.Errorf("%s: port %s dropped %d packets as %s", sw, p, n, r)
			}
			drops = append(drops, fmt.Sprintf("%s %s %d", p, r, n))
		}
	}
	if len(drops) == 0 {
		drops = []string{"none"}
	}
	seen = append(seen, "drops: "+strings.Join(drops, ", "))
	return strings.Join(seen, "; "), nil
}

var reNPackets = regexp.MustCompile(`n_packets=(\d+)`)

// verifyOVS checks, after the window, that OVS ran the scenario's flows:
// the routing flows (both) or the conntrack flows (established) matched
// packets, the datapath decremented the TTL or conntrack holds the
// connection. It returns what it saw.
func verifyOVS(sw string, o *ovsPeer) (string, error) {
	flows, err := o.Ofctl("dump-flows", "br0")
	if err != nil {
		return "", err
	}
	count := func(sub ...string) (uint64, bool) {
		for _, line := range strings.Split(flows, "\n") {
			all := true
			for _, s := range sub {
				all = all && strings.Contains(line, s)
			}
			if m := reNPackets.FindStringSubmatch(line); all && m != nil {
				n, _ := strconv.ParseUint(m[1], 10, 64)
				return n, true
			}
		}
		return 0, false
	}
	switch sw {
	case OVSRouted:
		a, okA := count("nw_dst=10.20.0.0/24")
		b, okB := count("nw_dst=10.10.0.0/24")
		if !okA || !okB || a == 0 || b == 0 {
			return "", fmt.Errorf("%s: the routing flows matched %d and %d packets:\n%s", sw, a, b, flows)
		}
		dp, err := o.Appctl("dpctl/dump-flows")
		if err != nil {
			return "", err
		}
		if !strings.Contains(dp, "ttl=63") {
			return "", fmt.Errorf("%s: no datapath flow sets TTL 63:\n%s", sw, dp)
		}
		return fmt.Sprintf("routing flows matched %d (A->B) and %d (B->A) packets; datapath sets ttl=63", a, b), nil
	case OVSCT:
		est, okE := count("table=1", "+est")
		nw, okN := count("table=1", "+new")
		if !okE || !okN || est == 0 {
			return "", fmt.Errorf("%s: the +est flow matched %d packets:\n%s", sw, est, flows)
		}
		ct, err := o.Appctl("dpctl/dump-conntrack")
		if err != nil {
			return "", err
		}
		if !strings.Contains(ct, "udp") || !strings.Contains(ct, sgIPA) || !strings.Contains(ct, sgIPB) {
			return "", fmt.Errorf("%s: conntrack has no %s <-> %s UDP connection:\n%s", sw, sgIPA, sgIPB, ct)
		}
		return fmt.Sprintf("ct flows matched %d established, %d new packets; conntrack: %s", est, nw, firstLine(ct, "udp")), nil
	}
	return "", nil
}

func firstLine(s, sub string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			return strings.TrimSpace(l)
		}
	}
	return ""
}
