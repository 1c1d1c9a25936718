"""meshsim: an emulator of Calico's BGP control plane.

The pure core (resources, selectors, ipam, peering, routetable, expected, trace,
rib, policy, speaker, felix) reads no clock, imports no asyncio and no exabgp.
Adapters (exabgp, node, runner, cli) sit around it; only `meshsim.engines.exabgp`
imports or runs ExaBGP.
"""

__version__ = "0.1.0"
