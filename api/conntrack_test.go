package api

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/vswitch/vswitch/nat"
)

// fakeConns is the fake daemon's connection table.
var (
	fakeConnMu sync.Mutex
	fakeConns  = []Connection{
		{Zone: 1, Owner: "port vm1", Protocol: "tcp", Orig: ConnTuple{Src: "10.0.0.1", Dst: "10.0.0.2", SrcPort: 40000, DstPort: 80},
			Reply: ConnTuple{Src: "10.0.0.2", Dst: "10.0.0.1", SrcPort: 80, DstPort: 40000}, TCPState: "ESTABLISHED", ExpiresIn: 431990, Replied: true},
		{Zone: 2048, Owner: "router r1", Protocol: "udp", Orig: ConnTuple{Src: "10.10.0.3", Dst: "8.8.8.8", SrcPort: 5000, DstPort: 53},
			Reply: ConnTuple{Src: "8.8.8.8", Dst: "10.20.0.1", SrcPort: 53, DstPort: 5000}, ExpiresIn: 29, SNAT: true},
	}
	fakeQueries []ConnQuery
)

func (f *fakeDaemon) match(q ConnQuery) ([]Connection, error) {
	if q.Port != "" && q.Port != "vm1" {
		return nil, fmt.Errorf("no port %q", q.Port)
	}
	if q.Router != "" && q.Router != "r1" {
		return nil, fmt.Errorf("no router %q", q.Router)
	}
	fakeQueries = append(fakeQueries, q)
	var out []Connection
	for _, c := range fakeConns {
		if q.Zone != 0 && c.Zone != q.Zone || q.Port != "" && c.Zone != 1 || q.Router != "" && c.Zone != 2048 ||
			q.Protocol != 0 && c.Protocol != ProtoName(q.Protocol) ||
			q.Address.IsValid() && c.Orig.Src != q.Address.String() && c.Orig.Dst != q.Address.String() && c.Reply.Dst != q.Address.String() {
			continue
		}
		out = append(out, c)
	}
	return out, nil
}

func (f *fakeDaemon) Connections(q ConnQuery) (*ConnList, error) {
	fakeConnMu.Lock()
	defer fakeConnMu.Unlock()
	m, err := f.match(q)
	if err != nil {
		return nil, err
	}
	l := &ConnList{Total: len(m), Entries: len(fakeConns), MaxEntries: 65536}
	if len(m) > q.Limit {
		m, l.Truncated = m[:q.Limit], true
	}
	l.Connections = m
	return l, nil
}

func (f *fakeDaemon) FlushConnections(q ConnQuery) (int, error) {
	fakeConnMu.Lock()
	defer fakeConnMu.Unlock()
	m, err := f.match(q)
	return len(m), err
}

