package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// TraceRequest describes a packet to trace: an input port and header
// fields. Left out: Ethernet addresses get fixed stand-in MACs, no
// VLAN tag, no IP header unless an address is given, UDP when ports are.
type TraceRequest struct {
	InPort  string `json:"in_port"`
	EthSrc  string `json:"eth_src,omitempty"`
	EthDst  string `json:"eth_dst,omitempty"`
	VLAN    int    `json:"vlan,omitempty"` // 802.1Q tag to put on the frame (0: untagged)
	IPv4Src string `json:"ipv4_src,omitempty"`
	IPv4Dst string `json:"ipv4_dst,omitempty"`
	IPv6Src string `json:"ipv6_src,omitempty"`
	IPv6Dst string `json:"ipv6_dst,omitempty"`
	IPProto int    `json:"ip_proto,omitempty"` // 6 TCP, 17 UDP (default), 1/58 ICMP echo
	TTL     int    `json:"ttl,omitempty"`      // default 64
	L4Src   int    `json:"l4_src,omitempty"`
	L4Dst   int    `json:"l4_dst,omitempty"`
	// TCPFlags are a TCP packet's flags, comma separated: syn, ack, fin,
	// rst, psh, urg (default syn: a new connection). With the sequence
	// and acknowledgement numbers they say where the packet falls in a
	// tracked connection: conntrack's TCP window check judges them.
	TCPFlags string `json:"tcp_flags,omitempty"`
	TCPSeq   uint32 `json:"tcp_seq,omitempty"`
	TCPAck   uint32 `json:"tcp_ack,omitempty"`
}

// TraceResult is the pipeline's dry run for a TraceRequest.
type TraceResult struct {
	InPort  string        `json:"in_port"`
	Stages  []TraceStage  `json:"stages"`
	Outputs []TraceOutput `json:"outputs"`
	Dropped []string      `json:"dropped,omitempty"`
}

// TraceStage is one stage's decision.
type TraceStage struct {
	Stage    string `json:"stage"`
	Decision string `json:"decision"`
}

// TraceOutput is a port the packet would leave by.
type TraceOutput struct {
	Port   string `json:"port"`
	VLAN   int    `json:"vlan"`
	Tagged bool   `json:"tagged"`
}

// Tracer runs a frame through the data path's stages without side effects.
type Tracer interface {
	Trace(inPort string, frame []byte) (*TraceResult, error)
}

