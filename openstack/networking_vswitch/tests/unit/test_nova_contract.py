"""Nova contract: for the vif_details the driver binds with, Nova 26's
libvirt VIF driver writes the <interface type='vhostuser'> vswitchd
connects to (QEMU the server, at <socket dir>/<port id>)."""
import unittest
from unittest import mock
from xml.etree import ElementTree

from networking_vswitch.tests.unit import test_mech_vswitch as drv_tests

PORT_ID = '11111111-2222-3333-4444-555555555555'
SOCK = drv_tests.SOCK_DIR + '/' + PORT_ID


def _driver_vif_details():
    """vif_details exactly as the driver produces them for PORT_ID."""
    from neutron.tests.unit.plugins.ml2 import _test_mech_agent as base
    from networking_vswitch.ml2 import mech_vswitch
    d = mech_vswitch.VswitchMechanismDriver()
    d.initialize()
    ctx = base.FakePortContext(
        drv_tests.VswitchBase.AGENT_TYPE, drv_tests.VswitchBase.AGENTS,
        [{'id': 's', 'network_type': 'flat', 'network_id': 'n',
          'physical_network': 'fake_physical_network'}])
    with mock.patch.object(base, 'PORT_ID', PORT_ID):
        d.bind_port(ctx)
    return ctx._bound_vif_details


class NovaVhostuserXMLTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        import nova.conf
        from nova import objects
        import os_vif
        nova.conf.CONF([], project='nova')
        objects.register_all()
        os_vif.initialize()

    def _config(self, details, **flavor_kw):
        from nova.network import model as nm
        from nova import objects
        from nova.virt.libvirt import vif as libvirt_vif
        net = nm.Network(
            id='22222222-3333-4444-5555-666666666666', bridge=None,
            label='private', meta={'mtu': 1500},
            subnets=[nm.Subnet(cidr='10.0.0.0/24',
                               ips=[nm.FixedIP(address='10.0.0.5')])])
        vif = nm.VIF(id=PORT_ID, address='fa:16:3e:00:00:01', network=net,
                     type='vhostuser', vnic_type='normal', active=False,
                     details=details)
        inst = objects.Instance(uuid='aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee',
                                display_name='vm1')
        image = objects.ImageMeta.from_dict({'properties': {}})
        flavor = objects.Flavor(name='m1.tiny', vcpus=1, memory_mb=256,
                                extra_specs={}, **flavor_kw)
        return vif, libvirt_vif.LibvirtGenericVIFDriver().get_config(
            inst, vif, image, flavor, 'kvm')

    def test_osvif_noop_plugin(self):
        from nova.network import os_vif_util
        vif, _ = self._config(_driver_vif_details())
        o = os_vif_util.nova_to_osvif_vif(vif)
        self.assertEqual('VIFVHostUser', o.obj_name())
        self.assertEqual('noop', o.plugin)
        self.assertEqual('server', o.mode)
        self.assertEqual(SOCK, o.path)

    def test_interface_xml(self):
        details = _driver_vif_details()
        self.assertEqual(SOCK, details['vhostuser_socket'])
        _, conf = self._config(details)
        xml = ElementTree.fromstring(conf.to_xml())
        self.assertEqual('interface', xml.tag)
        self.assertEqual('vhostuser', xml.get('type'))
        src = xml.find('source')
        self.assertEqual({'type': 'unix', 'mode': 'server', 'path': SOCK},
                         dict(src.attrib))
        self.assertEqual('virtio', xml.find('model').get('type'))
        self.assertEqual('fa:16:3e:00:00:01', xml.find('mac').get('address'))
        # Nova writes no <mtu> and no reconnect for vhostuser: the switch
        # side must connect and reconnect.
        self.assertIsNone(xml.find('mtu'))
        self.assertIsNone(src.find('reconnect'))

    def test_agent_port_matches_nova_socket(self):
        """The port the agent creates connects to the path Nova wrote."""
        from networking_vswitch.agent import translate
        _, conf = self._config(_driver_vif_details())
        path = ElementTree.fromstring(conf.to_xml()).find('source').get(
            'path')
        body = translate.port_config(
            {'port_id': PORT_ID, 'network_type': 'flat',
             'physical_network': 'fake_physical_network'},
            'br-phys', drv_tests.SOCK_DIR)
        self.assertEqual(path, body['socket'])
        self.assertEqual('client', body['mode'])
