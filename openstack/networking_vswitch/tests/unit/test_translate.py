"""Neutron port/SG data -> vswitchd schema (issue 8's security_groups,
port_security, VLAN tag): pure functions."""
import unittest

from networking_vswitch.agent import translate

P = 'aaaaaaaa-0000-0000-0000-000000000001'
SG = 'sg000000-0000-0000-0000-000000000001'
SG2 = 'sg000000-0000-0000-0000-000000000002'


def details(**kw):
    d = {'device': P, 'port_id': P, 'network_type': 'vlan',
         'segmentation_id': 100, 'physical_network': 'physnet1',
         'mac_address': 'fa:16:3e:00:00:01',
         'fixed_ips': [{'subnet_id': 's', 'ip_address': '10.0.0.5'}],
         'port_security_enabled': True}
    d.update(kw)
    return d


class PortConfigTest(unittest.TestCase):
    def test_vlan_port(self):
        self.assertEqual(
            {'name': 'os-' + P, 'type': 'vhostuser', 'bridge': 'br-phys',
             'socket': '/run/vswitch/vhu/' + P, 'mode': 'client', 'tag': 100},
            translate.port_config(details(), 'br-phys', '/run/vswitch/vhu'))

    def test_flat_port_has_no_tag(self):
        cfg = translate.port_config(
            details(network_type='flat', segmentation_id=None), 'br', '/d')
        self.assertNotIn('tag', cfg)

    def test_name_is_valid_for_vswitchd(self):
        name = translate.port_name(P)
        self.assertLessEqual(len(name), 64)
        self.assertTrue(translate.is_agent_port(name))
        self.assertFalse(translate.is_agent_port('vm1'))

    def test_bridge_mapping(self):
        self.assertEqual('br-phys', translate.bridge_for(
            details(), {'physnet1': 'br-phys'}))
        self.assertIsNone(translate.bridge_for(details(), {'x': 'y'}))

    def test_strip_unsupported(self):
        body, dropped = translate.strip_unsupported(
            {'name': 'a', 'tag': 5, 'port_security': {}},
            {'name', 'type'})
        self.assertEqual({'name': 'a'}, body)
        self.assertEqual(['port_security', 'tag'], dropped)

    def test_port_differs(self):
        want = {'name': 'a', 'mode': 'client'}
        self.assertFalse(translate.port_differs(
            want, {'name': 'a', 'mode': 'client', 'queues': 1}))
        self.assertTrue(translate.port_differs(
            want, {'name': 'a', 'mode': 'server'}))
        # Port security switched off: the keys must go from vswitchd.
        self.assertTrue(translate.port_differs(
            want, {'name': 'a', 'mode': 'client', 'security_groups': ['x']}))


class PortSecurityTest(unittest.TestCase):
    def test_groups_mac_and_ips(self):
        dev = {'security_groups': [SG2, SG], 'mac_address': 'fa:16:3e:00:00:01',
               'fixed_ips': ['10.0.0.5', 'fd00::5'],
               'port_security_enabled': True}
        self.assertEqual(
            {'security_groups': ['os-' + SG, 'os-' + SG2],
             'port_security': {'mac': 'fa:16:3e:00:00:01',
                               'ips': ['10.0.0.5', 'fd00::5']}},
            translate.port_security_fields(dev))

    def test_port_security_off_means_open(self):
        self.assertEqual({}, translate.port_security_fields(
            {'security_groups': [SG], 'port_security_enabled': False}))

    def test_allowed_address_pairs(self):
        dev = {'mac_address': 'fa:16:3e:00:00:01',
               'fixed_ips': [{'ip_address': '10.0.0.5'}],
               'allowed_address_pairs': [
                   {'ip_address': '10.0.0.100'},                   # VIP
                   {'ip_address': '10.0.0.5',                      # dup
                    'mac_address': 'fa:16:3e:00:00:01'},
                   {'ip_address': '10.1.0.0/24',
                    'mac_address': 'fa:16:3e:00:00:99'}]}
        ps = translate.port_security_fields(dev)['port_security']
        self.assertEqual(['10.0.0.5', '10.0.0.100'], ps['ips'])
        self.assertEqual([{'mac': 'fa:16:3e:00:00:99', 'ip': '10.1.0.0/24'}],
                         ps['allowed_address_pairs'])

    def test_port_config_carries_security(self):
        sec = translate.port_security_fields(
            {'security_groups': [SG], 'mac_address': 'm', 'fixed_ips': []})
        cfg = translate.port_config(details(), 'br', '/d', sec)
        self.assertEqual(['os-' + SG], cfg['security_groups'])
        self.assertEqual({'mac': 'm', 'ips': []}, cfg['port_security'])