// Frame builds the Ethernet frame a TraceRequest describes; errors name
// the field.
func (t *TraceRequest) Frame() ([]byte, error) {
	mac := func(field, s, def string) (net.HardwareAddr, error) {
		if s == "" {
			s = def
		}
		m, err := net.ParseMAC(s)
		if err != nil || len(m) != 6 {
			return nil, fmt.Errorf("%s: %q is not a MAC", field, s)
		}
		return m, nil
	}
	src, err := mac("eth_src", t.EthSrc, "02:00:00:00:00:01")
	if err != nil {
		return nil, err
	}
	dst, err := mac("eth_dst", t.EthDst, "02:00:00:00:00:02")
	if err != nil {
		return nil, err
	}
	if t.VLAN < 0 || t.VLAN > 4094 {
		return nil, fmt.Errorf("vlan: %d is not in 0..4094", t.VLAN)
	}
	for _, p := range []struct {
		f string
		v int
	}{{"l4_src", t.L4Src}, {"l4_dst", t.L4Dst}, {"ip_proto", t.IPProto}, {"ttl", t.TTL}} {
		if p.v < 0 || p.v > 65535 || (p.f == "ip_proto" || p.f == "ttl") && p.v > 255 {
			return nil, fmt.Errorf("%s: %d is out of range", p.f, p.v)
		}
	}
	ip := func(field, s string, v4 bool) (net.IP, error) {
		a := net.ParseIP(s)
		if a == nil || (a.To4() != nil) != v4 {
			return nil, fmt.Errorf("%s: %q is not an IPv%s address", field, s, map[bool]string{true: "4", false: "6"}[v4])
		}
		return a, nil
	}
	eth := &layers.Ethernet{SrcMAC: src, DstMAC: dst, EthernetType: layers.EthernetTypeIPv4}
	ls := []gopacket.SerializableLayer{eth}
	inner := &eth.EthernetType
	if t.VLAN != 0 {
		q := &layers.Dot1Q{VLANIdentifier: uint16(t.VLAN), Type: layers.EthernetTypeIPv4}
		eth.EthernetType = layers.EthernetTypeDot1Q
		ls = append(ls, q)
		inner = &q.Type
	}
	ttl := uint8(64)
	if t.TTL != 0 {
		ttl = uint8(t.TTL)
	}
	proto := layers.IPProtocol(t.IPProto)
	if proto == 0 {
		proto = layers.IPProtocolUDP
	}
	var nl gopacket.NetworkLayer
	switch {
	case t.IPv4Src != "" || t.IPv4Dst != "":
		if t.IPv6Src != "" || t.IPv6Dst != "" {
			return nil, fmt.Errorf("ipv6_src: give IPv4 or IPv6 addresses, not both")
		}
		s, err := ip("ipv4_src", orDefault(t.IPv4Src, "192.0.2.1"), true)
		if err != nil {
			return nil, err
		}
		d, err := ip("ipv4_dst", orDefault(t.IPv4Dst, "192.0.2.2"), true)
		if err != nil {
			return nil, err
		}
		if proto == layers.IPProtocolICMPv6 {
			return nil, fmt.Errorf("ip_proto: 58 is ICMPv6, not for IPv4")
		}
		v4 := &layers.IPv4{Version: 4, TTL: ttl, Protocol: proto, SrcIP: s.To4(), DstIP: d.To4()}
		ls, nl = append(ls, v4), v4
	case t.IPv6Src != "" || t.IPv6Dst != "":
		s, err := ip("ipv6_src", orDefault(t.IPv6Src, "2001:db8::1"), false)
		if err != nil {
			return nil, err
		}
		d, err := ip("ipv6_dst", orDefault(t.IPv6Dst, "2001:db8::2"), false)
		if err != nil {
			return nil, err
		}
		if proto == layers.IPProtocolICMPv4 {
			proto = layers.IPProtocolICMPv6
		}
		v6 := &layers.IPv6{Version: 6, HopLimit: ttl, NextHeader: proto, SrcIP: s, DstIP: d}
		*inner = layers.EthernetTypeIPv6
		ls, nl = append(ls, v6), v6
	default:
		*inner = 0x88b5 // no IP: a bare frame of the IEEE local experimental EtherType
		ls = append(ls, gopacket.Payload(make([]byte, 46)))
	}
	if (t.TCPFlags != "" || t.TCPSeq != 0 || t.TCPAck != 0) && (nl == nil || proto != layers.IPProtocolTCP) {
		return nil, fmt.Errorf("tcp_flags: tcp_flags, tcp_seq and tcp_ack are for TCP (ip_proto 6 with addresses)")
	}
	if nl != nil {
		switch proto {
		case layers.IPProtocolTCP:
			tcp := &layers.TCP{SrcPort: layers.TCPPort(t.L4Src), DstPort: layers.TCPPort(t.L4Dst), SYN: true, Window: 65535,
				Seq: t.TCPSeq, Ack: t.TCPAck}
			if t.TCPFlags != "" {
				if err := setTCPFlags(tcp, t.TCPFlags); err != nil {
					return nil, err
				}
			}
			tcp.SetNetworkLayerForChecksum(nl)
			ls = append(ls, tcp)
		case layers.IPProtocolUDP:
			udp := &layers.UDP{SrcPort: layers.UDPPort(t.L4Src), DstPort: layers.UDPPort(t.L4Dst)}
			udp.SetNetworkLayerForChecksum(nl)
			ls = append(ls, udp)
		case layers.IPProtocolICMPv4:
			ls = append(ls, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoRequest, 0), Id: uint16(t.L4Src)})
		case layers.IPProtocolICMPv6:
			ic := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypeEchoRequest, 0)}
			ic.SetNetworkLayerForChecksum(nl)
			ls = append(ls, ic, &layers.ICMPv6Echo{Identifier: uint16(t.L4Src)})
		}
		ls = append(ls, gopacket.Payload(make([]byte, 18)))
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		return nil, fmt.Errorf("building the packet: %w", err)
	}
	return buf.Bytes(), nil
}

