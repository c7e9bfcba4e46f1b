package vswitch_test

import (
	"testing"

	"github.com/gopacket/gopacket/layers"

	"github.com/vswitch/vswitch/acl"
	vswitch "github.com/vswitch/vswitch/switch"
	"github.com/vswitch/vswitch/vhostuser/vhostusertest"
)

// usage returns the zone of owner from ZoneUsages.
func usage(t *testing.T, sw *vswitch.Switch, owner string) vswitch.ZoneUsage {
	t.Helper()
	_, zs := sw.ZoneUsages()
	for _, z := range zs {
		if z.Owner == owner {
			return z
		}
	}
	t.Fatalf("no zone of %s in %+v", owner, zs)
	return vswitch.ZoneUsage{}
}

// A port's own zone limit replaces the default: its overflow is a counted
// drop on the port, the other port's zone keeps the default, and the
// usage shows each limit and count. A limit for a port added later
// applies from its first packet.
func TestZoneLimitPerPort(t *testing.T) {
	g := acl.SecurityGroup{Name: "g", Rules: []acl.SGRule{{Direction: "ingress", EtherType: "ipv4"}, {Direction: "egress", EtherType: "ipv4"}}}
	fc := &acl.Config{SecurityGroups: []acl.SecurityGroup{g}, Ports: []acl.PortFilter{
		{Name: "p0", SecurityGroups: []string{"g"}}, {Name: "p1", SecurityGroups: []string{"g"}}, {Name: "p2", SecurityGroups: []string{"g"}}}}
	r := filterRig(t, fc)
	cfg := vswitch.DefaultConntrack()
	cfg.ZoneLimit = 3
	if err := r.sw.SetConntrack(cfg); err != nil {
		t.Fatal(err)
	}
	if err := r.sw.SetZoneLimits([]vswitch.ZoneLimit{{Port: "p0", Limit: 2}, {Port: "p2", Limit: 0}, {Router: "nope", Limit: 1}}); err != nil {
		t.Fatal(err)
	}
	if err := r.sw.SetZoneLimits([]vswitch.ZoneLimit{{Port: "p0", Router: "r1"}}); err == nil {
		t.Fatal("a limit naming a port and a router accepted")
	}
	a, b := mac(0), mac(1)
	for i := range 4 {
		r.fes[0].SendPacket(0, l4frame(t, a, b, "10.0.0.1", "10.0.0.2", uint16(5000+i), 53, nil, 20))
	}
	r.poll()
	if got := len(r.fes[1].Received(0)); got != 2 {
		t.Fatalf("p1 got %d, want 2 (p0's zone holds 2)", got)
	}
	if d := r.drops(0)["conntrack_zone_full"]; d != 2 {
		t.Fatalf("p0 conntrack_zone_full %d, want 2: %v", d, r.drops(0))
	}
	u0, u1 := usage(t, r.sw, "port p0"), usage(t, r.sw, "port p1")
	if u0.Zone != 1 || u0.Limit != 2 || !u0.Own || u0.Count != 2 || u1.Limit != 3 || u1.Own || u1.Count != 2 {
		t.Fatalf("usage p0 %+v p1 %+v", u0, u1)
	}
	// p1 keeps the default (3): its fourth flow to p0 overflows in p1's
	// zone and is counted on p1.
	for i := range 2 {
		r.fes[1].SendPacket(0, l4frame(t, b, a, "10.0.0.2", "10.0.0.1", uint16(6000+i), 53, nil, 20))
	}
	r.poll()
	if d := r.drops(1)["conntrack_zone_full"]; d != 1 {
		t.Fatalf("p1 conntrack_zone_full %d: %v", d, r.drops(1))
	}
	r.fes[0].Received(0)
	// p2 comes later, with no limit of its own (0): more than the default.
	info, vp, fe := attachPort(t, r.sw, "p2", vswitch.PortOptions{}, vhostusertest.Options{})
	waitRunning(t, vp, 2)
	r.ports, r.vps, r.fes = append(r.ports, info), append(r.vps, vp), append(r.fes, fe)
	fe.PostRxBuffers(0, 64, 2048)
	c := mac(2)
	for i := range 5 {
		fe.SendPacket(0, l4frame(t, c, a, "10.0.0.3", "10.0.0.1", uint16(7000+i), 53, nil, 20))
	}
	r.poll()
	if u := usage(t, r.sw, "port p2"); u.Limit != 0 || !u.Own || u.Count != 5 || r.drops(2)["conntrack_zone_full"] != 0 {
		t.Fatalf("p2: %+v drops %v", u, r.drops(2))
	}
	// Clearing the limits brings the default back, live.
	if err := r.sw.SetZoneLimits(nil); err != nil {
		t.Fatal(err)
	}
	if u := usage(t, r.sw, "port p2"); u.Limit != 3 || u.Own {
		t.Fatalf("p2 after clearing: %+v", u)
	}
	fe.SendPacket(0, l4frame(t, c, a, "10.0.0.3", "10.0.0.1", 7100, 53, nil, 20))
	r.poll()
	if d := r.drops(2)["conntrack_zone_full"]; d != 1 {
		t.Fatalf("p2 conntrack_zone_full %d after clearing", d)
	}
}

