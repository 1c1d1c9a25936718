"""BGP value types shared by the pure speaker and the ExaBGP adapter.

Owns: `Origin`, `PathAttrs` (the path attributes meshsim carries), `PeerKind`.
Pure data: no asyncio, no exabgp, no clock.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from ipaddress import IPv4Address


class Origin(enum.IntEnum):
    """ORIGIN attribute, RFC 4271 §5.1.1 (lower is preferred, §9.1.2.2 c)."""

    IGP = 0
    EGP = 1
    INCOMPLETE = 2

    @property
    def exabgp(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class PathAttrs:
    """The attributes of one path as carried in an UPDATE.

    `next_hop` is the declared node address (e.g. 192.168.0.81), never the 127.x
    address the session runs on. `originator_id` and `cluster_list` are RFC 4456 §8.
    """

    next_hop: IPv4Address
    local_pref: int = 100
    as_path: tuple[int, ...] = ()
    origin: Origin = Origin.IGP
    med: int | None = None
    originator_id: IPv4Address | None = None
    cluster_list: tuple[IPv4Address, ...] = ()
    communities: tuple[str, ...] = ()
