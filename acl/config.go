// Package acl holds the switch's packet filters: stateless ACLs evaluated
// by priority, stateful security groups with OpenStack semantics, port
// security (anti-spoofing) and the reject replies. Rules compile into an
// immutable snapshot that the control plane swaps with atomic.Pointer; the
// data plane classifies whole batches of header.Parsed against it.
package acl

// Config is the filtering part of the switch configuration. The lead's
// api.Config embeds these sections under the same keys.
type Config struct {
	SecurityGroups []SecurityGroup `yaml:"security_groups" json:"security_groups,omitempty" mapstructure:"security_groups"`
	ACLs           []ACL           `yaml:"acls" json:"acls,omitempty" mapstructure:"acls"`
	Ports          []PortFilter    `yaml:"ports" json:"ports,omitempty" mapstructure:"ports"`
}

// PortFilter is the filtering part of a port's config: the keys of
// ports[i] this package reads.
type PortFilter struct {
	Name           string        `yaml:"name" json:"name" mapstructure:"name"`
	SecurityGroups []string      `yaml:"security_groups" json:"security_groups,omitempty" mapstructure:"security_groups"`
	PortSecurity   *PortSecurity `yaml:"port_security" json:"port_security,omitempty" mapstructure:"port_security"`
}

// SecurityGroup is a named set of allow rules (OpenStack semantics).
type SecurityGroup struct {
	Name  string   `yaml:"name" json:"name" mapstructure:"name"`
	Rules []SGRule `yaml:"rules" json:"rules,omitempty" mapstructure:"rules"`
}

// SGRule allows one kind of traffic. Remote is the peer's prefix: the
// source for ingress, the destination for egress.
type SGRule struct {
	Direction string `yaml:"direction" json:"direction" mapstructure:"direction"`
	EtherType string `yaml:"ethertype" json:"ethertype,omitempty" mapstructure:"ethertype"`
	Protocol  string `yaml:"protocol" json:"protocol,omitempty" mapstructure:"protocol"`
	Ports     string `yaml:"ports" json:"ports,omitempty" mapstructure:"ports"`
	ICMPType  *int   `yaml:"icmp_type" json:"icmp_type,omitempty" mapstructure:"icmp_type"`
	ICMPCode  *int   `yaml:"icmp_code" json:"icmp_code,omitempty" mapstructure:"icmp_code"`
	Remote    string `yaml:"remote" json:"remote,omitempty" mapstructure:"remote"`
	// RemoteGroup admits peers whose port is in that group: it expands to
	// the port_security addresses of the group's member ports.
	RemoteGroup string `yaml:"remote_group" json:"remote_group,omitempty" mapstructure:"remote_group"`
}

// ACL is one stateless rule bound to a port and direction.
type ACL struct {
	Name        string `yaml:"name" json:"name" mapstructure:"name"`
	Port        string `yaml:"port" json:"port" mapstructure:"port"`
	Direction   string `yaml:"direction" json:"direction" mapstructure:"direction"`
	Priority    int    `yaml:"priority" json:"priority,omitempty" mapstructure:"priority"`
	EtherType   string `yaml:"ethertype" json:"ethertype,omitempty" mapstructure:"ethertype"`
	Protocol    string `yaml:"protocol" json:"protocol,omitempty" mapstructure:"protocol"`
	Source      string `yaml:"source" json:"source,omitempty" mapstructure:"source"`
	Destination string `yaml:"destination" json:"destination,omitempty" mapstructure:"destination"`
	Ports       string `yaml:"ports" json:"ports,omitempty" mapstructure:"ports"` // destination ports
	SourcePorts string `yaml:"source_ports" json:"source_ports,omitempty" mapstructure:"source_ports"`
	ICMPType    *int   `yaml:"icmp_type" json:"icmp_type,omitempty" mapstructure:"icmp_type"`
	ICMPCode    *int   `yaml:"icmp_code" json:"icmp_code,omitempty" mapstructure:"icmp_code"`
	Action      string `yaml:"action" json:"action" mapstructure:"action"`
}

// PortSecurity lists the addresses a port's guest may send from.
type PortSecurity struct {
	MAC                 string        `yaml:"mac" json:"mac" mapstructure:"mac"`
	IPs                 []string      `yaml:"ips" json:"ips,omitempty" mapstructure:"ips"`
	AllowedAddressPairs []AddressPair `yaml:"allowed_address_pairs" json:"allowed_address_pairs,omitempty" mapstructure:"allowed_address_pairs"`
}

// AddressPair is an extra (MAC, prefix) the guest may use; MAC defaults to
// the port's.
type AddressPair struct {
	MAC string `yaml:"mac" json:"mac,omitempty" mapstructure:"mac"`
	IP  string `yaml:"ip" json:"ip" mapstructure:"ip"`
}
