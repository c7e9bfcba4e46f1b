// Package api holds the switch's declarative configuration and its HTTP API.
package api

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/viper"
)

// Config is the whole desired state: pure data, validated as a whole.
type Config struct {
	API       APIConfig       `mapstructure:"api" json:"api"`
	RunDir    string          `mapstructure:"run_dir" json:"run_dir,omitempty"`
	Log       LogConfig       `mapstructure:"log" json:"log"`
	Dataplane DataplaneConfig `mapstructure:"dataplane" json:"dataplane"`
	Bridges   []BridgeConfig  `mapstructure:"bridges" json:"bridges"`
	Ports     []PortConfig    `mapstructure:"ports" json:"ports"`
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

// BridgeConfig declares a bridge.
type BridgeConfig struct {
	Name string `mapstructure:"name" json:"name"`
	// Mode is "learning" (an L2 learning bridge; empty means that) or
	// "xconnect": every packet from one of its two ports goes to the
	// other, with no MAC lookup (VPP "l2 xconnect").
	Mode         string `mapstructure:"mode" json:"mode,omitempty"`
	MACTableSize int    `mapstructure:"mac_table_size" json:"mac_table_size,omitempty"`
	MACAging     int    `mapstructure:"mac_aging" json:"mac_aging,omitempty"` // seconds
}

// PortConfig declares a port.
type PortConfig struct {
	Name   string `mapstructure:"name" json:"name"`
	Type   string `mapstructure:"type" json:"type"`
	Bridge string `mapstructure:"bridge" json:"bridge"`
	// Socket is the vhost-user socket; a relative path is under RunDir.
	Socket string `mapstructure:"socket" json:"socket,omitempty"`
	// Mode is "server" (the switch listens) or "client" (it connects).
	Mode       string `mapstructure:"mode" json:"mode,omitempty"`
	Queues     int    `mapstructure:"queues" json:"queues,omitempty"`
	SocketMode string `mapstructure:"socket_mode" json:"socket_mode,omitempty"` // octal, default 0660
	// Device is an afxdp port's network interface. Its Queues is how many
	// NIC queues it uses, from queue 0 (0: every queue of the device).
	Device string `mapstructure:"device" json:"device,omitempty"`
	// XDPMode forces the XDP attach mode of an afxdp port: native or
	// generic. Empty tries native and falls back to generic.
	XDPMode string `mapstructure:"xdp_mode" json:"xdp_mode,omitempty"`
}

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
		if p.Queues == 0 && p.Type != TypeAFXDP { // afxdp: 0 is every queue
			p.Queues = 1
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
			if p.Queues < 1 || p.Queues > 16 {
				bad(f+".queues", "%d is not in 1..16", p.Queues)
			}
			if _, err := ParseMode(p.SocketMode); err != nil {
				bad(f+".socket_mode", "%v", err)
			}
		case TypeAFXDP:
			validateAFXDP(p, f, bad, devices)
		default:
			bad(f+".type", "unknown port type %q (supported: %s, %s)", p.Type, TypeVhostUser, TypeAFXDP)
		}
	}
	return errors.Join(errs...)
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
	if p.Queues < 0 || p.Queues > 256 {
		bad(f+".queues", "%d is not in 0..256 (0: every queue of the device)", p.Queues)
	}
	if p.XDPMode != "" && p.XDPMode != "native" && p.XDPMode != "generic" {
		bad(f+".xdp_mode", "%q is not native or generic", p.XDPMode)
	}
	if p.Socket != "" || p.Mode != "" || p.SocketMode != "" {
		bad(f+".socket", "socket, mode and socket_mode are vhostuser fields, not afxdp ones")
	}
}

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
