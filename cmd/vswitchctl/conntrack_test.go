package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/vswitch/vswitch/api"
)

// ctSource is a Source with a connection table.
type ctSource struct {
	fakeSource
	last *api.ConnQuery
}

func (c ctSource) Connections(q api.ConnQuery) (*api.ConnList, error) {
	*c.last = q
	if q.Port == "nope" {
		return nil, fmt.Errorf("no port %q", q.Port)
	}
	return &api.ConnList{Total: 3, Truncated: true, Entries: 7, MaxEntries: 65536, Connections: []api.Connection{
		{Zone: 1, Owner: "port a", Protocol: "tcp", TCPState: "ESTABLISHED", ExpiresIn: 431999, Replied: true,
			Orig:  api.ConnTuple{Src: "10.0.0.1", Dst: "10.0.0.2", SrcPort: 40000, DstPort: 80},
			Reply: api.ConnTuple{Src: "10.0.0.2", Dst: "10.0.0.1", SrcPort: 80, DstPort: 40000}},
		{Zone: 2048, Owner: "router r1", Protocol: "icmpv6", ExpiresIn: 29, SNAT: true,
			Orig:  api.ConnTuple{Src: "fd10::2", Dst: "2001:db8::1", SrcPort: 7},
			Reply: api.ConnTuple{Src: "2001:db8::1", Dst: "fd20::1", DstPort: 1024}},
	}}, nil
}

func (c ctSource) FlushConnections(q api.ConnQuery) (int, error) {
	*c.last = q
	return 4, nil
}

func TestConntrackCommands(t *testing.T) {
	var last api.ConnQuery
	srv := httptest.NewServer(api.NewHandler(api.Options{Source: ctSource{last: &last}}))
	defer srv.Close()
	addr := "tcp://" + strings.TrimPrefix(srv.URL, "http://")
	ctl := func(args ...string) (int, string, string) {
		var out, errOut bytes.Buffer
		code := run(append([]string{"--api", addr}, args...), &out, &errOut)
		return code, out.String(), errOut.String()
	}
	code, out, errOut := ctl("conntrack", "list", "--port", "a", "--protocol", "tcp", "--limit", "2")
	if code != exitOK || last.Port != "a" || last.Protocol != 6 || last.Limit != 2 {
		t.Fatalf("exit %d %s, query %+v", code, errOut, last)
	}
	for _, want := range []string{"ZONE", "port a", "10.0.0.1:40000 -> 10.0.0.2:80", "ESTABLISHED", "431999",
		"fd10::2 -> 2001:db8::1 id 7", "2001:db8::1 -> fd20::1 id 1024", "snat",
		"3 connections match (2 listed: raise --limit); 7 in the table of 65536"} {
		if !strings.Contains(out, want) {
			t.Errorf("list output lacks %q:\n%s", want, out)
		}
	}
	code, out, _ = ctl("--json", "conntrack", "list", "--address", "10.0.0.2")
	var l api.ConnList
	if code != exitOK || json.Unmarshal([]byte(out), &l) != nil || l.Total != 3 || last.Address.String() != "10.0.0.2" || last.Limit != api.DefaultConnLimit {
		t.Fatalf("--json: %d %s %+v", code, out, last)
	}
	if code, _, errOut = ctl("conntrack", "list", "--protocol", "ipx"); code != exitInvalid || !strings.Contains(errOut, "protocol:") {
		t.Fatalf("bad protocol: %d %s", code, errOut)
	}
	if code, _, errOut = ctl("conntrack", "list", "--port", "nope"); code != exitNotFound {
		t.Fatalf("unknown port: %d %s", code, errOut)
	}
	code, out, _ = ctl("conntrack", "flush", "--router", "r1", "--zone", "2048")
	if code != exitOK || out != "flushed 4 connections\n" || last.Router != "r1" || last.Zone != 2048 {
		t.Fatalf("flush: %d %q %+v", code, out, last)
	}
	if code, _, _ = ctl("conntrack", "flush", "--limit", "3"); code != exitUsage {
		t.Fatalf("flush --limit: %d", code)
	}
}

