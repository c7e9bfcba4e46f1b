"""Libvirt domain XML for the libvirt end-to-end test, rendered by Nova 26's
own code: the <interface> comes from LibvirtGenericVIFDriver.get_config for
the vif_details the ML2 driver bound, and guest memory is backed the way Nova
backs a flavor with hw:mem_page_size (hugepages and a NUMA cell with
memAccess='shared'), since vhost-user needs memory vswitchd can map.

The lab-only parts (OPENSTACK.md 3.4): domain type 'qemu' (TCG, no KVM
here), direct kernel boot of the test initramfs, a serial console to a
file, and vectors=0 on the NIC through qemu:override, without which QEMU
7.2 under TCG crashes at the guest's DRIVER_OK on vhost-user (3.3).

Nova registers options on oslo.config's global CONF, as Neutron does, so
this runs in its own interpreter: JSON on stdin
  {"kernel": path, "initrd": path,
   "guests": [{"name", "port_id", "mac", "vif_details", "cmdline",
               "serial"}]}
and JSON {name: xml} on stdout.
"""
import json
import sys
import uuid
from xml.etree import ElementTree

QEMU_NS = 'http://libvirt.org/schemas/domain/qemu/1.0'
MEMORY_KIB = 256 * 1024
PAGE_KIB = 2048


def _setup():
    import nova.conf
    from nova import objects
    import os_vif
    nova.conf.CONF([], project='nova')
    objects.register_all()
    os_vif.initialize()


def interface(g):
    """What Nova writes for the port: VIF -> os-vif (noop) -> libvirt."""
    from nova.network import model as nm
    from nova import objects
    from nova.virt.libvirt import vif as libvirt_vif
    net = nm.Network(id='22222222-3333-4444-5555-666666666666', bridge=None,
                     label='private', meta={'mtu': 1500}, subnets=[])
    vif = nm.VIF(id=g['port_id'], address=g['mac'], network=net,
                 type='vhostuser', vnic_type='normal', active=False,
                 details=g['vif_details'])
    inst = objects.Instance(uuid='aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee',
                            display_name=g['name'])
    image = objects.ImageMeta.from_dict({'properties': {}})
    flavor = objects.Flavor(name='m1.tiny', vcpus=1, memory_mb=256,
                            extra_specs={'hw:mem_page_size': 'large'})
    return libvirt_vif.LibvirtGenericVIFDriver().get_config(
        inst, vif, image, flavor, 'qemu')


def domain(g, kernel, initrd):
    from nova.virt.libvirt import config as vc
    d = vc.LibvirtConfigGuest()
    d.virt_type = 'qemu'
    d.uuid = str(uuid.uuid4())
    d.name = g['name']
    d.memory = MEMORY_KIB
    d.vcpus = 1
    d.os_type, d.os_mach_type = 'hvm', 'pc'
    d.os_kernel, d.os_initrd, d.os_cmdline = kernel, initrd, g['cmdline']
    # hw:mem_page_size=large, as LibvirtDriver renders it.
    d.membacking = vc.LibvirtConfigGuestMemoryBacking()
    page = vc.LibvirtConfigGuestMemoryBackingPage()
    page.size_kb, page.nodeset = PAGE_KIB, [0]
    d.membacking.hugepages = [page]
    d.cpu = vc.LibvirtConfigGuestCPU()
    d.cpu.numa = vc.LibvirtConfigGuestCPUNUMA()
    cell = vc.LibvirtConfigGuestCPUNUMACell()
    cell.id, cell.cpus, cell.memory = 0, {0}, MEMORY_KIB
    cell.memAccess = 'shared'
    d.cpu.numa.cells.append(cell)
    d.add_device(interface(g))
    serial = vc.LibvirtConfigGuestSerial()
    serial.type, serial.source_path = 'file', g['serial']
    d.add_device(serial)
    return with_vectors0(d.to_xml())


def with_vectors0(xml):
    """Add the qemu:override that gives the first NIC (alias net0) no
    MSI-X vectors."""
    ElementTree.register_namespace('qemu', QEMU_NS)
    root = ElementTree.fromstring(xml)
    ovr = ElementTree.SubElement(root, '{%s}override' % QEMU_NS)
    dev = ElementTree.SubElement(ovr, '{%s}device' % QEMU_NS, alias='net0')
    fe = ElementTree.SubElement(dev, '{%s}frontend' % QEMU_NS)
    ElementTree.SubElement(fe, '{%s}property' % QEMU_NS, name='vectors',
                           type='unsigned', value='0')
    return ElementTree.tostring(root, encoding='unicode')


def main():
    req = json.load(sys.stdin)
    _setup()
    json.dump({g['name']: domain(g, req['kernel'], req['initrd'])
               for g in req['guests']}, sys.stdout)


if __name__ == '__main__':
    main()
