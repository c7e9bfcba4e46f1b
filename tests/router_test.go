package tests

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/vswitch/vswitch/afxdp/afxdptest"
	"github.com/vswitch/vswitch/internal/testutil"
)

// routedHost is a namespace host on its own VLAN and subnets, with the
// router as its default gateway for IPv4 and IPv6.
func routedHost(t *testing.T, n int) *afxdptest.Host {
	h := afxdptest.NewHost(t, fmt.Sprintf("10.%d.0.2/24", n), 1)
	h.Exec(t, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=0", "net.ipv6.conf.eth0.disable_ipv6=0")
	h.Exec(t, "ip", "addr", "add", fmt.Sprintf("fd%d::2/64", n), "dev", "eth0", "nodad")
	h.Exec(t, "ip", "route", "add", "default", "via", fmt.Sprintf("10.%d.0.1", n))
	h.Exec(t, "ip", "-6", "route", "add", "default", "via", fmt.Sprintf("fd%d::1", n))
	return h
}

func ping(h *afxdptest.Host, ip string, count int) error {
	args := []string{"netns", "exec", h.NS, "busybox", "ping", "-c", fmt.Sprint(count), "-W", "2", "-i", "0.2", ip}
	if strings.Contains(ip, ":") {
		args[4] = "ping6"
	}
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ping %s from %s: %v\n%s", ip, h.NS, err, out)
	}
	return nil
}

// TestRouterBetweenVLANs: hosts A (VLAN 10) and B (VLAN 20) behind AF_XDP
// access ports talk through router r1: ping and TCP, IPv4 and IPv6, and
// ping the router's own addresses. Host
// C on VLAN 30 has no router interface: A's traffic to it is dropped.
func TestRouterBetweenVLANs(t *testing.T) {
	afxdpPrereqs(t)
	a, b, c := routedHost(t, 10), routedHost(t, 20), routedHost(t, 30)
	cfg := fmt.Sprintf(`bridges: [{name: br0}]
ports:
  - {name: xa, type: afxdp, bridge: br0, device: %s, tag: 10}
  - {name: xb, type: afxdp, bridge: br0, device: %s, tag: 20}
  - {name: xc, type: afxdp, bridge: br0, device: %s, tag: 30}
routers:
  - name: r1
    interfaces:
      - {name: r1-v10, bridge: br0, vlan: 10, addresses: [10.10.0.1/24, "fd10::1/64"]}
      - {name: r1-v20, bridge: br0, vlan: 20, addresses: [10.20.0.1/24, "fd20::1/64"]}
`, a.Near, b.Near, c.Near)
	forgetState(t, a.Near)
	sw := testutil.StartVswitchd(t, testutil.ShortTempDir(t), cfg)
	for _, p := range []string{"xa", "xb", "xc"} {
		waitState(t, sw, p, "running")
	}
	// The first packets towards a new neighbour are held while the
	// router resolves it: the very first ping comes back.
	for _, ip := range []string{"10.20.0.2", "fd20::2"} {
		if err := ping(a, ip, 1); err != nil {
			t.Fatalf("first ping: %v\nxa drops %v\n%s", err, sw.MustPorts(t)["xa"].Drops, sw.Log())
		}
		if err := ping(a, ip, 3); err != nil {
			t.Fatalf("%v\n%s", err, sw.Log())
		}
	}
	if err := ping(b, "10.10.0.2", 3); err != nil {
		t.Fatal(err)
	}
	// The router answers pings to its own addresses, near and far side,
	// including a payload longer than the head copy.
	for _, ip := range []string{"10.10.0.1", "10.20.0.1", "fd10::1", "fd20::1"} {
		if err := ping(a, ip, 3); err != nil {
			t.Fatalf("%v\n%s", err, sw.Log())
		}
	}
	if out, err := exec.Command("ip", "netns", "exec", a.NS, "busybox", "ping", "-c", "2", "-W", "2", "-s", "1000", "10.10.0.1").CombinedOutput(); err != nil {
		t.Fatalf("large ping of the router: %v\n%s", err, out)
	}
	// What the router learned and runs, as an operator sees it.
	if out := mustCtl(t, sw, 0, "neigh", "show", "r1"); !strings.Contains(out, "10.20.0.2") || !strings.Contains(out, "fd20::2") || !strings.Contains(out, "reachable") {
		t.Errorf("neigh show:\n%s", out)
	}
	if out := mustCtl(t, sw, 0, "route", "show", "r1"); !strings.Contains(out, "10.20.0.0/24") || !strings.Contains(out, "connected") {
		t.Errorf("route show:\n%s", out)
	}
	if out := mustCtl(t, sw, 0, "fdb", "show", "br0"); !strings.Contains(out, "xa") || !strings.Contains(out, "xb") {
		t.Errorf("fdb show:\n%s", out)
	}
	// A live trace of the next packets from A, among them a ping of the router.
	if code, body, _, _ := sw.Do("POST", "/v1/ports/xa/trace", `{"count":10}`); code != 201 {
		t.Fatalf("arm live trace: %d %s", code, body)
	}
	if err := ping(a, "10.10.0.1", 2); err != nil {
		t.Fatal(err)
	}
	if _, body, _, _ := sw.Do("GET", "/v1/ports/xa/trace", ""); !strings.Contains(string(body), "echo reply from 10.10.0.1 to xa") {
		t.Errorf("live trace: %s", body)
	}
	d := afxdptest.TCPExchange(t, b.NS, a.NS, "10.20.0.2:5001", 4<<20, 1, 60*time.Second)
	t.Logf("IPv4 routed between VLANs: 4 MiB each way in %v", d)
	d = afxdptest.TCPExchange(t, b.NS, a.NS, "[fd20::2]:5002", 4<<20, 1, 60*time.Second)
	t.Logf("IPv6 routed between VLANs: 4 MiB each way in %v", d)

	// No route to VLAN 30's subnet, and no bridging across VLANs.
	if ping(a, "10.30.0.2", 2) == nil || ping(a, "fd30::2", 2) == nil {
		t.Fatal("A reached C on VLAN 30 without a route")
	}
	if ping(c, "10.10.0.2", 2) == nil {
		t.Fatal("C reached A")
	}
	drops := sw.MustPorts(t)["xa"].Drops
	if drops["no_route"] == 0 {
		t.Errorf("xa drops %v: want no_route counted", drops)
	}
	t.Logf("xa drops %v, xc drops %v", drops, sw.MustPorts(t)["xc"].Drops)
}
