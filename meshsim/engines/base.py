"""What a node agent needs from a BGP engine, whichever it is (meshsim's own sessions or real BIRD).

Owns the `Engine` Protocol and the small views every engine reports in the same shape: `SessionView`
(one row of `calicoctl node status` plus what the runner measures), `PeerCounts` (UPDATE and route
counts per peer) and `EngineUsage` (CPU and memory, with how they were measured). The node agent
(meshsim/agent/agent.py) serves these over HTTP; it never knows which engine it drives.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from meshsim.agent.config import LocalState, NodeConfig
from meshsim.routes.history import RouteHistory

from meshsim.report.metrics import COUNTER_KEYS  # noqa: E402  the one list of per-peer counters


@dataclass
class SessionView:
    name: str  # Mesh_192_168_0_82
    peer: str  # the declared peer address
    peer_node: str | None
    type: str  # node-to-node mesh | node specific | global
    state: str  # BIRD protocol state: up | start | down
    info: str  # BIRD's info column: Established, Active Socket: Connection refused, ...
    since_ts: float | None
    established_at: float | None
    flaps: int = 0
    passive: bool = False
    rr_client: bool = False
    stale_routes: int = 0  # routes of this peer kept as stale (graceful restart)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class PeerCounts:
    """Counted per prefix (BIRD's `Route change stats`), plus BGP messages where the engine sees them."""

    updates_sent: int = 0
    updates_received: int = 0
    withdrawals_sent: int = 0
    withdrawals_received: int = 0
    flaps: int = 0
    messages_sent: dict[str, int] = field(default_factory=dict)  # by type: open, update, keepalive, ...
    messages_received: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class EngineUsage:
    engine: str  # meshsim | bird
    pid: int | None  # the process the BGP runs in (a worker's, or BIRD's)
    cpu_seconds: float
    rss_bytes: int
    method: str  # how the figures were measured, said in reports
    restarts: int = 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class Engine(Protocol):
    """A node's BGP: sessions, the routes it learns, and the table that results."""

    kind: str
    """"meshsim" or "bird"."""
    history: RouteHistory
    """The node's route table over time (what convergence and blackouts are measured on)."""

    @property
    def running(self) -> bool: ...

    async def prepare(self) -> None:
        """A held start (`hold_bgp`): the node up, its BGP waiting for `start()` (the timed cold start)."""

    async def start(self) -> None:
        """Start BGP on every session (the node starts, or POST /start)."""

    async def stop(self) -> None:
        """Graceful BGP stop: Cease to every peer, which withdraw at once."""

    async def close(self, paced: bool = False) -> None:
        """Release everything (the node is going away), BIRD's shutdown first: Cease to every peer, at BIRD's
        own pace when `paced` (a node stopped in a run; a run's teardown does not wait)."""

    def freeze(self) -> None:
        """A host crash: silent from now on, connections left open."""

    def kill(self) -> None:
        """SIGKILL: connections reset, no NOTIFICATION (peers keep our routes as stale)."""

    async def set_local(self, local: LocalState) -> None:
        """New IPAM state from the datastore: blocks, pods, what we originate."""

    async def reconfigure(self, config: NodeConfig) -> None:
        """New peers, pools or cluster ID (confd re-rendered): sessions that stay are not flapped."""

    async def teardown(self, peer: str) -> None:
        """Drop one session (`birdc restart NAME`); it comes back by itself."""

    async def refresh(self) -> None:
        """Read what the BGP daemon reports now, before an API answer (BIRD: `show protocols all`); a native
        engine's state is always current."""

    def sessions(self) -> list[SessionView]: ...

    def counters(self) -> dict[str, PeerCounts]: ...

    def brief(self) -> tuple[dict[str, list], dict[str, Any]]:
        """{session: [state, established_at, stale routes, flaps]} and the counter totals, cheaply: a runner
        follows these on every change."""

    async def rib(self) -> dict[str, Any]:
        """Adj-RIB-In per peer, Loc-RIB with best-path reasons, Adj-RIB-Out per peer."""

    def usage(self) -> EngineUsage: ...
