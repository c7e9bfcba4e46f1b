package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
)

const testYAML = `run_dir: /tmp/vs-api
bridges: [{name: br0}, {name: br1}]
ports:
  - {name: vm1, type: vhostuser, bridge: br0, socket: vm1.sock}
  - {name: vm2, type: vhostuser, bridge: br0, socket: vm2.sock, mode: client}
`

// fakeDaemon is a reconciler over a config, with no I/O; it fails any
// action on a port named in fail.
type fakeDaemon struct {
	mu      sync.Mutex
	running *Config
	calls   int
	fail    string
	last    []string // the actions of the last reconcile
}

func (f *fakeDaemon) Reconcile(target *Config) ([]Action, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	acts, err := Diff(f.running, target)
	if err != nil {
		return nil, err
	}
	var done []Action
	f.last = nil
	for _, a := range acts {
		f.last = append(f.last, a.String())
		if a.Kind == KindPort && a.Name == f.fail && a.Op == OpAdd {
			return done, errors.New("socket in use")
		}
		f.running.Apply(a)
		done = append(done, a)
	}
	return done, nil
}

func (f *fakeDaemon) Ports() []PortStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []PortStatus
	for _, p := range f.running.Ports {
		out = append(out, PortStatus{Name: p.Name, Type: p.Type, Bridge: p.Bridge, State: StateWaiting, Drops: map[string]uint64{}})
	}
	return out
}

type rig struct {
	t     testing.TB
	d     *fakeDaemon
	store *Store
	h     http.Handler
	saved []*State
	mu    sync.Mutex
}

func newRig(t testing.TB) *rig {
	t.Helper()
	return newRigYAML(t, testYAML)
}

// newRigYAML is a rig whose daemon runs config y.
func newRigYAML(t testing.TB, y string) *rig {
	t.Helper()
	c, err := Load([]byte(y), "")
	if err != nil {
		t.Fatal(err)
	}
	st := NewState(c)
	r := &rig{t: t, d: &fakeDaemon{running: c.Clone()}}
	r.store = NewStore(st, r.d.Reconcile, func(s *State) error {
		r.mu.Lock()
		r.saved = append(r.saved, s.Clone())
		r.mu.Unlock()
		return nil
	})
	r.h = NewHandler(Options{Source: r.d, Store: r.store, Tracer: fakeTracer{}, Metrics: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte("# metrics\n"))
	})})
	return r
}

func (r *rig) do(method, path, body string, hdr ...string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	// As the server does: bodies are size-limited.
	http.MaxBytesHandler(r.h, MaxBodyBytes).ServeHTTP(rec, req)
	return rec
}

