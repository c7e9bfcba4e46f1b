package nat

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
)

// RuleConfig is one entry of routers[].nat in the config file and the API:
//
//	{type: snat, source: 10.10.0.0/24, to: 10.20.0.1}                       masquerade
//	{type: dnat, destination: 10.20.0.100, to: 10.10.0.2}                   floating IP (1:1)
//	{type: dnat, destination: 10.20.0.1, protocol: tcp, port: 8080, to: "10.10.0.2:80"}
type RuleConfig struct {
	Type        string `yaml:"type" json:"type" mapstructure:"type"`
	Source      string `yaml:"source,omitempty" json:"source,omitempty" mapstructure:"source"`
	Destination string `yaml:"destination,omitempty" json:"destination,omitempty" mapstructure:"destination"`
	Protocol    string `yaml:"protocol,omitempty" json:"protocol,omitempty" mapstructure:"protocol"`
	Port        int    `yaml:"port,omitempty" json:"port,omitempty" mapstructure:"port"`
	To          string `yaml:"to" json:"to" mapstructure:"to"`
}

// Rule types.
const (
	TypeSNAT = "snat"
	TypeDNAT = "dnat"
)

// rule is a checked RuleConfig.
type rule struct {
	snat   bool
	src    netip.Prefix // snat
	dst    netip.Addr   // dnat
	proto  uint8        // dnat port forward
	port   uint16
	to     netip.Addr
	toPort uint16
}

// Validate checks rules and returns every problem, each naming its field
// under path (for example "routers[0].nat").
func Validate(path string, rules []RuleConfig) error {
	_, err := parseRules(path, rules)
	return err
}

func parseRules(path string, rules []RuleConfig) ([]rule, error) {
	var errs []error
	out := make([]rule, 0, len(rules))
	seen := map[string]int{}
	for i, rc := range rules {
		f := fmt.Sprintf("%s[%d]", path, i)
		bad := func(field, format string, a ...any) {
			errs = append(errs, fmt.Errorf("%s.%s: %s", f, field, fmt.Sprintf(format, a...)))
		}
		n := len(errs)
		var r rule
		switch rc.Type {
		case TypeSNAT:
			r.snat = true
			if rc.Source == "" {
				bad("source", "required for snat (a prefix like 10.10.0.0/24)")
			} else if p, err := netip.ParsePrefix(rc.Source); err != nil {
				if a, err2 := netip.ParseAddr(rc.Source); err2 == nil {
					r.src = netip.PrefixFrom(a, a.BitLen())
				} else {
					bad("source", "%q is not a prefix or an address", rc.Source)
				}
			} else {
				r.src = p.Masked()
			}
			if rc.Destination != "" {
				bad("destination", "not allowed for snat")
			}
			if rc.Protocol != "" {
				bad("protocol", "not allowed for snat")
			}
			if rc.Port != 0 {
				bad("port", "not allowed for snat")
			}
			if a, err := netip.ParseAddr(rc.To); err != nil {
				bad("to", "%q is not an address (snat translates to an address)", rc.To)
			} else {
				r.to = a
			}
		case TypeDNAT:
			if rc.Source != "" {
				bad("source", "not allowed for dnat")
			}
			if a, err := netip.ParseAddr(rc.Destination); err != nil {
				bad("destination", "%q is not an address", rc.Destination)
			} else {
				r.dst = a
			}
			switch rc.Protocol {
			case "":
			case "tcp":
				r.proto = protoTCP
			case "udp":
				r.proto = 17
			default:
				bad("protocol", "%q: want tcp or udp", rc.Protocol)
			}
			if rc.Port < 0 || rc.Port > 65535 {
				bad("port", "%d is not a port (1..65535)", rc.Port)
			}
			r.port = uint16(rc.Port)
			if ap, err := netip.ParseAddrPort(rc.To); err == nil {
				r.to, r.toPort = ap.Addr(), ap.Port()
				if r.toPort == 0 {
					bad("to", "port 0 in %q", rc.To)
				}
			} else if a, err := netip.ParseAddr(rc.To); err == nil {
				r.to = a
			} else {
				bad("to", "%q is not an address or address:port", rc.To)
			}
			if (rc.Port != 0) != (r.toPort != 0) || (rc.Port != 0) != (rc.Protocol != "") {
				bad("port", "a port forward needs protocol, port and to with a port; a floating IP none of them")
			}
		case "":
			bad("type", "required (snat or dnat)")
		default:
			bad("type", "%q: want snat or dnat", rc.Type)
		}
		if len(errs) != n {
			continue
		}
		a := r.to
		b := r.dst
		if r.snat {
			b = r.src.Addr()
		}
		if a.Is4() != b.Is4() || a.Is4In6() || b.Is4In6() {
			bad("to", "%s and %s are not the same address family", a, b)
			continue
		}
		if !r.snat {
			k := r.dst.String() + "/" + strconv.Itoa(int(r.proto)) + "/" + strconv.Itoa(int(r.port))
			if j, dup := seen[k]; dup {
				bad("destination", "%s already translated by %s[%d]", k, path, j)
				continue
			}
			seen[k] = i
		}
		out = append(out, r)
	}
	return out, errors.Join(errs...)
}
