"""vswitch-agent for real: a private rabbitmq-server, a neutron-server
process (ML2 with the vswitch driver, sqlite, noauth) and the agent's
console script, each its own process, on a running vswitchd.

Needs rabbitmq-server (Debian package) and the vswitchd binary; without
them the test skips, or fails when CI=true.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request

import neutron

from networking_vswitch.tests.functional import vswitchd

RABBIT = '/usr/lib/rabbitmq/bin/rabbitmq-server'
EPMD = '/usr/bin/epmd'
HOST = 'compute1'


def free_port():
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_for(what, check, timeout, procs=()):
    deadline = time.monotonic() + timeout
    while True:
        r = check()
        if r:
            return r
        for name, p in procs:
            if p.poll() is not None:
                raise AssertionError('%s exited (%s) while waiting for %s'
                                     % (name, p.returncode, what))
        if time.monotonic() > deadline:
            raise AssertionError('timed out after %ss waiting for %s'
                                 % (timeout, what))
        time.sleep(0.2)


class AgentRabbitTest(unittest.TestCase):
    def setUp(self):
        self.bin, why = vswitchd.binary()
        for path in (RABBIT, EPMD):
            if not os.path.exists(path):
                why = '%s missing (apt-get install rabbitmq-server)' % path
        if why:
            if os.environ.get('CI') == 'true':
                raise RuntimeError('CI=true and ' + why)
            self.skipTest(why)
        self.dir = tempfile.mkdtemp(prefix='vsr', dir='/tmp')
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.procs = []
        self.addCleanup(self.stop_all)
        self.t0 = time.monotonic()
        self.timings = {}

    def start(self, name, argv, env=None, log=None):
        """A child in its own process group, killed with it at cleanup."""
        logf = open(log or os.path.join(self.dir, name + '.log'), 'ab')
        p = subprocess.Popen(argv, env=env, stdout=logf, stderr=logf,
                             cwd=self.dir, start_new_session=True,
                             preexec_fn=vswitchd.die_with_parent)
        logf.close()
        self.procs.append((name, p))
        return p

    def stop_all(self):
        for name, p in reversed(self.procs):
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    continue
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait()
            # Children that left the group with the leader gone.
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def log_tail(self, name):
        try:
            with open(os.path.join(self.dir, name + '.log'), 'rb') as f:
                return f.read()[-3000:].decode('utf-8', 'replace')
        except OSError:
            return ''

    def wait(self, what, check, timeout, log):
        """wait_for with the tail of log's file in the failure, and every
        child checked for an early exit."""
        try:
            return wait_for(what, check, timeout, self.procs)
        except AssertionError as e:
            raise AssertionError('%s\n%s' % (e, self.log_tail(log)))

    def mark(self, what):
        self.timings[what] = round(time.monotonic() - self.t0, 1)

    # --- rabbitmq-server ---

    def start_rabbit(self):
        base = os.path.join(self.dir, 'rabbit')
        home = os.path.join(base, 'home')
        os.makedirs(home)
        cookie = os.path.join(home, '.erlang.cookie')
        with open(cookie, 'w') as f:
            f.write('vswitchtest%d' % os.getpid())
        os.chmod(cookie, 0o400)
        plugins = os.path.join(base, 'enabled_plugins')
        with open(plugins, 'w') as f:
            f.write('[].\n')
        epmd_port, amqp_port, dist_port = free_port(), free_port(), \
            free_port()
        env = dict(os.environ, HOME=home, ERL_EPMD_PORT=str(epmd_port),
                   ERL_EPMD_ADDRESS='127.0.0.1')
        # Our own epmd in the foreground, so the broker does not start a
        # daemon that outlives the test.
        self.start('epmd', [EPMD, '-port', str(epmd_port)], env=env)
        env.update(
            RABBITMQ_NODENAME='vstest%d@localhost' % os.getpid(),
            RABBITMQ_NODE_IP_ADDRESS='127.0.0.1',
            RABBITMQ_NODE_PORT=str(amqp_port),
            RABBITMQ_DIST_PORT=str(dist_port),
            RABBITMQ_MNESIA_BASE=os.path.join(base, 'mnesia'),
            RABBITMQ_LOG_BASE=os.path.join(base, 'log'),
            RABBITMQ_LOGS=os.path.join(base, 'log', 'rabbit.log'),
            RABBITMQ_PID_FILE=os.path.join(base, 'pid'),
            RABBITMQ_ENABLED_PLUGINS_FILE=plugins,
            RABBITMQ_CONFIG_FILE=os.path.join(base, 'rabbitmq'),
            RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=(
                '-kernel inet_dist_use_interface {127,0,0,1}'))
        self.start('rabbitmq', [RABBIT], env=env)

        def listening():
            try:
                socket.create_connection(('127.0.0.1', amqp_port), 0.5)
                return True
            except OSError:
                return False
        self.wait('rabbitmq-server on port %d' % amqp_port, listening, 40,
                  'rabbitmq')
        self.mark('rabbitmq up')
        return 'rabbit://guest:guest@127.0.0.1:%d/' % amqp_port

    # --- neutron-server ---

    def start_neutron(self, transport_url):
        port = free_port()
        state = os.path.join(self.dir, 'neutron')
        os.makedirs(state)
        conf = os.path.join(state, 'neutron.conf')
        # Debian's python3-neutron ships no /etc/neutron; its test tree
        # has the paste pipeline with noauth.
        paste = os.path.join(os.path.dirname(neutron.__file__),
                             'tests', 'etc', 'api-paste.ini')
        with open(conf, 'w') as f:
            f.write('''[DEFAULT]
core_plugin = ml2
service_plugins =
auth_strategy = noauth
bind_host = 127.0.0.1
bind_port = %(port)d
api_workers = 0
rpc_workers = 1
rpc_state_report_workers = 0
api_paste_config = %(paste)s
transport_url = %(url)s
state_path = %(state)s
notify_nova_on_port_status_changes = false
notify_nova_on_port_data_changes = false
[database]
connection = sqlite:///%(state)s/neutron.db
[oslo_concurrency]
lock_path = %(state)s/lock
[ml2]
type_drivers = flat,vlan
tenant_network_types = vlan
mechanism_drivers = vswitch
extension_drivers = port_security
[ml2_type_vlan]
network_vlan_ranges = physnet1:100:199
[securitygroup]
firewall_driver = noop
''' % {'port': port, 'paste': paste, 'url': transport_url,
                'state': state})
        self.start('neutron-server', [
            sys.executable, '-m',
            'networking_vswitch.tests.functional.neutron_server',
            '--config-file', conf,
            '--log-file', os.path.join(self.dir, 'neutron-server.log')],
            env=dict(os.environ,
                     PYTHONPATH=os.path.join(vswitchd.REPO, 'openstack')),
            log=os.path.join(self.dir, 'neutron-server.out'))
        self.api = 'http://127.0.0.1:%d/v2.0' % port

        def up():
            try:
                return self.get('/agents') is not None
            except OSError:
                return False
        self.wait('neutron-server API', up, 60,
                  'neutron-server')
        self.mark('neutron-server API up')

    def call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            self.api + path, data=data, method=method,
            headers={'Content-Type': 'application/json'})
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read() or b'null')

    def get(self, path):
        return self.call('GET', path)

    # --- the test ---

    def test_agent_with_rabbitmq_and_neutron_server(self):
        url = self.start_rabbit()
        self.start_neutron(url)
        vs = vswitchd.Vswitchd(self.bin, os.path.join(self.dir, 'vs'))
        vs.start()
        self.addCleanup(vs.stop)
        sock_dir = os.path.join(self.dir, 'vhu')
        os.mkdir(sock_dir)
        ini = os.path.join(self.dir, 'agent.ini')
        with open(ini, 'w') as f:
            f.write('[DEFAULT]\ntransport_url = %s\nhost = %s\n'
                    '[vswitch]\napi_socket = %s\n'
                    'vhostuser_socket_dir = %s\n'
                    'physnet_bridges = physnet1:br-phys\n'
                    'polling_interval = 0.2\nport_poll_interval = 1\n'
                    '[agent]\nreport_interval = 2\n'
                    % (url, HOST, vs.api, sock_dir))
        self.start('vswitch-agent', [
            sys.executable, '-c',
            'from networking_vswitch.cmd.agent import main; main()',
            '--config-file', ini],
            env=dict(os.environ,
                     PYTHONPATH=os.path.join(vswitchd.REPO, 'openstack')))

        def alive():
            for a in self.get('/agents')['agents']:
                if a['host'] == HOST and a['alive']:
                    return a
        a = self.wait('the agent in the agent list', alive, 40,
                  'vswitch-agent')
        self.mark('agent alive')
        self.assertEqual('vswitch agent', a['agent_type'])
        self.assertEqual(sock_dir, a['configurations']['vhostuser_socket_dir'])

        net = self.call('POST', '/networks', {'network': {
            'name': 'n1', 'tenant_id': 't1',
            'provider:network_type': 'vlan',
            'provider:physical_network': 'physnet1',
            'provider:segmentation_id': 100}})['network']
        self.call('POST', '/subnets', {'subnet': {
            'network_id': net['id'], 'tenant_id': 't1', 'ip_version': 4,
            'cidr': '10.0.0.0/24'}})
        port = self.call('POST', '/ports', {'port': {
            'network_id': net['id'], 'tenant_id': 't1',
            'device_owner': 'compute:nova', 'device_id': 'vm1',
            'binding:host_id': HOST}})['port']
        pid = port['id']
        self.assertEqual('vhostuser', port['binding:vif_type'])
        details = port['binding:vif_details']
        self.assertEqual(os.path.join(sock_dir, pid),
                         details['vhostuser_socket'])
        self.assertEqual('server', details['vhostuser_mode'])
        self.assertEqual('DOWN', port['status'])

        def wired():
            return vs.client.port('os-' + pid)
        p = self.wait('the port on vswitchd', wired, 30,
                  'vswitch-agent')
        self.mark('port on vswitchd')
        cfg_ = p.get('config') or p
        self.assertEqual('client', cfg_['mode'])
        self.assertEqual(os.path.join(sock_dir, pid), cfg_['socket'])
        self.assertEqual(100, cfg_.get('tag'))

        def active():
            return self.get('/ports/' + pid)['port']['status'] == 'ACTIVE'
        self.wait('port ACTIVE', active, 30,
                  'vswitch-agent')
        self.mark('port ACTIVE')
        # On a line of its own: unittest -v left its ' ... ' open.
        print('\nE2E rabbit: %s' % json.dumps(self.timings))


if __name__ == '__main__':
    unittest.main()
