package api

import (
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

// A daemon with security groups (one naming another as remote_group) and
// an ACL.
const filterRigYAML = `run_dir: /tmp/vs-api
bridges: [{name: br0}]
ports:
  - {name: vm1, type: vhostuser, bridge: br0, socket: vm1.sock, security_groups: [web]}
  - {name: vm2, type: vhostuser, bridge: br0, socket: vm2.sock}
security_groups:
  - name: web
    rules:
      - {direction: ingress, ethertype: ipv4, protocol: tcp, ports: "80", remote: 0.0.0.0/0}
  - name: db
    rules:
      - {direction: ingress, protocol: tcp, ports: "5432", remote_group: web}
  - name: spare
acls:
  - {name: no-telnet, port: vm1, direction: ingress, priority: 100, protocol: tcp, ports: "23", action: deny}
`

func TestFilterBadRequestsChangeNothing(t *testing.T) {
	pad := strings.Repeat("x", MaxBodyBytes)
	cases := []struct {
		name, method, path, body string
		hdr                      []string
		code                     int
		want                     string
	}{
		{"sg bad json", "PUT", "/v1/security_groups/x", `{"name":`, nil, 400, "bad JSON"},
		{"sg empty body", "PUT", "/v1/security_groups/x", ``, nil, 400, "empty body"},
		{"sg trailing data", "PUT", "/v1/security_groups/x", `{} {}`, nil, 400, "after the JSON value"},
		{"sg unknown field", "PUT", "/v1/security_groups/x", `{"rulez":[]}`, nil, 400, `"rulez"`},
		{"sg unknown rule field", "PUT", "/v1/security_groups/x", `{"rules":[{"direction":"ingress","portz":"1"}]}`, nil, 400, `"portz"`},
		{"sg wrong type", "PUT", "/v1/security_groups/x", `{"rules":{"direction":"ingress"}}`, nil, 400, "rules"},
		{"sg wrong rule type", "PUT", "/v1/security_groups/x", `{"rules":[{"direction":"ingress","protocol":"icmp","icmp_type":"echo"}]}`, nil, 400, "icmp_type"},
		{"sg name mismatch", "PUT", "/v1/security_groups/x", `{"name":"y"}`, nil, 400, "path names"},
		{"sg bad direction", "PUT", "/v1/security_groups/x", `{"rules":[{"direction":"sideways"}]}`, nil, 422, "security_groups[3].rules[0].direction"},
		{"sg ports without protocol", "PUT", "/v1/security_groups/x", `{"rules":[{"direction":"ingress","ports":"80"}]}`, nil, 422, "security_groups[3].rules[0].ports"},
		{"sg missing remote group", "PUT", "/v1/security_groups/x", `{"rules":[{"direction":"ingress","remote_group":"nope"}]}`, nil, 422, "security_groups[3].rules[0].remote_group"},
		{"sg bad name", "PUT", "/v1/security_groups/bad%20name", `{}`, nil, 422, "security_groups[3].name"},
		{"sg duplicate name", "POST", "/v1/security_groups", `{"name":"web"}`, nil, 409, "exists"},
		{"sg post without name", "POST", "/v1/security_groups", `{"rules":[]}`, nil, 400, "name"},
		{"sg oversized body", "PUT", "/v1/security_groups/x", `{"name":"` + pad + `"}`, nil, 413, "larger than"},
		{"sg stale revision", "PUT", "/v1/security_groups/web", `{"rules":[]}`, []string{"If-Match", `"7"`}, 409, "revision 1, not 7"},
		{"sg create-only exists", "PUT", "/v1/security_groups/web", `{"rules":[]}`, []string{"If-Match", `"0"`}, 409, "not 0"},
		{"sg patch missing", "PATCH", "/v1/security_groups/nope", `{"rules":[]}`, nil, 404, "no security group nope"},
		{"sg patch rename", "PATCH", "/v1/security_groups/web", `{"name":"www"}`, nil, 400, "renamed"},
		{"sg patch invalid", "PATCH", "/v1/security_groups/web", `{"rules":[{"direction":"ingress","remote":"10.0.0.0/33"}]}`, nil, 422, "security_groups[0].rules[0].remote"},
		{"sg patch stale", "PATCH", "/v1/security_groups/web", `{"rules":[]}`, []string{"If-Match", `"4"`}, 409, "not 4"},
		{"sg delete in use by a port", "DELETE", "/v1/security_groups/web", ``, nil, 409, "port vm1"},
		{"sg delete in use by a group", "DELETE", "/v1/security_groups/web", ``, nil, 409, "security group db (remote_group)"},
		{"sg delete missing", "DELETE", "/v1/security_groups/nope", ``, nil, 404, "no security group nope"},
		{"sg delete stale", "DELETE", "/v1/security_groups/spare", ``, []string{"If-Match", `"2"`}, 409, "not 2"},
		{"sg get missing", "GET", "/v1/security_groups/nope", ``, nil, 404, "no security group nope"},
		{"port joins a missing group", "PATCH", "/v1/ports/vm2", `{"security_groups":["nope"]}`, nil, 422, "ports[1].security_groups[0]"},

		{"acl bad json", "PUT", "/v1/acls/a1", `{"port":`, nil, 400, "bad JSON"},
		{"acl not an object", "PUT", "/v1/acls/a1", `[1]`, nil, 400, "acl body"},
		{"acl unknown field", "PUT", "/v1/acls/a1", `{"port":"vm2","direction":"ingress","actoin":"deny"}`, nil, 400, `"actoin"`},
		{"acl wrong type", "PUT", "/v1/acls/a1", `{"port":"vm2","direction":"ingress","action":"deny","priority":"high"}`, nil, 400, "priority"},
		{"acl name mismatch", "PUT", "/v1/acls/a1", `{"name":"a2","port":"vm2","direction":"ingress","action":"deny"}`, nil, 400, "path names"},
		{"acl missing port", "PUT", "/v1/acls/a1", `{"port":"nope","direction":"ingress","action":"deny"}`, nil, 422, "acls[1].port"},
		{"acl no port", "PUT", "/v1/acls/a1", `{"direction":"ingress","action":"deny"}`, nil, 422, "acls[1].port"},
		{"acl bad action", "PUT", "/v1/acls/a1", `{"port":"vm2","direction":"ingress","action":"drop"}`, nil, 422, "acls[1].action"},
		{"acl bad priority", "PUT", "/v1/acls/a1", `{"port":"vm2","direction":"ingress","action":"deny","priority":70000}`, nil, 422, "acls[1].priority"},
		{"acl bad range", "PUT", "/v1/acls/a1", `{"port":"vm2","direction":"ingress","action":"deny","protocol":"udp","ports":"90-80"}`, nil, 422, "acls[1].ports"},
		{"acl family mismatch", "PUT", "/v1/acls/a1", `{"port":"vm2","direction":"ingress","action":"deny","ethertype":"ipv6","source":"10.0.0.0/8"}`, nil, 422, "acls[1].source"},
		{"acl bad name", "PUT", "/v1/acls/a%2F1", `{"port":"vm2","direction":"ingress","action":"deny"}`, nil, 422, "acls[1].name"},
		{"acl duplicate name", "POST", "/v1/acls", `{"name":"no-telnet","port":"vm2","direction":"ingress","action":"deny"}`, nil, 409, "exists"},
		{"acl oversized body", "PUT", "/v1/acls/a1", `{"port":"` + pad + `"}`, nil, 413, "larger than"},
		{"acl stale revision", "PUT", "/v1/acls/no-telnet", `{"port":"vm1","direction":"ingress","action":"allow"}`, []string{"If-Match", `"9"`}, 409, "revision 1, not 9"},
		{"acl bad If-Match", "PUT", "/v1/acls/no-telnet", `{"port":"vm1","direction":"ingress","action":"allow"}`, []string{"If-Match", "soon"}, 400, "If-Match"},
		{"acl patch stale", "PATCH", "/v1/acls/no-telnet", `{"priority":5}`, []string{"If-Match", `"3"`}, 409, "not 3"},
		{"acl patch unknown field", "PATCH", "/v1/acls/no-telnet", `{"priorty":5}`, nil, 400, `"priorty"`},
		{"acl patch wrong type", "PATCH", "/v1/acls/no-telnet", `{"priority":[5]}`, nil, 400, "priority"},
		{"acl patch rename", "PATCH", "/v1/acls/no-telnet", `{"name":"telnet"}`, nil, 400, "renamed"},
		{"acl patch missing port", "PATCH", "/v1/acls/no-telnet", `{"port":"vm9"}`, nil, 422, "acls[0].port"},
		{"acl patch missing", "PATCH", "/v1/acls/nope", `{"priority":5}`, nil, 404, "no acl nope"},
		{"acl delete missing", "DELETE", "/v1/acls/nope", ``, nil, 404, "no acl nope"},
		{"acl delete stale", "DELETE", "/v1/acls/no-telnet", ``, []string{"If-Match", `"2"`}, 409, "not 2"},
		{"acl get missing", "GET", "/v1/acls/nope", ``, nil, 404, "no acl nope"},
		{"port delete with an acl", "DELETE", "/v1/ports/vm1", ``, nil, 409, "acl no-telnet"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newRigYAML(t, filterRigYAML)
			before := r.store.Snapshot()
			running := r.d.running.Clone()
			rec := r.do(tc.method, tc.path, tc.body, tc.hdr...)
			if rec.Code != tc.code {
				t.Fatalf("%s %s: %d %s, want %d", tc.method, tc.path, rec.Code, rec.Body, tc.code)
			}
			var e Error
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error == "" {
				t.Fatalf("error body is not JSON with an error: %q (%v)", rec.Body, err)
			}
			if all := e.Error + " " + strings.Join(e.Details, " "); !strings.Contains(all, tc.want) {
				t.Errorf("error %q does not name %q", all, tc.want)
			}
			if after := r.store.Snapshot(); !reflect.DeepEqual(before, after) {
				t.Errorf("state changed:\n%+v\n%+v", before, after)
			}
			if !reflect.DeepEqual(running, r.d.running) {
				t.Errorf("running config changed:\n%+v\n%+v", running, r.d.running)
			}
			if r.d.calls != 0 || len(r.saved) != 0 {
				t.Errorf("reconciled %d times, saved %d states", r.d.calls, len(r.saved))
			}
		})
	}
}

