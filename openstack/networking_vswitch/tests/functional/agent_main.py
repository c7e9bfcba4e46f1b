"""Run vswitch-agent's console script (main(): eventlet, the RPC consumers,
the heartbeat green thread, the sync loop) with neutron-server's RPC side
in the same process on oslo.messaging's fake transport, which works here
because both ends share the process. Prints JSON with what neutron-server
saw once the port is up and two heartbeats arrived, then exits.

Usage: python -m networking_vswitch.tests.functional.agent_main PORT_JSON
--config-file agent.ini, PORT_JSON {"id": port id, "port": fake_neutron's
port entry}.
"""
from neutron.common import eventlet_utils

eventlet_utils.monkey_patch()

import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import eventlet  # noqa: E402

from networking_vswitch.agent import vswitch_agent  # noqa: E402
from networking_vswitch.tests.functional import fake_neutron  # noqa: E402


def main():
    spec = json.loads(sys.argv[1])
    neutron = fake_neutron.Neutron()
    neutron.ports[spec['id']] = spec['port']
    servers = []
    rpc_objects = vswitch_agent._rpc_objects

    def with_server(conf):
        # After main() set up the transport from transport_url.
        servers.append(fake_neutron.Server(neutron))
        return rpc_objects(conf)

    vswitch_agent._rpc_objects = with_server
    vswitch_agent.check_transport_url = lambda url: None
    eventlet.spawn(vswitch_agent.main, sys.argv[2:])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with neutron.lock:
            if neutron.up and len(neutron.states) >= 2:
                break
        time.sleep(0.1)
    with neutron.lock:
        print(json.dumps({'up': neutron.up, 'states': neutron.states}))
    sys.stdout.flush()
    os._exit(0)


if __name__ == '__main__':
    main()
