package api

import (
	"bytes"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/user"
	"sort"
	"strconv"
	"strings"
	"time"
)

// PortStatus is one port as GET /v1/ports shows it.
type PortStatus struct {
	Name   string `json:"name"`
	Type   string `json:"type"`
	Bridge string `json:"bridge"`
	Socket string `json:"socket,omitempty"`
	Mode   string `json:"mode,omitempty"`
	State  string `json:"state"` // waiting, connecting, connected, running, down, stopped
	// Error says why the port is not forwarding, or why its connection was
	// last dropped: a vhost-user message refused, a ring that cannot
	// start, a data-plane fault, an unreachable front-end, a link down or
	// a device gone. Empty when nothing went wrong since it last connected.
	Error      string            `json:"error,omitempty"`
	Features   []string          `json:"features,omitempty"`
	QueuePairs int               `json:"queue_pairs"`
	MTU        int               `json:"mtu,omitempty"`
	RxPackets  uint64            `json:"rx_packets"`
	RxBytes    uint64            `json:"rx_bytes"`
	TxPackets  uint64            `json:"tx_packets"`
	TxBytes    uint64            `json:"tx_bytes"`
	Drops      map[string]uint64 `json:"drops"`
	// Protocol counts the vhost-user connection's control messages.
	Protocol map[string]uint64 `json:"protocol,omitempty"`
	// Config is the port's desired config (the body PUT takes) and
	// Revision its ETag.
	Config   *PortConfig `json:"config,omitempty"`
	Revision uint64      `json:"revision,omitempty"`
}

// BridgeStatus is one bridge as GET /v1/bridges shows it.
type BridgeStatus struct {
	BridgeConfig
	Ports    []string `json:"ports"`
	Revision uint64   `json:"revision"`
}

// Port states.
const (
	StateWaiting    = "waiting"    // server socket, no front-end yet
	StateConnecting = "connecting" // client mode, front-end not reachable yet
	StateConnected  = "connected"  // front-end connected, rings not running
	StateRunning    = "running"    // rings running
	StateDown       = "down"       // afxdp: the device's link is down
	StateStopped    = "stopped"    // afxdp: the device is gone or the data plane faulted
)

// Source is what the API reads from the daemon.
type Source interface {
	Ports() []PortStatus
}

// Error is the JSON body of every error answer.
type Error struct {
	Error   string   `json:"error"`
	Details []string `json:"details,omitempty"`
}

// Options wire the API to the daemon.
type Options struct {
	Source Source // port status and counters
	Store  *Store // the desired state; nil serves a read-only API
	// Metrics serves GET /metrics (Prometheus text format) if not nil.
	Metrics http.Handler
	// Tracer answers POST /v1/trace if not nil.
	Tracer Tracer
	// Token, if not empty, is the bearer token every request must carry.
	Token string
}

type handler struct {
	Options
	mux *http.ServeMux
}

// NewHandler routes the API: the routes table (routes.go) on the standard
// mux's method patterns, behind the bearer-token check when one is set.
func NewHandler(o Options) http.Handler {
	h := &handler{Options: o, mux: http.NewServeMux()}
	for _, rt := range h.routes() {
		if rt.handle == nil {
			continue
		}
		h.mux.HandleFunc(rt.Method+" "+rt.Path, rt.handle)
	}
	h.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, r.Method+" "+r.URL.Path+": no such resource")
	})
	return h
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.Token != "" {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(h.Token)) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="vswitch"`)
			writeError(w, http.StatusUnauthorized, "missing or wrong bearer token")
			return
		}
	}
	h.mux.ServeHTTP(w, r)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string, details ...string) {
	writeJSON(w, code, Error{Error: msg, Details: details})
}

func writeErr(w http.ResponseWriter, err error) {
	var se *StatusError
	if errors.As(err, &se) {
		writeError(w, se.Code, se.Msg, se.Details...)
		return
	}
	writeError(w, http.StatusInternalServerError, err.Error())
}

// readBody reads a request body; too large a body is a 413.
func readBody(r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(r.Body)
	var mb *http.MaxBytesError
	if errors.As(err, &mb) {
		return nil, Errorf(http.StatusRequestEntityTooLarge, "request body larger than %d bytes", mb.Limit)
	}
	if err != nil {
		return nil, Errorf(http.StatusBadRequest, "reading the body: %v", err)
	}
	return b, nil
}

func etag(rev uint64) string { return `"` + strconv.FormatUint(rev, 10) + `"` }

// ifMatch reads If-Match: a revision ("5", 5 or W/"5"). ok is false when
// the header is absent.
func ifMatch(r *http.Request) (rev uint64, ok bool, err error) {
	v := strings.TrimSpace(r.Header.Get("If-Match"))
	if v == "" {
		return 0, false, nil
	}
	v = strings.Trim(strings.TrimPrefix(v, "W/"), `"`)
	rev, err = strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, false, Errorf(http.StatusBadRequest, "If-Match: %q is not a revision (use the ETag of a GET; \"0\" means the resource must not exist)", r.Header.Get("If-Match"))
	}
	return rev, true, nil
}

