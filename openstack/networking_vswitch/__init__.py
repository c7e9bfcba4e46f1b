"""Neutron ML2 mechanism driver and host agent for vswitchd."""
