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
    """The session with configured peer `peer` reached Established. `defer`: send it nothing until
    `release_exports()` (we recover from a restart and it speaks graceful restart, RFC 4724 §4.1)."""

    peer: str
    defer: bool = False


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


Event: TypeAlias = (PeerUp | PeerDown | RouteReceived | RouteWithdrawn | EndOfRibReceived | FlushStale
                    | RefreshRequested | Originate)


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


@dataclass(slots=True)
class PeerCounters:
    """Per-peer route counts: one per prefix announced or withdrawn (BIRD's route change stats)."""

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
    stale: set[IPv4Network] = field(default_factory=set)
    """Prefixes of `rib_in` kept from a session that went down gracefully, not re-announced yet."""
    deferred: bool = False
    """Exports to this peer wait for the end of our graceful-restart recovery."""

    def __post_init__(self) -> None:
        self.rib_in = AdjRibIn(self.info)

    @property
    def established(self) -> bool:
        return self.established_since is not None


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
        self._up: list[_PeerState] = []  # established peers, by name (the export fan-out)
        self._ebgp_up: list[_PeerState] = []
        self._out_count: dict[IPv4Network, int] = {}  # prefix -> how many Adj-RIBs-Out hold it
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
            out += self._flush_stale(name)
            del self._peers[name]
        self._refresh_up()
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
            case PeerUp(peer=name, defer=defer):
                return self._peer_up(name, now, defer)
            case PeerDown(peer=name, graceful=graceful):
                return self._peer_down(name, graceful)
            case RouteReceived(peer=name, prefix=prefix, attrs=attrs):
                return self._route_received(name, prefix, attrs)
            case RouteWithdrawn(peer=name, prefix=prefix):
                return self._route_withdrawn(name, prefix)
            case EndOfRibReceived(peer=name) | FlushStale(peer=name):
                return self._flush_stale(name)
            case RefreshRequested(peer=name):
                return self._refresh(name)
            case Originate(prefixes=prefixes):
                return self._originate(frozenset(prefixes))
            case _:
                raise TypeError(f"not a speaker event: {event!r}")

    def _peer_up(self, name: str, now: float, defer: bool = False) -> list[Output]:
        state = self._peers.get(name)
        if state is None:
            return []
        out: list[Output] = []
        if state.established:
            # A second PeerUp means the adapter saw a new session: reset the old one.
            out += self._peer_down(name, graceful=False)
        state.established_since = now
        state.deferred = defer
        self._clear_out(state)
        self._refresh_up()
        # Send the new peer everything export() allows from the Loc-RIB best paths.
        if not defer:
            for prefix in self._locrib.prefixes():
                out += self._sync_peer(state, prefix)
        return out

    def _peer_down(self, name: str, graceful: bool = False) -> list[Output]:
        state = self._peers.get(name)
        if state is None or not state.established:
            return []
        state.established_since = None
        self._clear_out(state)  # the session is gone, and with it what it was told
        self._refresh_up()
        if graceful:
            # RFC 4724 §4.2 (BIRD bgp_handle_graceful_restart: rt_refresh_begin): keep the paths, stale.
            # A second restart before End-of-RIB first drops what is still stale from the first.
            out = self._flush_stale(name)
            state.stale = set(state.rib_in.paths())
            return out
        state.stale.clear()
        state.rib_in.clear()
        return self._propagate(self._locrib.drop_peer(name))

    def _flush_stale(self, name: str) -> list[Output]:
        """BIRD rt_refresh_end(): withdraw the peer's paths still marked stale."""
        state = self._peers.get(name)
        if state is None or not state.stale:
            return []
        changes: list[BestChanged] = []
        for prefix in sorted(state.stale):
            if state.rib_in.withdraw(prefix) is not None:
                changes += self._locrib.withdraw(prefix, name)
        state.stale.clear()
        return self._propagate(changes)

    def _refresh(self, name: str) -> list[Output]:
        """RFC 2918: re-advertise the whole Adj-RIB-Out to the peer."""
        state = self._peers.get(name)
        if state is None or not state.established or state.deferred:
            return []
        self._clear_out(state)
        out: list[Output] = []
        for prefix in self._locrib.prefixes():
            out += self._sync_peer(state, prefix)
        return out

    def _refresh_up(self) -> None:
        self._up = [self._peers[n] for n in sorted(self._peers) if self._peers[n].established]
        self._ebgp_up = [s for s in self._up if s.info.asn != self._config.local_as]

    def _clear_out(self, state: _PeerState) -> None:
        for prefix in state.rib_out:
            n = self._out_count.get(prefix, 0) - 1
            if n > 0:
                self._out_count[prefix] = n
            else:
                self._out_count.pop(prefix, None)
        state.rib_out.clear()

    # -- graceful restart of this node (bird -R) ---------------------------------------------------

    def release_exports(self) -> list[Output]:
        """End of our restart recovery: send every deferred peer what export() allows (RFC 4724 §4.1: a
        restarting speaker defers its advertisements until it has the routes of its peers)."""
        out: list[Output] = []
        for state in self._up:
            if state.deferred:
                state.deferred = False
                for prefix in self._locrib.prefixes():
                    out += self._sync_peer(state, prefix)
        return out

    def deferred(self, peer_name: str) -> bool:
        state = self._peers.get(peer_name)
        return state is not None and state.deferred

    def _route_received(self, name: str, prefix: IPv4Network, attrs: PathAttrs) -> list[Output]:
        state = self._peers.get(name)
        if state is None or not state.established:
            return [Dropped(name, prefix, "peer not established" if state else "unknown peer")]
        state.counters.updates_received += 1
        state.stale.discard(prefix)  # re-announced: no longer stale
        path = Path(prefix, normalize_import(attrs, state.info, self._ctx), state.info)
        why = import_check(path, self._ctx)
        if why is not None:
            state.counters.dropped += 1
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
        state.counters.withdrawals_received += 1
        state.stale.discard(prefix)
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
        memo: dict[str, PathAttrs] = {}  # one best path going to many peers: reflect it once
        targets = self._up
        best = self._locrib.best(prefix)
        source = best[0].source if best else None
        if source is not None and self._ctx.cluster_id is None and source.asn == self._config.local_as \
                and not self._out_count.get(prefix):
            # iBGP split horizon (RFC 4271 §9.2): an iBGP-learned best path goes to no iBGP peer, and no
            # Adj-RIB-Out holds this prefix to withdraw: only eBGP peers need a look.
            targets = self._ebgp_up
        for state in targets:
            if not state.deferred:
                out += self._sync_peer(state, prefix, memo)
        return out

    def _sync_peer(self, state: _PeerState, prefix: IPv4Network,
                   memo: dict[str, PathAttrs] | None = None) -> list[Output]:
        """Bring one peer's Adj-RIB-Out for `prefix` in line with the current best path."""
        best = self._locrib.best(prefix)
        wanted = export(best[0], state.info, self._ctx, memo) if best else None
        sent = state.rib_out.get(prefix)
        if wanted == sent:
            return []
        name = state.info.name
        if wanted is None:
            del state.rib_out[prefix]
            n = self._out_count.get(prefix, 0) - 1
            if n > 0:
                self._out_count[prefix] = n
            else:
                self._out_count.pop(prefix, None)
            state.counters.withdrawals_sent += 1
            return [Withdraw(name, prefix)]
        if sent is None:
            self._out_count[prefix] = self._out_count.get(prefix, 0) + 1
        state.rib_out[prefix] = wanted
        state.counters.updates_sent += 1
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
                    state.counters.dropped += 1
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
        return {name: replace(self._peers[name].counters) for name in sorted(self._peers)}

    def peer_counters(self, peer_name: str) -> PeerCounters:
        """The live counters of one peer (read them, do not keep them)."""
        return self._state(peer_name).counters

    def stale_count(self, peer_name: str) -> int:
        return len(self._state(peer_name).stale)

    def stale(self, peer_name: str) -> frozenset[IPv4Network]:
        """The prefixes of `peer_name` kept as stale (graceful restart), empty when none."""
        return frozenset(self._state(peer_name).stale)