func TestWriteBadRequestsChangeNothing(t *testing.T) {
	big := `{"name":"vm3","type":"vhostuser","bridge":"br0","socket":"` + strings.Repeat("x", MaxBodyBytes) + `"}`
	cases := []struct {
		name, method, path, body string
		hdr                      []string
		code                     int
		want                     string
	}{
		{"bad json", "PUT", "/v1/ports/vm3", `{"name":`, nil, 400, "bad JSON"},
		{"not json", "PUT", "/v1/ports/vm3", `hello`, nil, 400, "bad JSON"},
		{"empty body", "PUT", "/v1/ports/vm3", ``, nil, 400, "empty body"},
		{"trailing data", "PUT", "/v1/ports/vm3", `{"name":"vm3"} {}`, nil, 400, "after the JSON value"},
		{"unknown field", "PUT", "/v1/ports/vm3", `{"name":"vm3","type":"vhostuser","bridge":"br0","socket":"a","sockett":"b"}`, nil, 400, `"sockett"`},
		{"wrong type", "PUT", "/v1/ports/vm3", `{"name":"vm3","type":"vhostuser","bridge":"br0","socket":"a","queues":"two"}`, nil, 400, "queues"},
		{"array body", "PUT", "/v1/ports/vm3", `[1,2]`, nil, 400, "port body"},
		{"name mismatch", "PUT", "/v1/ports/vm3", `{"name":"vm4","type":"vhostuser","bridge":"br0","socket":"a"}`, nil, 400, "path names"},
		{"missing bridge", "PUT", "/v1/ports/vm3", `{"type":"vhostuser","bridge":"nope","socket":"a"}`, nil, 422, "ports[2].bridge"},
		{"duplicate socket", "PUT", "/v1/ports/vm3", `{"type":"vhostuser","bridge":"br0","socket":"vm1.sock"}`, nil, 422, "ports[2].socket"},
		{"bad mode", "PUT", "/v1/ports/vm3", `{"type":"vhostuser","bridge":"br0","socket":"a","mode":"both"}`, nil, 422, "mode"},
		{"bad type", "PUT", "/v1/ports/vm3", `{"type":"tap","bridge":"br0"}`, nil, 422, "ports[2].type"},
		{"bad name", "PUT", "/v1/ports/bad%20name", `{"type":"vhostuser","bridge":"br0","socket":"a"}`, nil, 422, "ports[2].name"},
		{"duplicate name", "POST", "/v1/ports", `{"name":"vm1","type":"vhostuser","bridge":"br0","socket":"z"}`, nil, 409, "exists"},
		{"post without name", "POST", "/v1/ports", `{"type":"vhostuser","bridge":"br0","socket":"z"}`, nil, 400, "name"},
		{"oversized body", "PUT", "/v1/ports/vm3", big, nil, 413, "larger than"},
		{"stale revision", "PUT", "/v1/ports/vm1", `{"type":"vhostuser","bridge":"br0","socket":"vm1.sock","queues":2}`, []string{"If-Match", `"7"`}, 409, "revision 1, not 7"},
		{"create-only exists", "PUT", "/v1/ports/vm1", `{"type":"vhostuser","bridge":"br0","socket":"vm1.sock","queues":2}`, []string{"If-Match", `"0"`}, 409, "not 0"},
		{"bad If-Match", "PUT", "/v1/ports/vm1", `{"type":"vhostuser","bridge":"br0","socket":"vm1.sock"}`, []string{"If-Match", `yesterday`}, 400, "If-Match"},
		{"patch missing port", "PATCH", "/v1/ports/nope", `{"queues":2}`, nil, 404, "no port nope"},
		{"patch unknown field", "PATCH", "/v1/ports/vm1", `{"queuez":2}`, nil, 400, `"queuez"`},
		{"patch wrong type", "PATCH", "/v1/ports/vm1", `{"queues":true}`, nil, 400, "queues"},
		{"patch rename", "PATCH", "/v1/ports/vm1", `{"name":"vm9"}`, nil, 400, "renamed"},
		{"patch not object", "PATCH", "/v1/ports/vm1", `"x"`, nil, 400, "object"},
		{"patch invalid", "PATCH", "/v1/ports/vm1", `{"queues":99}`, nil, 422, "queues"},
		{"delete missing", "DELETE", "/v1/ports/nope", ``, nil, 404, "no port"},
		{"get missing bridge", "GET", "/v1/bridges/nope", ``, nil, 404, "no bridge nope"},
		{"delete stale", "DELETE", "/v1/ports/vm1", ``, []string{"If-Match", `"3"`}, 409, "not 3"},
		{"delete bridge in use", "DELETE", "/v1/bridges/br0", ``, nil, 409, "port vm1"},
		{"bridge unknown field", "PUT", "/v1/bridges/br2", `{"colour":"red"}`, nil, 400, `"colour"`},
		{"bridge bad size", "PUT", "/v1/bridges/br2", `{"mac_table_size":-1}`, nil, 422, "mac_table_size"},
		{"config bad json", "PUT", "/v1/config", `{`, nil, 400, "config body"},
		{"config unknown key", "PUT", "/v1/config", `{"bridgez":[]}`, nil, 400, `"bridgez"`},
		{"config yaml unknown key", "PUT", "/v1/config", "bridgez: []\n", []string{"Content-Type", "application/yaml"}, 400, "bridgez"},
		{"config duplicate", "PUT", "/v1/config", `{"bridges":[{"name":"a"},{"name":"a"}]}`, nil, 422, "bridges[1].name"},
		{"config startup change", "PUT", "/v1/config", `{"dataplane":{"workers":2}}`, nil, 422, "dataplane"},
		{"config stale", "PUT", "/v1/config", `{"bridges":[]}`, []string{"If-Match", `"9"`}, 409, "not 9"},
		{"unknown resource", "GET", "/v1/routes", ``, nil, 404, "no such resource"},
		{"apply fails", "PUT", "/v1/ports/vmfail", `{"type":"vhostuser","bridge":"br0","socket":"f.sock"}`, nil, 422, "rolled back"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t)
			r.d.fail = "vmfail"
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
			if len(r.saved) != 0 {
				t.Errorf("saved %d states", len(r.saved))
			}
		})
	}
}

