package tests

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vswitch/vswitch/afxdp/afxdptest"
	"github.com/vswitch/vswitch/api"
	"github.com/vswitch/vswitch/internal/testutil"
)

// natHost is a namespace host at cidr with gw as its default route
// ("" for none); it returns the host and its MAC.
func natHost(t *testing.T, cidr, gw string) (*afxdptest.Host, string) {
	h := afxdptest.NewHost(t, cidr, 1)
	if gw != "" {
		h.Exec(t, "ip", "route", "add", "default", "via", gw)
	}
	return h, strings.TrimSpace(h.Exec(t, "cat", "/sys/class/net/eth0/address"))
}

func pingOK(h *afxdptest.Host, ip string, count int) bool {
	return exec.Command("ip", "netns", "exec", h.NS, "busybox", "ping", "-c", fmt.Sprint(count), "-W", "2", "-i", "0.2", ip).Run() == nil
}

// peerOf accepts one connection on ln and reports the peer's address.
func peerOf(ln net.Listener) chan string {
	ch := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			ch <- "accept: " + err.Error()
			return
		}
		ch <- c.RemoteAddr().(*net.TCPAddr).IP.String()
		c.Close()
	}()
	return ch
}

func dialPeer(t *testing.T, from *afxdptest.Host, addr string, ln net.Listener) string {
	t.Helper()
	ch := peerOf(ln)
	c, err := afxdptest.Dial(from.NS, addr)
	if err != nil {
		ln.Close()
		t.Fatalf("dial %s from %s: %v", addr, from.NS, err)
	}
	defer c.Close()
	select {
	case p := <-ch:
		return p
	case <-time.After(10 * time.Second):
		t.Fatalf("no connection at %s", addr)
	}
	return ""
}