func checkRevision(what string, cur uint64, want uint64, has bool) error {
	if has && cur != want {
		if cur == 0 {
			return Errorf(http.StatusConflict, "%s does not exist (If-Match %d): someone else deleted it", what, want)
		}
		return Errorf(http.StatusConflict, "%s is at revision %d, not %d: someone else changed it; read it again", what, cur, want)
	}
	return nil
}

// collection is a named list in the config (ports, bridges, security
// groups, ACLs) with the same verbs.
type collection[T any] struct {
	path   string // "ports"
	kind   string // "port"
	list   func(*Config) *[]T
	name   func(*T) *string
	decode func([]byte) (T, error)
	// inUse, if set, refuses a delete while other resources refer to it.
	inUse func(*Config, string) []string
}

func (c collection[T]) find(cfg *Config, name string) (int, bool) {
	for i := range *c.list(cfg) {
		if *c.name(&(*c.list(cfg))[i]) == name {
			return i, true
		}
	}
	return -1, false
}

func (c collection[T]) key(name string) string { return ResourceKey(c.path, name) }

// write answers PUT (create or replace), POST (create only) and PATCH
// (merge into the existing one).
func (c collection[T]) write(h *handler, w http.ResponseWriter, r *http.Request, method string) {
	name := r.PathValue("name")
	body, err := readBody(r)
	if err != nil {
		writeErr(w, err)
		return
	}
	var v T
	if method != http.MethodPatch {
		v, err = c.decode(body)
		if err != nil {
			writeError(w, http.StatusBadRequest, c.kind+" body: "+err.Error())
			return
		}
		if method == http.MethodPost {
			name = *c.name(&v)
			if name == "" {
				writeError(w, http.StatusBadRequest, c.kind+" body: name: required")
				return
			}
		} else if n := c.name(&v); *n == "" {
			*n = name
		} else if *n != name {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("%s body: name: %q, but the path names %q", c.kind, *n, name))
			return
		}
	}
	rev, has, err := ifMatch(r)
	if err != nil {
		writeErr(w, err)
		return
	}
	created := false
	res, err := h.Store.Update(func(cur *State, next *Config) error {
		if err := checkRevision(c.kind+" "+name, cur.Revisions[c.key(name)], rev, has); err != nil {
			return err
		}
		i, exists := c.find(next, name)
		list := c.list(next)
		switch method {
		case http.MethodPost:
			if exists {
				return Errorf(http.StatusConflict, "%s %s exists (PUT /v1/%s/%s replaces it)", c.kind, name, c.path, name)
			}
		case http.MethodPatch:
			if !exists {
				return Errorf(http.StatusNotFound, "no %s %s", c.kind, name)
			}
			if err := MergePatch((*list)[i], body, &v); err != nil {
				return Errorf(http.StatusBadRequest, "%s patch: %v", c.kind, err)
			}
			if *c.name(&v) != name {
				return Errorf(http.StatusBadRequest, "%s patch: name: a %s cannot be renamed", c.kind, c.kind)
			}
		}
		if exists {
			(*list)[i] = v
		} else {
			*list = append(*list, v)
			created = true
		}
		return nil
	})
	if err != nil {
		writeErr(w, err)
		return
	}
	w.Header().Set("ETag", etag(res.State.Revisions[c.key(name)]))
	code := http.StatusOK
	if created {
		code = http.StatusCreated
		w.Header().Set("Location", "/v1/"+c.path+"/"+name)
	}
	i, _ := c.find(&res.State.Config, name)
	writeJSON(w, code, (*c.list(&res.State.Config))[i])
}

