package api

import (
	"strings"
	"testing"
)

// The configuration, with the interfaces a router needs.
const filterYAML = `
bridges:
  - name: br0
  - name: br1
security_groups:
  - name: web
    rules:
      - {direction: ingress, ethertype: ipv4, protocol: tcp, ports: "80-81", remote: 0.0.0.0/0}
      - {direction: egress, ethertype: ipv4}
ports:
  - name: a
    type: afxdp
    bridge: br0
    device: veth-a
    security_groups: [web]
    port_security: {mac: "02:00:00:00:00:0a", ips: [10.10.0.2], allowed_address_pairs: [{mac: "02:00:00:00:00:0b", ip: 10.10.0.50}]}
  - name: b
    type: afxdp
    bridge: br1
    device: veth-b
acls:
  - {name: no-telnet, port: a, direction: ingress, priority: 100, protocol: tcp, ports: "23", action: deny}
routers:
  - name: r1
    interfaces:
      - {name: in, bridge: br0, addresses: [10.10.0.1/24]}
      - {name: out, bridge: br1, addresses: [10.20.0.1/24]}
    nat:
      - {type: snat, source: 10.10.0.0/24, to: 10.20.0.1}
      - {type: dnat, destination: 10.20.0.100, to: 10.10.0.2}
      - {type: dnat, destination: 10.20.0.1, protocol: tcp, port: 8080, to: "10.10.0.2:80"}
`

func TestFilterConfigLoads(t *testing.T) {
	c, err := Load([]byte(filterYAML), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if len(c.SecurityGroups) != 1 || len(c.SecurityGroups[0].Rules) != 2 || len(c.ACLs) != 1 {
		t.Fatalf("groups/acls: %+v %+v", c.SecurityGroups, c.ACLs)
	}
	a, _ := c.Port("a")
	if a.PortSecurity == nil || a.PortSecurity.MAC != "02:00:00:00:00:0a" || len(a.PortSecurity.AllowedAddressPairs) != 1 || a.SecurityGroups[0] != "web" {
		t.Fatalf("port a: %+v", a)
	}
	if len(c.Routers[0].NAT) != 3 || c.Routers[0].NAT[2].Port != 8080 {
		t.Fatalf("nat: %+v", c.Routers[0].NAT)
	}
}

func TestFilterConfigErrorsNameField(t *testing.T) {
	for _, tc := range []struct{ from, to, want string }{
		{"security_groups: [web]", "security_groups: [x]", `ports[0].security_groups[0]: "x": unknown security group`},
		{"ports: \"23\"", "ports: \"23-1\"", "acls[0].ports"},
		{"port: a, direction", "port: zz, direction", "acls[0].port"},
		{"direction: egress, ethertype: ipv4}", "direction: sideways, ethertype: ipv4}", "security_groups[0].rules[1].direction"},
		{`ips: [10.10.0.2]`, `ips: [10.10.0.299]`, "ports[0].port_security.ips[0]"},
		{"to: 10.20.0.1}", "to: nowhere}", "routers[0].nat[0].to"},
		{`to: "10.10.0.2:80"`, `to: "10.10.0.2"`, "routers[0].nat[2].port"},
	} {
		y := strings.Replace(filterYAML, tc.from, tc.to, 1)
		if y == filterYAML {
			t.Fatalf("%q not in the YAML", tc.from)
		}
		_, err := Load([]byte(y), t.TempDir())
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s -> %s: error %v, want %q", tc.from, tc.to, err, tc.want)
		}
	}
}

// A change to groups, ACLs or a port's filter fields is one filter
// update: no port is recreated. A NAT change replaces the router.
func TestDiffFilterUpdate(t *testing.T) {
	old, err := Load([]byte(filterYAML), "/run/x")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ from, to, want string }{
		{`ports: "80-81"`, `ports: "80-82"`, "update filter"},
		{"security_groups: [web]", "security_groups: []", "update filter"},
		{`ips: [10.10.0.2]`, `ips: [10.10.0.3]`, "update filter"},
		{"priority: 100", "priority: 101", "update filter"},
		{"to: 10.20.0.1}", "to: 10.20.0.2}", "remove router r1,add router r1"},
	} {
		next, err := Load([]byte(strings.Replace(filterYAML, tc.from, tc.to, 1)), "/run/x")
		if err != nil {
			t.Fatal(tc.to, err)
		}
		acts, err := Diff(old, next)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, a := range acts {
			got = append(got, a.String())
		}
		if strings.Join(got, ",") != tc.want {
			t.Errorf("%s: actions %v, want %s", tc.to, got, tc.want)
		}
		c := old.Clone()
		for _, a := range acts {
			c.Apply(a)
		}
		if again, _ := Diff(c, next); len(again) != 0 {
			t.Errorf("%s: after Apply still %v", tc.to, again)
		}
	}
}

// PUT /v1/config takes the groups and the ports' filter fields as the
// OpenStack agent writes them, and a bad reference is a 422 naming it.
func TestPutConfigFilter(t *testing.T) {
	r := newRig(t)
	body := `{"bridges":[{"name":"br0"}],
	 "security_groups":[{"name":"sg-1","rules":[{"direction":"ingress","ethertype":"ipv4","protocol":"tcp","ports":"22","remote":"10.0.0.0/8"}]}],
	 "ports":[{"name":"vm1","type":"vhostuser","bridge":"br0","socket":"vm1.sock","tag":5,
	   "security_groups":["sg-1"],
	   "port_security":{"mac":"fa:16:3e:00:00:01","ips":["10.0.0.5"],"allowed_address_pairs":[{"mac":"fa:16:3e:00:00:99","ip":"10.1.0.0/24"}]}}]}`
	rec := r.do("PUT", "/v1/config", body)
	if rec.Code != 200 {
		t.Fatalf("PUT config: %d %s", rec.Code, rec.Body)
	}
	if !strings.Contains(rec.Body.String(), "update filter") {
		t.Errorf("actions: %s", rec.Body)
	}
	bad := strings.Replace(body, `"security_groups":["sg-1"]`, `"security_groups":["sg-2"]`, 1)
	rec = r.do("PUT", "/v1/config", bad)
	if rec.Code != 422 || !strings.Contains(rec.Body.String(), `ports[0].security_groups[0]`) {
		t.Errorf("unknown group: %d %s", rec.Code, rec.Body)
	}
}
