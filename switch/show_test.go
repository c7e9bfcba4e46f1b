package vswitch_test

import (
	"fmt"
	"testing"

	"github.com/gopacket/gopacket/layers"
)

// The operator listings: FDB, routers with their FIB, neighbours.
func TestListings(t *testing.T) {
	r, m10, m20 := routerRig(t)
	a, b := mac(0), mac(1)
	r.fes[0].SendPacket(0, arpFrame(t, layers.ARPRequest, a, "10.10.0.2", bcast, "10.10.0.1"))
	r.fes[1].SendPacket(0, arpFrame(t, layers.ARPReply, b, "10.20.0.2", m20, "10.20.0.1"))
	r.fes[1].SendPacket(0, ndFrame(t, layers.ICMPv6TypeNeighborAdvertisement, b, m20, "fd20::2", "fd20::1", "fd20::2"))
	r.fes[0].SendPacket(0, vframe(t, a, bcast, -1, 10)) // learned on the way
	r.poll()
	fdb, err := r.sw.BridgeFDB("br0")
	if err != nil || len(fdb) < 1 || fdb[0].MAC != a.String() || fdb[0].VLAN != 10 || fdb[0].Port != "p0" {
		t.Fatalf("fdb %+v %v", fdb, err)
	}
	if _, err := r.sw.BridgeFDB("nope"); err == nil {
		t.Fatal("unknown bridge listed")
	}
	rs := r.sw.Routers()
	if len(rs) != 1 || rs[0].Name != "r1" || len(rs[0].Interfaces) != 2 {
		t.Fatalf("routers %+v", rs)
	}
	ri, err := r.sw.Router("r1")
	if err != nil {
		t.Fatal(err)
	}
	if i := ri.Interfaces[0]; i.Name != "r1-v10" || i.MAC != m10.String() || i.VLAN != 10 || fmt.Sprint(i.Addresses) != "[10.10.0.1/24 fd10::1/64]" {
		t.Fatalf("interface %+v", i)
	}
	var got []string
	for _, rt := range ri.Routes {
		got = append(got, fmt.Sprintf("%s %s %s %s", rt.Prefix, rt.Kind, rt.Interface, rt.Via))
	}
	want := "[10.10.0.0/24 connected r1-v10  10.20.0.0/24 connected r1-v20  172.16.0.0/12 static r1-v20 10.20.0.254 fd10::/64 connected r1-v10  fd20::/64 connected r1-v20 ]"
	if fmt.Sprint(got) != want {
		t.Fatalf("routes\n%v\nwant\n%v", got, want)
	}
	if _, err := r.sw.Router("nope"); err == nil {
		t.Fatal("unknown router described")
	}
	ns, err := r.sw.Neighbors("r1")
	if err != nil {
		t.Fatal(err)
	}
	got = nil
	for _, n := range ns {
		got = append(got, fmt.Sprintf("%s %s %s %s", n.Interface, n.IP, n.MAC, n.State))
	}
	want = fmt.Sprintf("[r1-v10 10.10.0.2 %s reachable r1-v20 10.20.0.2 %s reachable r1-v20 fd20::2 %s reachable]", a, b, b)
	if fmt.Sprint(got) != want {
		t.Fatalf("neighbors\n%v\nwant\n%v", got, want)
	}
}
