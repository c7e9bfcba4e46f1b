"""ML2 driver tests on neutron's own mechanism-driver test bases and on
the real ML2 plugin in-process (API, sqlite, provisioning blocks)."""
from unittest import mock

from neutron.db import provisioning_blocks
from neutron.tests.common import helpers
from neutron.tests.unit.plugins.ml2 import _test_mech_agent as base
from neutron.tests.unit.plugins.ml2 import test_plugin
from neutron_lib.api.definitions import portbindings
from neutron_lib import context as n_context

from networking_vswitch import constants
from networking_vswitch.ml2 import mech_vswitch

SOCK_DIR = '/run/vswitch/vhu'
GOOD = {'physnets': {'fake_physical_network': 'br-phys'},
        'vhostuser_socket_dir': SOCK_DIR}
BAD = {'physnets': {'wrong_physical_network': 'br-phys'},
       'vhostuser_socket_dir': SOCK_DIR}


class VswitchBase(base.AgentMechanismBaseTestCase):
    VIF_TYPE = 'vhostuser'
    VIF_DETAILS = {'port_filter': True, 'connectivity': 'l2',
                   'vhostuser_mode': 'server',
                   'vhostuser_socket': SOCK_DIR + '/' + base.PORT_ID}
    AGENT_TYPE = constants.AGENT_TYPE
    AGENTS = [{'alive': True, 'configurations': GOOD, 'host': 'host',
               'agent_type': AGENT_TYPE}]
    AGENTS_DEAD = [{'alive': False, 'configurations': GOOD, 'host': 'dead',
                    'agent_type': AGENT_TYPE}]
    AGENTS_BAD = [{'alive': False, 'configurations': GOOD, 'host': 'bad_1',
                   'agent_type': AGENT_TYPE},
                  {'alive': True, 'configurations': BAD, 'host': 'bad_2',
                   'agent_type': AGENT_TYPE}]

    def setUp(self):
        super().setUp()
        self.driver = mech_vswitch.VswitchMechanismDriver()
        self.driver.initialize()

    def _check_bound(self, context, segment):
        super()._check_bound(context, segment)
        # Nova must pick os-vif's noop plugin: no *_plug key.
        self.assertFalse([k for k in context._bound_vif_details
                          if k.endswith('_plug')])


class VswitchGenericTestCase(VswitchBase, base.AgentMechanismGenericTestCase):
    pass


class VswitchFlatTestCase(VswitchBase, base.AgentMechanismFlatTestCase):
    pass


class VswitchVlanTestCase(VswitchBase, base.AgentMechanismVlanTestCase):
    pass


class VswitchLocalTestCase(VswitchBase):
    """Local and tunnel segments are not ours (yet): no binding."""

    def test_local_and_gre_not_bound(self):
        for seg in ([{'id': 'l', 'network_type': 'local', 'network_id': 'n'}],
                    [{'id': 'g', 'network_type': 'gre', 'network_id': 'n',
                      'segmentation_id': 1234}],
                    [{'id': 'v', 'network_type': 'vxlan', 'network_id': 'n',
                      'segmentation_id': 1234}]):
            ctx = base.FakePortContext(self.AGENT_TYPE, self.AGENTS, seg)
            self.driver.bind_port(ctx)
            self.assertIsNone(ctx._bound_vif_type)


class VswitchProvisioningBlockTestCase(VswitchBase):
    def test_block_inserted_for_compute_port(self):
        ctx = mock.Mock()
        ctx.current = {'id': 'p1', 'device_owner': 'compute:nova',
                       portbindings.VNIC_TYPE: 'normal',
                       'status': 'DOWN'}
        ctx.host = 'host'
        ctx.host_agents.return_value = self.AGENTS
        ctx.original = None
        ctx._plugin_context = 'pctx'
        ctx.segments_to_bind = []
        with mock.patch.object(provisioning_blocks,
                               'add_provisioning_component') as add:
            self.driver.create_port_precommit(ctx)
        add.assert_called_once_with('pctx', 'p1', 'port', 'L2')


class VswitchML2PluginTestCase(test_plugin.Ml2PluginV2TestCase):
    """The real ML2 plugin loads the driver by entry point name."""
    _mechanism_drivers = ['vswitch']

    def setUp(self):
        super().setUp()
        self.ctx = n_context.get_admin_context()
        helpers._register_agent({
            'binary': constants.AGENT_BINARY, 'host': 'host1',
            'topic': 'N/A', 'agent_type': constants.AGENT_TYPE,
            'start_flag': True,
            'configurations': {'physnets': {'physnet1': 'br-phys'},
                               'vhostuser_socket_dir': SOCK_DIR}})

    def _create(self, net_type, host='host1', **net_kw):
        body = {'network': {'name': 'n1', 'admin_state_up': True,
                            'tenant_id': self._tenant_id,
                            'provider:network_type': net_type,
                            'provider:physical_network': 'physnet1'}}
        if net_type == 'vlan':
            body['network']['provider:segmentation_id'] = 100
        req = self.new_create_request('networks', body)
        net = self.deserialize(self.fmt, req.get_response(self.api))
        net = net['network']
        self._make_subnet(self.fmt, {'network': net}, '10.0.0.1',
                          '10.0.0.0/24')
        res = self._create_port(
            self.fmt, net['id'], arg_list=(portbindings.HOST_ID,),
            device_owner='compute:nova', device_id='vm1',
            **{portbindings.HOST_ID: host})
        return self.deserialize(self.fmt, res)['port']

    def _show(self, port_id):
        req = self.new_show_request('ports', port_id)
        return self.deserialize(self.fmt, req.get_response(self.api))['port']

    def test_vlan_port_binds_down_then_active(self):
        port = self._create('vlan')
        self.assertEqual('vhostuser', port[portbindings.VIF_TYPE])
        det = port[portbindings.VIF_DETAILS]
        self.assertEqual(SOCK_DIR + '/' + port['id'], det['vhostuser_socket'])
        self.assertEqual('server', det['vhostuser_mode'])
        self.assertTrue(det['port_filter'])
        self.assertEqual('DOWN', port['status'])
        # What the agent's update_device_up does on the server side.
        provisioning_blocks.provisioning_complete(
            self.ctx, port['id'], 'port', provisioning_blocks.L2_AGENT_ENTITY)
        self.assertEqual('ACTIVE', self._show(port['id'])['status'])

    def test_flat_port_binds(self):
        port = self._create('flat')
        self.assertEqual('vhostuser', port[portbindings.VIF_TYPE])

    def test_no_agent_on_host_binding_fails(self):
        port = self._create('vlan', host='other-host')
        self.assertEqual('binding_failed', port[portbindings.VIF_TYPE])