func TestPortLifecycle(t *testing.T) {
	r := newRig(t)
	// Create with PUT: 201, ETag, config field names, defaults filled.
	rec := r.do("PUT", "/v1/ports/vm3", `{"name":"vm3","type":"vhostuser","bridge":"br0","socket":"vm3.sock","mode":"server"}`)
	if rec.Code != http.StatusCreated || rec.Header().Get("ETag") != `"2"` {
		t.Fatalf("PUT new port: %d etag %s %s", rec.Code, rec.Header().Get("ETag"), rec.Body)
	}
	var pc PortConfig
	json.Unmarshal(rec.Body.Bytes(), &pc)
	if pc.Socket != "/tmp/vs-api/vm3.sock" || pc.Queues.N != 1 {
		t.Errorf("created %+v", pc)
	}
	if got := r.d.calls; got != 1 {
		t.Errorf("reconciled %d times", got)
	}
	// The same PUT again changes nothing: same revision, no save.
	n := len(r.saved)
	rec = r.do("PUT", "/v1/ports/vm3", `{"name":"vm3","type":"vhostuser","bridge":"br0","socket":"vm3.sock","mode":"server"}`)
	if rec.Code != http.StatusOK || rec.Header().Get("ETag") != `"2"` || len(r.saved) != n {
		t.Errorf("idempotent PUT: %d %s, saves %d->%d", rec.Code, rec.Header().Get("ETag"), n, len(r.saved))
	}
	// GET shows status, config and revision.
	rec = r.do("GET", "/v1/ports/vm3", "")
	var ps PortStatus
	json.Unmarshal(rec.Body.Bytes(), &ps)
	if rec.Code != 200 || ps.Config == nil || ps.Config.Socket != "/tmp/vs-api/vm3.sock" || rec.Header().Get("ETag") != `"2"` || ps.State != StateWaiting {
		t.Fatalf("GET: %d %s", rec.Code, rec.Body)
	}
	// PATCH with the right revision.
	rec = r.do("PATCH", "/v1/ports/vm3", `{"queues":4}`, "If-Match", `"2"`)
	if rec.Code != 200 || rec.Header().Get("ETag") != `"3"` {
		t.Fatalf("PATCH: %d %s", rec.Code, rec.Body)
	}
	if p, _ := r.d.running.Port("vm3"); p.Queues.N != 4 {
		t.Errorf("running vm3 %+v", p)
	}
	// Only vm3 was touched: vm1's revision is still 1.
	st := r.store.Snapshot()
	if st.Revisions["ports/vm1"] != 1 || st.Revisions["ports/vm3"] != 3 || st.Revision != 3 {
		t.Errorf("revisions %v (global %d)", st.Revisions, st.Revision)
	}
	// DELETE.
	if rec = r.do("DELETE", "/v1/ports/vm3", "", "If-Match", `"3"`); rec.Code != http.StatusNoContent {
		t.Fatalf("DELETE: %d %s", rec.Code, rec.Body)
	}
	if _, ok := r.d.running.Port("vm3"); ok {
		t.Error("vm3 still runs")
	}
	if _, ok := r.store.Snapshot().Revisions["ports/vm3"]; ok {
		t.Error("vm3 still has a revision")
	}
	// Every accepted change was saved, in order.
	if len(r.saved) != 3 || r.saved[2].Revision != 4 {
		t.Errorf("saved %d states", len(r.saved))
	}
}

