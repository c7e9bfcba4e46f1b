package api

import (
	"encoding/json"
	"net/url"
	"reflect"
	"testing"
)

// The request decoders never panic, and what they accept re-encodes to
// something they decode to the same value.
func FuzzDecodePort(f *testing.F) {
	f.Add([]byte(`{"name":"vm3","type":"vhostuser","bridge":"br0","socket":"a.sock","mode":"server","queues":2}`))
	f.Add([]byte(`{"name":"vm3","queues":"x"}`))
	f.Add([]byte(`{"name":"up1","type":"afxdp","bridge":"br0","device":"eth1","queues":[0,3]}`))
	f.Add([]byte(`{"name":"up1","queues":[]}`))
	f.Add([]byte(`{"name":"up1","queues":null}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := DecodePort(b)
		if err != nil {
			return
		}
		again, _ := json.Marshal(p)
		q, err := DecodePort(again)
		if err != nil || !q.Equal(p) {
			t.Fatalf("%s: re-decoded %+v %v, want %+v", again, q, err, p)
		}
	})
}

// The security group and ACL decoders: what they accept re-encodes to the
// same value (group picks the decoder).
func FuzzDecodeFilter(f *testing.F) {
	f.Add([]byte(`{"name":"web","rules":[{"direction":"ingress","ethertype":"ipv4","protocol":"tcp","ports":"80-81","remote":"0.0.0.0/0"}]}`), true)
	f.Add([]byte(`{"name":"db","rules":[{"direction":"ingress","protocol":"icmp","icmp_type":8,"icmp_code":0,"remote_group":"web"}]}`), true)
	f.Add([]byte(`{"name":"x","rules":[]}`), true)
	f.Add([]byte(`{"name":"no-telnet","port":"a","direction":"ingress","priority":100,"protocol":"tcp","ports":"23","action":"deny"}`), false)
	f.Add([]byte(`{"name":"p","port":"a","direction":"egress","priority":"high","action":"allow"}`), false)
	f.Fuzz(func(t *testing.T, b []byte, group bool) {
		var v, again any
		var err error
		if group {
			v, err = DecodeSecurityGroup(b)
		} else {
			v, err = DecodeACL(b)
		}
		if err != nil {
			return
		}
		enc, _ := json.Marshal(v)
		if group {
			again, err = DecodeSecurityGroup(enc)
		} else {
			again, err = DecodeACL(enc)
		}
		if err != nil || !sameJSON(again, v) {
			t.Fatalf("%s: re-decoded %+v %v, want %+v", enc, again, err, v)
		}
	})
}

func FuzzDecodeConfig(f *testing.F) {
	f.Add([]byte(`{"bridges":[{"name":"br0"}],"ports":[{"name":"vm1","type":"vhostuser","bridge":"br0","socket":"a"}]}`), false)
	f.Add([]byte("bridges: [{name: br0}]\nports: []\n"), true)
	f.Fuzz(func(t *testing.T, b []byte, yaml bool) {
		c, err := DecodeConfig(b, yaml)
		if err != nil {
			return
		}
		c.Defaults()
		_ = c.Validate()
		if !sameJSON(c.Clone(), c) {
			t.Fatalf("clone differs: %+v", c)
		}
	})
}

func FuzzMergePatch(f *testing.F) {
	f.Add([]byte(`{"queues":2,"mode":null}`))
	f.Add([]byte(`{"queues":[1,2]}`))
	f.Add([]byte(`{"name":{"x":1}}`))
	f.Fuzz(func(t *testing.T, patch []byte) {
		cur := PortConfig{Name: "vm1", Type: TypeVhostUser, Bridge: "br0", Socket: "/a", Mode: ModeServer, Queues: QueueCount(1)}
		var out PortConfig
		_ = MergePatch(cur, patch, &out)
	})
}

// A PUT of any body answers 2xx or 4xx, never 5xx, and changes the state
// only when it answers 2xx.
func FuzzPutPort(f *testing.F) {
	f.Add([]byte(`{"type":"vhostuser","bridge":"br0","socket":"x.sock"}`), "vm3")
	f.Add([]byte(`{"type":"vhostuser","bridge":"br1","socket":"vm1.sock"}`), "vm1")
	f.Fuzz(func(t *testing.T, body []byte, name string) {
		r := newRig(t)
		before := r.store.Snapshot()
		code := r.do("PUT", "/v1/ports/"+urlPathEscape(name), string(body)).Code
		if code >= 500 {
			t.Fatalf("%q %q: %d", name, body, code)
		}
		if code >= 300 && !reflect.DeepEqual(before, r.store.Snapshot()) {
			t.Fatalf("%q %q: %d but the state changed", name, body, code)
		}
	})
}

func urlPathEscape(s string) string { return (&url.URL{Path: s}).EscapedPath() }

// A state file that is not exactly what SaveState writes is refused,
// never half-read.
func FuzzDecodeState(f *testing.F) {
	f.Add([]byte(`{"version":1,"revision":3,"revisions":{"ports/vm1":2},"config":{"bridges":[{"name":"br0"}]}}`))
	f.Add([]byte(`{"version":1,"revision":3,"revisions":{},"config":{"ports":[{"name":"x","queues":"1"}]}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := DecodeState(b)
		if err != nil {
			return
		}
		if st.Version != StateVersion || st.Revisions == nil {
			t.Fatalf("accepted %+v", st)
		}
		if !sameJSON(st.Clone(), st) {
			t.Fatalf("clone differs: %+v", st)
		}
	})
}