func (c collection[T]) delete(h *handler, w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	rev, has, err := ifMatch(r)
	if err != nil {
		writeErr(w, err)
		return
	}
	_, err = h.Store.Update(func(cur *State, next *Config) error {
		i, exists := c.find(next, name)
		if !exists {
			return Errorf(http.StatusNotFound, "no %s %s", c.kind, name)
		}
		if err := checkRevision(c.kind+" "+name, cur.Revisions[c.key(name)], rev, has); err != nil {
			return err
		}
		if c.inUse != nil {
			if users := c.inUse(next, name); len(users) > 0 {
				return Errorf(http.StatusConflict, "%s %s is in use by %s; remove them first", c.kind, name, strings.Join(users, ", "))
			}
		}
		list := c.list(next)
		*list = append((*list)[:i], (*list)[i+1:]...)
		return nil
	})
	if err != nil {
		writeErr(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

var ports = collection[PortConfig]{
	path: "ports", kind: "port",
	list:   func(c *Config) *[]PortConfig { return &c.Ports },
	name:   func(p *PortConfig) *string { return &p.Name },
	decode: DecodePort,
	inUse: func(c *Config, name string) []string {
		return append(aclsOn(c, name), zoneLimitsOn(c, name)...)
	},
}

var bridges = collection[BridgeConfig]{
	path: "bridges", kind: "bridge",
	list:   func(c *Config) *[]BridgeConfig { return &c.Bridges },
	name:   func(b *BridgeConfig) *string { return &b.Name },
	decode: DecodeBridge,
	inUse: func(c *Config, name string) []string {
		var users []string
		for _, p := range c.Ports {
			if p.Bridge == name {
				users = append(users, "port "+p.Name)
			}
		}
		return users
	},
}

// portStatuses returns the ports' status, with their config and revision
// when a store is wired.
func (h *handler) portStatuses() []PortStatus {
	ps := h.Source.Ports()
	if ps == nil {
		ps = []PortStatus{}
	}
	if h.Store != nil {
		st := h.Store.Snapshot()
		for i := range ps {
			if pc, ok := st.Config.Port(ps[i].Name); ok {
				ps[i].Config = &pc
				ps[i].Revision = st.Revisions[ports.key(pc.Name)]
			}
		}
	}
	return ps
}

func (h *handler) getPorts(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, h.portStatuses())
}

func (h *handler) getPort(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	for _, p := range h.portStatuses() {
		if p.Name == name {
			if p.Revision != 0 {
				w.Header().Set("ETag", etag(p.Revision))
			}
			writeJSON(w, http.StatusOK, p)
			return
		}
	}
	writeError(w, http.StatusNotFound, "no port "+name)
}

func (h *handler) bridgeStatuses() []BridgeStatus {
	st := h.Store.Snapshot()
	out := []BridgeStatus{}
	for _, b := range st.Config.Bridges {
		bs := BridgeStatus{BridgeConfig: b, Ports: []string{}, Revision: st.Revisions[bridges.key(b.Name)]}
		for _, p := range st.Config.Ports {
			if p.Bridge == b.Name {
				bs.Ports = append(bs.Ports, p.Name)
			}
		}
		sort.Strings(bs.Ports)
		out = append(out, bs)
	}
	return out
}

func (h *handler) getBridges(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, h.bridgeStatuses())
}

func (h *handler) getBridge(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	for _, b := range h.bridgeStatuses() {
		if b.Name == name {
			w.Header().Set("ETag", etag(b.Revision))
			writeJSON(w, http.StatusOK, b)
			return
		}
	}
	writeError(w, http.StatusNotFound, "no bridge "+name)
}

func (h *handler) getConfig(w http.ResponseWriter, r *http.Request) {
	st := h.Store.Snapshot()
	w.Header().Set("ETag", etag(st.Revision))
	writeJSON(w, http.StatusOK, st.Config)
}

// isYAML tells a YAML body from a JSON one by its Content-Type.
func isYAML(r *http.Request) bool {
	ct := r.Header.Get("Content-Type")
	return strings.Contains(ct, "yaml")
}

func (h *handler) putConfig(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(r)
	if err != nil {
		writeErr(w, err)
		return
	}
	c, err := DecodeConfig(body, isYAML(r))
	if err != nil {
		writeError(w, http.StatusBadRequest, "config body: "+err.Error())
		return
	}
	rev, has, err := ifMatch(r)
	if err != nil {
		writeErr(w, err)
		return
	}
	res, err := h.Store.Replace(c, rev, has)
	if err != nil {
		writeErr(w, err)
		return
	}
	w.Header().Set("ETag", etag(res.Revision))
	writeJSON(w, http.StatusOK, res)
}

// Replace makes in the desired config, as PUT /v1/config, SIGHUP and
// vswitchctl config apply do. Sections that in leaves out (api, run_dir, log,
// dataplane, vhostuser) keep their current values; bridges and ports are replaced as
// given. With checkRev, the current revision must be rev.
func (s *Store) Replace(in *Config, rev uint64, checkRev bool) (*Result, error) {
	return s.Update(func(cur *State, next *Config) error {
		if err := checkRevision("the config", cur.Revision, rev, checkRev); err != nil {
			return err
		}
		in := in.Clone()
		if in.API == (APIConfig{}) {
			in.API = next.API
		}
		if in.RunDir == "" {
			in.RunDir = next.RunDir
		}
		if in.Log == (LogConfig{}) {
			in.Log = next.Log
		}
		if in.Dataplane.Workers == 0 && in.Dataplane.CPUs == nil && in.Dataplane.Poll == "" {
			in.Dataplane = next.Dataplane
		}
		if in.VhostUser == (VhostUserConfig{}) {
			in.VhostUser = next.VhostUser
		}
		*next = *in
		return nil
	})
}

// Listener opens the API's listener. A unix socket gets mode (0660 if
// zero) and owner and group (user/group names or numeric ids; "" leaves
// them); a stale socket file is replaced.
func Listener(l Listen, mode os.FileMode, owner, group string) (net.Listener, error) {
	if l.Network == "unix" {
		if fi, err := os.Lstat(l.Address); err == nil && fi.Mode()&os.ModeSocket != 0 {
			if c, err := net.DialTimeout("unix", l.Address, 200*time.Millisecond); err == nil {
				c.Close()
				return nil, errors.New(l.Address + " is in use by another process")
			}
			os.Remove(l.Address)
		}
	}
	uid, gid, err := LookupOwner(owner, group)
	if err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}
	ln, err := net.Listen(l.Network, l.Address)
	if err != nil {
		return nil, err
	}
	if l.Network == "unix" {
		if mode == 0 {
			mode = 0o660
		}
		if err := os.Chmod(l.Address, mode); err != nil {
			ln.Close()
			return nil, err
		}
		if uid >= 0 || gid >= 0 {
			if err := os.Chown(l.Address, uid, gid); err != nil {
				ln.Close()
				return nil, err
			}
		}
	}
	return ln, nil
}