def rule(**kw):
    r = {'direction': 'ingress', 'ethertype': 'IPv4', 'security_group_id': SG}
    r.update(kw)
    return r


class RuleTest(unittest.TestCase):
    def t(self, r, members=None):
        return translate.translate_rule(r, members or {})

    def test_tcp_range_and_prefix(self):
        self.assertEqual(
            [{'direction': 'ingress', 'ethertype': 'ipv4', 'protocol': 'tcp',
              'ports': '80-81', 'remote': '0.0.0.0/0'}],
            self.t(rule(protocol='tcp', port_range_min=80, port_range_max=81,
                        remote_ip_prefix='0.0.0.0/0')))

    def test_single_port_and_number_protocol(self):
        self.assertEqual('22', self.t(rule(protocol='6', port_range_min=22,
                                           port_range_max=22))[0]['ports'])
        self.assertEqual('udp', self.t(rule(protocol='17'))[0]['protocol'])

    def test_allow_all_egress(self):
        self.assertEqual([{'direction': 'egress', 'ethertype': 'ipv6'}],
                         self.t(rule(direction='egress', ethertype='IPv6')))

    def test_any_protocol(self):
        self.assertNotIn('protocol', self.t(rule(protocol='any'))[0])

    def test_icmp_type_code(self):
        r = self.t(rule(protocol='icmp', port_range_min=8, port_range_max=0))
        self.assertEqual({'icmp_type': 8, 'icmp_code': 0},
                         {k: r[0][k] for k in ('icmp_type', 'icmp_code')})
        self.assertNotIn('ports', r[0])
        r = self.t(rule(ethertype='IPv6', protocol='ipv6-icmp'))
        self.assertEqual('icmpv6', r[0]['protocol'])

    def test_host_prefix_normalized(self):
        self.assertEqual('10.0.0.0/24', self.t(
            rule(remote_ip_prefix='10.0.0.7/24'))[0]['remote'])

    def test_prefix_of_other_family_dropped(self):
        self.assertEqual([], self.t(rule(remote_ip_prefix='::/0')))

    def test_remote_group_expands_to_members(self):
        members = {SG2: {'IPv4': [('10.0.0.9', 'fa:16:3e:00:00:09'),
                                  '10.0.0.8'],
                         'IPv6': ['fd00::9']}}
        got = self.t(rule(protocol='tcp', port_range_min=22,
                          port_range_max=22, remote_group_id=SG2), members)
        self.assertEqual(['10.0.0.8/32', '10.0.0.9/32'],
                         [r['remote'] for r in got])
        got6 = self.t(rule(ethertype='IPv6', remote_group_id=SG2), members)
        self.assertEqual(['fd00::9/128'], [r['remote'] for r in got6])

    def test_empty_remote_group_matches_nothing(self):
        self.assertEqual([], self.t(rule(remote_group_id=SG2), {}))


class SecurityGroupsTest(unittest.TestCase):
    def test_groups_sorted_and_filtered(self):
        info = {'security_groups': {
            SG2: [rule(security_group_id=SG2, direction='egress')],
            SG: [rule(protocol='tcp', port_range_min=80, port_range_max=80),
                 rule(remote_group_id=SG)]},
            'sg_member_ips': {SG: {'IPv4': ['10.0.0.5']}}}
        got = translate.security_groups(info)
        self.assertEqual(['os-' + SG, 'os-' + SG2], [g['name'] for g in got])
        self.assertEqual(2, len(got[0]['rules']))
        self.assertEqual(got, translate.security_groups(info))
        self.assertEqual(['os-' + SG2], [g['name'] for g in
                                         translate.security_groups(info,
                                                                   [SG2])])

    def test_default_group_shape(self):
        """Neutron's default group: egress any (v4+v6), ingress from the
        group itself: the issue-8 schema with one rule per member."""
        info = {'security_groups': {SG: [
            rule(direction='egress'),
            rule(direction='egress', ethertype='IPv6'),
            rule(remote_group_id=SG),
            rule(ethertype='IPv6', remote_group_id=SG)]},
            'sg_member_ips': {SG: {'IPv4': ['10.0.0.5', '10.0.0.6'],
                                   'IPv6': []}}}
        got = translate.security_groups(info)[0]['rules']
        self.assertIn({'direction': 'egress', 'ethertype': 'ipv4'}, got)
        self.assertIn({'direction': 'egress', 'ethertype': 'ipv6'}, got)
        self.assertIn({'direction': 'ingress', 'ethertype': 'ipv4',
                       'remote': '10.0.0.6/32'}, got)
        self.assertEqual(4, len(got))
