"""Pure translation from Neutron's view of a port (device details and
security group info, as the L2 agent RPC returns them) to vswitchd's
configuration schema (ports, security_groups, port_security).

No I/O here: the agent feeds these functions RPC results and sends what
they return to the REST API, so every rule of the mapping is unit-tested.
"""
import ipaddress
import os

from networking_vswitch import constants

# IP protocol numbers Neutron accepts as strings, mapped to the names
# vswitchd's rules use.
_PROTO_NAMES = {
    '1': 'icmp', 'icmp': 'icmp',
    '6': 'tcp', 'tcp': 'tcp',
    '17': 'udp', 'udp': 'udp',
    '132': 'sctp', 'sctp': 'sctp',
    '58': 'icmpv6', 'icmpv6': 'icmpv6', 'ipv6-icmp': 'icmpv6',
}
_PORT_PROTOS = ('tcp', 'udp', 'sctp')
_ICMP_PROTOS = ('icmp', 'icmpv6')
_ETHERTYPES = {'IPv4': 'ipv4', 'IPv6': 'ipv6'}


def port_name(port_id):
    return constants.PORT_PREFIX + port_id


def is_agent_port(name):
    return name.startswith(constants.PORT_PREFIX)


def sg_name(sg_id):
    return constants.SG_PREFIX + sg_id


def socket_path(sock_dir, port_id):
    return os.path.join(sock_dir, port_id)


def bridge_for(details, physnet_bridges):
    """The vswitchd bridge of a device, or None if the physnet is not
    mapped on this host."""
    return physnet_bridges.get(details.get('physical_network'))


def port_config(details, bridge, sock_dir, security=None):
    """The vswitchd port (POST/PUT /v1/ports body) for one device.

    details is one entry of get_devices_details_list; security is the
    port's entry from port_security_fields (None: no filtering keys).
    """
    port_id = details.get('port_id') or details['device']
    cfg = {
        'name': port_name(port_id),
        'type': 'vhostuser',
        'bridge': bridge,
        'socket': socket_path(sock_dir, port_id),
        # QEMU is the server (vhostuser_mode=server): the switch connects
        # and reconnects.
        'mode': 'client',
    }
    if details.get('network_type') == 'vlan' and \
            details.get('segmentation_id') is not None:
        cfg['tag'] = int(details['segmentation_id'])
    if security:
        cfg.update(security)
    return cfg


def _protocol(proto):
    if proto is None:
        return None
    p = str(proto).lower()
    if p in ('any', ''):
        return None
    return _PROTO_NAMES.get(p, p)


def _ports(lo, hi):
    if lo is None and hi is None:
        return None
    if lo is None:
        lo = hi
    if hi is None or hi == lo:
        return str(lo)
    return '%s-%s' % (lo, hi)


def _member_ips(members, ethertype):
    """IPs of a remote group's members for one ethertype. Neutron sends
    plain addresses or (address, mac) pairs depending on the release."""
    out = []
    for m in (members or {}).get(ethertype, []):
        ip = m[0] if isinstance(m, (list, tuple)) else m
        out.append(ip)
    return out


def _host_prefix(ip):
    net = ipaddress.ip_network(ip, strict=False)
    return str(net)


def _host_ip_prefix(ip):
    addr = ipaddress.ip_address(ip)
    return '%s/%d' % (addr, addr.max_prefixlen)