func TestACLLifecycle(t *testing.T) {
	r := newRigYAML(t, filterRigYAML)
	body := `{"name":"ssh","port":"vm2","direction":"ingress","priority":200,"protocol":"tcp","ports":"22","source":"10.0.0.0/8","action":"allow"}`
	rec := r.do("PUT", "/v1/acls/ssh", body)
	if rec.Code != http.StatusCreated || rec.Header().Get("ETag") != `"2"` || rec.Header().Get("Location") != "/v1/acls/ssh" {
		t.Fatalf("PUT new acl: %d %v %s", rec.Code, rec.Header(), rec.Body)
	}
	// The filters are recompiled; no port or bridge is touched.
	if !reflect.DeepEqual(r.d.last, []string{"update filter"}) {
		t.Errorf("actions %q", r.d.last)
	}
	if len(r.d.running.ACLs) != 2 || r.d.running.ACLs[1].Source != "10.0.0.0/8" {
		t.Errorf("running acls %+v", r.d.running.ACLs)
	}
	// The same PUT again: same revision, nothing reconciled or saved.
	calls, saves := r.d.calls, len(r.saved)
	if rec = r.do("PUT", "/v1/acls/ssh", body); rec.Code != 200 || rec.Header().Get("ETag") != `"2"` || r.d.calls != calls || len(r.saved) != saves {
		t.Errorf("idempotent PUT: %d %s, calls %d->%d, saves %d->%d", rec.Code, rec.Header().Get("ETag"), calls, r.d.calls, saves, len(r.saved))
	}
	// PATCH with the revision read.
	if rec = r.do("PATCH", "/v1/acls/ssh", `{"priority":300,"source":null}`, "If-Match", `"2"`); rec.Code != 200 || rec.Header().Get("ETag") != `"3"` {
		t.Fatalf("PATCH: %d %s", rec.Code, rec.Body)
	}
	if a := r.d.running.ACLs[1]; a.Priority != 300 || a.Source != "" {
		t.Errorf("running acl after PATCH %+v", a)
	}
	// The revision read before is stale now.
	if rec = r.do("PATCH", "/v1/acls/ssh", `{"priority":1}`, "If-Match", `"2"`); rec.Code != 409 {
		t.Errorf("stale PATCH: %d %s", rec.Code, rec.Body)
	}
	// GET: config and revision; the list in config order.
	rec = r.do("GET", "/v1/acls/ssh", "")
	var as ACLStatus
	json.Unmarshal(rec.Body.Bytes(), &as)
	if rec.Code != 200 || rec.Header().Get("ETag") != `"3"` || as.Revision != 3 || as.Port != "vm2" || as.Priority != 300 {
		t.Fatalf("GET: %d %s", rec.Code, rec.Body)
	}
	var list []ACLStatus
	json.Unmarshal(r.do("GET", "/v1/acls", "").Body.Bytes(), &list)
	if len(list) != 2 || list[0].Name != "no-telnet" || list[0].Revision != 1 || list[1].Name != "ssh" {
		t.Errorf("list %+v", list)
	}
	// Other resources kept their revisions.
	st := r.store.Snapshot()
	if st.Revisions["ports/vm2"] != 1 || st.Revisions["acls/no-telnet"] != 1 || st.Revision != 3 {
		t.Errorf("revisions %v (global %d)", st.Revisions, st.Revision)
	}
	// POST creates only.
	if rec = r.do("POST", "/v1/acls", `{"name":"icmp","port":"vm1","direction":"egress","protocol":"icmp","icmp_type":8,"action":"reject"}`); rec.Code != 201 {
		t.Fatalf("POST: %d %s", rec.Code, rec.Body)
	}
	// DELETE with the right revision; the revision goes with it.
	if rec = r.do("DELETE", "/v1/acls/ssh", "", "If-Match", `"3"`); rec.Code != http.StatusNoContent {
		t.Fatalf("DELETE: %d %s", rec.Code, rec.Body)
	}
	if _, ok := r.store.Snapshot().Revisions["acls/ssh"]; ok || len(r.d.running.ACLs) != 2 {
		t.Errorf("after DELETE: revisions %v, running %+v", r.store.Snapshot().Revisions, r.d.running.ACLs)
	}
	if len(r.saved) != 4 {
		t.Errorf("saved %d states, want 4", len(r.saved))
	}
}

