package api

import (
	"fmt"
	"strings"
	"testing"
)

const routerYAML = `bridges: [{name: br0}]
ports:
  - {name: a, type: afxdp, bridge: br0, device: veth-a, tag: 10}
  - {name: t, type: vhostuser, bridge: br0, socket: /run/vswitch/t.sock, trunks: [10, 20]}
routers:
  - name: r1
    interfaces:
      - {name: r1-v10, bridge: br0, vlan: 10, addresses: [10.10.0.1/24, "fd10::1/64"]}
      - {name: r1-v20, bridge: br0, vlan: 20, addresses: [10.20.0.1/24, "fd20::1/64"]}
    routes:
      - {prefix: 0.0.0.0/0, via: 10.20.0.254}
`

func TestRouterConfig(t *testing.T) {
	c, err := Load([]byte(routerYAML), "/tmp/vs")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Routers) != 1 || len(c.Routers[0].Interfaces) != 2 || c.Routers[0].Routes[0].Via != "10.20.0.254" {
		t.Fatalf("read %+v", c.Routers)
	}
	for _, tc := range []struct{ from, to, want string }{
		{"vlan: 20, addresses", "vlan: 10, addresses", "routers[0].interfaces[1].vlan"},
		{"bridge: br0, vlan: 20", "bridge: br9, vlan: 20", "routers[0].interfaces[1].bridge"},
		{"10.20.0.1/24", "10.20.0.1", "routers[0].interfaces[1].addresses[0]"},
		{"via: 10.20.0.254", "via: 10.99.0.254", "routers[0].routes[0].via"},
		{"via: 10.20.0.254", "via: fd20::9", "routers[0].routes[0].via"},
		{"prefix: 0.0.0.0/0", "prefix: nope", "routers[0].routes[0].prefix"},
		{"{name: r1-v10, bridge", "{name: r1-v10, mac: '01:00:5e:00:00:01', bridge", "routers[0].interfaces[0].mac"},
		{"name: r1-v20", "name: r1-v10", "routers[0].interfaces[1].name"},
		{"vlan: 20, addresses", "vlan: 5000, addresses", "routers[0].interfaces[1].vlan"},
	} {
		y := strings.Replace(routerYAML, tc.from, tc.to, 1)
		if _, err := Load([]byte(y), "/tmp/vs"); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s -> %s: error %v, want one naming %s", tc.from, tc.to, err, tc.want)
		}
	}
}

func TestDiffRouters(t *testing.T) {
	old, _ := Load([]byte(routerYAML), "/tmp/vs")
	acts, err := Diff(old.Startup(), old)
	if err != nil {
		t.Fatal(err)
	}
	if s := fmt.Sprint(acts); s != "[add bridge br0 add port a add port t add router r1]" {
		t.Fatalf("from empty: %s", s)
	}
	// A changed route replaces the router only.
	nw, _ := Load([]byte(strings.Replace(routerYAML, "10.20.0.254", "10.20.0.253", 1)), "/tmp/vs")
	acts, _ = Diff(old, nw)
	if s := fmt.Sprint(acts); s != "[remove router r1 add router r1]" {
		t.Fatalf("route change: %s", s)
	}
	// A replaced bridge takes its router down first and back after.
	nw, _ = Load([]byte(strings.Replace(routerYAML, "[{name: br0}]", "[{name: br0, fdb_max: 5}]", 1)), "/tmp/vs")
	acts, _ = Diff(old, nw)
	if s := fmt.Sprint(acts); s != "[remove router r1 remove port a remove port t remove bridge br0 add bridge br0 add port a add port t add router r1]" {
		t.Fatalf("bridge change: %s", s)
	}
	for _, a := range acts {
		old.Apply(a)
	}
	if !sameJSON(old.Routers, nw.Routers) {
		t.Fatal("Apply did not record the routers")
	}
}