func TestBridgesAndConfig(t *testing.T) {
	r := newRig(t)
	if rec := r.do("POST", "/v1/bridges", `{"name":"br2","mac_aging":60}`); rec.Code != 201 {
		t.Fatalf("POST bridge: %d %s", rec.Code, rec.Body)
	}
	rec := r.do("GET", "/v1/bridges", "")
	var bs []BridgeStatus
	json.Unmarshal(rec.Body.Bytes(), &bs)
	if len(bs) != 3 || bs[0].Name != "br0" || !reflect.DeepEqual(bs[0].Ports, []string{"vm1", "vm2"}) || bs[2].MACAging != 60 {
		t.Fatalf("bridges: %s", rec.Body)
	}
	if rec := r.do("DELETE", "/v1/bridges/br1", ""); rec.Code != 204 {
		t.Fatalf("DELETE empty bridge: %d %s", rec.Code, rec.Body)
	}
	// PUT /v1/config in YAML: sections left out keep their values.
	rec = r.do("GET", "/v1/config", "")
	etag := rec.Header().Get("ETag")
	yaml := "bridges: [{name: br0}]\nports:\n  - {name: vm1, type: vhostuser, bridge: br0, socket: vm1.sock}\n"
	rec = r.do("PUT", "/v1/config", yaml, "Content-Type", "application/yaml", "If-Match", etag)
	if rec.Code != 200 {
		t.Fatalf("PUT config: %d %s", rec.Code, rec.Body)
	}
	var res Result
	json.Unmarshal(rec.Body.Bytes(), &res)
	if !reflect.DeepEqual(res.Actions, []string{"remove port vm2", "remove bridge br2"}) {
		t.Errorf("actions %q", res.Actions)
	}
	st := r.store.Snapshot()
	if st.Config.RunDir != "/tmp/vs-api" || len(st.Config.Ports) != 1 || st.Config.API.Listen == "" {
		t.Errorf("config after apply: %+v", st.Config)
	}
	// The old ETag is stale now.
	if rec = r.do("PUT", "/v1/config", yaml, "Content-Type", "application/yaml", "If-Match", etag); rec.Code != 409 {
		t.Errorf("stale PUT config: %d", rec.Code)
	}
}

// Two clients read the same port, then both update it with the revision
// they read: one wins, the other gets 409, and the winner's change stands.
func TestConcurrentUpdatesOneWins(t *testing.T) {
	for round := 0; round < 20; round++ {
		r := newRig(t)
		rec := r.do("GET", "/v1/ports/vm1", "")
		etag := rec.Header().Get("ETag")
		codes := make([]int, 2)
		var wg sync.WaitGroup
		for i := range codes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				codes[i] = r.do("PATCH", "/v1/ports/vm1", fmt.Sprintf(`{"queues":%d}`, i+2), "If-Match", etag).Code
			}()
		}
		wg.Wait()
		won := -1
		for i, c := range codes {
			if c == 200 {
				won = i
			} else if c != 409 {
				t.Fatalf("codes %v", codes)
			}
		}
		if won < 0 || codes[0] == codes[1] {
			t.Fatalf("codes %v: want one 200 and one 409", codes)
		}
		if p, _ := r.store.Snapshot().Config.Port("vm1"); p.Queues.N != won+2 {
			t.Fatalf("queues %d, winner wrote %d", p.Queues, won+2)
		}
	}
}