func TestSecurityGroupLifecycle(t *testing.T) {
	r := newRigYAML(t, filterRigYAML)
	var gs []SecurityGroupStatus
	json.Unmarshal(r.do("GET", "/v1/security_groups", "").Body.Bytes(), &gs)
	if len(gs) != 3 || gs[0].Name != "web" || !reflect.DeepEqual(gs[0].Ports, []string{"vm1"}) || len(gs[1].Ports) != 0 || gs[1].Rules[0].RemoteGroup != "web" {
		t.Fatalf("groups %+v", gs)
	}
	rec := r.do("GET", "/v1/security_groups/web", "")
	etag := rec.Header().Get("ETag")
	if rec.Code != 200 || etag != `"1"` {
		t.Fatalf("GET web: %d %s %s", rec.Code, etag, rec.Body)
	}
	// Replacing the rules recompiles the filters; vm1 keeps running.
	rec = r.do("PUT", "/v1/security_groups/web", `{"rules":[{"direction":"ingress","protocol":"tcp","ports":"443","remote":"0.0.0.0/0"}]}`, "If-Match", etag)
	if rec.Code != 200 || rec.Header().Get("ETag") != `"2"` {
		t.Fatalf("PUT web: %d %s", rec.Code, rec.Body)
	}
	if !reflect.DeepEqual(r.d.last, []string{"update filter"}) || r.d.running.SecurityGroups[0].Rules[0].Ports != "443" {
		t.Errorf("actions %q, running %+v", r.d.last, r.d.running.SecurityGroups)
	}
	st := r.store.Snapshot()
	if st.Revisions["security_groups/web"] != 2 || st.Revisions["security_groups/db"] != 1 || st.Revisions["ports/vm1"] != 1 {
		t.Errorf("revisions %v", st.Revisions)
	}
	// A merge patch replaces the list of rules.
	if rec = r.do("PATCH", "/v1/security_groups/spare", `{"rules":[{"direction":"egress","ethertype":"ipv6"}]}`); rec.Code != 200 {
		t.Fatalf("PATCH spare: %d %s", rec.Code, rec.Body)
	}
	// web stays while vm1 and db's rule name it.
	if rec = r.do("DELETE", "/v1/security_groups/web", ""); rec.Code != 409 ||
		!strings.Contains(rec.Body.String(), "port vm1") || !strings.Contains(rec.Body.String(), "security group db") {
		t.Fatalf("DELETE web in use: %d %s", rec.Code, rec.Body)
	}
	if rec = r.do("PATCH", "/v1/ports/vm1", `{"security_groups":null}`); rec.Code != 200 {
		t.Fatalf("PATCH vm1: %d %s", rec.Code, rec.Body)
	}
	for _, g := range []string{"db", "web", "spare"} {
		if rec = r.do("DELETE", "/v1/security_groups/"+g, ""); rec.Code != 204 {
			t.Fatalf("DELETE %s: %d %s", g, rec.Code, rec.Body)
		}
	}
	if len(r.d.running.SecurityGroups) != 0 || len(r.store.Snapshot().Config.SecurityGroups) != 0 {
		t.Errorf("groups left: %+v", r.d.running.SecurityGroups)
	}
	// Created again, by POST.
	if rec = r.do("POST", "/v1/security_groups", `{"name":"web"}`); rec.Code != 201 || rec.Header().Get("Location") != "/v1/security_groups/web" {
		t.Errorf("POST web: %d %s", rec.Code, rec.Body)
	}
}

// A state saved before groups and ACLs had revisions: they get the
// state's revision, so that their ETags work at once.
func TestStoreFillsMissingRevisions(t *testing.T) {
	c, err := Load([]byte(filterRigYAML), "")
	if err != nil {
		t.Fatal(err)
	}
	st := NewState(c)
	st.Revision = 7
	delete(st.Revisions, "acls/no-telnet")
	delete(st.Revisions, "security_groups/web")
	r := &rig{t: t, d: &fakeDaemon{running: c.Clone()}}
	r.store = NewStore(st, r.d.Reconcile, nil)
	r.h = NewHandler(Options{Source: r.d, Store: r.store})
	if e := r.do("GET", "/v1/acls/no-telnet", "").Header().Get("ETag"); e != `"7"` {
		t.Errorf("acl ETag %s", e)
	}
	if rec := r.do("PATCH", "/v1/security_groups/web", `{"rules":[]}`, "If-Match", `"7"`); rec.Code != 200 {
		t.Errorf("PATCH with the filled revision: %d %s", rec.Code, rec.Body)
	}
	if got := r.store.Snapshot().Revisions["security_groups/db"]; got != 1 {
		t.Errorf("db's revision %d, want its own 1", got)
	}
}
