"""ML2 mechanism driver: binds ports on hosts running vswitch-agent as
vhost-user, with QEMU as the socket server and vswitchd as the client.

The vif_details carry no *_plug key, so Nova picks os-vif's noop plugin
and only writes libvirt's <interface type='vhostuser'>; the agent wires
the port on vswitchd.
"""
import os

from neutron.plugins.ml2.drivers import mech_agent
from neutron_lib.api.definitions import portbindings
from neutron_lib import constants as n_const

from networking_vswitch import constants


class VswitchMechanismDriver(mech_agent.SimpleAgentMechanismDriverBase):
    """Binds flat and VLAN segments whose physnet the host's agent maps.

    The base class adds the L2 provisioning block in create/update
    port precommit: the port stays DOWN until the agent reports it up.
    """

    def __init__(self):
        super().__init__(
            constants.AGENT_TYPE,
            constants.VIF_TYPE,
            {portbindings.CAP_PORT_FILTER: True,
             portbindings.VHOST_USER_MODE:
                 portbindings.VHOST_USER_MODE_SERVER},
            supported_vnic_types=[portbindings.VNIC_NORMAL])

    @property
    def connectivity(self):
        # A plain L2 switch: Neutron's OVN/L3 features treat the port
        # like any L2-agent port.
        return portbindings.CONNECTIVITY_L2

    def get_allowed_network_types(self, agent=None):
        return [n_const.TYPE_FLAT, n_const.TYPE_VLAN]

    def get_mappings(self, agent):
        return agent['configurations'].get('physnets', {})

    def get_vif_details(self, context, agent, segment):
        details = dict(super().get_vif_details(context, agent, segment))
        sock_dir = agent['configurations'].get(
            'vhostuser_socket_dir', constants.DEFAULT_SOCKET_DIR)
        details[portbindings.VHOST_USER_SOCKET] = socket_path(
            sock_dir, context.current['id'])
        return details


def socket_path(sock_dir, port_id):
    """Where QEMU listens for the port's vhost-user connection."""
    return os.path.join(sock_dir, port_id)
