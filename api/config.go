// Package api holds the switch's declarative configuration and its HTTP API.
package api

import (
	"bytes"
	"cmp"
	_ "embed"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/viper"

	"github.com/vswitch/vswitch/acl"
	"github.com/vswitch/vswitch/nat"
)

// Config is the whole desired state: pure data, validated as a whole.
type Config struct {
	API       APIConfig       `mapstructure:"api" json:"api"`
	RunDir    string          `mapstructure:"run_dir" json:"run_dir,omitempty"`
	Log       LogConfig       `mapstructure:"log" json:"log"`
	Dataplane DataplaneConfig `mapstructure:"dataplane" json:"dataplane"`
	VhostUser VhostUserConfig `mapstructure:"vhostuser" json:"vhostuser,omitzero"`
	Bridges   []BridgeConfig  `mapstructure:"bridges" json:"bridges"`
	Ports     []PortConfig    `mapstructure:"ports" json:"ports"`
	Routers   []RouterConfig  `mapstructure:"routers" json:"routers,omitempty"`
	// SecurityGroups are stateful allow rules (OpenStack semantics) that
	// ports join by name; ACLs are stateless rules bound to a port.
	SecurityGroups []acl.SecurityGroup `mapstructure:"security_groups" json:"security_groups,omitempty"`
	ACLs           []acl.ACL           `mapstructure:"acls" json:"acls,omitempty"`
	// Conntrack tunes the connection tracking of security groups and NAT.
	Conntrack ConntrackConfig `mapstructure:"conntrack" json:"conntrack,omitzero"`
}

// ConntrackConfig tunes connection tracking. A setting left out (or 0)
// takes its default, Linux nf_conntrack's where Linux has one. Every
// setting applies to the running switch without a restart, except that
// max_entries cannot grow past the size the table was made with.
type ConntrackConfig struct {
	// MaxEntries is the most connections tracked at once, all zones
	// together (default 65536). The table is allocated for it when
	// security groups or NAT first need one, at about 180 bytes an
	// entry; a lower value later applies at once, a higher one needs a
	// restart of vswitchd.
	MaxEntries int `mapstructure:"max_entries" json:"max_entries,omitempty"`
	// ZoneLimit is the most connections of one zone: each port with
	// security groups and each router with NAT tracks in a zone of its
	// own, so one guest cannot fill the table for all (OVS
	// ct-set-limits). 0: no limit but max_entries.
	ZoneLimit int `mapstructure:"zone_limit" json:"zone_limit,omitempty"`
	// ZoneLimits give zones a limit of their own in place of zone_limit
	// (OVS ct-set-limits zone=N,limit=L): a zone is named by its owner,
	// a port (its security groups' zone) or a router (its NAT's), since
	// zone numbers are handed out as ports and routers come.
	ZoneLimits []ZoneLimitConfig `mapstructure:"zone_limits" json:"zone_limits,omitempty"`
	// TCPWindowCheck is how TCP sequence and acknowledgement numbers are
	// checked against the windows conntrack tracks: "strict" (default:
	// out-of-window segments are invalid and dropped, as with Linux's
	// nf_conntrack_tcp_be_liberal=0 and OVS's sequence check), "loose"
	// (they pass without moving the state, as with be_liberal=1; an
	// out-of-window RST is still invalid) or "off" (flags alone drive
	// the state).
	TCPWindowCheck string `mapstructure:"tcp_window_check" json:"tcp_window_check,omitempty"`
	// Timeouts are how long a connection lives after its last packet.
	Timeouts ConntrackTimeouts `mapstructure:"timeouts" json:"timeouts,omitzero"`
}

// ZoneLimitConfig is one zone's own connection limit: {port: a, limit:
// 100} or {router: r1, limit: 0}.
type ZoneLimitConfig struct {
	Port   string `mapstructure:"port" json:"port,omitempty"`
	Router string `mapstructure:"router" json:"router,omitempty"`
	// Limit is the most connections of the zone; 0: none but
	// max_entries. Required.
	Limit *int `mapstructure:"limit" json:"limit"`
}

// ConntrackTimeouts are connection lifetimes in seconds, per TCP state
// and per protocol; 0 or left out is Linux's default (in brackets).
type ConntrackTimeouts struct {
	TCPSynSent     int `mapstructure:"tcp_syn_sent" json:"tcp_syn_sent,omitempty"`       // [120]
	TCPSynRecv     int `mapstructure:"tcp_syn_recv" json:"tcp_syn_recv,omitempty"`       // [60]
	TCPEstablished int `mapstructure:"tcp_established" json:"tcp_established,omitempty"` // [432000, 5 days]
	TCPFinWait     int `mapstructure:"tcp_fin_wait" json:"tcp_fin_wait,omitempty"`       // [120]
	TCPCloseWait   int `mapstructure:"tcp_close_wait" json:"tcp_close_wait,omitempty"`   // [60]
	TCPLastAck     int `mapstructure:"tcp_last_ack" json:"tcp_last_ack,omitempty"`       // [30]
	TCPTimeWait    int `mapstructure:"tcp_time_wait" json:"tcp_time_wait,omitempty"`     // [120]
	TCPClose       int `mapstructure:"tcp_close" json:"tcp_close,omitempty"`             // [10], after a RST
	UDPFirst       int `mapstructure:"udp_first" json:"udp_first,omitempty"`             // [30] until a reply (nf_conntrack_udp_timeout)
	UDPStream      int `mapstructure:"udp_stream" json:"udp_stream,omitempty"`           // [120] once replied (udp_timeout_stream)
	ICMP           int `mapstructure:"icmp" json:"icmp,omitempty"`                       // [30] echo
	Other          int `mapstructure:"other" json:"other,omitempty"`                     // [600] other IP protocols (generic)
}

