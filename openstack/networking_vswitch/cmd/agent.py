"""Console script vswitch-agent. Like neutron's own agents it runs on
eventlet, patched before anything else is imported."""
from neutron.common import eventlet_utils

eventlet_utils.monkey_patch()

from networking_vswitch.agent import vswitch_agent  # noqa: E402


def main():
    vswitch_agent.main()
