"""What goes into and comes out of the sans-IO speaker (meshsim.bgp.speaker), as values.

Owns: the events (`PeerUp`, `PeerDown`, `RouteReceived`, `RouteWithdrawn`, `EndOfRibReceived`,
`FlushStale`, `RefreshRequested`, `Originate`), the outputs (`Announce`, `Withdraw`, `Dropped`;
`BestChanged` comes from meshsim.bgp.rib) and `PeerCounters`. meshsim.bgp.speaker re-exports them all.
ADD-PATH (RFC 7911): a received path and a sent path carry their Path Identifier (`path_id`, 0 when
the session does not use ADD-PATH in that direction). Pure data: stdlib and meshsim.bgp only.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Network
from typing import TypeAlias

from meshsim.bgp.rib import BestChanged
from meshsim.bgp.types import PathAttrs

__all__ = [
    "Announce",
    "BestChanged",
    "Dropped",
    "EndOfRibReceived",
    "Event",
    "FlushStale",
    "Originate",
    "Output",
    "PeerCounters",
    "PeerDown",
    "PeerUp",
    "RefreshRequested",
    "RouteReceived",
    "RouteWithdrawn",
    "Withdraw",
]


# -- events ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PeerUp:
    """The session with configured peer `peer` reached Established. `defer`: send it nothing until
    `release_exports()` (we recover from a restart and it speaks graceful restart, RFC 4724 §4.1).
    `add_path_send`: the session negotiated ADD-PATH send for IPv4 unicast (RFC 7911 §4; BIRD
    `add_path_tx`): the peer gets every path of a prefix that the export rules allow, not only the best."""

    peer: str
    defer: bool = False
    add_path_send: bool = False


@dataclass(frozen=True)
class PeerDown:
    """The session with `peer` left Established (notification, hold timer, TCP close). `graceful`: the
    peer restarts (RFC 4724): its paths stay, marked stale, instead of being withdrawn."""

    peer: str
    reason: str
    graceful: bool = False


@dataclass(frozen=True)
class EndOfRibReceived:
    """`peer` sent End-of-RIB (RFC 4724 §2): its stale paths that it did not re-announce go."""

    peer: str


@dataclass(frozen=True)
class FlushStale:
    """The restart time of `peer` ran out, or it came back without forwarding state: its stale paths go."""

    peer: str


@dataclass(frozen=True)
class RefreshRequested:
    """`peer` sent ROUTE-REFRESH (RFC 2918): send it everything again."""

    peer: str


@dataclass(frozen=True)
class RouteReceived:
    """`peer` announced path `path_id` of `prefix` with `attrs` (one UPDATE NLRI; it replaces the peer's
    earlier path with the same id, RFC 7911 §3; the id is 0 without ADD-PATH receive)."""

    peer: str
    prefix: IPv4Network
    attrs: PathAttrs
    path_id: int = 0


@dataclass(frozen=True)
class RouteWithdrawn:
    """`peer` withdrew path `path_id` of `prefix`."""

    peer: str
    prefix: IPv4Network
    path_id: int = 0


@dataclass(frozen=True)
class Originate:
    """The full set of prefixes this node originates (its affine blocks plus the borrowed
    /32s it hosts). Replaces the previous set."""

    prefixes: frozenset[IPv4Network]


Event: TypeAlias = (PeerUp | PeerDown | RouteReceived | RouteWithdrawn | EndOfRibReceived | FlushStale
                    | RefreshRequested | Originate)


# -- outputs -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Announce:
    """Send `peer` path `path_id` of `prefix` with `attrs`. With ADD-PATH send the id is the route-source id
    of the path (meshsim.bgp.sources.RouteSources), else 0 (and only the best path goes)."""

    peer: str
    prefix: IPv4Network
    attrs: PathAttrs
    path_id: int = 0


@dataclass(frozen=True)
class Withdraw:
    """Send `peer` a withdrawal of path `path_id` of `prefix` (only ever for something announced to it)."""

    peer: str
    prefix: IPv4Network
    path_id: int = 0


@dataclass(frozen=True)
class Dropped:
    """A received path (or withdrawal) was ignored; `reason` says why."""

    peer: str
    prefix: IPv4Network
    reason: str
    path_id: int = 0


Output: TypeAlias = Announce | Withdraw | BestChanged | Dropped


@dataclass(slots=True)
class PeerCounters:
    """Per-peer route counts (BIRD's route change stats), one per *path*: with ADD-PATH a prefix sent or
    received as two paths counts twice. `updates_*` count paths announced (an NLRI), `withdrawals_*` paths
    withdrawn, `dropped` received paths the import check ignored."""

    updates_received: int = 0
    withdrawals_received: int = 0
    updates_sent: int = 0
    withdrawals_sent: int = 0
    dropped: int = 0
