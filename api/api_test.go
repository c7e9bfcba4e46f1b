package api

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestDefaultConfig(t *testing.T) {
	c, err := Load(DefaultYAML(), "/tmp/vs-run")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Bridges) != 1 || len(c.Ports) != 2 {
		t.Fatalf("default has %d bridges and %d ports", len(c.Bridges), len(c.Ports))
	}
	if c.Ports[0].Socket != "/tmp/vs-run/vm1.sock" || c.API.Listen != "unix:///tmp/vs-run/api.sock" {
		t.Fatalf("paths not under the run dir: %q %q", c.Ports[0].Socket, c.API.Listen)
	}
}

func TestConfigErrorsNameTheField(t *testing.T) {
	base := "bridges: [{name: br0}]\nports:\n  - {name: vm1, type: vhostuser, bridge: br0, socket: a.sock}\n"
	cases := []struct{ yaml, want string }{
		{"bogus: 1\n" + base, "bogus"},
		{"bridges: [{name: br0, colour: red}]", "colour"},
		{"bridges: [{name: br0}]\nports:\n  - {name: vm1, type: vhostuser, bridge: br0, socket: a.sock, sockett: x}", "sockett"},
		{"bridges: [{name: br0}, {name: br0}]", "bridges[1].name"},
		{"bridges: [{name: br0}]\nports:\n  - {name: vm1, type: vhostuser, bridge: nope, socket: a.sock}", "ports[0].bridge"},
		{"bridges: [{name: br0}]\nports:\n  - {name: vm1, type: tap, bridge: br0}", "ports[0].type"},
		{"bridges: [{name: br0}]\nports:\n  - {name: vm1, type: vhostuser, bridge: br0}", "ports[0].socket"},
		{"bridges: [{name: br0}]\nports:\n  - {name: vm1, type: vhostuser, bridge: br0, socket: a, mode: both}", "ports[0].mode"},
		{base + "  - {name: vm1, type: vhostuser, bridge: br0, socket: b.sock}", "ports[1].name"},
		{base + "  - {name: vm2, type: vhostuser, bridge: br0, socket: a.sock}", "ports[1].socket"},
		{"api: {listen: 'tcp://0.0.0.0:80'}\n" + base, "api.listen"},
		{"dataplane: {workers: 0, poll: fast}\n" + base, "dataplane.poll"},
		{"bridges: [{name: 'bad name'}]", "bridges[0].name"},
		{"bridges: [{name: br0, mac_table_size: 'many'}]", "mac_table_size"},
		{"bridges: [{name: br0, fdb_max: -1}]", "bridges[0].fdb_max"},
		{"bridges: [{name: br0}]\nports:\n  - {name: vm1, type: vhostuser, bridge: br0, socket: a, tag: 4095}", "ports[0].tag"},
		{"bridges: [{name: br0}]\nports:\n  - {name: vm1, type: vhostuser, bridge: br0, socket: a, trunks: [10, 5000]}", "ports[0].trunks[1]"},
		{"bridges: [{name: br0}]\nports:\n  - {name: vm1, type: vhostuser, bridge: br0, socket: a, trunks: [10, 10]}", "ports[0].trunks[1]"},
		{"bridges: [{name: br0}]\nports:\n  - {name: vm1, type: vhostuser, bridge: br0, socket: a, vlan_mode: access}", "ports[0].tag"},
		{"bridges: [{name: br0}]\nports:\n  - {name: vm1, type: vhostuser, bridge: br0, socket: a, vlan_mode: access, tag: 3, trunks: [4]}", "ports[0].trunks"},
		{"bridges: [{name: br0}]\nports:\n  - {name: vm1, type: vhostuser, bridge: br0, socket: a, vlan_mode: trunk, tag: 3}", "ports[0].tag"},
		{"bridges: [{name: br0}]\nports:\n  - {name: vm1, type: vhostuser, bridge: br0, socket: a, vlan_mode: native-tagged}", "ports[0].tag"},
		{"bridges: [{name: br0}]\nports:\n  - {name: vm1, type: vhostuser, bridge: br0, socket: a, vlan_mode: hybrid}", "ports[0].vlan_mode"},
		{"bridges: [{name: br0, mode: hub}]", "bridges[0].mode"},
		{"bridges: [{name: x0, mode: xconnect}]\nports:\n  - {name: a, type: vhostuser, bridge: x0, socket: a}\n" +
			"  - {name: b, type: vhostuser, bridge: x0, socket: b}\n  - {name: c, type: vhostuser, bridge: x0, socket: c}", "bridges[0].mode"},
	}
	ok := "bridges: [{name: br0, fdb_max: 100}]\nports:\n" +
		"  - {name: a, type: afxdp, bridge: br0, device: veth-a, tag: 10}\n" +
		"  - {name: t, type: vhostuser, bridge: br0, socket: t.sock, trunks: [10, 20]}\n" +
		"  - {name: n, type: vhostuser, bridge: br0, socket: n.sock, tag: 5, trunks: [6], vlan_mode: native-tagged}\n"
	if c, err := Load([]byte(ok), "/tmp/vs"); err != nil {
		t.Fatalf("VLAN config refused: %v", err)
	} else if c.Ports[0].Tag != 10 || len(c.Ports[1].Trunks) != 2 || c.Bridges[0].FDBMax != 100 {
		t.Fatalf("VLAN config read as %+v", c)
	}
	for _, tc := range cases {
		_, err := Load([]byte(tc.yaml), "/tmp/vs")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("config %q: error %v, want one naming %q", tc.yaml, err, tc.want)
		}
	}
}