// Bounds of the conntrack settings.
const (
	MaxConntrackEntries = 1 << 24  // about 3 GB of table
	MaxConntrackTimeout = 31536000 // a year, in seconds
)

// fields lists the timeouts with their config names.
func (t *ConntrackTimeouts) fields() []struct {
	name string
	v    *int
} {
	return []struct {
		name string
		v    *int
	}{
		{"tcp_syn_sent", &t.TCPSynSent}, {"tcp_syn_recv", &t.TCPSynRecv}, {"tcp_established", &t.TCPEstablished},
		{"tcp_fin_wait", &t.TCPFinWait}, {"tcp_close_wait", &t.TCPCloseWait}, {"tcp_last_ack", &t.TCPLastAck},
		{"tcp_time_wait", &t.TCPTimeWait}, {"tcp_close", &t.TCPClose}, {"udp_first", &t.UDPFirst},
		{"udp_stream", &t.UDPStream}, {"icmp", &t.ICMP}, {"other", &t.Other},
	}
}

// validate checks the settings; errors name the field.
func (c *ConntrackConfig) validate(bad func(field, format string, args ...any)) {
	if c.MaxEntries < 0 || c.MaxEntries > MaxConntrackEntries {
		bad("conntrack.max_entries", "%d is not in 1..%d (0: the default, 65536)", c.MaxEntries, MaxConntrackEntries)
	}
	if c.ZoneLimit < 0 || c.ZoneLimit > MaxConntrackEntries {
		bad("conntrack.zone_limit", "%d is not in 0..%d", c.ZoneLimit, MaxConntrackEntries)
	} else if c.MaxEntries > 0 && c.ZoneLimit > c.MaxEntries {
		bad("conntrack.zone_limit", "%d is more than max_entries (%d)", c.ZoneLimit, c.MaxEntries)
	}
	for i, z := range c.ZoneLimits {
		f := fmt.Sprintf("conntrack.zone_limits[%d]", i)
		switch {
		case z.Limit == nil:
			bad(f+".limit", "required: the zone's most connections (0: no limit but max_entries)")
		case *z.Limit < 0 || *z.Limit > MaxConntrackEntries:
			bad(f+".limit", "%d is not in 0..%d", *z.Limit, MaxConntrackEntries)
		case c.MaxEntries > 0 && *z.Limit > c.MaxEntries:
			bad(f+".limit", "%d is more than max_entries (%d)", *z.Limit, c.MaxEntries)
		}
	}
	if c.TCPWindowCheck != "" {
		if _, err := nat.ParseWindowCheck(c.TCPWindowCheck); err != nil {
			bad("conntrack.tcp_window_check", "%v", err)
		}
	}
	for _, f := range c.Timeouts.fields() {
		if *f.v < 0 || *f.v > MaxConntrackTimeout {
			bad("conntrack.timeouts."+f.name, "%d seconds is not in 1..%d (0: Linux's default)", *f.v, MaxConntrackTimeout)
		}
	}
}

// NAT returns the settings as package nat takes them (validated c):
// defaults filled in, MaxEntries 0 left for the switch to size.
func (c *ConntrackConfig) NAT() nat.Config {
	cfg := nat.Config{Capacity: c.MaxEntries, ZoneLimit: uint32(c.ZoneLimit), Window: nat.WindowStrict, Timeouts: nat.DefaultTimeouts()}
	if c.TCPWindowCheck != "" {
		cfg.Window, _ = nat.ParseWindowCheck(c.TCPWindowCheck)
	}
	t := &c.Timeouts
	set := func(dst *uint32, v int) {
		if v > 0 {
			*dst = uint32(v)
		}
	}
	to := &cfg.Timeouts
	set(&to.TCP[nat.TCPSynSent], t.TCPSynSent)
	set(&to.TCP[nat.TCPSynRecv], t.TCPSynRecv)
	set(&to.TCP[nat.TCPEstablished], t.TCPEstablished)
	set(&to.TCP[nat.TCPFinWait], t.TCPFinWait)
	set(&to.TCP[nat.TCPCloseWait], t.TCPCloseWait)
	set(&to.TCP[nat.TCPLastAck], t.TCPLastAck)
	set(&to.TCP[nat.TCPTimeWait], t.TCPTimeWait)
	set(&to.TCP[nat.TCPClose], t.TCPClose)
	set(&to.UDP, t.UDPFirst)
	set(&to.UDPReplied, t.UDPStream)
	set(&to.ICMP, t.ICMP)
	set(&to.Other, t.Other)
	return cfg
}

