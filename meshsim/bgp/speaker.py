"""The sans-IO BGP speaker of one meshsim node: events in, outputs out.

Owns: `SpeakerConfig`, the events (`PeerUp`, `PeerDown`, `RouteReceived`, `RouteWithdrawn`,
`Originate`), the outputs (`Announce`, `Withdraw`, `BestChanged`, `Dropped`) and `Speaker`,
which holds the Adj-RIBs-In, the Loc-RIB and an Adj-RIB-Out per established peer so only
changes go out. Policy comes from `meshsim.bgp.policy`, best path from `meshsim.bgp.rib`.
Pure and synchronous: no asyncio, no exabgp, no sockets, no clock (`now` is passed in).
The adapter (meshsim.agent.node) turns Announce/Withdraw into ExaBGP API commands.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv4Network
from typing import TypeAlias

from meshsim.bgp.filters import PrefixCommunities
from meshsim.bgp.types import PathAttrs
from meshsim.bgp.policy import ExportContext, export, import_check, normalize_import
from meshsim.bgp.rib import AdjRibIn, BestChanged, LocRib, Path, PeerInfo, Reason

__all__ = [
    "Announce",
    "BestChanged",
    "Dropped",
    "Event",
    "Originate",
    "Output",
    "PeerCounters",
    "PeerDown",
    "PeerUp",
    "RouteReceived",
    "RouteWithdrawn",
    "Speaker",
    "SpeakerConfig",
    "Withdraw",
]


@dataclass(frozen=True)
class SpeakerConfig:
    """What confd would render for this node's BIRD (the `ExportContext` inputs)."""

    router_id: IPv4Address
    local_as: int
    cluster_id: IPv4Address | None = None
    exportable_pools: tuple[IPv4Network, ...] = ()
    affine_blocks: tuple[IPv4Network, ...] = ()
    rejected_pools: tuple[IPv4Network, ...] = ()
    static_routes: tuple[IPv4Network, ...] = ()
    rr_accept: tuple[IPv4Network, ...] = ()
    communities: tuple[PrefixCommunities, ...] = ()
    host_interface: str = "eth0"
    local_interfaces: tuple[tuple[IPv4Network, str], ...] = ()

    def __post_init__(self) -> None:
        for name in ("exportable_pools", "affine_blocks", "rejected_pools", "static_routes", "rr_accept",
                     "communities", "local_interfaces"):
            object.__setattr__(self, name, tuple(getattr(self, name)))

    def export_context(self) -> ExportContext:
        return ExportContext(
            router_id=self.router_id,
            local_as=self.local_as,
            cluster_id=self.cluster_id,
            exportable_pools=self.exportable_pools,
            affine_blocks=self.affine_blocks,
            rejected_pools=self.rejected_pools,
            static_routes=self.static_routes,
            rr_accept=self.rr_accept,
            communities=self.communities,
            host_interface=self.host_interface,
            local_interfaces=self.local_interfaces,
        )


# -- events ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PeerUp:
    """The session with configured peer `peer` reached Established."""

    peer: str


@dataclass(frozen=True)
class PeerDown:
    """The session with `peer` left Established (notification, hold timer, TCP close)."""

    peer: str
    reason: str


@dataclass(frozen=True)
class RouteReceived:
    """`peer` announced `prefix` with `attrs` (an UPDATE NLRI; replaces an earlier one)."""

    peer: str
    prefix: IPv4Network
    attrs: PathAttrs


@dataclass(frozen=True)
class RouteWithdrawn:
    """`peer` withdrew `prefix`."""

    peer: str
    prefix: IPv4Network


@dataclass(frozen=True)
class Originate:
    """The full set of prefixes this node originates (its affine blocks plus the borrowed
    /32s it hosts). Replaces the previous set."""

    prefixes: frozenset[IPv4Network]


Event: TypeAlias = PeerUp | PeerDown | RouteReceived | RouteWithdrawn | Originate


# -- outputs -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Announce:
    """Send `peer` an UPDATE for `prefix` with `attrs`."""

    peer: str
    prefix: IPv4Network
    attrs: PathAttrs


@dataclass(frozen=True)
class Withdraw:
    """Send `peer` a withdrawal of `prefix` (only ever for something announced to it)."""

    peer: str
    prefix: IPv4Network


@dataclass(frozen=True)
class Dropped:
    """A received route (or withdrawal) was ignored; `reason` says why."""

    peer: str
    prefix: IPv4Network
    reason: str


Output: TypeAlias = Announce | Withdraw | BestChanged | Dropped


@dataclass(frozen=True)
class PeerCounters:
    """Per-peer message counts (one per prefix, as the ExaBGP API reports them)."""

    updates_received: int = 0
    withdrawals_received: int = 0
    updates_sent: int = 0
    withdrawals_sent: int = 0
    dropped: int = 0


