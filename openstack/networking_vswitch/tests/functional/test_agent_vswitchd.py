"""vswitch-agent against a real vswitchd (REST API on its unix socket),
with neutron-server's RPC side in-process on oslo.messaging's fake
transport.

Needs the vswitchd binary ($VSWITCHD_BIN, or go to build it); without it
the tests skip, or fail when CI=true.
"""
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
import unittest

from neutron.agent import rpc as agent_rpc
from neutron.api.rpc.handlers import securitygroups_rpc as sg_rpc
from neutron.conf.agent import common as agent_config
from neutron_lib.agent import topics
from neutron_lib import context as n_context
from oslo_config import cfg

from networking_vswitch.agent import vswitch_agent
from networking_vswitch.tests.functional import fake_neutron
from networking_vswitch.tests.functional import vswitchd

P1 = 'c0ffee00-0000-4000-8000-000000000001'
SG = '5e000000-0000-4000-8000-000000000001'
HOST = 'compute1'


def _prereq():
    path, why = vswitchd.binary()
    if path is None:
        if os.environ.get('CI') == 'true':
            raise RuntimeError('CI=true and ' + why)
        raise unittest.SkipTest(why)
    return path


def neutron_port(host=HOST, **kw):
    p = {'host': host, 'vif_type': 'vhostuser', 'network_id': 'net1',
         'network_type': 'vlan', 'segmentation_id': 100,
         'physical_network': 'physnet1', 'mac_address': 'fa:16:3e:00:00:01',
         'fixed_ips': [{'subnet_id': 's', 'ip_address': '10.0.0.5'}],
         'device_owner': 'compute:nova', 'admin_state_up': True,
         'port_security_enabled': True, 'security_groups': [SG]}
    p.update(kw)
    return p


class AgentVswitchdTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.bin = _prereq()
        try:
            agent_config.register_agent_state_opts_helper(cfg.CONF)
        except cfg.DuplicateOptError:
            pass
        cls.neutron = fake_neutron.Neutron()
        cls.server = fake_neutron.Server(cls.neutron)

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def setUp(self):
        # Short: unix socket paths are limited to 108 bytes.
        self.dir = tempfile.mkdtemp(prefix='vsa', dir='/tmp')
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.sock_dir = os.path.join(self.dir, 'vhu')
        os.mkdir(self.sock_dir)
        self.vs = vswitchd.Vswitchd(self.bin, self.dir)
        self.vs.start()
        self.addCleanup(self.vs.stop)
        with self.neutron.lock:
            self.neutron.ports.clear()
            self.neutron.sg_rules.clear()
            self.neutron.sg_rules[SG] = [
                {'direction': 'ingress', 'ethertype': 'IPv4',
                 'protocol': 'tcp', 'port_range_min': 22,
                 'port_range_max': 22, 'remote_ip_prefix': '0.0.0.0/0'},
                {'direction': 'egress', 'ethertype': 'IPv4'}]
            del self.neutron.up[:], self.neutron.down[:]
        self.agent = vswitch_agent.VswitchAgent(
            HOST, self.vs.client, agent_rpc.PluginApi(topics.PLUGIN),
            sg_rpc.SecurityGroupServerRpcApi(topics.PLUGIN),
            agent_rpc.PluginReportStateAPI(topics.REPORTS),
            n_context.get_admin_context_without_session(),
            {'physnet1': 'br-phys'}, self.sock_dir)

    def bind(self, pid=P1, **kw):
        with self.neutron.lock:
            self.neutron.ports[pid] = neutron_port(**kw)
        self.agent.port_update(None, port={'id': pid,
                                           'binding:host_id': HOST})

    def vs_port(self, pid=P1):
        return self.vs.client.port('os-' + pid)

    def fields(self):
        return self.vs.client.port_fields()

    def assert_wired(self, pid=P1):
        p = self.vs_port(pid)
        self.assertIsNotNone(p, 'port missing on vswitchd')
        cfg_ = p.get('config') or p
        self.assertEqual('client', cfg_['mode'])
        self.assertEqual(os.path.join(self.sock_dir, pid), cfg_['socket'])
        self.assertEqual('br-phys', cfg_['bridge'])
        self.assertEqual(100, cfg_.get('tag'))
        self.assertEqual(['os-' + SG], cfg_.get('security_groups'))
        self.assertEqual({'mac': 'fa:16:3e:00:00:01',
                          'ips': ['10.0.0.5']}, cfg_['port_security'])
        return p

    def test_report_state(self):
        self.agent.report_state()
        st = self.neutron.states[-1]
        self.assertEqual('vswitch agent', st['agent_type'])
        self.assertEqual(HOST, st['host'])
        self.assertTrue(st['start_flag'])
        self.assertEqual({'physnet1': 'br-phys'},
                         st['configurations']['physnets'])
        self.assertEqual(self.sock_dir,
                         st['configurations']['vhostuser_socket_dir'])
        self.agent.report_state()
        self.assertNotIn('start_flag', self.neutron.states[-1])

    def test_bind_creates_client_port_and_reports_up(self):
        self.bind()
        self.assertTrue(self.agent.loop_once())
        self.assert_wired()
        self.assertEqual([P1], self.neutron.up)
        # Client mode: vswitchd connects to the socket QEMU listens on.
        qemu = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(qemu.close)
        qemu.bind(os.path.join(self.sock_dir, P1))
        qemu.listen(1)
        qemu.settimeout(20)
        conn, _ = qemu.accept()
        conn.close()
        # A second pass changes nothing and reports nothing again.
        self.assertTrue(self.agent.loop_once())
        self.assertEqual([P1], self.neutron.up)

    def test_port_on_other_host_ignored(self):
        with self.neutron.lock:
            self.neutron.ports[P1] = neutron_port(host='other')
        self.assertTrue(self.agent.loop_once())
        self.assertIsNone(self.vs_port())

    def test_unbind_removes_port_and_stale_socket(self):
        self.bind()
        self.assertTrue(self.agent.loop_once())
        self.assert_wired()
        # QEMU leaves its socket behind after `virsh destroy`.
        stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        path = os.path.join(self.sock_dir, P1)
        stale.bind(path)
        stale.close()
        self.assertTrue(stat.S_ISSOCK(os.lstat(path).st_mode))
        with self.neutron.lock:
            del self.neutron.ports[P1]
        self.agent.port_delete(None, port_id=P1)
        self.assertTrue(self.agent.loop_once())
        self.assertIsNone(self.vs_port())
        self.assertFalse(os.path.exists(path))
        self.assertEqual([P1], self.neutron.down)

    def test_stale_agent_port_removed_on_agent_restart(self):
        """An agent starting fresh deletes os-* ports Neutron no longer
        binds here and keeps ports it did not create."""
        self.vs.client.ensure_bridge('br-phys')
        self.vs.client.put_port({'name': 'os-' + P1, 'type': 'vhostuser',
                                 'bridge': 'br-phys', 'mode': 'client',
                                 'socket': os.path.join(self.sock_dir, P1)})
        self.vs.client.put_port({'name': 'manual', 'type': 'vhostuser',
                                 'bridge': 'br-phys', 'socket': 'm.sock'})
        self.assertTrue(self.agent.loop_once())
        self.assertIsNone(self.vs_port())
        self.assertIsNotNone(self.vs.client.port('manual'))

    def test_agent_restart_resyncs(self):
        self.bind()
        self.assertTrue(self.agent.loop_once())
        self.vs.client.delete_port('os-' + P1)
        # A new agent process: no notifications, only the full sync.
        self.setUp_agent_again()
        self.assertTrue(self.agent.loop_once())
        self.assert_wired()

    def setUp_agent_again(self):
        a = self.agent
        self.agent = vswitch_agent.VswitchAgent(
            HOST, a.client, a.plugin_rpc, a.sg_rpc, a.state_rpc, a.context,
            a.physnet_bridges, a.sock_dir)

    def test_vswitchd_kill9_resync(self):
        self.bind()
        self.assertTrue(self.agent.loop_once())
        self.assert_wired()
        self.vs.kill9()
        # Lose the saved state too: the agent alone must bring it back.
        shutil.rmtree(self.vs.state_dir)
        self.assertFalse(self.agent.loop_once())
        self.vs.start()
        self.assertIsNone(self.vs_port())
        self.assertTrue(self.agent.loop_once())
        self.assert_wired()

    def test_vswitchd_kill9_keeps_state(self):
        self.bind()
        self.assertTrue(self.agent.loop_once())
        self.vs.kill9()
        self.vs.start()
        self.assertTrue(self.agent.loop_once())
        self.assert_wired()

    def test_vswitchd_api_has_the_agent_fields(self):
        """The agent sends VLAN and security-group keys only when the API
        has them (for older vswitchd); this one must have them all, or the
        tests above would pass without enforcing anything."""
        self.assertLessEqual({'tag', 'security_groups', 'port_security'},
                             self.fields())
        self.assertIn('security_groups',
                      self.vs.client.schema_fields('Config'))

    def test_security_group_rule_change_updates_vswitchd(self):
        # Writing the groups keeps what else the config has.
        self.vs.client.ensure_bridge('br-op')
        self.vs.client.put_port({'name': 'manual', 'type': 'vhostuser',
                                 'bridge': 'br-op', 'socket': 'm.sock'})
        self.bind()
        self.assertTrue(self.agent.loop_once())
        rules = self.sg_rules()
        self.assertIn({'direction': 'ingress', 'ethertype': 'ipv4',
                       'protocol': 'tcp', 'ports': '22',
                       'remote': '0.0.0.0/0'}, rules)
        with self.neutron.lock:
            self.neutron.sg_rules[SG].append(
                {'direction': 'ingress', 'ethertype': 'IPv4',
                 'protocol': 'tcp', 'port_range_min': 80,
                 'port_range_max': 80, 'remote_ip_prefix': '0.0.0.0/0'})
        self.agent.security_groups_rule_updated(None, security_groups=[SG])
        self.assertTrue(self.agent.loop_once())
        self.assertEqual(len(rules) + 1, len(self.sg_rules()))
        with self.neutron.lock:
            self.neutron.sg_rules[SG].pop()
        self.agent.security_groups_rule_updated(None, security_groups=[SG])
        self.assertTrue(self.agent.loop_once())
        self.assertEqual(rules, self.sg_rules())
        # Nothing else moved: no port was removed and added again (a
        # guest would lose its link), the operator's port is there.
        self.assert_wired()
        self.assertIsNotNone(self.vs.client.port('manual'))
        self.assertNotIn('remove port', self.vs.read_log())

    def test_empty_group_written_once(self):
        """A group without rules (vswitchd omits 'rules') is not written
        again on every pass."""
        with self.neutron.lock:
            self.neutron.sg_rules[SG] = []
        self.bind()
        self.assertTrue(self.agent.loop_once())
        rev = self.vs.client.config_revision()
        self.assertTrue(self.agent.loop_once())
        self.assertEqual(rev, self.vs.client.config_revision())
        self.assert_wired()

    def test_console_script_wires_and_reports(self):
        """main() itself: heartbeats from their green thread (the first
        with start_flag) and the port wired, with neutron-server's side in
        the agent's process (agent_main.py)."""
        ini = os.path.join(self.dir, 'agent.ini')
        with open(ini, 'w') as f:
            f.write('[DEFAULT]\ntransport_url = fake://\nhost = %s\n'
                    '[vswitch]\napi_socket = %s\n'
                    'vhostuser_socket_dir = %s\n'
                    'physnet_bridges = physnet1:br-phys\n'
                    'polling_interval = 0.2\n'
                    '[agent]\nreport_interval = 1\n'
                    % (HOST, self.vs.api, self.sock_dir))
        r = subprocess.run(
            [sys.executable, '-m',
             'networking_vswitch.tests.functional.agent_main',
             json.dumps({'id': P1, 'port': neutron_port()}),
             '--config-file', ini],
            capture_output=True, text=True, timeout=120,
            env=dict(os.environ, PYTHONPATH=vswitchd.REPO + '/openstack'))
        self.assertEqual(0, r.returncode, r.stderr[-3000:])
        seen = json.loads(r.stdout.strip().splitlines()[-1])
        self.assertEqual([P1], seen['up'], r.stderr[-3000:])
        self.assertGreaterEqual(len(seen['states']), 2, r.stderr[-3000:])
        self.assertTrue(seen['states'][0].get('start_flag'))
        self.assertNotIn('start_flag', seen['states'][-1])
        self.assert_wired()

    def sg_rules(self):
        for g in self.vs.client.config().get('security_groups') or []:
            if g['name'] == 'os-' + SG:
                return g['rules']
        self.fail('security group missing on vswitchd')


if __name__ == '__main__':
    unittest.main()