// RouterConfig declares a router between bridge VLANs.
type RouterConfig struct {
	Name       string                  `mapstructure:"name" json:"name"`
	Interfaces []RouterInterfaceConfig `mapstructure:"interfaces" json:"interfaces"`
	Routes     []RouteConfig           `mapstructure:"routes" json:"routes,omitempty"`
	// NAT: masquerade (snat), floating IPs and port forwards (dnat).
	NAT []nat.RuleConfig `mapstructure:"nat" json:"nat,omitempty"`
}

// RouterInterfaceConfig is a router's endpoint on a bridge's VLAN. Without
// a MAC it gets a stable generated one.
type RouterInterfaceConfig struct {
	Name      string   `mapstructure:"name" json:"name"`
	Bridge    string   `mapstructure:"bridge" json:"bridge"`
	VLAN      int      `mapstructure:"vlan" json:"vlan,omitempty"`
	MAC       string   `mapstructure:"mac" json:"mac,omitempty"`
	Addresses []string `mapstructure:"addresses" json:"addresses"` // CIDR: 10.10.0.1/24, fd10::1/64
}

// RouteConfig is a static route; connected routes come from the
// interfaces' addresses.
type RouteConfig struct {
	Prefix string `mapstructure:"prefix" json:"prefix"`
	Via    string `mapstructure:"via" json:"via"`
}

// APIConfig says where the API listens and who may use it.
type APIConfig struct {
	// Listen is unix:///path or tcp://HOST:PORT. A TCP address other than
	// loopback needs TLS and a bearer token (TLSCert, TLSKey, TokenFile).
	Listen      string `mapstructure:"listen" json:"listen"`
	SocketMode  string `mapstructure:"socket_mode" json:"socket_mode,omitempty"`   // octal, default 0660
	SocketOwner string `mapstructure:"socket_owner" json:"socket_owner,omitempty"` // user name or uid
	SocketGroup string `mapstructure:"socket_group" json:"socket_group,omitempty"` // group name or gid
	TLSCert     string `mapstructure:"tls_cert" json:"tls_cert,omitempty"`         // PEM certificate file
	TLSKey      string `mapstructure:"tls_key" json:"tls_key,omitempty"`           // PEM key file
	// TokenFile holds the bearer token every request must carry
	// (Authorization: Bearer TOKEN). Optional on unix sockets and loopback.
	TokenFile string `mapstructure:"token_file" json:"token_file,omitempty"`
}

// LogConfig sets logging.
type LogConfig struct {
	Level  string `mapstructure:"level" json:"level,omitempty"`   // debug, info, warn, error
	Format string `mapstructure:"format" json:"format,omitempty"` // text or json
}

// DataplaneConfig sizes the data plane.
type DataplaneConfig struct {
	Workers int   `mapstructure:"workers" json:"workers,omitempty"`
	CPUs    []int `mapstructure:"cpus" json:"cpus,omitempty"`
	// Poll is "adaptive" (sleep briefly when idle; the default) or "busy".
	Poll string `mapstructure:"poll" json:"poll,omitempty"`
}

// VhostUserConfig holds the defaults of server-mode vhost-user sockets: a
// port's own socket_owner, socket_group and socket_mode win. QEMU under
// libvirt runs as its own user (Debian: libvirt-qemu), so set socket_group
// to that user's group: the run directory then gets that group too, so
// that it can reach the sockets in it.
type VhostUserConfig struct {
	SocketOwner string `mapstructure:"socket_owner" json:"socket_owner,omitempty"` // user name or uid; default the daemon's
	SocketGroup string `mapstructure:"socket_group" json:"socket_group,omitempty"` // group name or gid; default the daemon's
	SocketMode  string `mapstructure:"socket_mode" json:"socket_mode,omitempty"`   // octal; default 0660
}

// BridgeConfig declares a bridge.
type BridgeConfig struct {
	Name string `mapstructure:"name" json:"name"`
	// Mode is "learning" (an L2 learning bridge; empty means that) or
	// "xconnect": every packet from one of its two ports goes to the
	// other, with no MAC lookup (VPP "l2 xconnect").
	Mode         string `mapstructure:"mode" json:"mode,omitempty"`
	MACTableSize int    `mapstructure:"mac_table_size" json:"mac_table_size,omitempty"`
	MACAging     int    `mapstructure:"mac_aging" json:"mac_aging,omitempty"` // seconds
	// FDBMax bounds the learned (VLAN, MAC) entries; learning more is
	// refused and counted. 0: as many as the table holds.
	FDBMax int `mapstructure:"fdb_max" json:"fdb_max,omitempty"`
}