// A router's NAT zone takes a limit of its own too.
func TestZoneLimitRouter(t *testing.T) {
	r, m10, _ := natRig(t)
	if err := r.sw.SetZoneLimits([]vswitch.ZoneLimit{{Router: "r1", Limit: 1}}); err != nil {
		t.Fatal(err)
	}
	r.fes[0].SendPacket(0, l4frame(t, mac(0), m10, "10.10.0.3", "10.20.0.2", 40000, 7000, nil, 10))
	r.fes[0].SendPacket(0, l4frame(t, mac(0), m10, "10.10.0.3", "10.20.0.2", 40001, 7000, nil, 10))
	r.poll()
	one(t, r, 1)
	if d := r.drops(0)["conntrack_zone_full"]; d != 1 {
		t.Fatalf("conntrack_zone_full %d: %v", d, r.drops(0))
	}
	if u := usage(t, r.sw, "router r1"); u.Limit != 1 || !u.Own || u.Count != 1 || u.Zone < 2048 {
		t.Fatalf("router zone %+v", u)
	}
}

// A port that gets a removed port's ID, and so its conntrack zone, does
// not inherit the removed port's connections: a reply to one of them is
// new to it, and its default-deny ingress drops it. The other port's
// connections and traffic are untouched.
func TestRemovedPortZoneFlushed(t *testing.T) {
	open := acl.SecurityGroup{Name: "open", Rules: []acl.SGRule{{Direction: "ingress", EtherType: "ipv4"}, {Direction: "egress", EtherType: "ipv4"}}}
	fc := &acl.Config{
		SecurityGroups: []acl.SecurityGroup{{Name: "default"}, open},
		Ports: []acl.PortFilter{{Name: "p0", SecurityGroups: []string{"default"}},
			{Name: "p1", SecurityGroups: []string{"open"}}, {Name: "p1b", SecurityGroups: []string{"default"}}},
	}
	r := filterRig(t, fc)
	a, b := mac(0), mac(1)
	// p0's guest opens a UDP flow and a TCP connection to p1's guest
	// (whose group admits them).
	r.fes[0].SendPacket(0, l4frame(t, a, b, "10.0.0.1", "10.0.0.2", 5000, 53, nil, 20))
	r.fes[0].SendPacket(0, l4frame(t, a, b, "10.0.0.1", "10.0.0.2", 40000, 80, &layers.TCP{SYN: true, Seq: 100}, 0))
	r.poll()
	if got := len(r.fes[1].Received(0)); got != 2 {
		t.Fatalf("p1 got %d", got)
	}
	// Each is tracked in p0's zone (egress) and p1's (ingress).
	ct := r.sw.Conntrack()
	z0, z1 := usage(t, r.sw, "port p0").Zone, usage(t, r.sw, "port p1").Zone
	if ct.ZoneLen(z0) != 2 || ct.ZoneLen(z1) != 2 {
		t.Fatalf("zones %d: %d, %d: %d", z0, ct.ZoneLen(z0), z1, ct.ZoneLen(z1))
	}
	// The replies pass p1's egress and p0's ingress as established.
	reply := l4frame(t, b, a, "10.0.0.2", "10.0.0.1", 53, 5000, nil, 20)
	r.fes[1].SendPacket(0, reply)
	r.fes[1].SendPacket(0, l4frame(t, b, a, "10.0.0.2", "10.0.0.1", 80, 40000, &layers.TCP{SYN: true, ACK: true, Seq: 900, Ack: 101}, 0))
	r.poll()
	if got := len(r.fes[0].Received(0)); got != 2 {
		t.Fatalf("p0 got %d replies", got)
	}

	if err := r.sw.RemovePort("p1"); err != nil {
		t.Fatal(err)
	}
	if ct.ZoneLen(z1) != 0 || ct.ZoneLen(z0) != 2 {
		t.Fatalf("after removing p1: zone %d holds %d, zone %d %d", z1, ct.ZoneLen(z1), z0, ct.ZoneLen(z0))
	}
	info, vp, fe := attachPort(t, r.sw, "p1b", vswitch.PortOptions{}, vhostusertest.Options{})
	waitRunning(t, vp, 1)
	if info.ID != r.ports[1].ID {
		t.Fatalf("p1b got ID %d, p1 had %d", info.ID, r.ports[1].ID)
	}
	r.ports[1], r.vps[1], r.fes[1] = info, vp, fe
	fe.PostRxBuffers(0, 64, 2048)
	if u := usage(t, r.sw, "port p1b"); u.Zone != z1 || u.Count != 0 {
		t.Fatalf("p1b's zone %+v", u)
	}
	// p0 sends more of its flow and its connection (to the same guest
	// address, now behind p1b): new to p1b's zone, so p1b's default-deny
	// ingress drops them, counted on p1b. Had p1b inherited p1's
	// connections, they would pass as established.
	r.fes[0].SendPacket(0, l4frame(t, a, b, "10.0.0.1", "10.0.0.2", 5000, 53, nil, 20))
	r.fes[0].SendPacket(0, l4frame(t, a, b, "10.0.0.1", "10.0.0.2", 40000, 80, &layers.TCP{ACK: true, Seq: 101, Ack: 901}, 0))
	r.poll()
	none(t, r, 1)
	d := r.drops(1)
	if d["sg_ingress_denied"]+d["ct_tcp_bad_flags"] != 2 || d["sg_ingress_denied"] != 1 {
		t.Fatalf("p1b drops %v, want the UDP one as sg_ingress_denied and the TCP ACK as invalid", d)
	}
	// p0's own connections are still there: p1b's guest may answer
	// (egress is open) and p0's zone admits the reply.
	if ct.ZoneLen(z0) != 2 {
		t.Fatalf("zone %d holds %d", z0, ct.ZoneLen(z0))
	}
	r.fes[1].SendPacket(0, reply)
	r.poll()
	one(t, r, 0)
}
