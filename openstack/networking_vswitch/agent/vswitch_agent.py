"""vswitch-agent: wires Neutron ports bound to this host on the local
vswitchd.

For every vhost-user port bound here it creates a client-mode port on
vswitchd (through the REST API on its unix socket) before Nova starts the
guest, so QEMU's server socket finds the switch connecting; it sets the
VLAN tag, translates security groups and port security, reports the port
up (which clears ML2's provisioning block), and removes the port and its
stale socket on unbind. Each loop compares vswitchd's ports with what
Neutron wants, so a restart of either side converges again.
"""
import os
import stat
import sys
import threading
import time

from neutron_lib.agent import constants as agent_consts
from oslo_config import cfg
from oslo_log import log as logging
import oslo_messaging

from networking_vswitch.agent import client as vs_client
from networking_vswitch.agent import translate
from networking_vswitch import constants

LOG = logging.getLogger(__name__)

OPTS = [
    cfg.StrOpt('api_socket', default=constants.DEFAULT_API_SOCKET,
               help='vswitchd API unix socket.'),
    cfg.StrOpt('api_token_file',
               help='File with the bearer token of the vswitchd API.'),
    cfg.StrOpt('vhostuser_socket_dir', default=constants.DEFAULT_SOCKET_DIR,
               help='Directory where QEMU creates the vhost-user sockets '
                    '(<dir>/<port uuid>); libvirt-qemu must be able to '
                    'write it. The ML2 driver learns it from the agent.'),
    cfg.ListOpt('physnet_bridges', default=[],
                help='physnet:bridge pairs: the vswitchd bridge of each '
                     'physical network this host serves.'),
    cfg.FloatOpt('polling_interval', default=2.0,
                 help='Seconds between reconcile passes.'),
    cfg.FloatOpt('port_poll_interval', default=10.0,
                 help='Seconds between asking neutron-server for the ports '
                      'bound to this host. ML2 sends no port_update for a '
                      'port created with binding:host_id already set, so '
                      'only this finds it. 0 disables it.'),
]


def register_opts(conf):
    conf.register_opts(OPTS, 'vswitch')


def parse_mappings(pairs):
    out = {}
    for p in pairs:
        physnet, sep, bridge = p.partition(':')
        if not sep or not physnet.strip() or not bridge.strip():
            raise ValueError('physnet_bridges: %r is not physnet:bridge' % p)
        out[physnet.strip()] = bridge.strip()
    return out


def _rules(groups):
    """name -> rules of security groups; vswitchd leaves 'rules' out of a
    group that has none."""
    return {n: g.get('rules') or [] for n, g in groups.items()}