// PortConfig declares a port.
type PortConfig struct {
	Name   string `mapstructure:"name" json:"name"`
	Type   string `mapstructure:"type" json:"type"`
	Bridge string `mapstructure:"bridge" json:"bridge"`
	// Socket is the vhost-user socket; a relative path is under RunDir.
	Socket string `mapstructure:"socket" json:"socket,omitempty"`
	// Mode is "server" (the switch listens) or "client" (it connects).
	Mode string `mapstructure:"mode" json:"mode,omitempty"`
	// Queues is a vhostuser port's number of queue pairs, or an afxdp
	// port's NIC queues: a list of queue ids, or a number N for queues
	// 0..N-1 (left out: every queue of the device).
	Queues QueueSpec `mapstructure:"queues" json:"queues,omitzero"`
	// SocketMode, SocketOwner and SocketGroup set a server-mode socket's
	// permissions; left out, vhostuser's defaults apply (0660, the
	// daemon's user and group). A client-mode socket is the front-end's.
	SocketMode  string `mapstructure:"socket_mode" json:"socket_mode,omitempty"`   // octal
	SocketOwner string `mapstructure:"socket_owner" json:"socket_owner,omitempty"` // user name or uid
	SocketGroup string `mapstructure:"socket_group" json:"socket_group,omitempty"` // group name or gid
	// Offloads false withholds the checksum and TSO features from a
	// vhost-user guest (default on). An afxdp port always sends complete
	// frames.
	Offloads *bool `mapstructure:"offloads" json:"offloads,omitempty"`
	// Device is an afxdp port's network interface.
	Device string `mapstructure:"device" json:"device,omitempty"`
	// XDPMode forces the XDP attach mode of an afxdp port: native or
	// generic. Empty tries native and falls back to generic.
	XDPMode string `mapstructure:"xdp_mode" json:"xdp_mode,omitempty"`
	// VLANs, as OVS's Port table: Tag is the access VLAN (or the native
	// VLAN of a native-* trunk), Trunks the VLANs a trunk carries (empty:
	// all), VLANMode access, trunk, native-tagged or native-untagged
	// (empty: access with a tag, native-untagged with a tag and trunks,
	// trunk otherwise).
	Tag      int    `mapstructure:"tag" json:"tag,omitempty"`
	Trunks   []int  `mapstructure:"trunks" json:"trunks,omitempty"`
	VLANMode string `mapstructure:"vlan_mode" json:"vlan_mode,omitempty"`
	// SecurityGroups the port is in (stateful; default deny ingress) and
	// the addresses its guest may send from. Changing them recompiles
	// the filters; the port keeps running.
	SecurityGroups []string          `mapstructure:"security_groups" json:"security_groups,omitempty"`
	PortSecurity   *acl.PortSecurity `mapstructure:"port_security" json:"port_security,omitempty"`
}

// VLAN modes.
const (
	VLANAccess         = "access"
	VLANTrunk          = "trunk"
	VLANNativeTagged   = "native-tagged"
	VLANNativeUntagged = "native-untagged"
)

// Bridge modes.
const (
	BridgeLearning = "learning"
	BridgeXconnect = "xconnect"
)

// Port types and modes.
const (
	TypeVhostUser = "vhostuser"
	TypeAFXDP     = "afxdp"
	ModeServer    = "server"
	ModeClient    = "client"
)

//go:embed default.yaml
var defaultYAML []byte

// DefaultYAML is the embedded configuration vswitchd runs without --config.
func DefaultYAML() []byte { return append([]byte(nil), defaultYAML...) }

