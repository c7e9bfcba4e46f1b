"""Names shared by the ML2 driver (neutron-server) and the host agent."""

AGENT_TYPE = 'vswitch agent'
AGENT_BINARY = 'vswitch-agent'
VIF_TYPE = 'vhostuser'
# Every port the agent creates on vswitchd carries this name prefix, so a
# resync can tell its ports from ones an operator made by hand.
PORT_PREFIX = 'os-'
SG_PREFIX = 'os-'
DEFAULT_SOCKET_DIR = '/run/vswitch/vhu'
DEFAULT_API_SOCKET = '/run/vswitch/api.sock'
