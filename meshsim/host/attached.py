"""The networks this host (or container) reaches without a router, from /proc/net/route (Linux).

Owns `connected_networks()` and `attached(address)`. The compose controller talks only to node addresses on
such a network (meshsim/fabric/remote.py), and the host asks a compose run's nodes only while their bridge is
there (meshsim/run/records.py): otherwise their addresses would go to the default route, to whoever holds them.
"""

from __future__ import annotations

import struct
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path


def connected_networks(path: str = "/proc/net/route") -> list[IPv4Network]:
    """Networks this host (container) reaches without a router: the routes with no gateway."""
    nets: list[IPv4Network] = []
    try:
        lines = Path(path).read_text().splitlines()[1:]
    except OSError:
        return nets
    for line in lines:
        f = line.split()
        if len(f) < 8:
            continue
        dest, gw, mask = (struct.pack("<I", int(x, 16)) for x in (f[1], f[2], f[7]))
        if gw != b"\0\0\0\0" or mask == b"\0\0\0\0":
            continue
        prefix = bin(int.from_bytes(mask, "big")).count("1")
        try:
            nets.append(IPv4Network((IPv4Address(dest), prefix), strict=False))
        except ValueError:
            continue
    return nets


def attached(host: str, networks: list[IPv4Network] | None = None) -> bool:
    """`host` (an IPv4 address) is loopback or on a network this machine is attached to."""
    try:
        addr = IPv4Address(host)
    except ValueError:
        return False
    nets = connected_networks() if networks is None else networks
    return addr.is_loopback or any(addr in net for net in nets)