// Load parses yaml, puts it under runDir when runDir is not empty (the
// --run-dir flag wins over the file), fills defaults and validates.
func Load(yaml []byte, runDir string) (*Config, error) {
	c, err := Parse(yaml)
	if err != nil {
		return nil, err
	}
	if runDir != "" {
		c.RunDir = runDir
	}
	c.Defaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// Parse reads a YAML config strictly: unknown keys are errors that name
// the key. It neither fills defaults nor validates.
func Parse(yaml []byte) (*Config, error) {
	v := viper.New()
	v.SetConfigType("yaml")
	if err := v.ReadConfig(bytes.NewReader(yaml)); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	var c Config
	err := v.UnmarshalExact(&c, func(dc *mapstructure.DecoderConfig) {
		dc.ErrorUnused = true
		dc.WeaklyTypedInput = false
		dc.DecodeHook = mapstructure.ComposeDecodeHookFunc(dc.DecodeHook, queueSpecHook)
	})
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return &c, nil
}

// Defaults fills what the config leaves out.
func (c *Config) Defaults() {
	if c.RunDir == "" {
		c.RunDir = "/run/vswitch"
	}
	if c.API.Listen == "" {
		c.API.Listen = "unix://" + filepath.Join(c.RunDir, "api.sock")
	}
	if c.Dataplane.Workers == 0 {
		c.Dataplane.Workers = 1
	}
	if c.Dataplane.Poll == "" {
		c.Dataplane.Poll = "adaptive"
	}
	for i := range c.Ports {
		p := &c.Ports[i]
		if p.Mode == "" && p.Type != TypeAFXDP {
			p.Mode = ModeServer
		}
		if p.Queues.IsZero() && p.Type != TypeAFXDP { // afxdp: none is every queue
			p.Queues = QueueCount(1)
		}
		if p.Socket != "" && !filepath.IsAbs(p.Socket) {
			p.Socket = filepath.Join(c.RunDir, p.Socket)
		}
	}
}

// Validate checks the config as a whole; errors name the field.
func (c *Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	if l, err := ParseListen(c.API.Listen); err != nil {
		bad("api.listen", "%v", err)
	} else if !l.Local() && (c.API.TLSCert == "" || c.API.TLSKey == "" || c.API.TokenFile == "") {
		bad("api.listen", "%q is not a unix socket or loopback address: set api.tls_cert, api.tls_key and api.token_file to listen there", c.API.Listen)
	}
	if (c.API.TLSCert == "") != (c.API.TLSKey == "") {
		bad("api.tls_key", "api.tls_cert and api.tls_key go together")
	}
	if _, err := ParseMode(c.API.SocketMode); err != nil {
		bad("api.socket_mode", "%v", err)
	}
	validateOwner(c.API.SocketOwner, c.API.SocketGroup, "api.", bad)
	if _, err := ParseMode(c.VhostUser.SocketMode); err != nil {
		bad("vhostuser.socket_mode", "%v", err)
	}
	validateOwner(c.VhostUser.SocketOwner, c.VhostUser.SocketGroup, "vhostuser.", bad)
	switch c.Log.Level {
	case "", "debug", "info", "warn", "error":
	default:
		bad("log.level", "%q is not debug, info, warn or error", c.Log.Level)
	}
	switch c.Log.Format {
	case "", "text", "json":
	default:
		bad("log.format", "%q is not text or json", c.Log.Format)
	}
	if c.Dataplane.Workers < 1 || c.Dataplane.Workers > 64 {
		bad("dataplane.workers", "%d is not in 1..64", c.Dataplane.Workers)
	}
	if c.Dataplane.Poll != "adaptive" && c.Dataplane.Poll != "busy" {
		bad("dataplane.poll", "%q is not adaptive or busy", c.Dataplane.Poll)
	}
	bridges := map[string]bool{}
	for i, b := range c.Bridges {
		f := fmt.Sprintf("bridges[%d]", i)
		if err := validName(b.Name); err != nil {
			bad(f+".name", "%v", err)
		} else if bridges[b.Name] {
			bad(f+".name", "duplicate bridge %q", b.Name)
		}
		bridges[b.Name] = true
		if b.MACTableSize < 0 || b.MACTableSize > 1<<22 {
			bad(f+".mac_table_size", "%d is not in 0..%d", b.MACTableSize, 1<<22)
		}
		if b.MACAging < 0 {
			bad(f+".mac_aging", "%d is negative", b.MACAging)
		}
		if b.FDBMax < 0 || b.FDBMax > 1<<22 {
			bad(f+".fdb_max", "%d is not in 0..%d", b.FDBMax, 1<<22)
		}
		switch b.Mode {
		case "", BridgeLearning:
		case BridgeXconnect:
			// Fewer than 2 ports is a bridge being filled through the
			// API, port by port; it forwards nothing until both are in.
			var n int
			for _, p := range c.Ports {
				if p.Bridge == b.Name {
					n++
				}
			}
			if n > 2 {
				bad(f+".mode", "xconnect bridge %q has %d ports; it connects exactly 2", b.Name, n)
			}
		default:
			bad(f+".mode", "%q is not %s or %s", b.Mode, BridgeLearning, BridgeXconnect)
		}
	}
	ports, sockets, devices := map[string]bool{}, map[string]string{}, map[string]string{}
	for i, p := range c.Ports {
		f := fmt.Sprintf("ports[%d]", i)
		if err := validName(p.Name); err != nil {
			bad(f+".name", "%v", err)
		} else if ports[p.Name] {
			bad(f+".name", "duplicate port %q", p.Name)
		}
		ports[p.Name] = true
		if !bridges[p.Bridge] {
			bad(f+".bridge", "no bridge %q", p.Bridge)
		}
		validateVLAN(p, f, bad)
		switch p.Type {
		case TypeVhostUser:
			if p.Socket == "" {
				bad(f+".socket", "a vhostuser port needs a socket")
			} else if other, dup := sockets[p.Socket]; dup {
				bad(f+".socket", "%s is also port %q's socket", p.Socket, other)
			} else if len(p.Socket) > 107 {
				bad(f+".socket", "path longer than a unix socket allows (107 bytes)")
			}
			sockets[p.Socket] = p.Name
			if p.Mode != ModeServer && p.Mode != ModeClient {
				bad(f+".mode", "%q is not server or client", p.Mode)
			}
			if p.Queues.IsList() {
				bad(f+".queues", "a vhostuser port takes a number of queue pairs, not a list")
			} else if p.Queues.N < 1 || p.Queues.N > 16 {
				bad(f+".queues", "%d is not in 1..16", p.Queues.N)
			}
			if _, err := ParseMode(p.SocketMode); err != nil {
				bad(f+".socket_mode", "%v", err)
			}
			validateOwner(p.SocketOwner, p.SocketGroup, f+".", bad)
		case TypeAFXDP:
			validateAFXDP(p, f, bad, devices)
		default:
			bad(f+".type", "unknown port type %q (supported: %s, %s)", p.Type, TypeVhostUser, TypeAFXDP)
		}
	}
	c.Conntrack.validate(bad)
	validateRouters(c.Routers, bridges, bad)
	c.validateZoneLimitOwners(ports, bad)
	for i, r := range c.Routers {
		if err := nat.Validate(fmt.Sprintf("routers[%d].nat", i), r.NAT); err != nil {
			errs = append(errs, err)
		}
	}
	// Groups and ACLs are API resources (/v1/acls/NAME): their names
	// follow the same rule as ports'. Package acl reports a missing or
	// duplicate one.
	for i, g := range c.SecurityGroups {
		if err := validName(g.Name); g.Name != "" && err != nil {
			bad(fmt.Sprintf("security_groups[%d].name", i), "%v", err)
		}
	}
	for i, a := range c.ACLs {
		if err := validName(a.Name); a.Name != "" && err != nil {
			bad(fmt.Sprintf("acls[%d].name", i), "%v", err)
		}
	}
	if err := acl.Validate(c.Filter()); err != nil {
		errs = append(errs, err)
	} else {
		for i, a := range c.ACLs {
			if !ports[a.Port] {
				bad(fmt.Sprintf("acls[%d].port", i), "no port %q", a.Port)
			}
		}
	}
	return errors.Join(errs...)
}

// validateZoneLimitOwners checks that each conntrack.zone_limits entry
// names one port or router of c, and each at most once.
func (c *Config) validateZoneLimitOwners(ports map[string]bool, bad func(field, format string, args ...any)) {
	routers := map[string]bool{}
	for _, r := range c.Routers {
		routers[r.Name] = true
	}
	seen := map[string]int{}
	for i, z := range c.Conntrack.ZoneLimits {
		f := fmt.Sprintf("conntrack.zone_limits[%d]", i)
		field, key := ".port", "port "+z.Port
		switch {
		case z.Port != "" && z.Router != "":
			bad(f+".router", "name a port or a router, not both")
			continue
		case z.Port == "" && z.Router == "":
			bad(f+".port", "required: the port (or router) whose zone this limits")
			continue
		case z.Port != "" && !ports[z.Port]:
			bad(f+".port", "no port %q", z.Port)
			continue
		case z.Router != "":
			field, key = ".router", "router "+z.Router
			if !routers[z.Router] {
				bad(f+".router", "no router %q", z.Router)
				continue
			}
		}
		if j, dup := seen[key]; dup {
			bad(f+field, "%s already has a limit (conntrack.zone_limits[%d])", key, j)
			continue
		}
		seen[key] = i
	}
}

// zoneLimitsOn lists the conntrack.zone_limits entries naming port: a
// port with one stays until it goes.
func zoneLimitsOn(c *Config, port string) []string {
	var users []string
	for i, z := range c.Conntrack.ZoneLimits {
		if z.Port == port {
			users = append(users, fmt.Sprintf("conntrack.zone_limits[%d]", i))
		}
	}
	return users
}

// Filter is the filtering part of c as package acl reads it: the groups,
// the ACLs and every port's filter fields (ports[i] stays ports[i], so
// errors name the right entry).
func (c *Config) Filter() *acl.Config {
	f := &acl.Config{SecurityGroups: c.SecurityGroups, ACLs: c.ACLs, Ports: make([]acl.PortFilter, len(c.Ports))}
	for i, p := range c.Ports {
		f.Ports[i] = acl.PortFilter{Name: p.Name, SecurityGroups: p.SecurityGroups, PortSecurity: p.PortSecurity}
	}
	return f
}

// validateRouters checks the routers: names, interfaces on existing
// bridges with one router interface per bridge VLAN, addresses, and static
// routes whose next hop is on a connected subnet.
func validateRouters(rs []RouterConfig, bridges map[string]bool, bad func(field, format string, args ...any)) {
	names := map[string]bool{}
	vlans := map[string]string{}
	for i, r := range rs {
		f := fmt.Sprintf("routers[%d]", i)
		if err := validName(r.Name); err != nil {
			bad(f+".name", "%v", err)
		} else if names[r.Name] {
			bad(f+".name", "duplicate router %q", r.Name)
		}
		names[r.Name] = true
		var connected []netip.Prefix
		ifs := map[string]bool{}
		for j, ri := range r.Interfaces {
			g := fmt.Sprintf("%s.interfaces[%d]", f, j)
			if err := validName(ri.Name); err != nil {
				bad(g+".name", "%v", err)
			} else if ifs[ri.Name] {
				bad(g+".name", "duplicate interface %q", ri.Name)
			}
			ifs[ri.Name] = true
			if !bridges[ri.Bridge] {
				bad(g+".bridge", "no bridge %q", ri.Bridge)
			}
			if ri.VLAN < 0 || ri.VLAN > 4094 {
				bad(g+".vlan", "%d is not in 0..4094", ri.VLAN)
			}
			key := fmt.Sprintf("%s/%d", ri.Bridge, ri.VLAN)
			if other, dup := vlans[key]; dup {
				bad(g+".vlan", "bridge %s VLAN %d already has interface %s", ri.Bridge, ri.VLAN, other)
			}
			vlans[key] = r.Name + "/" + ri.Name
			if ri.MAC != "" {
				if m, err := net.ParseMAC(ri.MAC); err != nil || len(m) != 6 || m[0]&1 != 0 {
					bad(g+".mac", "%q is not a unicast Ethernet MAC", ri.MAC)
				}
			}
			if len(ri.Addresses) == 0 {
				bad(g+".addresses", "an interface needs at least one address")
			}
			for k, a := range ri.Addresses {
				p, err := netip.ParsePrefix(a)
				if err != nil || p.Addr().Zone() != "" {
					bad(fmt.Sprintf("%s.addresses[%d]", g, k), "%q is not an address with a prefix length (10.0.0.1/24)", a)
					continue
				}
				connected = append(connected, p)
			}
		}
		for j, rt := range r.Routes {
			g := fmt.Sprintf("%s.routes[%d]", f, j)
			p, err := netip.ParsePrefix(rt.Prefix)
			if err != nil {
				bad(g+".prefix", "%q is not a prefix", rt.Prefix)
				continue
			}
			via, err := netip.ParseAddr(rt.Via)
			if err != nil {
				bad(g+".via", "%q is not an address", rt.Via)
				continue
			}
			if via.Is4() != p.Addr().Is4() {
				bad(g+".via", "%s and %s are of different address families", rt.Via, rt.Prefix)
				continue
			}
			onLink := false
			for _, c := range connected {
				onLink = onLink || c.Contains(via)
			}
			if !onLink {
				bad(g+".via", "%s is on no interface's subnet", rt.Via)
			}
		}
	}
}

// validateAFXDP checks an afxdp port; devices maps the devices seen so far
// to their port.
func validateAFXDP(p PortConfig, f string, bad func(field, format string, args ...any), devices map[string]string) {
	switch {
	case p.Device == "":
		bad(f+".device", "an afxdp port needs a device (a network interface name)")
	case len(p.Device) > 15 || strings.ContainsAny(p.Device, "/: \t\n") || p.Device == "." || p.Device == "..":
		bad(f+".device", "%q is not a network interface name", p.Device)
	default:
		if other, dup := devices[p.Device]; dup {
			bad(f+".device", "%s is also port %q's device", p.Device, other)
		}
		devices[p.Device] = p.Name
	}
	validateQueueIDs(p.Queues, f+".queues", bad)
	if p.XDPMode != "" && p.XDPMode != "native" && p.XDPMode != "generic" {
		bad(f+".xdp_mode", "%q is not native or generic", p.XDPMode)
	}
	if p.Socket != "" || p.Mode != "" || p.SocketMode != "" || p.SocketOwner != "" || p.SocketGroup != "" {
		bad(f+".socket", "socket, mode and socket_mode/owner/group are vhostuser fields, not afxdp ones")
	}
}

// validateVLAN checks a port's tag, trunks and vlan_mode together.
func validateVLAN(p PortConfig, f string, bad func(field, format string, args ...any)) {
	if p.Tag < 0 || p.Tag > 4094 {
		bad(f+".tag", "%d is not a VLAN in 1..4094", p.Tag)
	}
	seen := map[int]bool{}
	for i, t := range p.Trunks {
		if t < 0 || t > 4094 {
			bad(fmt.Sprintf("%s.trunks[%d]", f, i), "%d is not a VLAN in 0..4094", t)
		} else if seen[t] {
			bad(fmt.Sprintf("%s.trunks[%d]", f, i), "VLAN %d is listed twice", t)
		}
		seen[t] = true
	}
	switch p.VLANMode {
	case "":
	case VLANAccess:
		if p.Tag == 0 {
			bad(f+".tag", "vlan_mode access needs a tag")
		}
		if len(p.Trunks) > 0 {
			bad(f+".trunks", "vlan_mode access takes no trunks")
		}
	case VLANTrunk:
		if p.Tag != 0 {
			bad(f+".tag", "vlan_mode trunk takes no tag (native-tagged and native-untagged do)")
		}
	case VLANNativeTagged, VLANNativeUntagged:
		if p.Tag == 0 {
			bad(f+".tag", "vlan_mode %s needs a tag (the native VLAN)", p.VLANMode)
		}
	default:
		bad(f+".vlan_mode", "%q is not access, trunk, native-tagged or native-untagged", p.VLANMode)
	}
}

// validateQueueIDs checks an afxdp port's queues: a number in 0..256, or
// a non-empty list of distinct queue ids below 256.
func validateQueueIDs(q QueueSpec, f string, bad func(field, format string, args ...any)) {
	if !q.IsList() {
		if q.N < 0 || q.N > maxNICQueues {
			bad(f, "%d is not in 0..%d (0: every queue of the device)", q.N, maxNICQueues)
		}
		return
	}
	if len(q.IDs) == 0 {
		bad(f, "an empty list names no queue (leave queues out for every queue)")
		return
	}
	seen := map[int]bool{}
	for i, id := range q.IDs {
		if id < 0 || id >= maxNICQueues {
			bad(fmt.Sprintf("%s[%d]", f, i), "queue id %d is not in 0..%d", id, maxNICQueues-1)
		} else if seen[id] {
			bad(fmt.Sprintf("%s[%d]", f, i), "queue %d is listed twice", id)
		}
		seen[id] = true
	}
}

// maxNICQueues bounds an afxdp port's queue ids.
const maxNICQueues = 256

// validateOwner checks that owner and group look like a user or group name
// or a numeric id; whether they exist is known only when a socket is made.
func validateOwner(owner, group, prefix string, bad func(field, format string, args ...any)) {
	for _, f := range []struct{ key, v string }{{"socket_owner", owner}, {"socket_group", group}} {
		if f.v == "" {
			continue
		}
		ok := len(f.v) <= 32
		for _, r := range f.v {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
				ok = false
			}
		}
		if !ok || f.v[0] == '-' {
			bad(prefix+f.key, "%q is not a user or group name or a numeric id", f.v)
		}
	}
}

