"""End to end with libvirt: two TCG guests started by libvirtd from the
domain XML Nova renders for the ML2 driver's binding, wired by the agent on
a real vswitchd, with neutron-server's RPC side in-process (fake_neutron).

The chain is the deployment's: the agent reports its socket directory,
the driver binds each port from that report (vhostuser, QEMU the server),
Nova's LibvirtGenericVIFDriver turns the vif_details into the <interface>
(nova_domain.py, in its own interpreter), libvirt starts QEMU listening on
<dir>/<port id>, and the agent creates the client-mode port on vswitchd.

tests/openstack_test.go (TestOpenStackLibvirt) runs this: it checks the
prerequisites (root, libvirtd, hugepages, guest kernel), starts libvirtd
and sets VSLAB_DIR, GUEST_KERNEL, GUEST_INITRD, VSWITCHD_BIN and
LIBVIRT_URI. Run alone, it skips.
"""
import json
import os
import subprocess
import sys
import time
import unittest

# Imported first: neutron's unit-test package patches eventlet on import,
# which must happen before the fake RPC servers start their threads.
from neutron.tests.unit.plugins.ml2 import _test_mech_agent as mech_base

from neutron.agent import rpc as agent_rpc
from neutron.api.rpc.handlers import securitygroups_rpc as sg_rpc
from neutron.conf.agent import common as agent_config
from neutron_lib.agent import topics
from neutron_lib import context as n_context
from oslo_config import cfg

from networking_vswitch.agent import vswitch_agent
from networking_vswitch import constants
from networking_vswitch.ml2 import mech_vswitch
from networking_vswitch.tests.functional import fake_neutron
from networking_vswitch.tests.functional import vswitchd

HOST = 'compute1'
SG = '5e000000-0000-4000-8000-0000000000e1'
# Domain names start with DOMAIN_PREFIX: the Go side destroys leftovers.
DOMAIN_PREFIX = 'vsos-'
G1 = {'port': 'c0ffee00-0000-4000-8000-0000000000e1', 'name': 'vsos-g1',
      'mac': 'fa:16:3e:00:00:01', 'ip': '10.0.0.1',
      'kargs': 'lab.role=probe lab.peer=10.0.0.2'}
G2 = {'port': 'c0ffee00-0000-4000-8000-0000000000e2', 'name': 'vsos-g2',
      'mac': 'fa:16:3e:00:00:02', 'ip': '10.0.0.2',
      'kargs': 'lab.role=tcpserve'}
SEGMENT = {'id': 'seg1', 'network_type': 'vlan',
           'physical_network': 'physnet1', 'segmentation_id': 100}
# Security group: ICMP in, everything out; TCP in only once the test adds
# a rule for the group's own members (Neutron's default-group rule).
BASE_RULES = [
    {'direction': 'egress', 'ethertype': 'IPv4'},
    {'direction': 'ingress', 'ethertype': 'IPv4', 'protocol': 'icmp',
     'remote_ip_prefix': '0.0.0.0/0'}]
MEMBERS_TCP = {'direction': 'ingress', 'ethertype': 'IPv4',
               'protocol': 'tcp', 'remote_group_id': SG}


class Vswitchd(vswitchd.Vswitchd):
    # Adaptive polling: two TCG guests share the machine's cores.
    CONFIG = 'dataplane: {workers: 1, poll: adaptive}\n'


def wait_for(what, cond, timeout, detail=lambda: ''):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError('%s: not within %ss\n%s'
                                 % (what, timeout, detail()))
        time.sleep(0.2)


class Guest(object):
    def __init__(self, lab, uri, spec):
        self.lab, self.uri = lab, uri
        self.name = spec['name']
        self.spec = spec
        self.xml = os.path.join(lab, self.name + '.xml')
        self.serial = os.path.join(lab, self.name + '.serial')
        self.create = None

    def virsh(self, *args, check=True):
        r = subprocess.run(['virsh', '-c', self.uri] + list(args),
                           capture_output=True, text=True, timeout=60)
        if check and r.returncode:
            raise AssertionError('virsh %s: %s' % (' '.join(args),
                                                   r.stderr.strip()))
        return r.stdout.strip()

    def start(self):
        """virsh create, in the background: with mode='server' QEMU waits
        for the switch, and so does libvirt's start (OPENSTACK.md 3.5)."""
        self.log = open(os.path.join(self.lab, self.name + '.virsh'), 'w')
        self.create = subprocess.Popen(
            ['virsh', '-c', self.uri, 'create', self.xml],
            stdout=self.log, stderr=subprocess.STDOUT,
            preexec_fn=vswitchd.die_with_parent)

    def destroy(self):
        self.virsh('destroy', self.name, check=False)
        if self.create is not None:
            try:
                self.create.wait(30)
            except subprocess.TimeoutExpired:
                self.create.kill()
                self.create.wait()
            self.log.close()

    def console(self):
        try:
            with open(self.serial, errors='replace') as f:
                return f.read()
        except FileNotFoundError:
            return ''

    def count(self, s):
        return self.console().count(s)

    def replies(self):
        return self.count('bytes from')

    def tail(self):
        return '%s serial:\n%s' % (
            self.name, '\n'.join(self.console().splitlines()[-15:]))