func TestConntrackAPI(t *testing.T) {
	r := newRig(t)
	get := func(path string) (int, ConnList, string) {
		rec := r.do("GET", path, "")
		var l ConnList
		json.Unmarshal(rec.Body.Bytes(), &l)
		return rec.Code, l, rec.Body.String()
	}
	if code, l, body := get("/v1/conntrack"); code != 200 || l.Total != 2 || len(l.Connections) != 2 || l.Truncated || l.MaxEntries != 65536 {
		t.Fatalf("all: %d %s", code, body)
	}
	if code, l, body := get("/v1/conntrack?limit=1"); code != 200 || l.Total != 2 || len(l.Connections) != 1 || !l.Truncated {
		t.Fatalf("limit: %d %s", code, body)
	}
	if code, l, body := get("/v1/conntrack?protocol=UDP&address=10.20.0.1"); code != 200 || l.Total != 1 || !l.Connections[0].SNAT {
		t.Fatalf("udp to 10.20.0.1: %d %s", code, body)
	}
	if code, l, body := get("/v1/conntrack?port=vm1&protocol=6"); code != 200 || l.Total != 1 || l.Connections[0].TCPState != "ESTABLISHED" {
		t.Fatalf("port: %d %s", code, body)
	}
	if code, l, body := get("/v1/conntrack?zone=7"); code != 200 || l.Total != 0 || l.Connections == nil || !strings.Contains(body, `"connections": []`) {
		t.Fatalf("empty: %d %s", code, body)
	}
	fakeConnMu.Lock()
	last := fakeQueries[len(fakeQueries)-1]
	fakeConnMu.Unlock()
	if last.Zone != 7 || last.Limit != DefaultConnLimit {
		t.Fatalf("query %+v", last)
	}
	for _, c := range []struct{ path, want string }{
		{"/v1/conntrack?zone=0", "zone:"},
		{"/v1/conntrack?zone=70000", "zone:"},
		{"/v1/conntrack?limit=0", "limit:"},
		{"/v1/conntrack?limit=10001", "limit:"},
		{"/v1/conntrack?protocol=ipx", "protocol:"},
		{"/v1/conntrack?protocol=256", "protocol:"},
		{"/v1/conntrack?address=10.0.0", "address:"},
		{"/v1/conntrack?address=fe80::1%25eth0", "address:"},
		{"/v1/conntrack?port=a/b", "port:"},
		{"/v1/conntrack?router=", "router:"},
		{"/v1/conntrack?zone=1&zone=2", "zone: given 2 times"},
		{"/v1/conntrack?state=new", "state: unknown query parameter"},
	} {
		rec := r.do("GET", c.path, "")
		var e Error
		if rec.Code != 400 || json.Unmarshal(rec.Body.Bytes(), &e) != nil || !strings.HasPrefix(e.Error, c.want) {
			t.Errorf("%s: %d %s, want 400 naming %q", c.path, rec.Code, rec.Body, c.want)
		}
	}
	for _, p := range []string{"/v1/conntrack?port=nope", "/v1/conntrack?router=nope"} {
		if rec := r.do("GET", p, ""); rec.Code != 404 || !strings.Contains(rec.Body.String(), "nope") {
			t.Errorf("%s: %d %s", p, rec.Code, rec.Body)
		}
		if rec := r.do("DELETE", p, ""); rec.Code != 404 {
			t.Errorf("DELETE %s: %d %s", p, rec.Code, rec.Body)
		}
	}
	var f ConnFlush
	if rec := r.do("DELETE", "/v1/conntrack?router=r1", ""); rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &f) != nil || f.Flushed != 1 {
		t.Fatalf("flush: %d %s", rec.Code, rec.Body)
	}
	if rec := r.do("DELETE", "/v1/conntrack?limit=5", ""); rec.Code != 400 || !strings.Contains(rec.Body.String(), "limit:") {
		t.Fatalf("flush with limit: %d %s", rec.Code, rec.Body)
	}
}

// Reading and flushing connections concurrently with config writes
// (run with -race).
func TestConntrackAPIConcurrent(t *testing.T) {
	r := newRig(t)
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 20 {
				switch (i + j) % 3 {
				case 0:
					r.do("GET", "/v1/conntrack?protocol=tcp", "")
				case 1:
					r.do("DELETE", "/v1/conntrack?zone=1", "")
				default:
					r.do("PUT", "/v1/config", fmt.Sprintf(`{"conntrack":{"zone_limit":%d}}`, 100+j))
				}
			}
		}()
	}
	wg.Wait()
}

func TestConntrackConfig(t *testing.T) {
	base := "run_dir: /tmp/vs\n"
	c, err := Load([]byte(base+`conntrack:
  max_entries: 200000
  zone_limit: 5000
  tcp_window_check: loose
  timeouts: {tcp_established: 3600, udp_first: 10, icmp: 5}
`), "")
	if err != nil {
		t.Fatal(err)
	}
	n := c.Conntrack.NAT()
	if n.Capacity != 200000 || n.ZoneLimit != 5000 || n.Window != nat.WindowLoose || n.Timeouts.TCP[nat.TCPEstablished] != 3600 ||
		n.Timeouts.UDP != 10 || n.Timeouts.ICMP != 5 || n.Timeouts.UDPReplied != 120 || n.Timeouts.TCP[nat.TCPSynSent] != 120 {
		t.Fatalf("nat settings %+v", n)
	}
	// Left out: Linux's defaults and the strict window check.
	d, _ := Load([]byte(base), "")
	if n := d.Conntrack.NAT(); n.Capacity != 0 || n.Window != nat.WindowStrict || n.Timeouts != nat.DefaultTimeouts() {
		t.Fatalf("defaults %+v", n)
	}
	if b, _ := json.Marshal(d); strings.Contains(string(b), "conntrack") {
		t.Fatalf("an empty conntrack section is saved: %s", b)
	}
	for _, bad := range []struct{ yaml, field string }{
		{"conntrack: {max_entries: -1}", "conntrack.max_entries"},
		{"conntrack: {max_entries: 100000000}", "conntrack.max_entries"},
		{"conntrack: {max_entries: 100, zone_limit: 200}", "conntrack.zone_limit"},
		{"conntrack: {tcp_window_check: liberal}", "conntrack.tcp_window_check"},
		{"conntrack: {timeouts: {tcp_close: -5}}", "conntrack.timeouts.tcp_close"},
		{"conntrack: {timeouts: {udp_stream: 99999999999}}", "conntrack.timeouts.udp_stream"},
		{"conntrack: {timeouts: {tcp_closing: 5}}", "tcp_closing"},
		{"conntrack: {max_entry: 5}", "max_entry"},
	} {
		_, err := Load([]byte(base+bad.yaml+"\n"), "")
		if err == nil || !strings.Contains(err.Error(), bad.field) {
			t.Errorf("%s: %v, want an error naming %s", bad.yaml, err, bad.field)
		}
	}
}