class VswitchAgent(object):
    """The agent's state and one reconcile pass (loop_once). RPC objects
    are neutron's client classes (PluginApi, SecurityGroupServerRpcApi,
    PluginReportStateAPI) or anything with their methods."""

    # The RPC API version of the notifications this agent consumes: ML2's
    # network_update is cast as 1.4, the security group ones as 1.1. An
    # endpoint without a target is 1.0 and oslo.messaging rejects them.
    target = oslo_messaging.Target(version='1.4')

    def __init__(self, host, vsclient, plugin_rpc, sg_rpc, state_rpc,
                 context, physnet_bridges, sock_dir):
        self.host = host
        self.agent_id = 'vswitch-agent-%s' % host
        self.client = vsclient
        self.plugin_rpc = plugin_rpc
        self.sg_rpc = sg_rpc
        self.state_rpc = state_rpc
        self.context = context
        self.physnet_bridges = dict(physnet_bridges)
        self.sock_dir = sock_dir
        self.agent_state = {
            'binary': constants.AGENT_BINARY,
            'host': host,
            'topic': 'N/A',
            'agent_type': constants.AGENT_TYPE,
            'configurations': {
                'physnets': self.physnet_bridges,
                'vhostuser_socket_dir': sock_dir,
                'devices': 0,
            },
            'start_flag': True,
        }
        self._lock = threading.Lock()
        # Neutron's side: port id -> vswitchd port body we want.
        self.wanted = {}
        self.wanted_sgs = []
        self.reported_up = set()
        self._updated = set()
        self._deleted = set()
        self._sg_dirty = False
        self.need_full_sync = True
        self._api_fields = None    # PortConfig fields; None: refetch
        self._config_fields = set()
        self._warned = set()

    # --- RPC notifications from neutron-server (consumer endpoints) ---

    def port_update(self, context, **kwargs):
        port = kwargs.get('port') or {}
        with self._lock:
            if port.get('binding:host_id') == self.host:
                self._updated.add(port['id'])
            elif port.get('id') in self.wanted:
                self._deleted.add(port['id'])

    def port_delete(self, context, **kwargs):
        with self._lock:
            self._deleted.add(kwargs.get('port_id'))

    def security_groups_rule_updated(self, context, **kwargs):
        with self._lock:
            self._sg_dirty = True

    def security_groups_member_updated(self, context, **kwargs):
        with self._lock:
            self._sg_dirty = True

    def security_groups_provider_updated(self, context, **kwargs):
        pass

    def network_update(self, context, **kwargs):
        with self._lock:
            self._updated.update(self.wanted)

    # --- heartbeats ---

    def report_state(self):
        """One heartbeat. It is an RPC call (as neutron's own agents make
        it) and waits up to [AGENT] report_interval for neutron-server, so
        main() runs it in its own green thread, never in the sync loop."""
        self.agent_state['configurations']['devices'] = len(self.wanted)
        try:
            status = self.state_rpc.report_state(self.context,
                                                 self.agent_state, True)
        except Exception:
            LOG.exception('report_state failed')
            return
        self.agent_state.pop('start_flag', None)
        if status == agent_consts.AGENT_REVIVED:
            # neutron-server had declared this agent dead: it may have
            # changed bindings meanwhile without telling us.
            LOG.info('agent revived on neutron-server: full resync')
            with self._lock:
                self.need_full_sync = True

    # --- Neutron -> wanted state ---

    def poll_bound_ports(self):
        """Queue the ports bound here that the agent does not know yet.
        Known ports are not fetched again: get_devices_details_list would
        set them to BUILD until the next update_device_up."""
        try:
            ids = self._bound_port_ids()
        except Exception:
            LOG.exception('listing the ports bound here failed')
            return
        with self._lock:
            self._updated |= ids - set(self.wanted)

    def _bound_port_ids(self):
        ports = self.plugin_rpc.get_ports_by_vnic_type_and_host(
            self.context, 'normal', self.host)
        return set(p['id'] for p in ports
                   if p.get('binding:vif_type') == constants.VIF_TYPE)

    def _fetch(self, port_ids):
        """Device details and SG info for port_ids -> wanted bodies."""
        if not port_ids:
            return {}, set()
        details = self.plugin_rpc.get_devices_details_list(
            self.context, sorted(port_ids), self.agent_id, self.host)
        out, gone = {}, set()
        secured = []
        for d in details:
            pid = d.get('port_id')
            if not pid:
                gone.add(d.get('device'))  # no longer exists or not bound
                continue
            bridge = translate.bridge_for(d, self.physnet_bridges)
            if bridge is None:
                LOG.warning('port %s: physnet %s is not mapped here',
                            pid, d.get('physical_network'))
                gone.add(pid)
                continue
            out[pid] = d
            if d.get('port_security_enabled', True):
                secured.append(pid)
        sg_info = {}
        if secured:
            sg_info = self.sg_rpc.security_group_info_for_devices(
                self.context, secured)
        bodies = {}
        for pid, d in out.items():
            dev = dict(sg_info.get('devices', {}).get(pid, {}))
            dev.setdefault('mac_address', d.get('mac_address'))
            dev.setdefault('fixed_ips', d.get('fixed_ips'))
            dev['port_security_enabled'] = d.get('port_security_enabled',
                                                 True)
            sec = translate.port_security_fields(dev)
            bodies[pid] = translate.port_config(
                d, translate.bridge_for(d, self.physnet_bridges),
                self.sock_dir, sec)
        self._sg_info = sg_info
        return bodies, gone

    def _refresh_sgs(self):
        ids = set()
        for body in self.wanted.values():
            ids.update(body.get('security_groups', []))
        if not ids:
            self.wanted_sgs = []
            return
        secured = [pid for pid, b in self.wanted.items()
                   if 'port_security' in b]
        info = self.sg_rpc.security_group_info_for_devices(
            self.context, secured)
        used = set()
        for dev in info.get('devices', {}).values():
            used.update(dev.get('security_groups') or [])
        self.wanted_sgs = translate.security_groups(info, used)

    # --- wanted -> vswitchd ---

    def _warn_once(self, key, msg, *args):
        if key not in self._warned:
            self._warned.add(key)
            LOG.warning(msg, *args)

    def _learn_api(self):
        """Which of issue 8's fields this vswitchd's API has (OpenAPI)."""
        if self._api_fields is None:
            self._api_fields = self.client.port_fields()
            self._config_fields = self.client.schema_fields('Config')

    def _api_body(self, body):
        sent, dropped = translate.strip_unsupported(body, self._api_fields)
        if dropped:
            self._warn_once(tuple(dropped),
                            'vswitchd API has no port field(s) %s yet: '
                            'sent without them', dropped)
        return sent

    def _push_sgs(self, keep_old):
        """Write the agent's groups. keep_old (before ports change) also
        keeps groups no longer wanted, as ports may still name them;
        after the ports are written a second call drops them."""
        if 'security_groups' not in self._config_fields:
            if self.wanted_sgs:
                self._warn_once('sgs', 'vswitchd API has no '
                                'security_groups section yet: not enforced')
            return
        have = self.client.config().get('security_groups') or []
        mine = {g['name']: g for g in have
                if g['name'].startswith(constants.SG_PREFIX)}
        want = {g['name']: g for g in self.wanted_sgs}
        if keep_old:
            want = dict(mine, **want)
        if _rules(mine) == _rules(want):
            return
        others = [g for g in have
                  if not g['name'].startswith(constants.SG_PREFIX)]
        self.client.put_security_groups(
            others + [want[n] for n in sorted(want)])

    def _remove_socket(self, port_id):
        path = translate.socket_path(self.sock_dir, port_id)
        try:
            if stat.S_ISSOCK(os.lstat(path).st_mode):
                os.unlink(path)
        except FileNotFoundError:
            pass

    def reconcile(self):
        """Make vswitchd's agent-owned ports equal the wanted ones."""
        self._learn_api()
        have = {p['name']: p for p in self.client.ports()
                if translate.is_agent_port(p['name'])}
        wanted_names = {}
        for pid, body in self.wanted.items():
            wanted_names[body['name']] = pid
        # Groups first: a port may name only groups that exist.
        self._push_sgs(keep_old=True)
        for bridge in sorted(set(b['bridge'] for b in self.wanted.values())):
            if bridge not in {b['name'] for b in self.client.bridges()}:
                self.client.ensure_bridge(bridge)
        for pid, body in sorted(self.wanted.items()):
            sent = self._api_body(body)
            cur = have.get(body['name'])
            if cur is None or translate.port_differs(
                    sent, cur.get('config') or cur):
                LOG.info('vswitchd: %s port %s',
                         'update' if cur else 'create', sent['name'])
                self.client.put_port(sent)
            if pid not in self.reported_up:
                self.plugin_rpc.update_device_up(
                    self.context, pid, self.agent_id, self.host)
                self.reported_up.add(pid)
        for name in sorted(set(have) - set(wanted_names)):
            LOG.info('vswitchd: delete stale port %s', name)
            self.client.delete_port(name)
            self._remove_socket(name[len(constants.PORT_PREFIX):])
        self._push_sgs(keep_old=False)

    def _unbind(self, pid):
        body = self.wanted.pop(pid, None)
        if body is not None:
            self.client.delete_port(body['name'])
        self._remove_socket(pid)
        if pid in self.reported_up:
            self.reported_up.discard(pid)
            try:
                self.plugin_rpc.update_device_down(
                    self.context, pid, self.agent_id, self.host)
            except Exception:
                LOG.exception('update_device_down %s', pid)

    def loop_once(self):
        """One pass: Neutron changes, then vswitchd reconciliation. Any
        failure schedules a full resync for the next pass."""
        with self._lock:
            updated, self._updated = self._updated, set()
            deleted, self._deleted = self._deleted, set()
            sg_dirty, self._sg_dirty = self._sg_dirty, False
            # Taken here, so a request for a full sync that arrives during
            # this pass (report_state's 'revived') waits for the next one.
            full, self.need_full_sync = self.need_full_sync, False
        try:
            if full:
                ids = self._bound_port_ids() | set(self.wanted) | updated
                bodies, gone = self._fetch(ids)
                for pid in set(self.wanted) - set(bodies):
                    self._unbind(pid)
                self.wanted = bodies
                # get_devices_details_list set each fetched port to BUILD
                # on neutron-server: report them all up again.
                self.reported_up = set()
                sg_dirty = True
            else:
                for pid in deleted - updated:
                    self._unbind(pid)
                if updated:
                    bodies, gone = self._fetch(updated)
                    for pid in gone:
                        self._unbind(pid)
                    for pid, body in bodies.items():
                        # Fetching set it to BUILD, even when unchanged.
                        self.reported_up.discard(pid)
                        self.wanted[pid] = body
                    sg_dirty = True
            if sg_dirty:
                self._refresh_sgs()
            self.reconcile()
            return True
        except (OSError, vs_client.APIError) as e:
            self._api_fields = None  # vswitchd may come back another version
            LOG.warning('vswitchd unreachable or refused (%s); resync', e)
        except Exception:
            LOG.exception('sync failed; resync')
        with self._lock:
            self._updated |= updated
            self._deleted |= deleted
            self._sg_dirty |= sg_dirty
            self.need_full_sync = True
        return False


