package acl

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/vswitch/vswitch/switch/header"
)

// FieldError names the config field that is wrong, e.g.
// acls[2].ports: "90-80": start after end.
type FieldError struct {
	Field, Value, Msg string
}

func (e *FieldError) Error() string {
	if e.Value != "" {
		return fmt.Sprintf("%s: %q: %s", e.Field, e.Value, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.Field, e.Msg)
}

func ferr(field, value, msg string) error { return &FieldError{field, value, msg} }

func parseDirection(field, s string) (Direction, error) {
	switch s {
	case "ingress":
		return Ingress, nil
	case "egress":
		return Egress, nil
	case "":
		return 0, ferr(field, "", "required (ingress or egress)")
	}
	return 0, ferr(field, s, "want ingress or egress")
}

func parseEtherType(field, s string) (uint8, error) {
	switch strings.ToLower(s) {
	case "":
		return EthAny, nil
	case "ipv4":
		return EthV4, nil
	case "ipv6":
		return EthV6, nil
	}
	return 0, ferr(field, s, "want ipv4 or ipv6")
}

// parseProtocol accepts a name or a number 0-255. "icmp" on an IPv6 rule
// means ICMPv6, as in neutron.
func parseProtocol(field, s string, et uint8) (int16, error) {
	switch strings.ToLower(s) {
	case "", "any":
		return AnyProto, nil
	case "tcp":
		return header.ProtoTCP, nil
	case "udp":
		return header.ProtoUDP, nil
	case "sctp":
		return 132, nil
	case "icmp":
		if et == EthV6 {
			return header.ProtoICMPv6, nil
		}
		return header.ProtoICMP, nil
	case "icmpv6", "ipv6-icmp":
		return header.ProtoICMPv6, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > 255 {
		return 0, ferr(field, s, "want tcp, udp, sctp, icmp, icmpv6 or a number 0-255")
	}
	return int16(n), nil
}

// parsePorts reads "80" or "80-81"; empty is every port.
func parsePorts(field, s string) (PortRange, error) {
	if s == "" {
		return FullRange, nil
	}
	lo, hi, isRange := strings.Cut(s, "-")
	a, err1 := strconv.ParseUint(strings.TrimSpace(lo), 10, 16)
	b := a
	var err2 error
	if isRange {
		b, err2 = strconv.ParseUint(strings.TrimSpace(hi), 10, 16)
	}
	if err1 != nil || err2 != nil {
		return PortRange{}, ferr(field, s, "want a port 0-65535 or a range like 80-81")
	}
	if a > b {
		return PortRange{}, ferr(field, s, "start after end")
	}
	return PortRange{uint16(a), uint16(b)}, nil
}

// parsePrefix reads a prefix or a bare address (a host prefix); empty
// is the wildcard.
func parsePrefix(field, s string) (netip.Prefix, error) {
	if s == "" {
		return netip.Prefix{}, nil
	}
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	if a, err := netip.ParseAddr(s); err == nil && a.Zone() == "" {
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	return netip.Prefix{}, ferr(field, s, "want an IP prefix like 10.0.0.0/8 or an address")
}

func prefixVersion(p netip.Prefix) uint8 {
	if !p.IsValid() {
		return EthAny
	}
	if p.Addr().Is4() {
		return EthV4
	}
	return EthV6
}

func parseAction(field, s string) (Action, error) {
	switch s {
	case "allow":
		return Allow, nil
	case "deny":
		return Deny, nil
	case "reject":
		return Reject, nil
	case "":
		return 0, ferr(field, "", "required (allow, deny or reject)")
	}
	return 0, ferr(field, s, "want allow, deny or reject")
}

func parseMAC(field, s string) ([6]byte, error) {
	hw, err := net.ParseMAC(s)
	if err != nil || len(hw) != 6 {
		return [6]byte{}, ferr(field, s, "want a MAC like 02:00:00:00:00:0a")
	}
	if hw[0]&1 != 0 {
		return [6]byte{}, ferr(field, s, "multicast MAC")
	}
	return [6]byte(hw), nil
}

// match is the part of a rule both ACLs and SG rules have.
type match struct {
	et, proto, ports, srcPorts string
	typ, code                  *int
	src, dst                   string
}

// buildRule fills r's match fields from m; path prefixes field names and
// names maps our field to the config key ("source" or "remote").
func buildRule(path string, m match, srcKey, dstKey string, r *Rule) error {
	var err error
	if r.Src, err = parsePrefix(path+"."+srcKey, m.src); err != nil {
		return err
	}
	if r.Dst, err = parsePrefix(path+"."+dstKey, m.dst); err != nil {
		return err
	}
	if r.EthType, err = parseEtherType(path+".ethertype", m.et); err != nil {
		return err
	}
	for _, pf := range []struct {
		key string
		p   netip.Prefix
		raw string
	}{{srcKey, r.Src, m.src}, {dstKey, r.Dst, m.dst}} {
		v := prefixVersion(pf.p)
		if v == EthAny {
			continue
		}
		if r.EthType == EthAny {
			r.EthType = v
		} else if r.EthType != v {
			return ferr(path+"."+pf.key, pf.raw, "address family differs from ethertype "+m.et)
		}
	}
	if r.Proto, err = parseProtocol(path+".protocol", m.proto, r.EthType); err != nil {
		return err
	}
	if r.Proto == header.ProtoICMPv6 && r.EthType == EthAny {
		r.EthType = EthV6
	}
	if r.Proto == header.ProtoICMPv6 && r.EthType != EthV6 || r.Proto == header.ProtoICMP && r.EthType == EthV6 {
		return ferr(path+".protocol", m.proto, "does not match ethertype "+m.et)
	}
	if r.DstPorts, err = parsePorts(path+".ports", m.ports); err != nil {
		return err
	}
	if r.SrcPorts, err = parsePorts(path+".source_ports", m.srcPorts); err != nil {
		return err
	}
	l4ports := r.Proto != AnyProto && !isICMP(uint8(r.Proto))
	if !l4ports && m.ports != "" {
		return ferr(path+".ports", m.ports, "needs a protocol with ports (tcp, udp, sctp)")
	}
	if !l4ports && m.srcPorts != "" {
		return ferr(path+".source_ports", m.srcPorts, "needs a protocol with ports (tcp, udp, sctp)")
	}
	r.ICMPType, r.ICMPCode = AnyICMP, AnyICMP
	icmp := r.Proto != AnyProto && isICMP(uint8(r.Proto))
	for _, f := range []struct {
		key string
		v   *int
		dst *int16
	}{{"icmp_type", m.typ, &r.ICMPType}, {"icmp_code", m.code, &r.ICMPCode}} {
		if f.v == nil {
			continue
		}
		if !icmp {
			return ferr(path+"."+f.key, strconv.Itoa(*f.v), "needs protocol icmp or icmpv6")
		}
		if *f.v < 0 || *f.v > 255 {
			return ferr(path+"."+f.key, strconv.Itoa(*f.v), "want 0-255")
		}
		*f.dst = int16(*f.v)
	}
	if m.code != nil && m.typ == nil {
		return ferr(path+".icmp_code", strconv.Itoa(*m.code), "needs icmp_type")
	}
	return nil
}

// Validate checks the filtering config on its own (names, syntax,
// references between its sections). Compile also checks the ports exist.
func Validate(c *Config) error {
	_, err := compileConfig(c, nil)
	return err
}