// A conntrack change is one update action, first, recorded by Apply;
// PUT /v1/config applies it.
func TestConntrackDiff(t *testing.T) {
	base, _ := Load([]byte(testYAML), "")
	next := base.Clone()
	next.Conntrack.TCPWindowCheck = "off"
	next.Ports = next.Ports[:1]
	acts, err := Diff(base, next)
	if err != nil || len(acts) != 2 || acts[0].String() != "update conntrack" || acts[0].Conntrack.TCPWindowCheck != "off" {
		t.Fatalf("diff: %v %v", acts, err)
	}
	run := base.Clone()
	for _, a := range acts {
		run.Apply(a)
	}
	if acts, _ := Diff(run, next); len(acts) != 0 {
		t.Fatalf("after apply: %v", acts)
	}
	if s := base.Startup(); !reflect.DeepEqual(s.Conntrack, base.Conntrack) {
		t.Fatal("start-up config lost the conntrack settings")
	}
	r := newRig(t)
	rec := r.do("PUT", "/v1/config", `{"conntrack":{"max_entries":1000,"timeouts":{"tcp_time_wait":30}}}`)
	var res Result
	if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &res) != nil || len(res.Actions) == 0 || res.Actions[0] != "update conntrack" {
		t.Fatalf("put: %d %s", rec.Code, rec.Body)
	}
	if r.d.running.Conntrack.Timeouts.TCPTimeWait != 30 {
		t.Fatalf("running %+v", r.d.running.Conntrack)
	}
	rec = r.do("PUT", "/v1/config", `{"conntrack":{"tcp_window_check":"sometimes"}}`)
	if rec.Code != 422 || !strings.Contains(rec.Body.String(), "conntrack.tcp_window_check") {
		t.Fatalf("bad put: %d %s", rec.Code, rec.Body)
	}
}

