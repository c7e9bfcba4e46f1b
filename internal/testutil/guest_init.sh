#!/bin/sh
# /init of the test guest initramfs (busybox). Embedded by initramfs.go.
# Driven by the kernel command line:
#   lab.ip=10.0.0.1/24 lab.peer=10.0.0.2 lab.role=ping|wait|pingloop|tcprecv|tcpsend|tcpserve|probe lab.count=3 lab.mtu=1500
# Markers on the serial console (tests grep for them):
#   LAB-NET-UP <uptime>s ip=<ip> <mac>
#   LAB-QUEUES cpus=<n> rx=<n> tx=<n>                   (eth0's enabled queues)
#   LAB-PING-OK <uptime>s | LAB-PING-FAIL <uptime>s   (role ping, then power off)
#   LAB-WAITING                                         (role wait, then idle)
#   LAB-PINGLOOP                                        (role pingloop, then one line per reply)
#   LAB-TCP-SERVING                                     (role tcpserve: answers LAB-TCP-HELLO on 5001)
#   LAB-PROBING, LAB-TCP-OK | LAB-TCP-FAIL              (role probe: pingloop plus a TCP try each second)
#   LAB-MTU <mtu>                                       (lab.mtu given; eth0's MTU after setting it)
#   LAB-NET-FAIL <reason>                               (no eth0)
export PATH=/bin

mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null

up_s() { cut -d' ' -f1 /proc/uptime; }

# Modules in dependency order (written by the builder); busybox insmod does no dependency resolution.
for m in $(cat /lib/modules/order); do
	insmod /lib/modules/$m.ko || echo "LAB-INSMOD-FAIL $m"
done

IP=; PEER=; ROLE=; COUNT=3; MTU=; KB=10240
for kv in $(cat /proc/cmdline); do
	case "$kv" in
	lab.ip=*) IP=${kv#lab.ip=} ;;
	lab.peer=*) PEER=${kv#lab.peer=} ;;
	lab.role=*) ROLE=${kv#lab.role=} ;;
	lab.count=*) COUNT=${kv#lab.count=} ;;
	lab.mtu=*) MTU=${kv#lab.mtu=} ;;
	lab.kb=*) KB=${kv#lab.kb=} ;;
	lab.txmask=*) TXMASK=${kv#lab.txmask=} ;;
	esac
done
[ -n "$ROLE" ] || ROLE=wait

ip link set lo up

# virtio_net probes synchronously, but give the device a moment anyway.
for i in $(seq 1 50); do
	[ -e /sys/class/net/eth0 ] && break
	sleep 0.1
done
if [ ! -e /sys/class/net/eth0 ]; then
	echo "LAB-NET-FAIL no eth0"
	[ "$ROLE" = ping ] && { echo "LAB-PING-FAIL $(up_s)s"; poweroff -f; }
	while true; do sleep 3600; done
fi

# MTU must be set before the link goes up.
if [ -n "$MTU" ]; then
	ip link set eth0 mtu "$MTU"
	echo "LAB-MTU $(cat /sys/class/net/eth0/mtu)"
fi
ip link set eth0 up
[ -n "$IP" ] && ip addr add "$IP" dev eth0
echo "LAB-NET-UP $(up_s)s ip=$IP $(cat /sys/class/net/eth0/address)"
# sysfs lists the queues the driver enabled (real_num_rx/tx_queues).
echo "LAB-QUEUES cpus=$(nproc) rx=$(ls /sys/class/net/eth0/queues | grep -c rx-) tx=$(ls /sys/class/net/eth0/queues | grep -c tx-)"

case "$ROLE" in
tcprecv)
	# Receive one TCP stream on port 5001 and report what arrived.
	echo "LAB-WAITING"
	nc -l -p 5001 >/tmp/rx
	echo "LAB-TCP-RX $(md5sum </tmp/rx | cut -d' ' -f1) $(wc -c </tmp/rx)"
	while true; do sleep 3600; done
	;;
tcpsend)
	# Send lab.kb KiB of random data to PEER:5001 once the peer answers.
	dd if=/dev/urandom of=/tmp/tx bs=1024 count="$KB" 2>/dev/null
	echo "LAB-TCP-TX $(md5sum </tmp/tx | cut -d' ' -f1) $(wc -c </tmp/tx)"
	for i in $(seq 1 60); do ping -c 1 -W 1 "$PEER" >/dev/null 2>&1 && break; done
	sleep 1
	# lab.txmask pins nc to CPUs (hex mask), so the driver's XPS map sends
	# on those CPUs' transmit queues.
	if [ -n "$TXMASK" ]; then
		taskset "$TXMASK" nc "$PEER" 5001 </tmp/tx
	else
		nc "$PEER" 5001 </tmp/tx
	fi
	echo "LAB-TCP-DONE rc=$? $(up_s)s"
	while true; do sleep 3600; done
	;;
ping)
	ok=0
	# Each try waits up to 1 s for a reply, so this allows about a minute for the switch.
	for i in $(seq 1 60); do
		if ping -c 1 -W 1 "$PEER" >/dev/null 2>&1; then ok=1; break; fi
	done
	if [ $ok = 1 ] && ping -c "$COUNT" -i 0.2 "$PEER"; then
		echo "LAB-PING-OK $(up_s)s"
	else
		echo "LAB-PING-FAIL $(up_s)s"
	fi
	poweroff -f
	;;
tcpserve)
	# One connection at a time on port 5001, each answered with a line.
	(while true; do echo LAB-TCP-HELLO | nc -l -p 5001; done) &
	echo "LAB-TCP-SERVING"
	while true; do sleep 3600; done
	;;
probe)
	# Ping PEER continuously (one line per reply) and try a TCP
	# connection to PEER:5001 every second (a role tcpserve peer).
	echo "LAB-PROBING"
	(while true; do ping -i 0.2 "$PEER"; sleep 1; done) &
	while true; do
		if nc -w 1 "$PEER" 5001 </dev/null 2>/dev/null | grep -q LAB-TCP-HELLO; then
			echo "LAB-TCP-OK"
		else
			echo "LAB-TCP-FAIL"
		fi
		sleep 1
	done
	;;
pingloop)
	echo "LAB-PINGLOOP"
	# ping only exits on errors; restart it so the loop really is endless.
	while true; do
		ping -i 0.2 "$PEER"
		sleep 1
	done
	;;
*)
	echo "LAB-WAITING"
	while true; do sleep 3600; done
	;;
esac