def _rpc_objects(conf):
    from neutron.agent import rpc as agent_rpc
    from neutron.api.rpc.handlers import securitygroups_rpc as sg_rpc
    from neutron_lib.agent import topics
    from neutron_lib import context as n_context
    return (agent_rpc.PluginApi(topics.PLUGIN),
            sg_rpc.SecurityGroupServerRpcApi(topics.PLUGIN),
            agent_rpc.PluginReportStateAPI(topics.REPORTS),
            n_context.get_admin_context_without_session())


def consumers(agent):
    """Subscribe to the port, network and SG fanout topics."""
    from neutron.agent import rpc as agent_rpc
    from neutron_lib.agent import topics
    return agent_rpc.create_consumers(
        [agent], topics.AGENT,
        [[topics.PORT, topics.UPDATE], [topics.PORT, topics.DELETE],
         [topics.NETWORK, topics.UPDATE],
         [topics.SECURITY_GROUP, topics.UPDATE]])


def check_transport_url(url):
    """Refuse oslo.messaging's fake driver: it passes messages through
    lists inside this process, where no neutron-server consumes them, so
    every RPC call would wait out its whole timeout (report_state: [AGENT]
    report_interval; the L2 RPC: rpc_response_timeout, doubled by
    neutron_lib's backoff after each timeout) and the agent would never
    wire a port. Tests use it with neutron-server's side in the same
    process (tests/functional/fake_neutron.py), never through main()."""
    scheme = (url or '').partition(':')[0].split('+')[0]
    if scheme == 'fake':
        raise SystemExit(
            'vswitch-agent: transport_url %r: the fake driver works only '
            'inside one process and no neutron-server can answer there; '
            'use the transport neutron-server uses (rabbit://...)' % url)