// The OpenAPI document describes /v1/conntrack's query parameters; a
// flush takes no limit and no If-Match.
func TestConntrackOpenAPI(t *testing.T) {
	r := newRig(t)
	var doc struct {
		Paths map[string]map[string]struct {
			Parameters []struct {
				Name, In string
			} `json:"parameters"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(r.do("GET", "/v1/openapi.json", "").Body.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	names := func(m string) string {
		var s []string
		for _, p := range doc.Paths["/v1/conntrack"][m].Parameters {
			s = append(s, p.In+":"+p.Name)
		}
		return strings.Join(s, ",")
	}
	if got := names("get"); got != "query:zone,query:port,query:router,query:protocol,query:address,query:limit" {
		t.Errorf("GET parameters %s", got)
	}
	if got := names("delete"); got != "query:zone,query:port,query:router,query:protocol,query:address" {
		t.Errorf("DELETE parameters %s", got)
	}
}

// ConntrackLimits reports the running config's zone limits as the fake
// daemon's zones: vm1 in zone 1, vm2 in zone 2.
func (f *fakeDaemon) ConntrackLimits() *ConntrackLimits {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.running.Conntrack
	l := &ConntrackLimits{DefaultLimit: c.ZoneLimit, MaxEntries: 65536}
	for i, p := range []string{"vm1", "vm2"} {
		z := ZoneStatus{Zone: i + 1, Owner: "port " + p, Limit: c.ZoneLimit, Count: i}
		for _, zl := range c.ZoneLimits {
			if zl.Port == p {
				z.Limit, z.Override = *zl.Limit, true
			}
		}
		l.Zones = append(l.Zones, z)
	}
	return l
}

// PUT /v1/conntrack/limits sets the default and the zones' own limits
// through the store (validated, naming the field; a conntrack update and
// nothing else); GET shows them with each zone's count; a port a limit
// names cannot be deleted until the limit goes.
func TestConntrackLimitsAPI(t *testing.T) {
	r := newRig(t)
	get := func() ConntrackLimits {
		t.Helper()
		rec := r.do("GET", "/v1/conntrack/limits", "")
		var l ConntrackLimits
		if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &l) != nil {
			t.Fatalf("get: %d %s", rec.Code, rec.Body)
		}
		return l
	}
	if l := get(); l.DefaultLimit != 0 || len(l.Zones) != 2 || l.Zones[0].Override {
		t.Fatalf("before: %+v", l)
	}
	rec := r.do("PUT", "/v1/conntrack/limits", `{"zone_limit": 100, "zone_limits": [{"port": "vm1", "limit": 5}]}`)
	var res Result
	if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &res) != nil || len(res.Actions) != 1 || res.Actions[0] != "update conntrack" {
		t.Fatalf("put: %d %s", rec.Code, rec.Body)
	}
	if l := get(); l.DefaultLimit != 100 || l.Zones[0].Limit != 5 || !l.Zones[0].Override || l.Zones[1].Limit != 100 || l.Zones[1].Override {
		t.Fatalf("after: %+v", l)
	}
	for _, c := range []struct{ body, want string }{
		{`{"zone_limits": [{"port": "vm9", "limit": 5}]}`, `conntrack.zone_limits[0].port: no port \"vm9\"`},
		{`{"zone_limits": [{"router": "r9", "limit": 5}]}`, `conntrack.zone_limits[0].router: no router \"r9\"`},
		{`{"zone_limits": [{"port": "vm1"}]}`, `conntrack.zone_limits[0].limit: required`},
		{`{"zone_limits": [{"port": "vm1", "limit": -1}]}`, `conntrack.zone_limits[0].limit: -1 is not in`},
		{`{"zone_limits": [{"limit": 1}]}`, `conntrack.zone_limits[0].port: required`},
		{`{"zone_limits": [{"port": "vm1", "router": "r1", "limit": 1}]}`, `conntrack.zone_limits[0].router: name a port or a router, not both`},
		{`{"zone_limits": [{"port": "vm1", "limit": 1}, {"port": "vm1", "limit": 2}]}`, `conntrack.zone_limits[1].port: port vm1 already has a limit`},
		{`{"zone_limit": -3, "zone_limits": []}`, `conntrack.zone_limit: -3 is not in`},
	} {
		rec := r.do("PUT", "/v1/conntrack/limits", c.body)
		if rec.Code != 422 || !strings.Contains(rec.Body.String(), c.want) {
			t.Errorf("%s: %d %s, want 422 naming %s", c.body, rec.Code, rec.Body, c.want)
		}
	}
	if rec := r.do("PUT", "/v1/conntrack/limits", `{"zone_limits": [{"port": "vm1", "limit": 1, "zone": 3}]}`); rec.Code != 400 || !strings.Contains(rec.Body.String(), "zone") {
		t.Errorf("unknown field: %d %s", rec.Code, rec.Body)
	}
	if rec := r.do("PUT", "/v1/conntrack/limits", `{"zone_limits": []}`, "If-Match", `"1"`); rec.Code != 409 {
		t.Errorf("stale If-Match: %d %s", rec.Code, rec.Body)
	}
	// The invalid writes changed nothing.
	if l := get(); l.DefaultLimit != 100 || l.Zones[0].Limit != 5 {
		t.Fatalf("after refused writes: %+v", l)
	}
	if rec := r.do("DELETE", "/v1/ports/vm1", ""); rec.Code != 409 || !strings.Contains(rec.Body.String(), "conntrack.zone_limits[0]") {
		t.Fatalf("delete of a limited port: %d %s", rec.Code, rec.Body)
	}
	// Left out, the default stays; an empty list clears the overrides.
	if rec := r.do("PUT", "/v1/conntrack/limits", `{"zone_limits": []}`); rec.Code != 200 {
		t.Fatalf("clear: %d %s", rec.Code, rec.Body)
	}
	if l := get(); l.DefaultLimit != 100 || l.Zones[0].Override || l.Zones[0].Limit != 100 {
		t.Fatalf("cleared: %+v", l)
	}
	if rec := r.do("DELETE", "/v1/ports/vm1", ""); rec.Code != 204 {
		t.Fatalf("delete: %d %s", rec.Code, rec.Body)
	}
	// The config file takes the same list.
	c, err := Load([]byte(testYAML+"conntrack: {zone_limits: [{port: vm2, limit: 0}, {port: vm1, limit: 7}]}\n"), "")
	if err != nil || len(c.Conntrack.ZoneLimits) != 2 || *c.Conntrack.ZoneLimits[0].Limit != 0 || *c.Conntrack.ZoneLimits[1].Limit != 7 {
		t.Fatalf("yaml: %+v %v", c, err)
	}
	if _, err := Load([]byte(testYAML+"conntrack: {max_entries: 10, zone_limits: [{port: vm2, limit: 11}]}\n"), ""); err == nil ||
		!strings.Contains(err.Error(), "conntrack.zone_limits[0].limit: 11 is more than max_entries") {
		t.Fatalf("yaml over max_entries: %v", err)
	}
}
