"""Agent logic against an in-memory vswitchd that already has issue 8's
schema (tag, security_groups, port_security), so the SG paths run before
the real API grows them; plus packaging checks."""
import configparser
import os
import unittest
from unittest import mock

from networking_vswitch.agent import vswitch_agent

P = 'aaaaaaaa-0000-4000-8000-000000000001'
SG = 'sg000000-0000-4000-8000-000000000001'
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..',
                                    '..'))


class FakeVswitchd(object):
    def __init__(self):
        self.port_cfgs, self.bridge_names, self.sgs = {}, set(), []
        self.puts = 0

    def port_fields(self):
        return {'name', 'type', 'bridge', 'socket', 'mode', 'queues', 'tag',
                'security_groups', 'port_security'}

    def schema_fields(self, name):
        return {'security_groups', 'ports', 'bridges'}

    def ports(self):
        return [{'name': n, 'config': c} for n, c in self.port_cfgs.items()]

    def put_port(self, cfg):
        missing = set(cfg.get('security_groups', [])) - {
            g['name'] for g in self.sgs}
        assert not missing, 'port names unknown groups %s' % missing
        self.puts += 1
        self.port_cfgs[cfg['name']] = dict(cfg)

    def delete_port(self, name):
        self.port_cfgs.pop(name, None)

    def bridges(self):
        return [{'name': b} for b in self.bridge_names]

    def ensure_bridge(self, name):
        self.bridge_names.add(name)

    def config(self):
        return {'security_groups': list(self.sgs)}

    def put_security_groups(self, groups):
        self.sgs = list(groups)


class AgentTest(unittest.TestCase):
    def setUp(self):
        self.vs = FakeVswitchd()
        self.rules = [{'direction': 'ingress', 'ethertype': 'IPv4',
                       'protocol': 'tcp', 'port_range_min': 22,
                       'port_range_max': 22}]
        self.port_security = True
        plugin = mock.Mock()
        plugin.get_ports_by_vnic_type_and_host.return_value = [
            {'id': P, 'binding:vif_type': 'vhostuser'}]
        plugin.get_devices_details_list.side_effect = lambda *a: [{
            'device': P, 'port_id': P, 'network_type': 'vlan',
            'segmentation_id': 42, 'physical_network': 'physnet1',
            'mac_address': 'fa:16:3e:00:00:01',
            'fixed_ips': [{'ip_address': '10.0.0.5'}],
            'port_security_enabled': self.port_security}]
        sg = mock.Mock()
        sg.security_group_info_for_devices.side_effect = lambda c, d: {
            'devices': {P: {'security_groups': [SG],
                            'mac_address': 'fa:16:3e:00:00:01',
                            'fixed_ips': ['10.0.0.5'],
                            'allowed_address_pairs': []}} if d else {},
            'security_groups': {SG: list(self.rules)} if d else {},
            'sg_member_ips': {}}
        self.plugin = plugin
        self.agent = vswitch_agent.VswitchAgent(
            'h', self.vs, plugin, sg, mock.Mock(), None,
            {'physnet1': 'br-phys'}, '/run/vswitch/vhu')

    def port(self):
        return self.vs.port_cfgs['os-' + P]

    def test_full_port(self):
        self.assertTrue(self.agent.loop_once())
        self.assertEqual(
            {'name': 'os-' + P, 'type': 'vhostuser', 'bridge': 'br-phys',
             'socket': '/run/vswitch/vhu/' + P, 'mode': 'client', 'tag': 42,
             'security_groups': ['os-' + SG],
             'port_security': {'mac': 'fa:16:3e:00:00:01',
                               'ips': ['10.0.0.5']}}, self.port())
        self.assertEqual([{'name': 'os-' + SG, 'rules': [
            {'direction': 'ingress', 'ethertype': 'ipv4', 'protocol': 'tcp',
             'ports': '22'}]}], self.vs.sgs)
        self.plugin.update_device_up.assert_called_once_with(
            None, P, 'vswitch-agent-h', 'h')

    def test_rule_added_and_removed(self):
        self.agent.loop_once()
        puts = self.vs.puts
        self.rules.append({'direction': 'egress', 'ethertype': 'IPv4'})
        self.agent.security_groups_rule_updated(None, security_groups=[SG])
        self.assertTrue(self.agent.loop_once())
        self.assertEqual(2, len(self.vs.sgs[0]['rules']))
        self.rules.pop()
        self.agent.security_groups_rule_updated(None, security_groups=[SG])
        self.assertTrue(self.agent.loop_once())
        self.assertEqual(1, len(self.vs.sgs[0]['rules']))
        self.assertEqual(puts, self.vs.puts)  # the port itself unchanged

    def test_port_security_toggled_off(self):
        self.agent.loop_once()
        self.port_security = False
        self.agent.port_update(None, port={'id': P, 'binding:host_id': 'h'})
        self.assertTrue(self.agent.loop_once())
        self.assertNotIn('security_groups', self.port())
        self.assertNotIn('port_security', self.port())
        self.assertEqual([], self.vs.sgs)

    def test_operator_groups_kept(self):
        self.vs.sgs = [{'name': 'web', 'rules': []}]
        self.agent.loop_once()
        self.assertEqual(['web', 'os-' + SG],
                         [g['name'] for g in self.vs.sgs])


