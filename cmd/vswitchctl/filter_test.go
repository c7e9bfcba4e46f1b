package main

import (
	"bytes"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/vswitch/vswitch/api"
)

// storeSource lists the store's ports, all waiting.
type storeSource struct{ s *api.Store }

func (ss storeSource) Ports() []api.PortStatus {
	var ps []api.PortStatus
	for _, p := range ss.s.Snapshot().Config.Ports {
		ps = append(ps, api.PortStatus{Name: p.Name, Type: p.Type, Bridge: p.Bridge, State: api.StateWaiting, Drops: map[string]uint64{}})
	}
	return ps
}

// storeDaemon serves the API over a store whose reconciler only records
// the config, as vswitchd's does once it has carried a change out.
func storeDaemon(t *testing.T, yaml string) (addr string, store *api.Store) {
	t.Helper()
	cfg, err := api.Load([]byte(yaml), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	running := cfg.Clone()
	store = api.NewStore(api.NewState(cfg), func(target *api.Config) ([]api.Action, error) {
		mu.Lock()
		defer mu.Unlock()
		acts, err := api.Diff(running, target)
		running = target.Clone()
		return acts, err
	}, nil)
	srv := httptest.NewServer(api.NewHandler(api.Options{Source: storeSource{store}, Store: store}))
	t.Cleanup(srv.Close)
	return "tcp://" + strings.TrimPrefix(srv.URL, "http://"), store
}

// acl and sg commands against the API: tables, JSON, files, exit codes,
// completion.
func TestACLAndSecurityGroupCommands(t *testing.T) {
	addr, store := storeDaemon(t, `bridges: [{name: br0}]
ports:
  - {name: vm1, type: vhostuser, bridge: br0, socket: vm1.sock}
  - {name: vm2, type: vhostuser, bridge: br0, socket: vm2.sock}
`)
	dir := t.TempDir()
	file := func(name, body string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(body), 0o644)
		return p
	}
	ssh := file("ssh.yaml", "{name: ssh, port: vm2, direction: ingress, protocol: tcp, ports: \"22\", source: 10.0.0.0/8, action: allow}\n")
	typo := file("typo.yaml", "port: vm2\ndirection: ingress\naction: allow\nprotocl: tcp\n")
	list := file("list.yaml", "- {name: a}\n")
	dbJSON := file("db.json", `{"rules":[{"direction":"ingress","protocol":"tcp","ports":"5432","remote_group":"web"}]}`)
	for _, tc := range []struct {
		args []string
		code int
		want []string
	}{
		{[]string{"sg", "add", "web", "--rule", "direction=ingress,protocol=tcp,ports=80-81,remote=0.0.0.0/0", "--rule", "direction=egress"}, exitOK, []string{"security group web added (revision 2)"}},
		{[]string{"sg", "add", "web"}, exitConflict, []string{"exists"}},
		{[]string{"sg", "add", "x", "--rule", "direction"}, exitUsage, []string{"KEY=VALUE"}},
		{[]string{"sg", "add", "x", "--rule", "direction=ingress,icmp_type=echo"}, exitUsage, []string{"icmp_type"}},
		{[]string{"sg", "add", "x", "--rule", "direction=sideways"}, exitInvalid, []string{"security_groups[1].rules[0].direction"}},
		{[]string{"sg", "add", "x", "--rule", "direction=ingress,port=22"}, exitInvalid, []string{`"port"`}},
		{[]string{"sg", "add", "db", "-f", dbJSON}, exitOK, []string{"security group db added"}},
		{[]string{"sg", "add"}, exitUsage, []string{"NAME"}},
		{[]string{"port", "set", "vm1", "--security-groups", "web"}, exitOK, []string{"port vm1 changed"}},
		{[]string{"port", "set", "vm2", "--security-groups", "nope"}, exitInvalid, []string{"ports[1].security_groups[0]"}},
		{[]string{"sg", "list"}, exitOK, []string{"NAME", "RULES", "PORTS", "web", "vm1", "db"}},
		{[]string{"sg", "show", "web"}, exitOK, []string{"ports: vm1", "80-81", "0.0.0.0/0", "egress"}},
		{[]string{"sg", "show", "db"}, exitOK, []string{"group web", "5432"}},
		{[]string{"--json", "sg", "show", "web"}, exitOK, []string{`"ports": [`, `"remote": "0.0.0.0/0"`, `"revision": 2`}},
		{[]string{"sg", "show", "nope"}, exitNotFound, []string{"no security group nope"}},
		{[]string{"sg", "del", "web"}, exitConflict, []string{"port vm1", "security group db (remote_group)"}},

		{[]string{"acl", "add", "no-telnet", "--port", "vm1", "--direction", "ingress", "--priority", "100", "--protocol", "tcp", "--ports", "23", "--action", "deny"}, exitOK, []string{"acl no-telnet added"}},
		{[]string{"acl", "add", "no-telnet", "--port", "vm1", "--direction", "ingress", "--action", "deny"}, exitConflict, []string{"exists"}},
		{[]string{"acl", "add", "-f", ssh}, exitOK, []string{"acl ssh added"}},
		{[]string{"acl", "add", "ping", "--port", "vm1", "--direction", "egress", "--protocol", "icmp", "--icmp-type", "8", "--action", "reject"}, exitOK, []string{"acl ping added"}},
		{[]string{"acl", "add", "other", "-f", ssh}, exitUsage, []string{`"ssh"`, `"other"`}},
		{[]string{"acl", "add", "t", "-f", typo}, exitInvalid, []string{`"protocl"`}},
		{[]string{"acl", "add", "-f", typo}, exitUsage, []string{"no name"}},
		{[]string{"acl", "add", "-f", list}, exitUsage, []string{"one object"}},
		{[]string{"acl", "add", "-f", filepath.Join(dir, "missing.yaml")}, exitUsage, []string{"missing.yaml"}},
		{[]string{"acl", "add", "x", "--port", "vm9", "--direction", "ingress", "--action", "deny"}, exitInvalid, []string{"acls[3].port"}},
		{[]string{"acl", "add", "x", "--port", "vm1", "--direction", "ingress", "--action", "deny", "--ports", "80"}, exitInvalid, []string{"acls[3].ports"}},
		{[]string{"acl", "add", "x", "--port", "vm1", "--priority", "x"}, exitUsage, []string{"priority"}},
		{[]string{"acl", "list"}, exitOK, []string{"NAME", "PRIORITY", "MATCH", "no-telnet", "tcp dport 23", "ssh", "tcp src 10.0.0.0/8 dport 22", "icmp type 8", "reject"}},
		{[]string{"acl", "show", "no-telnet"}, exitOK, []string{"port:", "vm1", "priority:", "100", "deny", "revision:"}},
		{[]string{"--json", "acl", "list"}, exitOK, []string{`"name": "ssh"`, `"source": "10.0.0.0/8"`}},
		{[]string{"acl", "show", "nope"}, exitNotFound, []string{"no acl nope"}},
		{[]string{"acl", "set", "no-telnet", "--priority", "200", "--revision", "99"}, exitConflict, []string{"not 99"}},
		{[]string{"acl", "set", "no-telnet", "--priority", "200", "--action", "reject"}, exitOK, []string{"acl no-telnet changed"}},
		{[]string{"acl", "set", "ssh", "--source", ""}, exitOK, []string{"acl ssh changed"}},
		{[]string{"acl", "set", "no-telnet", "--port", "vm9"}, exitInvalid, []string{"acls[0].port"}},
		{[]string{"acl", "set", "no-telnet"}, exitUsage, []string{"nothing to change"}},
		{[]string{"acl", "set", "ssh", "-f", ssh}, exitOK, []string{"acl ssh replaced"}},
		{[]string{"acl", "set", "nope", "--priority", "1"}, exitNotFound, []string{"no acl nope"}},
		{[]string{"port", "del", "vm1"}, exitConflict, []string{"acl no-telnet", "acl ping"}},
		{[]string{"acl", "del", "ping"}, exitOK, []string{"acl ping deleted"}},
		{[]string{"acl", "del", "ping"}, exitNotFound, []string{"no acl ping"}},
		{[]string{"sg", "set", "web", "--no-rules", "--rule", "direction=egress"}, exitUsage, []string{"together"}},
		{[]string{"sg", "set", "web"}, exitUsage, []string{"--rule"}},
		{[]string{"sg", "set", "web", "--rule", "direction=ingress,protocol=udp,ports=53", "--revision", "2"}, exitOK, []string{"security group web changed"}},
		{[]string{"sg", "set", "web", "--no-rules", "--revision", "2"}, exitConflict, []string{"not 2"}},
		{[]string{"sg", "del", "db"}, exitOK, []string{"security group db deleted"}},
		{[]string{"port", "set", "vm1", "--security-groups", ""}, exitOK, []string{"port vm1 changed"}},
		{[]string{"--json", "sg", "del", "web"}, exitOK, []string{`"deleted": "web"`}},
	} {
		var out, errOut bytes.Buffer
		code := run(append([]string{"--api", addr}, tc.args...), &out, &errOut)
		all := out.String() + errOut.String()
		if code != tc.code {
			t.Fatalf("%q: exit %d, want %d\n%s", tc.args, code, tc.code, all)
		}
		for _, w := range tc.want {
			if !strings.Contains(all, w) {
				t.Errorf("%q: no %q in\n%s", tc.args, w, all)
			}
		}
	}
	c := store.Snapshot().Config
	if len(c.SecurityGroups) != 0 || len(c.ACLs) != 2 || c.ACLs[0].Priority != 200 || c.ACLs[0].Action != "reject" || c.ACLs[1].Source != "10.0.0.0/8" {
		t.Errorf("config after the commands: groups %+v acls %+v", c.SecurityGroups, c.ACLs)
	}
	if p, _ := c.Port("vm1"); len(p.SecurityGroups) != 0 {
		t.Errorf("vm1 still in %v", p.SecurityGroups)
	}
	var as []api.ACLStatus
	var out, errOut bytes.Buffer
	if run([]string{"--api", addr, "--json", "acl", "list"}, &out, &errOut) != exitOK || json.Unmarshal(out.Bytes(), &as) != nil || len(as) != 2 || as[0].Revision == 0 {
		t.Errorf("acl list --json: %s %s", out.String(), errOut.String())
	}

	// Completion: names from the daemon, and the flags' fixed values.
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"__complete", "acl", "show", ""}, []string{"no-telnet", "ssh"}},
		{[]string{"__complete", "acl", "add", "x", "--port", ""}, []string{"vm1", "vm2"}},
		{[]string{"__complete", "acl", "set", "ssh", "--direction", ""}, []string{"ingress", "egress"}},
		{[]string{"__complete", "acl", "add", "x", "--action", ""}, []string{"allow", "deny", "reject"}},
		{[]string{"__complete", "sg", "del", ""}, nil},
		{[]string{"__complete", "port", "set", "vm1", "--security-groups", ""}, nil},
	} {
		var out, errOut bytes.Buffer
		if code := run(append([]string{"--api", addr}, tc.args...), &out, &errOut); code != exitOK {
			t.Fatalf("%q: exit %d %s", tc.args, code, errOut.String())
		}
		for _, w := range tc.want {
			if !strings.Contains(out.String(), w) {
				t.Errorf("%q: no %q in\n%s", tc.args, w, out.String())
			}
		}
	}
}
