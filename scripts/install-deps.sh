#!/bin/bash
# install-deps.sh: install what the peer tests (internal/testutil and users) need, idempotently.
#   - Debian packages in $PKGS (installed only if missing; apt-get update only then)
#   - hugepages: nr_hugepages >= $MIN_HUGEPAGES and a hugetlbfs mounted (at /dev/hugepages)
# Prints one line per action and nothing when all is in place.
# Not root: prints what is missing and exits 0 (the tests then skip), or 1 when CI=true
# (in CI the tests fail on missing prerequisites, so fail early and say why).
set -euo pipefail

# dpdk-dev: dpdk-testpmd (the `dpdk` package does not ship it). linux-image-amd64 + busybox-static:
# guest kernel and initramfs. tcpdump/ethtool/iproute2: debugging and netns tests.
# python3-neutron/-nova/-os-vif (+ oslotest, placement, wsgi-intercept for their test trees),
# python3-pytest, libvirt: the OpenStack integration in openstack/ (see its tests).
# openvswitch-switch-dpdk: OVS-DPDK, a peer of the benchmark (cmd/vswitch-bench), which runs its
# own ovsdb-server and ovs-vswitchd under a private run directory (the system service stays off).
PKGS="dpdk-dev qemu-system-x86 linux-image-amd64 busybox-static cpio iproute2 ethtool tcpdump python3 gcc libc6-dev openvswitch-switch-dpdk"
PKGS="$PKGS python3-neutron python3-nova python3-os-vif python3-oslotest python3-placement python3-wsgi-intercept python3-pytest"
PKGS="$PKGS libvirt-daemon-system libvirt-clients python3-libvirt"
# rabbitmq-server: the agent against a real broker and neutron-server (openstack/.../test_agent_rabbit.py);
# the test runs its own broker and epmd on private ports, the system service stays off.
PKGS="$PKGS rabbitmq-server"
# 2 MiB pages: a few testpmd -m 256 processes, plus OVS-DPDK's dpdk-socket-mem in the benchmark.
MIN_HUGEPAGES=${MIN_HUGEPAGES:-1536}
OVS_DPDK_VSWITCHD=/usr/lib/openvswitch-switch-dpdk/ovs-vswitchd-dpdk
HUGE_MNT=/dev/hugepages

missing_pkgs=""
for p in $PKGS; do
	status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
	[ "$status" = "install ok installed" ] || missing_pkgs="$missing_pkgs $p"
done
missing_pkgs=${missing_pkgs# }

nr=$(cat /proc/sys/vm/nr_hugepages)
hugetlbfs_mounted() { awk '$3 == "hugetlbfs" { found = 1 } END { exit !found }' /proc/mounts; }

if [ "$(id -u)" != 0 ]; then
	problems=()
	[ -n "$missing_pkgs" ] && problems+=("missing packages: $missing_pkgs")
	[ "$nr" -lt "$MIN_HUGEPAGES" ] && problems+=("nr_hugepages is $nr, want >= $MIN_HUGEPAGES")
	hugetlbfs_mounted || problems+=("no hugetlbfs mounted (want one at $HUGE_MNT)")
	[ ${#problems[@]} = 0 ] && exit 0
	for p in "${problems[@]}"; do echo "install-deps: $p"; done
	if [ "${CI:-}" = true ]; then
		echo "install-deps: CI=true and not root: cannot install the test prerequisites; run this script as root (sudo)" >&2
		exit 1
	fi
	echo "install-deps: not root, nothing changed; tests needing these will skip"
	exit 0
fi

if [ -n "$missing_pkgs" ]; then
	export DEBIAN_FRONTEND=noninteractive
	echo "install-deps: apt-get update"
	apt-get update -qq
	echo "install-deps: apt-get install $missing_pkgs"
	# Everything the tests use is in Depends (seabios/ipxe-qemu for QEMU, the PMDs via libdpdk-dev).
	apt-get install -y -qq --no-install-recommends $missing_pkgs >/dev/null
fi

# The DPDK build of ovs-vswitchd; the default alternative is the kernel-datapath one.
if [ -x "$OVS_DPDK_VSWITCHD" ] && [ "$(readlink -f /etc/alternatives/ovs-vswitchd 2>/dev/null)" != "$OVS_DPDK_VSWITCHD" ]; then
	update-alternatives --set ovs-vswitchd "$OVS_DPDK_VSWITCHD" >/dev/null
	echo "install-deps: ovs-vswitchd alternative -> $OVS_DPDK_VSWITCHD"
fi
# The package starts the system openvswitch-switch service where an init system runs; it would
# take hugepages and the CPUs the benchmark pins. Stop it and keep it from starting at boot.
if [ -e /var/run/openvswitch/ovsdb-server.pid ] || [ -e /var/run/openvswitch/ovs-vswitchd.pid ]; then
	/usr/share/openvswitch/scripts/ovs-ctl stop >/dev/null 2>&1 || true
	echo "install-deps: stopped the system openvswitch-switch service"
fi
if [ -e /etc/init.d/openvswitch-switch ] && ls /etc/rc[2-5].d/S*openvswitch-switch >/dev/null 2>&1; then
	update-rc.d openvswitch-switch disable >/dev/null 2>&1 || true
	echo "install-deps: disabled the openvswitch-switch service at boot"
fi

if [ "$nr" -lt "$MIN_HUGEPAGES" ]; then
	echo "$MIN_HUGEPAGES" >/proc/sys/vm/nr_hugepages
	got=$(cat /proc/sys/vm/nr_hugepages)
	echo "install-deps: nr_hugepages $nr -> $got"
	# The kernel grants fewer pages when memory is fragmented.
	if [ "$got" -lt "$MIN_HUGEPAGES" ]; then
		echo "install-deps: warning: only $got hugepages could be reserved" >&2
	fi
fi

if ! hugetlbfs_mounted; then
	mkdir -p "$HUGE_MNT"
	mount -t hugetlbfs -o pagesize=2M nodev "$HUGE_MNT"
	echo "install-deps: mounted hugetlbfs at $HUGE_MNT"
fi