class ReportStateTest(unittest.TestCase):
    def setUp(self):
        self.state_rpc = mock.Mock()
        self.agent = vswitch_agent.VswitchAgent(
            'h', FakeVswitchd(), mock.Mock(), mock.Mock(), self.state_rpc,
            None, {'physnet1': 'br-phys'}, '/run/vswitch/vhu')
        self.agent.need_full_sync = False

    def test_first_report_carries_start_flag_until_it_succeeds(self):
        import oslo_messaging
        self.state_rpc.report_state.side_effect = \
            oslo_messaging.MessagingTimeout('No reply on topic q-reports')
        self.agent.report_state()
        self.assertIn('start_flag', self.agent.agent_state)
        self.state_rpc.report_state.side_effect = None
        self.state_rpc.report_state.return_value = 'alive'
        self.agent.report_state()
        self.assertNotIn('start_flag', self.agent.agent_state)
        self.assertFalse(self.agent.need_full_sync)

    def test_revived_forces_full_sync(self):
        self.state_rpc.report_state.return_value = 'revived'
        self.agent.report_state()
        self.assertTrue(self.agent.need_full_sync)


class TransportTest(unittest.TestCase):
    def test_fake_transport_refused(self):
        for url in ('fake://', 'fake:/', 'fake+x://'):
            with self.assertRaises(SystemExit) as e:
                vswitch_agent.check_transport_url(url)
            self.assertIn('only inside one process', str(e.exception))
        for url in (None, '', 'rabbit://guest:guest@ctl:5672/'):
            vswitch_agent.check_transport_url(url)

    def test_standalone_agent_with_fake_transport_exits(self):
        """The console script stops at once with the reason, instead of
        waiting out report_state's call on a transport nobody serves."""
        import subprocess
        import sys
        import tempfile
        with tempfile.NamedTemporaryFile('w', suffix='.ini') as f:
            f.write('[DEFAULT]\ntransport_url = fake://\n')
            f.flush()
            r = subprocess.run(
                [sys.executable, '-c',
                 'from networking_vswitch.cmd import agent; agent.main()',
                 '--config-file', f.name],
                capture_output=True, text=True, timeout=120,
                env=dict(os.environ, PYTHONPATH=ROOT))
        self.assertNotEqual(0, r.returncode)
        self.assertIn('only inside one process', r.stderr)


class PackagingTest(unittest.TestCase):
    def test_dist_info_matches_setup_cfg(self):
        """openstack/ on PYTHONPATH registers the same entry points as an
        installed package."""
        setup = configparser.ConfigParser()
        setup.read(os.path.join(ROOT, 'setup.cfg'))
        dist = configparser.ConfigParser()
        dist.read(os.path.join(ROOT, 'networking_vswitch-0.1.0.dist-info',
                               'entry_points.txt'))
        for group in ('neutron.ml2.mechanism_drivers', 'console_scripts'):
            want = dict(line.split(' = ') for line in
                        setup['options.entry_points'][group].split('\n')
                        if line.strip())
            self.assertEqual(want, dict(dist[group]))

    def test_entry_point_loads_driver(self):
        from importlib import metadata
        eps = [e for e in metadata.entry_points(
            group='neutron.ml2.mechanism_drivers') if e.name == 'vswitch']
        self.assertTrue(eps)
        self.assertEqual('VswitchMechanismDriver', eps[0].load().__name__)