func TestBearerToken(t *testing.T) {
	h := NewHandler(Options{Source: fakeSource{}, Token: "s3cret-token-0123456789"})
	for _, tc := range []struct {
		auth string
		code int
	}{{"", 401}, {"Bearer nope", 401}, {"Basic s3cret-token-0123456789", 401}, {"Bearer s3cret-token-0123456789", 200}} {
		req := httptest.NewRequest("GET", "/v1/ports", nil)
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != tc.code {
			t.Errorf("Authorization %q: %d, want %d", tc.auth, rec.Code, tc.code)
		}
	}
}

func TestRemoteListenNeedsTLSAndToken(t *testing.T) {
	base := "bridges: [{name: br0}]\n"
	if _, err := Load([]byte("api: {listen: 'tcp://0.0.0.0:8443'}\n"+base), "/tmp/vs"); err == nil || !strings.Contains(err.Error(), "api.tls_cert") {
		t.Errorf("remote listen without TLS: %v", err)
	}
	if _, err := Load([]byte("api: {listen: 'tcp://0.0.0.0:8443', tls_cert: c.pem, token_file: t}\n"+base), "/tmp/vs"); err == nil {
		t.Error("remote listen without a TLS key accepted")
	}
	if _, err := Load([]byte("api: {listen: 'tcp://0.0.0.0:8443', tls_cert: c.pem, tls_key: k.pem, token_file: t}\n"+base), "/tmp/vs"); err != nil {
		t.Errorf("remote listen with TLS and token: %v", err)
	}
}

