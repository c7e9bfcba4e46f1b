package api

import (
	"net/http"
	"slices"

	"github.com/vswitch/vswitch/acl"
)

// SecurityGroupStatus is one security group as GET /v1/security_groups
// shows it: its config, the ports in it, and its revision (ETag).
type SecurityGroupStatus struct {
	acl.SecurityGroup
	Ports    []string `json:"ports"`
	Revision uint64   `json:"revision"`
}

// ACLStatus is one ACL as GET /v1/acls shows it: its config and its
// revision (ETag).
type ACLStatus struct {
	acl.ACL
	Revision uint64 `json:"revision"`
}

var securityGroups = collection[acl.SecurityGroup]{
	path: "security_groups", kind: "security group",
	list:   func(c *Config) *[]acl.SecurityGroup { return &c.SecurityGroups },
	name:   func(g *acl.SecurityGroup) *string { return &g.Name },
	decode: DecodeSecurityGroup,
	// A group still named by a port, or by another group's remote_group,
	// stays: deleting it would leave a dangling reference.
	inUse: func(c *Config, name string) []string {
		var users []string
		for _, p := range c.Ports {
			if slices.Contains(p.SecurityGroups, name) {
				users = append(users, "port "+p.Name)
			}
		}
		for _, g := range c.SecurityGroups {
			if g.Name == name {
				continue
			}
			for _, r := range g.Rules {
				if r.RemoteGroup == name {
					users = append(users, "security group "+g.Name+" (remote_group)")
					break
				}
			}
		}
		return users
	},
}

var acls = collection[acl.ACL]{
	path: "acls", kind: "acl",
	list:   func(c *Config) *[]acl.ACL { return &c.ACLs },
	name:   func(a *acl.ACL) *string { return &a.Name },
	decode: DecodeACL,
}

// aclsOn lists the ACLs bound to port: a port with ACLs stays until they go.
func aclsOn(c *Config, port string) []string {
	var users []string
	for _, a := range c.ACLs {
		if a.Port == port {
			users = append(users, "acl "+a.Name)
		}
	}
	return users
}

func (h *handler) securityGroupStatuses() []SecurityGroupStatus {
	st := h.Store.Snapshot()
	out := []SecurityGroupStatus{}
	for _, g := range st.Config.SecurityGroups {
		gs := SecurityGroupStatus{SecurityGroup: g, Ports: []string{}, Revision: st.Revisions[securityGroups.key(g.Name)]}
		for _, p := range st.Config.Ports {
			if slices.Contains(p.SecurityGroups, g.Name) {
				gs.Ports = append(gs.Ports, p.Name)
			}
		}
		slices.Sort(gs.Ports)
		out = append(out, gs)
	}
	return out
}

func (h *handler) getSecurityGroups(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, h.securityGroupStatuses())
}

func (h *handler) getSecurityGroup(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	for _, g := range h.securityGroupStatuses() {
		if g.Name == name {
			w.Header().Set("ETag", etag(g.Revision))
			writeJSON(w, http.StatusOK, g)
			return
		}
	}
	writeError(w, http.StatusNotFound, "no security group "+name)
}

// aclStatuses lists the ACLs in config order: among equal priorities the
// first listed wins.
func (h *handler) aclStatuses() []ACLStatus {
	st := h.Store.Snapshot()
	out := []ACLStatus{}
	for _, a := range st.Config.ACLs {
		out = append(out, ACLStatus{ACL: a, Revision: st.Revisions[acls.key(a.Name)]})
	}
	return out
}

func (h *handler) getACLs(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, h.aclStatuses())
}

func (h *handler) getACL(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	for _, a := range h.aclStatuses() {
		if a.Name == name {
			w.Header().Set("ETag", etag(a.Revision))
			writeJSON(w, http.StatusOK, a)
			return
		}
	}
	writeError(w, http.StatusNotFound, "no acl "+name)
}

// filterRoutes are the security group and ACL resources: the same verbs,
// revisions and validation as ports and bridges.
func (h *handler) filterRoutes() []route {
	write := []int{200, 201, 400, 404, 409, 413, 422}
	del := []int{204, 400, 404, 409, 422}
	sg, a := securityGroups, acls
	return []route{
		{Method: "GET", Path: "/v1/security_groups", Summary: "List security groups with their member ports", Response: []SecurityGroupStatus{}, Codes: []int{200}, handle: h.getSecurityGroups},
		{Method: "POST", Path: "/v1/security_groups", Summary: "Create a security group (409 if it exists)", Request: acl.SecurityGroup{}, Response: acl.SecurityGroup{}, Codes: write,
			handle: func(w http.ResponseWriter, r *http.Request) { sg.write(h, w, r, http.MethodPost) }},
		{Method: "GET", Path: "/v1/security_groups/{name}", Summary: "One security group with its member ports (ETag: its revision)", Response: SecurityGroupStatus{}, Codes: []int{200, 404}, handle: h.getSecurityGroup},
		{Method: "PUT", Path: "/v1/security_groups/{name}", Summary: "Create or replace a security group (If-Match: revision); the filters are recompiled, no port restarts", Request: acl.SecurityGroup{}, Response: acl.SecurityGroup{}, Codes: write,
			handle: func(w http.ResponseWriter, r *http.Request) { sg.write(h, w, r, http.MethodPut) }},
		{Method: "PATCH", Path: "/v1/security_groups/{name}", Summary: "Change fields of a security group (JSON merge patch: rules replaces the list; If-Match: revision)", Request: acl.SecurityGroup{}, Response: acl.SecurityGroup{}, Codes: write,
			handle: func(w http.ResponseWriter, r *http.Request) { sg.write(h, w, r, http.MethodPatch) }},
		{Method: "DELETE", Path: "/v1/security_groups/{name}", Summary: "Delete a security group no port or remote_group names (409 naming them otherwise)", Codes: del,
			handle: func(w http.ResponseWriter, r *http.Request) { sg.delete(h, w, r) }},
		{Method: "GET", Path: "/v1/acls", Summary: "List ACLs in evaluation order among equal priorities", Response: []ACLStatus{}, Codes: []int{200}, handle: h.getACLs},
		{Method: "POST", Path: "/v1/acls", Summary: "Create an ACL (409 if it exists)", Request: acl.ACL{}, Response: acl.ACL{}, Codes: write,
			handle: func(w http.ResponseWriter, r *http.Request) { a.write(h, w, r, http.MethodPost) }},
		{Method: "GET", Path: "/v1/acls/{name}", Summary: "One ACL (ETag: its revision)", Response: ACLStatus{}, Codes: []int{200, 404}, handle: h.getACL},
		{Method: "PUT", Path: "/v1/acls/{name}", Summary: "Create or replace an ACL (If-Match: revision); the filters are recompiled, no port restarts", Request: acl.ACL{}, Response: acl.ACL{}, Codes: write,
			handle: func(w http.ResponseWriter, r *http.Request) { a.write(h, w, r, http.MethodPut) }},
		{Method: "PATCH", Path: "/v1/acls/{name}", Summary: "Change fields of an ACL (JSON merge patch; If-Match: revision)", Request: acl.ACL{}, Response: acl.ACL{}, Codes: write,
			handle: func(w http.ResponseWriter, r *http.Request) { a.write(h, w, r, http.MethodPatch) }},
		{Method: "DELETE", Path: "/v1/acls/{name}", Summary: "Delete an ACL (If-Match: revision)", Codes: del,
			handle: func(w http.ResponseWriter, r *http.Request) { a.delete(h, w, r) }},
	}
}