class LibvirtEndToEndTest(unittest.TestCase):
    def setUp(self):
        env = os.environ
        self.lab = env.get('VSLAB_DIR')
        if not self.lab:
            self.skipTest('run by go test ./tests -run TestOpenStackLibvirt '
                          '(root, libvirtd, hugepages)')
        self.uri = env.get('LIBVIRT_URI', 'qemu:///system')
        self.kernel, self.initrd = env['GUEST_KERNEL'], env['GUEST_INITRD']
        try:
            agent_config.register_agent_state_opts_helper(cfg.CONF)
        except cfg.DuplicateOptError:
            pass
        self.neutron = fake_neutron.Neutron()
        server = fake_neutron.Server(self.neutron)
        self.addCleanup(server.stop)
        # QEMU runs as libvirt-qemu and creates the sockets here.
        self.sock_dir = os.path.join(self.lab, 'vhu')
        os.makedirs(self.sock_dir, exist_ok=True)
        os.chmod(self.sock_dir, 0o777)
        self.vs = Vswitchd(env['VSWITCHD_BIN'], os.path.join(self.lab, 'sw'))
        self.addCleanup(self.vs.stop)
        self.agent = vswitch_agent.VswitchAgent(
            HOST, self.vs.client, agent_rpc.PluginApi(topics.PLUGIN),
            sg_rpc.SecurityGroupServerRpcApi(topics.PLUGIN),
            agent_rpc.PluginReportStateAPI(topics.REPORTS),
            n_context.get_admin_context_without_session(),
            {'physnet1': 'br-phys'}, self.sock_dir)
        self.g1 = Guest(self.lab, self.uri, G1)
        self.g2 = Guest(self.lab, self.uri, G2)
        for g in (self.g1, self.g2):
            self.addCleanup(g.destroy)
        with self.neutron.lock:
            self.neutron.sg_rules[SG] = list(BASE_RULES)
            for g in (G1, G2):
                self.neutron.ports[g['port']] = {
                    'host': HOST, 'vif_type': constants.VIF_TYPE,
                    'network_id': 'net1', 'network_type': 'vlan',
                    'segmentation_id': 100, 'physical_network': 'physnet1',
                    'mac_address': g['mac'],
                    'fixed_ips': [{'subnet_id': 's',
                                   'ip_address': g['ip']}],
                    'device_owner': 'compute:nova', 'admin_state_up': True,
                    'port_security_enabled': True, 'security_groups': [SG]}

    def bind(self, state, port_id):
        """The ML2 driver's binding for port_id on the host whose agent
        reported state."""
        class Context(mech_base.FakePortContext):
            @property
            def current(self):
                return dict(super().current, id=port_id)

        agents = [{'alive': True, 'host': HOST,
                   'agent_type': state['agent_type'],
                   'configurations': state['configurations']}]
        ctx = Context(constants.AGENT_TYPE, agents, [SEGMENT])
        driver = mech_vswitch.VswitchMechanismDriver()
        driver.initialize()
        driver.bind_port(ctx)
        self.assertEqual('vhostuser', ctx._bound_vif_type)
        return ctx._bound_vif_details

    def write_domains(self, state):
        guests = []
        for g in (G1, G2):
            details = self.bind(state, g['port'])
            self.assertEqual(os.path.join(self.sock_dir, g['port']),
                             details['vhostuser_socket'])
            guests.append({
                'name': g['name'], 'port_id': g['port'], 'mac': g['mac'],
                'vif_details': details,
                'serial': os.path.join(self.lab, g['name'] + '.serial'),
                'cmdline': 'console=ttyS0 quiet panic=-1 lab.ip=%s/24 %s'
                           % (g['ip'], g['kargs'])})
        r = subprocess.run(
            [sys.executable, '-m',
             'networking_vswitch.tests.functional.nova_domain'],
            input=json.dumps({'kernel': self.kernel, 'initrd': self.initrd,
                              'guests': guests}),
            capture_output=True, text=True, timeout=300)
        self.assertEqual(0, r.returncode, r.stderr)
        for name, xml in json.loads(r.stdout).items():
            with open(os.path.join(self.lab, name + '.xml'), 'w') as f:
                f.write(xml)

    def drops(self, g, reason):
        p = self.vs.client.port(constants.PORT_PREFIX + g['port'])
        return (p.get('drops') or {}).get(reason, 0)

    def detail(self):
        return '\n'.join([self.g1.tail(), self.g2.tail(),
                          'vswitchd log:\n' + self.vs.read_log()[-2000:]])

    def test_guests_on_nova_xml_wired_by_agent(self):
        g1, g2 = self.g1, self.g2
        self.agent.report_state()
        self.write_domains(self.neutron.states[-1])

        # The guests start before vswitchd runs: QEMU listens and libvirt's
        # start waits; the agent cannot wire anything yet.
        self.assertFalse(self.agent.loop_once())
        for g in (g1, g2):
            g.start()
        for g in (g1, g2):
            sock = os.path.join(self.sock_dir, g.spec['port'])
            wait_for(g.name + ' listening', lambda: os.path.exists(sock) or
                     g.create.poll() is not None, 60)
        time.sleep(1)
        for g in (g1, g2):
            self.assertIsNone(g.create.poll(), 'virsh create %s returned '
                              'before a switch connected: %s'
                              % (g.name, open(g.log.name).read()))
            self.assertEqual('paused', g.virsh('domstate', g.name))

        # vswitchd comes up, the agent wires both ports, libvirt's starts
        # complete and Neutron hears the ports are up.
        t0 = time.monotonic()
        self.vs.start()
        self.assertTrue(self.agent.loop_once())
        for g in (g1, g2):
            self.assertEqual(0, g.create.wait(60),
                             open(g.log.name).read())
        print('E2E guests started %.1fs after vswitchd'
              % (time.monotonic() - t0))
        self.assertEqual({G1['port'], G2['port']}, set(self.neutron.up))

        # They ping each other (g2 answers g1's echo requests).
        wait_for('g2 serving', lambda: g2.count('LAB-TCP-SERVING'), 120,
                 self.detail)
        wait_for('pings', lambda: g1.replies() >= 3, 120, self.detail)
        print('E2E pings through vswitchd %.1fs after it started'
              % (time.monotonic() - t0))

        # The group admits no TCP in: g1's connections to g2 fail, and g2's
        # port counts the drops.
        fails = g1.count('LAB-TCP-FAIL')
        wait_for('TCP tries', lambda: g1.count('LAB-TCP-FAIL') >= fails + 2,
                 30, self.detail)
        self.assertEqual(0, g1.count('LAB-TCP-OK'), self.detail())
        denied = self.drops(G2, 'sg_ingress_denied')
        self.assertGreater(denied, 0)
        print('E2E TCP blocked: %d tries failed, g2 port sg_ingress_denied=%d'
              % (g1.count('LAB-TCP-FAIL'), denied))

        # A rule for the group's members admits it.
        with self.neutron.lock:
            self.neutron.sg_rules[SG].append(MEMBERS_TCP)
        self.agent.security_groups_rule_updated(None, security_groups=[SG])
        self.assertTrue(self.agent.loop_once())
        wait_for('TCP admitted', lambda: g1.count('LAB-TCP-OK'), 30,
                 self.detail)

        # kill -9 of vswitchd mid-ping, started again: replies resume.
        self.vs.kill9()
        time.sleep(2)
        before = g1.replies()
        t0 = time.monotonic()
        self.vs.start()
        self.assertTrue(self.agent.loop_once())
        wait_for('pings after the restart',
                 lambda: g1.replies() >= before + 3, 60, self.detail)
        print('E2E pings resumed %.1fs after the restart'
              % (time.monotonic() - t0))
        ok = g1.count('LAB-TCP-OK')
        wait_for('TCP after the restart',
                 lambda: g1.count('LAB-TCP-OK') > ok, 30, self.detail)
        for g in (g1, g2):
            self.assertEqual(1, g.count('LAB-NET-UP'), g.name + ' rebooted')

        # Nova deletes the guests and Neutron unbinds the ports: vswitchd's
        # ports and QEMU's stale sockets go.
        for g, spec in ((g1, G1), (g2, G2)):
            g.destroy()
            with self.neutron.lock:
                del self.neutron.ports[spec['port']]
            self.agent.port_delete(None, port_id=spec['port'])
        self.assertTrue(self.agent.loop_once())
        for spec in (G1, G2):
            self.assertIsNone(self.vs.client.port(
                constants.PORT_PREFIX + spec['port']))
            self.assertFalse(os.path.exists(
                os.path.join(self.sock_dir, spec['port'])))


if __name__ == '__main__':
    unittest.main()
