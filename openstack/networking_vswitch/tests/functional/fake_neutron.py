"""neutron-server's side of the L2 agent RPC, in-process on
oslo.messaging's fake transport: the agent uses neutron's own client
classes (PluginApi, SecurityGroupServerRpcApi, PluginReportStateAPI)
and the calls really go through oslo.messaging (serialization, targets,
versions)."""
import copy
import threading

from neutron_lib.agent import topics
from neutron_lib import rpc as n_rpc
from oslo_config import cfg
import oslo_messaging
from oslo_messaging.rpc import dispatcher


class Neutron(object):
    """Ports bound to hosts, SGs, and what agents reported."""

    def __init__(self):
        self.lock = threading.Lock()
        self.ports = {}       # id -> device details (+ host, vif_type)
        self.sg_rules = {}    # sg id -> [rule]
        self.up, self.down = [], []
        self.states = []

    def port(self, pid):
        with self.lock:
            return copy.deepcopy(self.ports.get(pid))


class PluginEndpoint(object):
    target = oslo_messaging.Target(version='1.9')

    def __init__(self, n):
        self.n = n

    def get_ports_by_vnic_type_and_host(self, context, vnic_type, host):
        with self.n.lock:
            return [{'id': pid, 'binding:host_id': p['host'],
                     'binding:vif_type': p['vif_type']}
                    for pid, p in self.n.ports.items()
                    if p['host'] == host]

    def get_devices_details_list(self, context, devices, agent_id,
                                 host=None):
        out = []
        with self.n.lock:
            for d in devices:
                p = self.n.ports.get(d)
                if p is None or p['host'] != host:
                    out.append({'device': d})
                    continue
                det = {k: v for k, v in p.items()
                       if k not in ('host', 'vif_type')}
                det.update(device=d, port_id=d)
                out.append(copy.deepcopy(det))
        return out

    def update_device_up(self, context, device, agent_id, host=None):
        with self.n.lock:
            self.n.up.append(device)

    def update_device_down(self, context, device, agent_id, host=None):
        with self.n.lock:
            self.n.down.append(device)
        return {'device': device, 'exists': device in self.n.ports}


class SecurityGroupEndpoint(object):
    target = oslo_messaging.Target(version='1.3')

    def __init__(self, n):
        self.n = n

    def security_group_info_for_devices(self, context, **kwargs):
        devices = {}
        sgs = {}
        members = {}
        with self.n.lock:
            for pid, p in self.n.ports.items():
                for sg in p.get('security_groups', []):
                    ips = members.setdefault(sg, {'IPv4': [], 'IPv6': []})
                    for ip in p['fixed_ips']:
                        ips['IPv6' if ':' in ip['ip_address']
                            else 'IPv4'].append(
                                [ip['ip_address'], p['mac_address']])
            for pid in kwargs['devices']:
                p = self.n.ports.get(pid)
                if p is None:
                    continue
                devices[pid] = {
                    'device': pid, 'mac_address': p['mac_address'],
                    'fixed_ips': [i['ip_address'] for i in p['fixed_ips']],
                    'security_groups': p.get('security_groups', []),
                    'allowed_address_pairs': p.get('allowed_address_pairs',
                                                   []),
                    'port_security_enabled': p['port_security_enabled']}
                for sg in p.get('security_groups', []):
                    sgs[sg] = copy.deepcopy(self.n.sg_rules.get(sg, []))
        return {'devices': devices, 'security_groups': sgs,
                'sg_member_ips': {k: v for k, v in members.items()
                                  if k in sgs}}


class StateEndpoint(object):
    target = oslo_messaging.Target(version='1.2')

    def __init__(self, n):
        self.n = n

    def report_state(self, context, **kwargs):
        with self.n.lock:
            self.n.states.append(copy.deepcopy(
                kwargs['agent_state']['agent_state']))


class Server(object):
    """RPC servers on the plugin and report topics; n_rpc's TRANSPORT is
    the fake one."""

    def __init__(self, neutron):
        if n_rpc.TRANSPORT is None:
            # The clients read their options from cfg.CONF.
            n_rpc.TRANSPORT = oslo_messaging.get_rpc_transport(
                cfg.CONF, url='fake:/')
        policy = dispatcher.DefaultRPCAccessPolicy
        self.servers = []
        for topic, endpoints in (
                (topics.PLUGIN, [PluginEndpoint(neutron),
                                 SecurityGroupEndpoint(neutron)]),
                (topics.REPORTS, [StateEndpoint(neutron)])):
            target = oslo_messaging.Target(topic=topic, server='neutron')
            s = oslo_messaging.get_rpc_server(
                n_rpc.TRANSPORT, target, endpoints, executor='threading',
                serializer=n_rpc.RequestContextSerializer(),
                access_policy=policy)
            s.start()
            self.servers.append(s)

    def stop(self):
        for s in self.servers:
            s.stop()
            s.wait()