// SocketPerms returns the owner, group and mode of server-mode port p's
// socket: p's own settings, else vhostuser's, else 0660 and the daemon's
// user and group (owner and group empty).
func (c *Config) SocketPerms(p PortConfig) (owner, group string, mode uint32) {
	owner, group = cmp.Or(p.SocketOwner, c.VhostUser.SocketOwner), cmp.Or(p.SocketGroup, c.VhostUser.SocketGroup)
	mode, _ = ParseMode(cmp.Or(p.SocketMode, c.VhostUser.SocketMode, "0660"))
	return owner, group, mode
}

// RunDirGroup is the group the run directory is given when the daemon
// creates it: the one that must reach the sockets in it (vhostuser's
// socket_group, else the API's). Empty: the daemon's.
func (c *Config) RunDirGroup() string { return cmp.Or(c.VhostUser.SocketGroup, c.API.SocketGroup) }

func validName(n string) error {
	if n == "" || len(n) > 64 {
		return fmt.Errorf("name must have 1..64 characters")
	}
	for _, r := range n {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return fmt.Errorf("name %q may only hold letters, digits, '-', '_' and '.'", n)
		}
	}
	return nil
}

// ParseMode reads an octal file mode; "" is 0 (the default).
func ParseMode(s string) (uint32, error) {
	if s == "" {
		return 0, nil
	}
	v, err := strconv.ParseUint(s, 8, 32)
	if err != nil || v > 0o777 {
		return 0, fmt.Errorf("%q is not an octal mode like 0660", s)
	}
	return uint32(v), nil
}