@dataclass
class _PeerState:
    info: PeerInfo
    established_since: float | None = None
    rib_in: AdjRibIn = field(init=False)
    rib_out: dict[IPv4Network, PathAttrs] = field(default_factory=dict)
    counters: PeerCounters = field(default_factory=PeerCounters)

    def __post_init__(self) -> None:
        self.rib_in = AdjRibIn(self.info)

    @property
    def established(self) -> bool:
        return self.established_since is not None

    def count(self, **delta: int) -> None:
        c = self.counters
        self.counters = replace(c, **{k: getattr(c, k) + v for k, v in delta.items()})


class Speaker:
    """One node's BGP speaker. Feed it events with `handle(event, now)`; act on the
    outputs it returns, in order. It never performs I/O and never reads a clock.

    Exports are computed from Loc-RIB best paths only (BIRD exports the best route) and
    diffed against each established peer's Adj-RIB-Out, so an identical announcement is
    never repeated and only announced prefixes are withdrawn.
    """

    def __init__(self, config: SpeakerConfig, peers: Iterable[PeerInfo] = ()) -> None:
        self._config = config
        self._ctx = config.export_context()
        self._peers: dict[str, _PeerState] = {}
        self._locrib = LocRib(config.local_as)
        self._originated: frozenset[IPv4Network] = frozenset()
        for peer in peers:
            if peer.name in self._peers:
                raise ValueError(f"duplicate peer name {peer.name!r}")
            self._peers[peer.name] = _PeerState(peer)

    # -- configuration -------------------------------------------------------------------

    @property
    def config(self) -> SpeakerConfig:
        return self._config

    def set_peers(self, peers: Iterable[PeerInfo]) -> list[Output]:
        """Replace the configured peers. A removed peer behaves as if its session went
        down; a changed peer (e.g. `rr client` toggled) keeps its session and routes,
        and everything is re-evaluated under the new peer data."""
        wanted = {p.name: p for p in peers}
        out: list[Output] = []
        for name in sorted(set(self._peers) - set(wanted)):
            out += self._peer_down(name)
            del self._peers[name]
        changed = False
        for name, info in sorted(wanted.items()):
            state = self._peers.get(name)
            if state is None:
                self._peers[name] = _PeerState(info)
            elif state.info != info:
                state.info = info
                changed = True
        if changed:
            out += self._rebuild()
        return out

    def set_config(self, config: SpeakerConfig) -> list[Output]:
        """Apply a new node configuration (affine blocks, pools, cluster id, router id)
        and re-evaluate every import check and export."""
        if config == self._config:
            return []
        self._config = config
        self._ctx = config.export_context()
        return self._rebuild()

    # -- events --------------------------------------------------------------------------

    def handle(self, event: Event, now: float) -> list[Output]:
        match event:
            case PeerUp(peer=name):
                return self._peer_up(name, now)
            case PeerDown(peer=name):
                return self._peer_down(name)
            case RouteReceived(peer=name, prefix=prefix, attrs=attrs):
                return self._route_received(name, prefix, attrs)
            case RouteWithdrawn(peer=name, prefix=prefix):
                return self._route_withdrawn(name, prefix)
            case Originate(prefixes=prefixes):
                return self._originate(frozenset(prefixes))
            case _:
                raise TypeError(f"not a speaker event: {event!r}")

    def _peer_up(self, name: str, now: float) -> list[Output]:
        state = self._peers.get(name)
        if state is None:
            return []
        out: list[Output] = []
        if state.established:
            # A second PeerUp means the adapter saw a new session: reset the old one.
            out += self._peer_down(name)
        state.established_since = now
        # Send the new peer everything export() allows from the Loc-RIB best paths.
        for prefix in self._locrib.prefixes():
            out += self._sync_peer(state, prefix)
        return out

    def _peer_down(self, name: str) -> list[Output]:
        state = self._peers.get(name)
        if state is None or not state.established:
            return []
        state.established_since = None
        state.rib_out.clear()  # the session is gone, and with it what it was told
        state.rib_in.clear()
        return self._propagate(self._locrib.drop_peer(name))

    def _route_received(self, name: str, prefix: IPv4Network, attrs: PathAttrs) -> list[Output]:
        state = self._peers.get(name)
        if state is None or not state.established:
            return [Dropped(name, prefix, "peer not established" if state else "unknown peer")]
        state.count(updates_received=1)
        path = Path(prefix, normalize_import(attrs, state.info, self._ctx), state.info)
        why = import_check(path, self._ctx)
        if why is not None:
            state.count(dropped=1)
            out: list[Output] = [Dropped(name, prefix, why)]
            # An UPDATE replaces the peer's earlier path for the prefix (RFC 4271 §9.1.4
            # implicit withdraw); if the new one is ignored, the old one is gone.
            if state.rib_in.withdraw(prefix) is not None:
                out += self._propagate(self._locrib.withdraw(prefix, name))
            return out
        state.rib_in.update(path)
        return self._propagate(self._locrib.update(path))

    def _route_withdrawn(self, name: str, prefix: IPv4Network) -> list[Output]:
        state = self._peers.get(name)
        if state is None or not state.established:
            return [Dropped(name, prefix, "peer not established" if state else "unknown peer")]
        state.count(withdrawals_received=1)
        if state.rib_in.withdraw(prefix) is None:
            return []
        return self._propagate(self._locrib.withdraw(prefix, name))

    def _originate(self, prefixes: frozenset[IPv4Network]) -> list[Output]:
        changes: list[BestChanged] = []
        for prefix in sorted(self._originated - prefixes):
            changes += self._locrib.withdraw(prefix, None)
        for prefix in sorted(prefixes - self._originated):
            changes += self._locrib.update(self._local_path(prefix))
        self._originated = prefixes
        return self._propagate(changes)

    # -- internals -----------------------------------------------------------------------

    def _local_path(self, prefix: IPv4Network) -> Path:
        return Path(prefix, PathAttrs(next_hop=self._config.router_id), None)

    def _propagate(self, changes: list[BestChanged]) -> list[Output]:
        """Each best-path change, followed by the exports it causes."""
        out: list[Output] = []
        for change in changes:
            out.append(change)
            out += self._sync_prefix(change.prefix)
        return out

    def _sync_prefix(self, prefix: IPv4Network) -> list[Output]:
        out: list[Output] = []
        for name in sorted(self._peers):
            state = self._peers[name]
            if state.established:
                out += self._sync_peer(state, prefix)
        return out

    def _sync_peer(self, state: _PeerState, prefix: IPv4Network) -> list[Output]:
        """Bring one peer's Adj-RIB-Out for `prefix` in line with the current best path."""
        best = self._locrib.best(prefix)
        wanted = export(best[0], state.info, self._ctx) if best else None
        sent = state.rib_out.get(prefix)
        if wanted == sent:
            return []
        name = state.info.name
        if wanted is None:
            del state.rib_out[prefix]
            state.count(withdrawals_sent=1)
            return [Withdraw(name, prefix)]
        state.rib_out[prefix] = wanted
        state.count(updates_sent=1)
        return [Announce(name, prefix, wanted)]

    def _rebuild(self) -> list[Output]:
        """Recompute the Loc-RIB from scratch under the current config and peers, then
        re-run import checks and exports everywhere. Paths that now fail the import
        check are dropped; paths dropped earlier cannot come back without a session
        reset (as in BIRD, which needs a reconfigure/restart for that)."""
        old = self._locrib.snapshot()
        locrib = LocRib(self._config.local_as)
        out: list[Output] = []
        for prefix in sorted(self._originated):
            locrib.update(self._local_path(prefix))
        for name in sorted(self._peers):
            state = self._peers[name]
            kept = state.rib_in.paths()
            state.rib_in = AdjRibIn(state.info)
            for prefix, path in sorted(kept.items()):
                path = replace(path, source=state.info)
                why = import_check(path, self._ctx)
                if why is not None:
                    state.count(dropped=1)
                    out.append(Dropped(name, prefix, why))
                    continue
                state.rib_in.update(path)
                locrib.update(path)
        self._locrib = locrib
        new = locrib.snapshot()
        affected: set[IPv4Network] = set(old) | set(new)
        for state in self._peers.values():
            affected |= set(state.rib_out)
        for prefix in sorted(affected):
            before = old.get(prefix)
            after = new.get(prefix)
            before_path = before[0] if before else None
            after_path, reason = after if after else (None, None)
            if before_path != after_path:
                out.append(BestChanged(prefix, before_path, after_path, reason))
            out += self._sync_prefix(prefix)
        return out

    # -- introspection -------------------------------------------------------------------

    def _state(self, peer_name: str) -> _PeerState:
        state = self._peers.get(peer_name)
        if state is None:
            # KeyError, not meshsim.errors.NotFoundError: that module does not import yet
            # (its `field` attribute shadows dataclasses.field); the adapter maps it.
            raise KeyError(f"no peer named {peer_name!r}; known: {', '.join(sorted(self._peers))}")
        return state

    def peers(self) -> dict[str, PeerInfo]:
        return {name: self._peers[name].info for name in sorted(self._peers)}

    def established_peers(self) -> tuple[str, ...]:
        return tuple(name for name in sorted(self._peers) if self._peers[name].established)

    def established_since(self, peer_name: str) -> float | None:
        """The `now` of the PeerUp that established the session, or None if it is down."""
        return self._state(peer_name).established_since

    def adj_rib_in(self, peer_name: str) -> dict[IPv4Network, Path]:
        return dict(sorted(self._state(peer_name).rib_in.paths().items()))

    def loc_rib(self) -> dict[IPv4Network, tuple[Path, Reason]]:
        return self._locrib.snapshot()

    def candidates(self, prefix: IPv4Network) -> tuple[Path, ...]:
        return self._locrib.candidates(prefix)

    def adj_rib_out(self, peer_name: str) -> dict[IPv4Network, PathAttrs]:
        return dict(sorted(self._state(peer_name).rib_out.items()))

    def originated(self) -> frozenset[IPv4Network]:
        return self._originated

    def counters(self) -> dict[str, PeerCounters]:
        return {name: self._peers[name].counters for name in sorted(self._peers)}
