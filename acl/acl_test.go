package acl

import (
	"bytes"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/vswitch/vswitch/switch/header"
)

func loadYAML(t *testing.T, s string) *Config {
	t.Helper()
	var c Config
	d := yaml.NewDecoder(bytes.NewReader([]byte(s)))
	d.KnownFields(true)
	if err := d.Decode(&c); err != nil {
		t.Fatal(err)
	}
	return &c
}

var ports = map[string]uint16{"a": 1, "b": 2}

func compileYAML(t *testing.T, s string) *Snapshot {
	t.Helper()
	snap, err := Compile(loadYAML(t, s), ports)
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

// filter runs one frame through port security (egress) and Filter.
func filter(t *testing.T, s *Snapshot, frame []byte, m Meta, ct CTState) Verdict {
	t.Helper()
	p := parse(t, frame)
	var cnt Counters
	ds := []DropReason{0}
	if m.Dir == Egress {
		s.PortSecurity([][]byte{frame}, []header.Parsed{p}, []Meta{m}, ds, &cnt)
		if ds[0] != Pass {
			return Verdict{Drop: ds[0], ACLRule: -1, SGRule: -1}
		}
	}
	out := []Verdict{{}}
	s.Filter([]header.Parsed{p}, []Meta{m}, []CTState{ct}, out, &cnt)
	return out[0]
}

const issueYAML = `
security_groups:
  - name: web
    rules:
      - {direction: ingress, ethertype: ipv4, protocol: tcp, ports: "80-81", remote: 0.0.0.0/0}
      - {direction: egress, ethertype: ipv4}                # allow all egress
ports:
  - name: a
    security_groups: [web]
    port_security: {mac: "02:00:00:00:00:0a", ips: [10.10.0.2]}
acls:
  - {name: no-telnet, port: a, direction: ingress, priority: 100, protocol: tcp, ports: "23", action: deny}
`

func TestIssueExample(t *testing.T) {
	s := compileYAML(t, issueYAML)
	in, out := Meta{1, Ingress}, Meta{1, Egress}
	for _, tc := range []struct {
		name string
		p    pkt
		m    Meta
		ct   CTState
		want DropReason
	}{
		{"http in", pkt{src: "192.0.2.1", dst: "10.10.0.2", dport: 80, tcpFlags: "S"}, in, CTNew, Pass},
		{"81 in", pkt{src: "192.0.2.1", dst: "10.10.0.2", dport: 81, tcpFlags: "S"}, in, CTNew, Pass},
		{"82 in denied", pkt{src: "192.0.2.1", dst: "10.10.0.2", dport: 82, tcpFlags: "S"}, in, CTNew, DropSGIngress},
		{"telnet acl", pkt{src: "192.0.2.1", dst: "10.10.0.2", dport: 23}, in, CTEstablished, DropACLDeny},
		{"udp in denied", pkt{proto: "udp", src: "192.0.2.1", dst: "10.10.0.2", dport: 80}, in, CTNew, DropSGIngress},
		{"return traffic", pkt{src: "192.0.2.1", dst: "10.10.0.2", sport: 443, dport: 40000, tcpFlags: "SA"}, in, CTEstablished, Pass},
		{"related icmp", pkt{proto: "icmp", src: "192.0.2.1", dst: "10.10.0.2", icmpType: 3}, in, CTRelated, Pass},
		{"invalid", pkt{src: "192.0.2.1", dst: "10.10.0.2", dport: 80}, in, CTInvalid, DropCTInvalid},
		{"egress v4", pkt{src: "10.10.0.2", dst: "192.0.2.1", dport: 443, tcpFlags: "S"}, out, CTNew, Pass},
		{"egress v6 no rule", pkt{v6: true, src: "fe80::ff:fe00:a", dst: "2001:db8::1", dport: 443}, out, CTNew, DropSGEgress},
		{"dhcpv6 client", pkt{v6: true, proto: "udp", src: "fe80::ff:fe00:a", dst: "ff02::1:2", sport: 546, dport: 547}, out, CTNew, Pass},
		{"dhcp reply in", pkt{proto: "udp", src: "10.10.0.1", dst: "10.10.0.2", sport: 67, dport: 68}, in, CTNew, Pass},
		{"NS in", pkt{v6: true, proto: "icmp", icmpType: 135}, in, CTNew, Pass},
		{"other port unfiltered", pkt{dport: 9}, Meta{2, Ingress}, CTNew, Pass},
	} {
		v := filter(t, s, craft(t, tc.p), tc.m, tc.ct)
		if v.Drop != tc.want {
			t.Errorf("%s: got %v, want %v", tc.name, v.Drop, tc.want)
		}
		if tc.want == Pass && tc.ct == CTNew && v.Commit != (v.SGRule >= 0) {
			t.Errorf("%s: commit %v with SG rule %d", tc.name, v.Commit, v.SGRule)
		}
	}
	if s.ACL.Hits(0) != 1 {
		t.Errorf("no-telnet hits = %d, want 1", s.ACL.Hits(0))
	}
}

func TestConfigErrors(t *testing.T) {
	base := "ports: [{name: a}, {name: b, security_groups: [web]}]\nsecurity_groups: [{name: web, rules: [{direction: ingress}]}]\n"
	for _, tc := range []struct{ yaml, want string }{
		{`acls: [{name: x, port: a, direction: ingress, action: allow}, {name: y, port: a, direction: ingress, action: allow},
  {name: z, port: a, direction: ingress, protocol: tcp, ports: "90-80", action: deny}]`, `acls[2].ports: "90-80": start after end`},
		{`acls: [{name: x, port: a, direction: ingress, protocol: tcp, ports: "99999", action: deny}]`, `acls[0].ports: "99999": want a port`},
		{`acls: [{name: x, port: a, direction: ingress, ports: "80", action: deny}]`, `acls[0].ports: "80": needs a protocol with ports`},
		{`acls: [{name: x, port: a, direction: up, action: deny}]`, `acls[0].direction: "up": want ingress or egress`},
		{`acls: [{name: x, port: a, direction: ingress}]`, `acls[0].action: required`},
		{`acls: [{name: x, port: zz, direction: ingress, action: deny}]`, `acls[0].port: "zz": unknown port`},
		{`acls: [{name: x, port: a, direction: ingress, action: deny}, {name: x, port: a, direction: ingress, action: deny}]`, `acls[1].name: "x": duplicate acl`},
		{`acls: [{name: x, port: a, direction: ingress, source: 10.0.0.0/33, action: deny}]`, `acls[0].source: "10.0.0.0/33"`},
		{`acls: [{name: x, port: a, direction: ingress, ethertype: ipv6, source: 10.0.0.0/8, action: deny}]`, `acls[0].source: "10.0.0.0/8": address family differs`},
		{`acls: [{name: x, port: a, direction: ingress, protocol: tcp, icmp_type: 3, action: deny}]`, `acls[0].icmp_type: "3": needs protocol icmp`},
		{`acls: [{name: x, port: a, direction: ingress, protocol: icmp, icmp_type: 300, action: deny}]`, `acls[0].icmp_type: "300": want 0-255`},
		{`acls: [{name: x, port: a, direction: ingress, protocol: bogus, action: deny}]`, `acls[0].protocol: "bogus"`},
		{`acls: [{name: x, port: a, direction: ingress, priority: -1, action: deny}]`, `acls[0].priority: "-1"`},
		{`ports: [{name: a, security_groups: [nope]}]`, `ports[0].security_groups[0]: "nope": unknown security group`},
		{`ports: [{name: a, port_security: {mac: "zz"}}]`, `ports[0].port_security.mac: "zz"`},
		{`ports: [{name: a, port_security: {mac: "02:00:00:00:00:01", ips: [10.0.0.1/24]}}]`, `ports[0].port_security.ips[0]: "10.0.0.1/24"`},
		{`ports: [{name: a, port_security: {mac: "02:00:00:00:00:01", allowed_address_pairs: [{ip: x}]}}]`, `ports[0].port_security.allowed_address_pairs[0].ip: "x"`},
		{`security_groups: [{name: web, rules: [{direction: ingress, remote: 10.0.0.0/8, remote_group: web}]}]`, `security_groups[0].rules[0].remote_group: "web": remote and remote_group are exclusive`},
		{`security_groups: [{name: web, rules: [{direction: egress, protocol: udp, ports: "5-1"}]}]`, `security_groups[0].rules[0].ports: "5-1": start after end`},
		{`security_groups: [{name: web, rules: [{}]}]`, `security_groups[0].rules[0].direction: required`},
		{`security_groups: [{name: web}, {name: web}]`, `security_groups[1].name: "web": duplicate`},
	} {
		y := tc.yaml
		if !strings.Contains(y, "ports:") || strings.HasPrefix(y, "acls") {
			y = base + y
		}
		if strings.HasPrefix(tc.yaml, "security_groups") {
			y = tc.yaml
		}
		_, err := Compile(loadYAML(t, y), ports)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s\n got %v\nwant %q", tc.yaml, err, tc.want)
		}
	}
}