def main(argv=None):
    from neutron.common import config as common_config
    from neutron.conf.agent import common as agent_config
    from oslo_service import loopingcall
    conf = cfg.CONF
    register_opts(conf)
    common_config.register_common_config_options()  # incl. logging
    agent_config.register_agent_state_opts_helper(conf)
    common_config.init(sys.argv[1:] if argv is None else argv)
    common_config.setup_logging()
    check_transport_url(conf.transport_url)
    plugin_rpc, sg, state_rpc, ctx = _rpc_objects(conf)
    token = None
    if conf.vswitch.api_token_file:
        with open(conf.vswitch.api_token_file) as f:
            token = f.read().strip()
    agent = VswitchAgent(
        conf.host, vs_client.Client(conf.vswitch.api_socket, token=token),
        plugin_rpc, sg, state_rpc, ctx,
        parse_mappings(conf.vswitch.physnet_bridges),
        conf.vswitch.vhostuser_socket_dir)
    connection = consumers(agent)
    # Heartbeats in their own green thread, as neutron's agents do: a
    # heartbeat waiting for an unreachable neutron-server must not hold up
    # wiring ports on vswitchd, nor a long sync the heartbeats.
    heartbeat = None
    if conf.AGENT.report_interval:
        heartbeat = loopingcall.FixedIntervalLoopingCall(agent.report_state)
        heartbeat.start(interval=conf.AGENT.report_interval)
    interval = conf.vswitch.port_poll_interval
    poll_at = time.monotonic() + interval
    try:
        while True:
            if interval and time.monotonic() >= poll_at:
                poll_at = time.monotonic() + interval
                agent.poll_bound_ports()
            agent.loop_once()
            time.sleep(conf.vswitch.polling_interval)
    finally:
        if heartbeat is not None:
            heartbeat.stop()
        connection.close()