// setTCPFlags sets the flags named in s (comma separated).
func setTCPFlags(tcp *layers.TCP, s string) error {
	tcp.SYN = false
	for _, f := range strings.Split(s, ",") {
		switch strings.ToLower(strings.TrimSpace(f)) {
		case "syn":
			tcp.SYN = true
		case "ack":
			tcp.ACK = true
		case "fin":
			tcp.FIN = true
		case "rst":
			tcp.RST = true
		case "psh":
			tcp.PSH = true
		case "urg":
			tcp.URG = true
		default:
			return fmt.Errorf("tcp_flags: %q is not syn, ack, fin, rst, psh or urg", strings.TrimSpace(f))
		}
	}
	return nil
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// MaxLiveTrace bounds the packets one live trace captures.
const MaxLiveTrace = 1000

// LiveTracer runs per-port live traces (VPP `trace add`): capture the
// next count packets received on a port with each stage's decision. A
// Tracer that is also a LiveTracer serves /v1/ports/{name}/trace.
type LiveTracer interface {
	ArmTrace(port string, count int) error
	LiveTrace(port string) (*LiveTrace, error)
	DisarmTrace(port string) error
}

// LiveTraceRequest arms a live trace.
type LiveTraceRequest struct {
	Count int `json:"count"` // packets to capture, 1..1000
}

// LiveTrace is what a port's live trace captured so far.
type LiveTrace struct {
	Port     string            `json:"port"`
	Armed    bool              `json:"armed"`
	Count    int               `json:"count"`
	Captured int               `json:"captured"`
	Since    time.Time         `json:"since,omitzero"`
	Records  []LiveTraceRecord `json:"records"`
}

// LiveTraceRecord is one captured packet: its headers as received, each
// stage's decision, the output ports and the drop reasons counted.
type LiveTraceRecord struct {
	Seq         int           `json:"seq"`
	Time        time.Time     `json:"time"`
	Worker      int           `json:"worker"`
	Queue       int           `json:"queue"`
	Len         int           `json:"len"`
	Headers     string        `json:"headers"`
	Stages      []TraceStage  `json:"stages"`
	Outputs     []TraceOutput `json:"outputs"`
	MoreOutputs int           `json:"more_outputs,omitempty"`
	Dropped     []string      `json:"dropped,omitempty"`
}

func (h *handler) liveTracer() LiveTracer {
	lt, _ := h.Tracer.(LiveTracer)
	return lt
}

func (h *handler) postLiveTrace(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(r)
	if err != nil {
		writeErr(w, err)
		return
	}
	var req LiveTraceRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "trace body: "+err.Error())
		return
	}
	if req.Count < 1 || req.Count > MaxLiveTrace {
		writeError(w, http.StatusUnprocessableEntity, fmt.Sprintf("count: %d is not in 1..%d", req.Count, MaxLiveTrace))
		return
	}
	name := r.PathValue("name")
	if err := h.liveTracer().ArmTrace(name, req.Count); err != nil {
		writeError(w, http.StatusNotFound, err.Error())
		return
	}
	res, err := h.liveTracer().LiveTrace(name)
	if err != nil {
		writeError(w, http.StatusNotFound, err.Error())
		return
	}
	writeJSON(w, http.StatusCreated, res)
}

func (h *handler) getLiveTrace(w http.ResponseWriter, r *http.Request) {
	res, err := h.liveTracer().LiveTrace(r.PathValue("name"))
	if err != nil {
		writeError(w, http.StatusNotFound, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, res)
}

func (h *handler) deleteLiveTrace(w http.ResponseWriter, r *http.Request) {
	if err := h.liveTracer().DisarmTrace(r.PathValue("name")); err != nil {
		writeError(w, http.StatusNotFound, err.Error())
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