// A cross-connect with its two ports is valid, and so is one still being
// filled port by port through the API.
func TestXconnectConfig(t *testing.T) {
	for _, y := range []string{
		"bridges: [{name: x0, mode: xconnect}]\nports:\n  - {name: a, type: vhostuser, bridge: x0, socket: a}\n  - {name: b, type: vhostuser, bridge: x0, socket: b}",
		"bridges: [{name: x0, mode: xconnect}]",
		"bridges: [{name: br0, mode: learning}]",
	} {
		if _, err := Load([]byte(y), "/tmp/vs"); err != nil {
			t.Errorf("config %q: %v", y, err)
		}
	}
}

func TestParseListen(t *testing.T) {
	for _, ok := range []string{"unix:///run/vswitch/api.sock", "tcp://127.0.0.1:8080", "tcp://localhost:1", "tcp://[::1]:9"} {
		if _, err := ParseListen(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for _, bad := range []string{"http://127.0.0.1:80", "unix://", "tcp://127.0.0.1"} {
		if _, err := ParseListen(bad); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
	// Other hosts can reach these: Validate wants TLS and a token.
	for _, remote := range []string{"tcp://10.0.0.1:80", "tcp://:80", "tcp://0.0.0.0:443"} {
		if l, err := ParseListen(remote); err != nil || l.Local() {
			t.Errorf("%s: %+v %v, want a parsed non-local address", remote, l, err)
		}
	}
}

type fakeSource []PortStatus

func (f fakeSource) Ports() []PortStatus { return f }

func TestPortsHandler(t *testing.T) {
	h := NewHandler(Options{Source: fakeSource{{Name: "vm1", Type: "vhostuser", State: StateRunning, RxPackets: 5, Drops: map[string]uint64{"frame_too_short": 1}}}})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/v1/ports", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /v1/ports: %d", rec.Code)
	}
	var ports []map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &ports); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"name", "type", "state", "rx_packets", "rx_bytes", "tx_packets", "tx_bytes", "drops"} {
		if _, ok := ports[0][k]; !ok {
			t.Errorf("port has no %q: %v", k, ports[0])
		}
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/v1/ports/nope", nil))
	if rec.Code != http.StatusNotFound || !strings.Contains(rec.Body.String(), "no port nope") {
		t.Fatalf("unknown port: %d %s", rec.Code, rec.Body)
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("DELETE", "/v1/ports/vm1", nil))
	if rec.Code < 400 || rec.Code >= 500 {
		t.Fatalf("DELETE on the read-only API: %d", rec.Code)
	}
}