// limitSource reports the store's zone limits, vm1 and vm2 in zones 1
// and 2 with 3 connections each.
type limitSource struct{ storeSource }

func (ls limitSource) ConntrackLimits() *api.ConntrackLimits {
	c := ls.s.Snapshot().Config.Conntrack
	l := &api.ConntrackLimits{DefaultLimit: c.ZoneLimit, Entries: 6, MaxEntries: 65536}
	for i, p := range []string{"vm1", "vm2"} {
		z := api.ZoneStatus{Zone: i + 1, Owner: "port " + p, Limit: c.ZoneLimit, Count: 3}
		for _, zl := range c.ZoneLimits {
			if zl.Port == p {
				z.Limit, z.Override = *zl.Limit, true
			}
		}
		l.Zones = append(l.Zones, z)
	}
	return l
}

func TestConntrackLimitsCommands(t *testing.T) {
	cfg, err := api.Load([]byte(`bridges: [{name: br0}]
ports:
  - {name: vm1, type: vhostuser, bridge: br0, socket: vm1.sock}
  - {name: vm2, type: vhostuser, bridge: br0, socket: vm2.sock}
`), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	running := cfg.Clone()
	store := api.NewStore(api.NewState(cfg), func(target *api.Config) ([]api.Action, error) {
		acts, err := api.Diff(running, target)
		running = target.Clone()
		return acts, err
	}, nil)
	srv := httptest.NewServer(api.NewHandler(api.Options{Source: limitSource{storeSource{store}}, Store: store}))
	defer srv.Close()
	addr := "tcp://" + strings.TrimPrefix(srv.URL, "http://")
	ctl := func(args ...string) (int, string, string) {
		var out, errOut bytes.Buffer
		code := run(append([]string{"--api", addr}, args...), &out, &errOut)
		return code, out.String(), errOut.String()
	}
	code, out, errOut := ctl("conntrack", "set-limits", "--default", "50", "--port", "vm1=10", "--port", "vm2=0")
	if code != exitOK || !strings.Contains(out, "conntrack limits set (revision") {
		t.Fatalf("set-limits: %d %s %s", code, out, errOut)
	}
	c := store.Snapshot().Config.Conntrack
	if c.ZoneLimit != 50 || len(c.ZoneLimits) != 2 || c.ZoneLimits[0].Port != "vm1" || *c.ZoneLimits[0].Limit != 10 || *c.ZoneLimits[1].Limit != 0 {
		t.Fatalf("config %+v", c)
	}
	code, out, _ = ctl("conntrack", "limits")
	for _, want := range []string{"ZONE", "port vm1", "10", "zone", "none", "default limit 50; 6 connections in the table of 65536"} {
		if code != exitOK || !strings.Contains(out, want) {
			t.Errorf("limits output lacks %q:\n%s", want, out)
		}
	}
	code, out, _ = ctl("--json", "conntrack", "limits")
	var l api.ConntrackLimits
	if code != exitOK || json.Unmarshal([]byte(out), &l) != nil || len(l.Zones) != 2 || !l.Zones[1].Override || l.Zones[1].Limit != 0 {
		t.Fatalf("--json: %d %s", code, out)
	}
	if code, _, errOut = ctl("conntrack", "set-limits", "--port", "vm9=3"); code != exitInvalid || !strings.Contains(errOut, "conntrack.zone_limits[0].port") {
		t.Fatalf("unknown port: %d %s", code, errOut)
	}
	if code, _, _ = ctl("conntrack", "set-limits", "--port", "vm1"); code != exitUsage {
		t.Fatalf("no limit: %d", code)
	}
	// Without --default the default stays; no entries clears them.
	if code, _, errOut = ctl("conntrack", "set-limits"); code != exitOK {
		t.Fatalf("clear: %d %s", code, errOut)
	}
	if c := store.Snapshot().Config.Conntrack; c.ZoneLimit != 50 || len(c.ZoneLimits) != 0 {
		t.Fatalf("after clearing %+v", c)
	}
}