// The OpenAPI document and the handlers agree: every documented operation
// is served (not the catch-all), answers with a documented status, and
// its JSON body has only documented fields.
func TestOpenAPIInStep(t *testing.T) {
	r := newRig(t)
	rec := r.do("GET", "/v1/openapi.json", "")
	var doc struct {
		OpenAPI    string                                `json:"openapi"`
		Paths      map[string]map[string]json.RawMessage `json:"paths"`
		Components struct {
			Schemas map[string]struct {
				Properties map[string]any `json:"properties"`
			} `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil || !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("openapi.json: %v %s", err, rec.Body)
	}
	if q, _ := json.Marshal(doc.Components.Schemas["PortConfig"].Properties["queues"]); !strings.Contains(string(q), `"oneOf"`) {
		t.Errorf("PortConfig.queues schema %s: want a number or a list", q)
	}
	if _, ok := doc.Components.Schemas["PortStatus"].Properties["error"]; !ok {
		t.Error("PortStatus has no documented error field")
	}
	bodies := map[string]string{
		"POST /v1/ports":                   `{"name":"vm9","type":"vhostuser","bridge":"br1","socket":"vm9.sock"}`,
		"PUT /v1/ports/{name}":             `{"type":"vhostuser","bridge":"br1","socket":"vm8.sock"}`,
		"PATCH /v1/ports/{name}":           `{"queues":2}`,
		"POST /v1/bridges":                 `{"name":"br7"}`,
		"PUT /v1/bridges/{name}":           `{"mac_aging":30}`,
		"PATCH /v1/bridges/{name}":         `{"mac_aging":40}`,
		"PUT /v1/config":                   `{"bridges":[{"name":"br0"}]}`,
		"POST /v1/trace":                   `{"in_port":"vm1","ipv4_src":"10.0.0.1","ipv4_dst":"10.0.0.2","l4_dst":80}`,
		"POST /v1/ports/{name}/trace":      `{"count":5}`,
		"POST /v1/security_groups":         `{"name":"db","rules":[{"direction":"ingress","protocol":"tcp","ports":"5432"}]}`,
		"PUT /v1/security_groups/{name}":   `{"rules":[{"direction":"ingress","ethertype":"ipv4","protocol":"tcp","ports":"80"}]}`,
		"PATCH /v1/security_groups/{name}": `{"rules":[]}`,
		"POST /v1/acls":                    `{"name":"acl9","port":"vm2","direction":"egress","action":"allow"}`,
		"PUT /v1/acls/{name}":              `{"port":"vm2","direction":"ingress","priority":100,"protocol":"tcp","ports":"23","action":"deny"}`,
		"PATCH /v1/acls/{name}":            `{"priority":200}`,
		"PUT /v1/conntrack/limits":         `{"zone_limits":[{"port":"vm2","limit":3}]}`,
	}
	names := map[string]string{"ports": "vm1", "bridges": "br1", "routers": "r1", "security_groups": "web", "acls": "no-telnet"}
	// A group and an ACL to read, replace, patch and delete.
	for _, w := range [][2]string{{"/v1/security_groups/web", `{"rules":[{"direction":"egress"}]}`},
		{"/v1/acls/no-telnet", `{"port":"vm2","direction":"ingress","action":"deny"}`}} {
		if rec := r.do("PUT", w[0], w[1]); rec.Code != 201 {
			t.Fatalf("PUT %s: %d %s", w[0], rec.Code, rec.Body)
		}
	}
	seen := 0
	// GETs first, deletes last, so that each finds its resource.
	order := []string{"get", "post", "put", "patch", "delete"}
	for _, m := range order {
		for path, ops := range doc.Paths {
			raw, ok := ops[m]
			if !ok {
				continue
			}
			seen++
			var op struct {
				Responses map[string]struct {
					Content map[string]struct {
						Schema struct {
							Ref   string `json:"$ref"`
							Items struct {
								Ref string `json:"$ref"`
							} `json:"items"`
						} `json:"schema"`
					} `json:"content"`
				} `json:"responses"`
			}
			json.Unmarshal(raw, &op)
			method := strings.ToUpper(m)
			url := path
			if strings.Contains(path, "{name}") {
				url = strings.Replace(path, "{name}", names[strings.Split(path, "/")[2]], 1)
			}
			if method == "DELETE" && strings.HasPrefix(path, "/v1/bridges") {
				r.do("DELETE", "/v1/ports/vm9", "")
			}
			rec := r.do(method, url, bodies[method+" "+path])
			resp, ok := op.Responses[fmt.Sprint(rec.Code)]
			if !ok {
				t.Errorf("%s %s answered %d %s, not a documented status", method, url, rec.Code, rec.Body)
				continue
			}
			if strings.Contains(rec.Body.String(), "no such resource") {
				t.Errorf("%s %s is documented but not served", method, url)
			}
			js, ok := resp.Content["application/json"]
			if !ok || path == "/v1/openapi.json" {
				continue
			}
			ref := js.Schema.Ref + js.Schema.Items.Ref
			schema := doc.Components.Schemas[strings.TrimPrefix(ref, "#/components/schemas/")]
			var body any
			json.Unmarshal(rec.Body.Bytes(), &body)
			objs := []any{body}
			if list, ok := body.([]any); ok {
				objs = list
			}
			for _, o := range objs {
				for k := range o.(map[string]any) {
					if _, ok := schema.Properties[k]; !ok {
						t.Errorf("%s %s: field %q is not in schema %s", method, url, k, ref)
					}
				}
			}
		}
	}
	if seen < 15 {
		t.Errorf("only %d operations documented", seen)
	}
}

func TestDiff(t *testing.T) {
	base, _ := Load([]byte(testYAML), "")
	mod := func(f func(c *Config)) *Config { c := base.Clone(); f(c); c.Defaults(); return c }
	cases := []struct {
		name string
		new  *Config
		want []string
	}{
		{"nothing", base.Clone(), nil},
		{"add port", mod(func(c *Config) {
			c.Ports = append(c.Ports, PortConfig{Name: "vm3", Type: TypeVhostUser, Bridge: "br1", Socket: "vm3.sock"})
		}), []string{"add port vm3"}},
		{"change port", mod(func(c *Config) { c.Ports[1].Queues = QueueCount(2) }), []string{"remove port vm2", "add port vm2"}},
		{"remove port", mod(func(c *Config) { c.Ports = c.Ports[:1] }), []string{"remove port vm2"}},
		{"change bridge recreates its ports", mod(func(c *Config) { c.Bridges[0].MACAging = 10 }),
			[]string{"remove port vm1", "remove port vm2", "remove bridge br0", "add bridge br0", "add port vm1", "add port vm2"}},
		{"change other bridge", mod(func(c *Config) { c.Bridges[1].MACAging = 10 }), []string{"remove bridge br1", "add bridge br1"}},
		{"log", mod(func(c *Config) { c.Log.Level = "debug" }), []string{"update log"}},
		{"reorder is nothing", mod(func(c *Config) { c.Ports[0], c.Ports[1] = c.Ports[1], c.Ports[0] }), nil},
	}
	for _, tc := range cases {
		acts, err := Diff(base, tc.new)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		var got []string
		for _, a := range acts {
			got = append(got, a.String())
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
		// Applying the actions to the old config gives the new one.
		c := base.Clone()
		for _, a := range acts {
			c.Apply(a)
		}
		c.Normalize()
		n := tc.new.Clone()
		n.Normalize()
		if !reflect.DeepEqual(c, n) {
			t.Errorf("%s: applying the actions gives %+v, want %+v", tc.name, c, n)
		}
	}
	for _, f := range []func(c *Config){
		func(c *Config) { c.Dataplane.Workers = 2 },
		func(c *Config) { c.API.Listen = "unix:///x.sock" },
		func(c *Config) { c.RunDir = "/elsewhere" },
	} {
		if _, err := Diff(base, mod(f)); err == nil {
			t.Error("a start-time change was accepted")
		}
	}
	// From the start-time settings alone: everything is added.
	acts, _ := Diff(base.Startup(), base)
	if len(acts) != 4 || acts[0].String() != "add bridge br0" || acts[3].String() != "add port vm2" {
		t.Errorf("from empty: %v", acts)
	}
}

func TestStateFile(t *testing.T) {
	dir := t.TempDir()
	if st, err := LoadState(dir); st != nil || err != nil {
		t.Fatalf("empty dir: %v %v", st, err)
	}
	c, _ := Load([]byte(testYAML), "")
	st := NewState(c)
	if err := SaveState(dir, st); err != nil {
		t.Fatal(err)
	}
	// A crash during a later save leaves a torn temporary file: ignored
	// and removed; the state is the last one saved.
	tmp := filepath.Join(dir, StateFile+".tmp-123")
	os.WriteFile(tmp, []byte(`{"version":1,"revis`), 0o600)
	got, err := LoadState(dir)
	if err != nil || !reflect.DeepEqual(got, st) {
		t.Fatalf("loaded %+v %v, want %+v", got, err, st)
	}
	if _, err := os.Stat(tmp); !os.IsNotExist(err) {
		t.Error("temporary file left behind")
	}
	// A damaged state file is an error, never silently an empty state.
	b, _ := os.ReadFile(filepath.Join(dir, StateFile))
	os.WriteFile(filepath.Join(dir, StateFile), b[:len(b)/2], 0o600)
	if _, err := LoadState(dir); err == nil {
		t.Error("torn state file accepted")
	}
	if _, err := DecodeState(bytes.Replace(b, []byte(`"version": 1`), []byte(`"version": 9`), 1)); err == nil {
		t.Error("unknown version accepted")
	}
}

func TestDiffEmptyListIsNoList(t *testing.T) {
	a, _ := Load([]byte(testYAML), "")
	b := a.Clone()
	a.Dataplane.CPUs = []int{}
	b.Dataplane.CPUs = nil
	if acts, err := Diff(a, b); err != nil || len(acts) != 0 {
		t.Fatalf("%v %v", acts, err)
	}
}