// LookupOwner resolves user and group names or ids; -1 for "".
func LookupOwner(owner, group string) (uid, gid int, err error) {
	uid, gid = -1, -1
	if owner != "" {
		if uid, err = strconv.Atoi(owner); err != nil {
			u, err := user.Lookup(owner)
			if err != nil {
				return 0, 0, fmt.Errorf("socket_owner: %w", err)
			}
			uid, _ = strconv.Atoi(u.Uid)
		}
	}
	if group != "" {
		if gid, err = strconv.Atoi(group); err != nil {
			g, err := user.LookupGroup(group)
			if err != nil {
				return 0, 0, fmt.Errorf("socket_group: %w", err)
			}
			gid, _ = strconv.Atoi(g.Gid)
		}
	}
	return uid, gid, nil
}

// MaxBodyBytes bounds a request body.
const MaxBodyBytes = 1 << 20

// NewServer wraps h with the body limit and the timeouts that keep slow
// clients from holding the daemon.
func NewServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           http.MaxBytesHandler(h, MaxBodyBytes),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}
}

func (h *handler) postTrace(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(r)
	if err != nil {
		writeErr(w, err)
		return
	}
	var req TraceRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "trace body: "+err.Error())
		return
	}
	if req.InPort == "" {
		writeError(w, http.StatusUnprocessableEntity, "in_port: the input port is required")
		return
	}
	frame, err := req.Frame()
	if err != nil {
		writeError(w, http.StatusUnprocessableEntity, err.Error())
		return
	}
	res, err := h.Tracer.Trace(req.InPort, frame)
	if err != nil {
		writeError(w, http.StatusNotFound, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, res)
}
