package api

import (
	"strings"
	"testing"
)

// A port's socket permissions come from the port, else the vhostuser
// defaults, else 0660 and the daemon's user and group.
func TestSocketPerms(t *testing.T) {
	c, err := Load([]byte(`vhostuser: {socket_group: libvirt-qemu, socket_mode: "0640"}
bridges: [{name: br0}]
ports:
  - {name: vm1, type: vhostuser, bridge: br0, socket: vm1.sock}
  - {name: vm2, type: vhostuser, bridge: br0, socket: vm2.sock, socket_owner: "107", socket_group: kvm, socket_mode: "0600"}
`), "/tmp/x")
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []struct {
		owner, group string
		mode         uint32
	}{{"", "libvirt-qemu", 0o640}, {"107", "kvm", 0o600}} {
		o, g, m := c.SocketPerms(c.Ports[i])
		if o != want.owner || g != want.group || m != want.mode {
			t.Errorf("%s: %q %q %o, want %+v", c.Ports[i].Name, o, g, m, want)
		}
	}
	if g := c.RunDirGroup(); g != "libvirt-qemu" {
		t.Errorf("run dir group %q", g)
	}
	bare, _ := Load([]byte("bridges: [{name: br0}]\nports: [{name: vm1, type: vhostuser, bridge: br0, socket: a}]\n"), "/tmp/x")
	if o, g, m := bare.SocketPerms(bare.Ports[0]); o != "" || g != "" || m != 0o660 {
		t.Errorf("defaults: %q %q %o, want the daemon's user and group, 0660", o, g, m)
	}
	for _, tc := range []struct{ yaml, want string }{
		{`vhostuser: {socket_mode: "0999"}`, "vhostuser.socket_mode"},
		{`vhostuser: {socket_group: "a b"}`, "vhostuser.socket_group"},
		{`vhostuser: {socket_owner: "-1"}`, "vhostuser.socket_owner"},
		{`api: {socket_owner: "x:y"}`, "api.socket_owner"},
		{`ports: [{name: p, type: vhostuser, bridge: br0, socket: a, socket_group: "../g"}]`, "ports[0].socket_group"},
		{`ports: [{name: p, type: afxdp, bridge: br0, device: eth0, socket_owner: root}]`, "ports[0].socket"},
	} {
		if _, err := Load([]byte(tc.yaml+"\nbridges: [{name: br0}]\n"), "/tmp/x"); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.yaml, err, tc.want)
		}
	}
	// The defaults change only at start; a port's own settings at once.
	n := c.Clone()
	n.VhostUser.SocketMode = "0660"
	if _, err := Diff(c, n); err == nil || !strings.HasPrefix(err.Error(), "vhostuser:") {
		t.Errorf("changing the defaults: %v", err)
	}
	n = c.Clone()
	n.Ports[1].SocketGroup = "libvirt-qemu"
	if acts, err := Diff(c, n); err != nil || len(acts) != 2 || acts[0].String() != "remove port vm2" {
		t.Errorf("changing a port's group: %v %v", acts, err)
	}
}