// TestNATAndSecurityGroups: inside hosts A (10.10.0.2, security group
// "web", port security) and S (10.10.0.3, port security) on VLAN 10,
// outside host B (10.20.0.2, no route to the inside) on VLAN 20, router
// r1 with the NAT rules. S reaches B masqueraded behind
// 10.20.0.1 and gets its replies; B reaches A through the floating IP
// 10.20.0.100 on the port the group admits and not otherwise; A's own
// traffic out comes back; an ingress reject refuses B's connection at
// once; the connections are listed; S spoofing a MAC or an IP never
// arrives.
func TestNATAndSecurityGroups(t *testing.T) {
	afxdpPrereqs(t)
	a, amac := natHost(t, "10.10.0.2/24", "10.10.0.1")
	s, smac := natHost(t, "10.10.0.3/24", "10.10.0.1")
	b, _ := natHost(t, "10.20.0.2/24", "")
	cfg := fmt.Sprintf(`bridges: [{name: br0}]
security_groups:
  - name: web
    rules:
      - {direction: ingress, ethertype: ipv4, protocol: tcp, ports: "80-81", remote: 0.0.0.0/0}
      - {direction: egress, ethertype: ipv4}
ports:
  - {name: xa, type: afxdp, bridge: br0, device: %s, tag: 10, security_groups: [web], port_security: {mac: "%s", ips: [10.10.0.2]}}
  - {name: xs, type: afxdp, bridge: br0, device: %s, tag: 10, port_security: {mac: "%s", ips: [10.10.0.3]}}
  - {name: xb, type: afxdp, bridge: br0, device: %s, tag: 20}
acls:
  - {name: no-telnet, port: xa, direction: ingress, priority: 100, protocol: tcp, ports: "23", action: deny}
  - {name: no-smtp, port: xa, direction: ingress, priority: 100, protocol: tcp, ports: "25", action: reject}
routers:
  - name: r1
    interfaces:
      - {name: in, bridge: br0, vlan: 10, addresses: [10.10.0.1/24]}
      - {name: out, bridge: br0, vlan: 20, addresses: [10.20.0.1/24]}
    nat:
      - {type: snat, source: 10.10.0.0/24, to: 10.20.0.1}
      - {type: dnat, destination: 10.20.0.100, to: 10.10.0.2}
      - {type: dnat, destination: 10.20.0.1, protocol: tcp, port: 8080, to: "10.10.0.2:80"}
`, a.Near, amac, s.Near, smac, b.Near)
	forgetState(t, a.Near)
	sw := testutil.StartVswitchd(t, testutil.ShortTempDir(t), cfg)
	for _, p := range []string{"xa", "xs", "xb"} {
		waitState(t, sw, p, "running")
	}
	// The router resolves B on the first packets.
	deadline := time.Now().Add(15 * time.Second)
	for !pingOK(s, "10.20.0.2", 1) && time.Now().Before(deadline) {
	}
	if !pingOK(s, "10.20.0.2", 3) {
		t.Fatalf("S cannot ping B through SNAT\n%s", sw.Log())
	}

	// SNAT: B sees S as the router's address; the reply comes back.
	lnB := afxdptest.Listen(t, b.NS, "10.20.0.2:5001")
	if p := dialPeer(t, s, "10.20.0.2:5001", lnB); p != "10.20.0.1" {
		t.Fatalf("B saw S as %s, want 10.20.0.1 (masquerade)", p)
	}
	// A's own connections out leave as its floating IP, and the group
	// lets the replies in (an egress connection's return traffic).
	if !pingOK(a, "10.20.0.2", 3) {
		t.Fatalf("A cannot ping B: xa drops %v", sw.MustPorts(t)["xa"].Drops)
	}
	if p := dialPeer(t, a, "10.20.0.2:5001", lnB); p != "10.20.0.100" {
		t.Fatalf("B saw A as %s, want its floating IP 10.20.0.100", p)
	}

	// Floating IP and port forward: B reaches A's port 80 (allowed by
	// the group) at 10.20.0.100:80 and 10.20.0.1:8080, and A sees B.
	lnA := afxdptest.Listen(t, a.NS, "10.10.0.2:80")
	if p := dialPeer(t, b, "10.20.0.100:80", lnA); p != "10.20.0.2" {
		t.Fatalf("A saw B as %s via the floating IP", p)
	}
	if p := dialPeer(t, b, "10.20.0.1:8080", lnA); p != "10.20.0.2" {
		t.Fatalf("A saw B as %s via the port forward", p)
	}

	// Unsolicited ingress the group does not allow: ping and port 22.
	before := sw.MustPorts(t)["xa"].Drops["sg_ingress_denied"]
	if pingOK(b, "10.20.0.100", 2) {
		t.Fatal("B pinged A: the group allows no ICMP in")
	}
	afxdptest.Listen(t, a.NS, "10.10.0.2:22")
	if c, err := afxdptest.Dial(b.NS, "10.20.0.100:22"); err == nil {
		c.Close()
		t.Fatal("B connected to A's port 22")
	}
	if d := sw.MustPorts(t)["xa"].Drops; d["sg_ingress_denied"] <= before {
		t.Fatalf("xa drops %v: want sg_ingress_denied counted", d)
	}
	// An ingress reject on A's port answers B at once with a RST from
	// the floating IP (back through the router's NAT): refused, not a
	// timeout.
	start := time.Now()
	if c, err := afxdptest.Dial(b.NS, "10.20.0.100:25"); err == nil {
		c.Close()
		t.Fatal("B connected to A's port 25")
	} else if !errors.Is(err, syscall.ECONNREFUSED) || time.Since(start) > 5*time.Second {
		t.Fatalf("dial to a rejected port: %v after %v, want connection refused at once", err, time.Since(start))
	}
	// The connections are listed: the router's with their NAT, A's in
	// its group's zone.
	code, body, _, err := sw.Do("GET", "/v1/conntrack?router=r1&address=10.20.0.2", "")
	var l api.ConnList
	if err != nil || code != 200 || json.Unmarshal(body, &l) != nil || l.Total == 0 || !l.Connections[0].SNAT && !l.Connections[0].DNAT {
		t.Fatalf("conntrack list: %d %s %v", code, body, err)
	}
	if code, body, _, _ := sw.Do("GET", "/v1/conntrack?port=xa&protocol=tcp", ""); code != 200 || !strings.Contains(string(body), `"owner": "port xa"`) {
		t.Fatalf("conntrack list of xa: %d %s", code, body)
	}

	// Spoofing: S with another MAC, then with another IP, reaches no one.
	s.Exec(t, "ip", "link", "set", "eth0", "address", "02:00:00:00:00:99")
	s.Exec(t, "ip", "neigh", "flush", "dev", "eth0")
	if pingOK(s, "10.10.0.2", 2) {
		t.Fatal("S reached A with a spoofed MAC")
	}
	s.Exec(t, "ip", "link", "set", "eth0", "address", smac)
	s.Exec(t, "ip", "addr", "flush", "dev", "eth0")
	s.Exec(t, "ip", "addr", "add", "10.10.0.9/24", "dev", "eth0")
	s.Exec(t, "ip", "neigh", "flush", "dev", "eth0")
	if pingOK(s, "10.10.0.2", 2) {
		t.Fatal("S reached A with a spoofed IP")
	}
	d := sw.MustPorts(t)["xs"].Drops
	if d["spoofed_source_mac"] == 0 || d["spoofed_arp_sender_ip"]+d["spoofed_source_ip"] == 0 {
		t.Fatalf("xs drops %v: want spoofed_source_mac and spoofed_arp_sender_ip counted", d)
	}
	t.Logf("xa drops %v; xs drops %v", sw.MustPorts(t)["xa"].Drops, d)
}

