package api

import (
	"encoding/json"
	"reflect"
	"slices"
	"testing"
)

const afxdpYAML = `bridges: [{name: br0}]
ports:
  - {name: up0, type: afxdp, bridge: br0, device: eth1, queues: [0, 1]}
  - {name: up1, type: afxdp, bridge: br0, device: eth2, queues: 2}
  - {name: up2, type: afxdp, bridge: br0, device: eth3}
  - {name: vm1, type: vhostuser, bridge: br0, socket: vm1.sock, queues: 4}
`

// Both forms of queues survive YAML, JSON, Clone and a saved state.
func TestQueueSpecForms(t *testing.T) {
	c, err := Load([]byte(afxdpYAML), "/tmp/x")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]QueueSpec{"up0": QueueList(0, 1), "up1": QueueCount(2), "up2": {}, "vm1": QueueCount(4)}
	for _, p := range c.Ports {
		if !p.Queues.Equal(want[p.Name]) {
			t.Errorf("%s: queues %+v, want %+v", p.Name, p.Queues, want[p.Name])
		}
	}
	if !reflect.DeepEqual(c.Clone(), c) {
		t.Errorf("clone differs: %+v", c.Clone())
	}
	b, _ := json.Marshal(c.Ports[:3])
	if got := string(b); got != `[{"name":"up0","type":"afxdp","bridge":"br0","queues":[0,1],"device":"eth1"},`+
		`{"name":"up1","type":"afxdp","bridge":"br0","queues":2,"device":"eth2"},`+
		`{"name":"up2","type":"afxdp","bridge":"br0","device":"eth3"}]` {
		t.Errorf("JSON %s", got)
	}
	p, err := DecodePort([]byte(`{"name":"up0","type":"afxdp","bridge":"br0","device":"eth1","queues":[3, 1]}`))
	if err != nil || !slices.Equal(p.Queues.Queues(), []int{3, 1}) {
		t.Errorf("decoded %+v %v", p, err)
	}
	for _, body := range []string{`{"queues":"1"}`, `{"queues":[1.5]}`, `{"queues":{"a":1}}`, `{"queues":[true]}`} {
		if _, err := DecodePort([]byte(body)); err == nil {
			t.Errorf("%s decoded", body)
		}
	}
	st := NewState(c)
	b, err = json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	back, err := DecodeState(b)
	if err != nil || !reflect.DeepEqual(back, st) {
		t.Errorf("state round trip: %v\n%+v\n%+v", err, back, st)
	}
	for _, s := range []struct {
		in   string
		want QueueSpec
	}{{"2", QueueCount(2)}, {"0,2", QueueList(0, 2)}, {"[1]", QueueList(1)}, {" 3 , 4 ", QueueList(3, 4)}} {
		if q, err := ParseQueueSpec(s.in); err != nil || !q.Equal(s.want) {
			t.Errorf("ParseQueueSpec(%q) = %+v %v", s.in, q, err)
		}
	}
	if _, err := ParseQueueSpec("a,b"); err == nil {
		t.Error("a,b parsed")
	}
}

// Changing an afxdp port's queue list recreates the port; the same list
// does not.
func TestDiffQueueList(t *testing.T) {
	base, err := Load([]byte(afxdpYAML), "/tmp/x")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		q    QueueSpec
		want []string
	}{
		{"same list", QueueList(0, 1), nil},
		{"other list", QueueList(0, 2), []string{"remove port up0", "add port up0"}},
		{"longer list", QueueList(0, 1, 2), []string{"remove port up0", "add port up0"}},
		{"count instead", QueueCount(2), []string{"remove port up0", "add port up0"}},
		{"every queue", QueueSpec{}, []string{"remove port up0", "add port up0"}},
	} {
		n := base.Clone()
		n.Ports[0].Queues = tc.q
		acts, err := Diff(base, n)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, a := range acts {
			got = append(got, a.String())
			if a.Op == OpAdd && !a.Port.Queues.Equal(tc.q) {
				t.Errorf("%s: adds queues %v", tc.name, a.Port.Queues)
			}
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}