def translate_rule(rule, sg_member_ips):
    """One Neutron SG rule -> a list of vswitchd rules (a remote group
    expands to one rule per member address; no member: no rule)."""
    ethertype = _ETHERTYPES.get(rule.get('ethertype', 'IPv4'))
    if ethertype is None:
        return []
    out = {'direction': rule['direction'], 'ethertype': ethertype}
    proto = _protocol(rule.get('protocol'))
    if proto is not None:
        out['protocol'] = proto
    lo, hi = rule.get('port_range_min'), rule.get('port_range_max')
    if proto in _PORT_PROTOS:
        ports = _ports(lo, hi)
        if ports is not None:
            out['ports'] = ports
    elif proto in _ICMP_PROTOS:
        # Neutron keeps the ICMP type in port_range_min, the code in max.
        if lo is not None:
            out['icmp_type'] = int(lo)
            if hi is not None:
                out['icmp_code'] = int(hi)
    remotes = [None]
    if rule.get('remote_ip_prefix'):
        prefix = _host_prefix(rule['remote_ip_prefix'])
        if ipaddress.ip_network(prefix).version != (
                4 if ethertype == 'ipv4' else 6):
            return []
        remotes = [prefix]
    elif rule.get('remote_group_id'):
        members = sg_member_ips.get(rule['remote_group_id'], {})
        remotes = sorted(set(
            _host_ip_prefix(ip)
            for ip in _member_ips(members, rule.get('ethertype', 'IPv4'))))
    rules = []
    for remote in remotes:
        r = dict(out)
        if remote is not None:
            r['remote'] = remote
        rules.append(r)
    return rules


def security_groups(sg_info, sg_ids=None):
    """Top-level vswitchd security_groups from security_group_info_for_devices.

    sg_ids limits the output to the groups ports use (default: all).
    Rules are sorted so equal input gives an equal config and the agent
    can skip writes that change nothing.
    """
    rules_by_sg = sg_info.get('security_groups', {})
    members = sg_info.get('sg_member_ips', {})
    out = []
    for sg_id in sorted(rules_by_sg if sg_ids is None else sg_ids):
        rules = []
        for rule in rules_by_sg.get(sg_id, []):
            rules.extend(translate_rule(rule, members))
        rules.sort(key=lambda r: sorted(r.items(), key=str))
        out.append({'name': sg_name(sg_id), 'rules': rules})
    return out


def _fixed_ip_addresses(fixed_ips):
    out = []
    for ip in fixed_ips or []:
        out.append(ip['ip_address'] if isinstance(ip, dict) else ip)
    return out


def port_security_fields(device):
    """The port's security keys: security_groups and port_security, or
    nothing when Neutron's port security is off (the port is open)."""
    if not device.get('port_security_enabled', True):
        return {}
    mac = device.get('mac_address')
    ips = _fixed_ip_addresses(device.get('fixed_ips'))
    pairs = []
    for pair in device.get('allowed_address_pairs') or []:
        pmac = pair.get('mac_address') or mac
        if pmac == mac:
            ips.append(pair['ip_address'])
        else:
            pairs.append({'mac': pmac, 'ip': pair['ip_address']})
    seen = set()
    ips = [ip for ip in ips if not (ip in seen or seen.add(ip))]
    ps = {'mac': mac, 'ips': ips}
    if pairs:
        # An allowed address pair with its own MAC: vswitchd's
        # port_security.allowed_address_pairs (acl.AddressPair: mac, ip).
        ps['allowed_address_pairs'] = pairs
    return {
        'security_groups': [sg_name(s) for s in
                            sorted(device.get('security_groups') or [])],
        'port_security': ps,
    }


def strip_unsupported(cfg, supported):
    """Drop the keys of a port body vswitchd's API does not know yet
    (its OpenAPI PortConfig schema), returning the body and what went."""
    dropped = sorted(k for k in cfg if k not in supported)
    return {k: v for k, v in cfg.items() if k in supported}, dropped


# Port keys the agent owns: present on vswitchd but absent from the body
# means the agent turned them off.
MANAGED_KEYS = ('tag', 'security_groups', 'port_security')


def port_differs(want, have):
    """Whether vswitchd's port config (GET .../config) differs from the
    body we would send, ignoring defaults the switch fills in."""
    for k, v in want.items():
        if have.get(k) != v:
            return True
    return any(have.get(k) and k not in want for k in MANAGED_KEYS)
