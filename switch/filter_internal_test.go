package vswitch

import (
	"testing"

	"github.com/vswitch/vswitch/acl"
)

// A bridge parses only the Ethernet header when no port is filtered:
// with no filter config, and with one that names no existing port; a
// filtered port turns the full parse back on.
func TestFilterNoneOnlyWithoutFilteredPorts(t *testing.T) {
	c := &config{}
	c.ports[1] = &portEntry{PortInfo: PortInfo{Name: "p0", ID: 1}}
	for _, tc := range []struct {
		name string
		fc   *acl.Config
		none bool
	}{
		{"no config", nil, true},
		{"empty config", &acl.Config{}, true},
		{"unknown port", &acl.Config{Ports: []acl.PortFilter{{Name: "gone", PortSecurity: &acl.PortSecurity{MAC: "02:00:00:00:00:01"}}}}, true},
		{"port security", &acl.Config{Ports: []acl.PortFilter{{Name: "p0", PortSecurity: &acl.PortSecurity{MAC: "02:00:00:00:00:01"}}}}, false},
		{"ingress ACL", &acl.Config{ACLs: []acl.ACL{{Name: "a", Port: "p0", Direction: "ingress", Action: "allow"}}}, false},
	} {
		f, err := compileFilter(c, tc.fc)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if f.none != tc.none {
			t.Errorf("%s: none = %v, want %v", tc.name, f.none, tc.none)
		}
	}
}