// v6Host is a namespace host with IPv6 address ip6 (/64, no DAD) beside
// its IPv4 one.
func v6Host(t *testing.T, cidr, ip6 string) *afxdptest.Host {
	h := afxdptest.NewHost(t, cidr, 1)
	h.Exec(t, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=0", "net.ipv6.conf.eth0.disable_ipv6=0")
	h.Exec(t, "ip", "addr", "add", ip6+"/64", "dev", "eth0", "nodad")
	return h
}

// TestSecurityGroupIPv6: host A (fd00::2) has a stateful group that
// admits TCP port 80 over IPv6; host B (fd00::3) on the same bridge
// connects to port 80 and not to port 22, and A's own connection to B
// gets its replies. Neighbour discovery passes the group.
func TestSecurityGroupIPv6(t *testing.T) {
	afxdpPrereqs(t)
	a := v6Host(t, "10.66.0.2/24", "fd00::2")
	b := v6Host(t, "10.66.0.3/24", "fd00::3")
	cfg := fmt.Sprintf(`bridges: [{name: br0}]
security_groups:
  - name: web6
    rules:
      - {direction: ingress, ethertype: ipv6, protocol: tcp, ports: "80", remote: "::/0"}
      - {direction: egress, ethertype: ipv6}
ports:
  - {name: xa, type: afxdp, bridge: br0, device: %s, security_groups: [web6]}
  - {name: xb, type: afxdp, bridge: br0, device: %s}
`, a.Near, b.Near)
	forgetState(t, a.Near)
	sw := testutil.StartVswitchd(t, testutil.ShortTempDir(t), cfg)
	waitState(t, sw, "xa", "running")
	waitState(t, sw, "xb", "running")

	lnA := afxdptest.Listen(t, a.NS, "[fd00::2]:80")
	if p := dialPeer(t, b, "[fd00::2]:80", lnA); p != "fd00::3" {
		t.Fatalf("A saw B as %s", p)
	}
	lnB := afxdptest.Listen(t, b.NS, "[fd00::3]:5001")
	if p := dialPeer(t, a, "[fd00::3]:5001", lnB); p != "fd00::2" {
		t.Fatalf("B saw A as %s", p)
	}
	afxdptest.Listen(t, a.NS, "[fd00::2]:22")
	var c net.Conn
	err := afxdptest.Do(b.NS, func() (err error) {
		c, err = net.DialTimeout("tcp", "[fd00::2]:22", 2*time.Second)
		return
	})
	if err == nil {
		c.Close()
		t.Fatal("B connected to A's port 22")
	}
	if d := sw.MustPorts(t)["xa"].Drops; d["sg_ingress_denied"] == 0 {
		t.Fatalf("xa drops %v: want sg_ingress_denied counted", d)
	}
}