// Listen is a parsed api.listen.
type Listen struct {
	Network  string // "unix" or "tcp"
	Address  string
	Loopback bool // a TCP address on loopback
}

// Local reports whether only this host can reach l: a unix socket or a
// loopback TCP address.
func (l Listen) Local() bool { return l.Network == "unix" || l.Loopback }

// ParseListen parses unix:///path or tcp://HOST:PORT. Whether a TCP
// address that is not loopback is allowed is Validate's business.
func ParseListen(s string) (Listen, error) {
	u, err := url.Parse(s)
	if err != nil {
		return Listen{}, err
	}
	switch u.Scheme {
	case "unix":
		p := u.Path
		if u.Host != "" {
			p = u.Host + u.Path
		}
		if p == "" {
			return Listen{}, fmt.Errorf("%q has no socket path", s)
		}
		return Listen{Network: "unix", Address: p}, nil
	case "tcp":
		h := u.Hostname()
		if u.Port() == "" {
			return Listen{}, fmt.Errorf("%q has no port", s)
		}
		loop := h == "localhost" || strings.HasPrefix(h, "127.") || h == "::1"
		return Listen{Network: "tcp", Address: u.Host, Loopback: loop}, nil
	}
	return Listen{}, fmt.Errorf("%q: scheme must be unix:// or tcp://", s)
}
