package daemon

import (
	"encoding/json"
	"io"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/vswitch/vswitch/api"
	"github.com/vswitch/vswitch/nat"
)

// The conntrack settings apply at start (the table gets their size) and
// through Reconcile; a larger table is refused naming the field; the API
// lists and flushes through the daemon.
func TestConntrackSettings(t *testing.T) {
	dir := shortDir(t)
	log := logrus.New()
	log.SetOutput(io.Discard)
	yaml := twoPorts + `security_groups: [{name: g}]
conntrack: {max_entries: 100, zone_limit: 10, tcp_window_check: loose, timeouts: {udp_first: 9}}
`
	yaml = strings.Replace(yaml, "socket: vm1.sock}", "socket: vm1.sock, security_groups: [g]}", 1)
	cfg := load(t, dir, yaml)
	d, err := Start(cfg, logrus.NewEntry(log))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ct := d.Switch.Conntrack()
	if ct == nil || ct.Capacity() != 100 {
		t.Fatalf("table %v", ct)
	}
	if s := ct.Settings(); s.ZoneLimit != 10 || s.Window != nat.WindowLoose || s.Timeouts.UDP != 9 || s.Timeouts.UDPReplied != 120 {
		t.Fatalf("settings %+v", s)
	}
	grow := cfg.Clone()
	grow.Conntrack.MaxEntries = 200
	if _, err := d.Reconcile(grow); err == nil || !strings.Contains(err.Error(), "conntrack.max_entries") {
		t.Fatalf("growing: %v", err)
	}
	lower := cfg.Clone()
	lower.Conntrack = api.ConntrackConfig{MaxEntries: 50}
	acts, err := d.Reconcile(lower)
	if err != nil || len(acts) != 1 || acts[0].String() != "update conntrack" {
		t.Fatalf("lowering: %v %v", acts, err)
	}
	if s := ct.Settings(); s.Capacity != 50 || s.ZoneLimit != 0 || s.Window != nat.WindowStrict || s.Timeouts != nat.DefaultTimeouts() {
		t.Fatalf("settings %+v", s)
	}
	h := api.NewHandler(api.Options{Source: d})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/v1/conntrack?port=vm1", nil))
	var l api.ConnList
	if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &l) != nil || l.MaxEntries != 50 || l.Total != 0 || l.Connections == nil {
		t.Fatalf("list: %d %s", rec.Code, rec.Body)
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("DELETE", "/v1/conntrack?port=nope", nil))
	if rec.Code != 404 {
		t.Fatalf("flush of an unknown port: %d %s", rec.Code, rec.Body)
	}
	rec = httptest.NewRecorder()
	d.MetricsHandler(func() uint64 { return 1 }).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	for _, want := range []string{"vswitch_conntrack_max_entries 50", "vswitch_conntrack_entries 0", "vswitch_conntrack_created_total 0"} {
		if !strings.Contains(rec.Body.String(), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// conntrack.zone_limits give a port's zone its own limit at start and
// through Reconcile, with no port restarting; GET /v1/conntrack/limits
// shows each zone's limit and count.
func TestConntrackZoneLimits(t *testing.T) {
	dir := shortDir(t)
	log := logrus.New()
	log.SetOutput(io.Discard)
	yaml := twoPorts + `security_groups: [{name: g}]
conntrack: {zone_limit: 10, zone_limits: [{port: vm1, limit: 5}]}
`
	yaml = strings.Replace(yaml, "socket: vm1.sock}", "socket: vm1.sock, security_groups: [g]}", 1)
	yaml = strings.Replace(yaml, "socket: vm2.sock}", "socket: vm2.sock, security_groups: [g]}", 1)
	cfg := load(t, dir, yaml)
	d, err := Start(cfg, logrus.NewEntry(log))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	h := api.NewHandler(api.Options{Source: d})
	limits := func() map[string]api.ZoneStatus {
		t.Helper()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/v1/conntrack/limits", nil))
		var l api.ConntrackLimits
		if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &l) != nil {
			t.Fatalf("limits: %d %s", rec.Code, rec.Body)
		}
		m := map[string]api.ZoneStatus{}
		for _, z := range l.Zones {
			m[z.Owner] = z
		}
		if l.DefaultLimit != cfg.Conntrack.ZoneLimit && l.DefaultLimit != 0 {
			t.Fatalf("default %d", l.DefaultLimit)
		}
		return m
	}
	m := limits()
	if z := m["port vm1"]; z.Limit != 5 || !z.Override || z.Zone == 0 {
		t.Fatalf("vm1 %+v", m)
	}
	if z := m["port vm2"]; z.Limit != 10 || z.Override {
		t.Fatalf("vm2 %+v", m)
	}
	next := cfg.Clone()
	zero := 0
	next.Conntrack.ZoneLimits = []api.ZoneLimitConfig{{Port: "vm2", Limit: &zero}}
	acts, err := d.Reconcile(next)
	if err != nil || len(acts) != 1 || acts[0].String() != "update conntrack" {
		t.Fatalf("reconcile: %v %v", acts, err)
	}
	m = limits()
	if z1, z2 := m["port vm1"], m["port vm2"]; z1.Limit != 10 || z1.Override || z2.Limit != 0 || !z2.Override {
		t.Fatalf("after reconcile %+v", m)
	}
}
