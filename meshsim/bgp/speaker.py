"""The sans-IO BGP speaker of one meshsim node: events in, outputs out.

Owns: `SpeakerConfig` and `Speaker`, which holds the Adj-RIBs-In, the Loc-RIB and an Adj-RIB-Out
per established peer so only changes go out (the per-peer diff is meshsim.bgp.exports). Its events and
outputs (`PeerUp`, `RouteReceived`, ..., `Announce`, `Withdraw`, `BestChanged`, `Dropped`) live in
meshsim.bgp.events and are re-exported here.
ADD-PATH (RFC 7911) as BIRD's `add paths on`: paths are kept per (neighbour, received path id); a peer
whose session negotiated ADD-PATH send gets every path of a prefix the export rules allow, each with
its route-source id (meshsim.bgp.sources), others get the best path only.
Policy comes from `meshsim.bgp.policy`, best path from `meshsim.bgp.rib`.
About 470 lines: the `Speaker` class is long for the reason its docstring gives.
Pure and synchronous: no asyncio, no exabgp, no sockets, no clock (`now` is passed in).
The router (meshsim.bgp.router) turns Announce/Withdraw into UPDATE messages.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass, replace
from ipaddress import IPv4Address, IPv4Network
from typing import TypeVar

from meshsim.bgp.filters import PrefixCommunities
from meshsim.bgp.events import (Announce, Dropped, EndOfRibReceived, Event, FlushStale, Originate, Output,
                                PeerCounters, PeerDown, PeerUp, RefreshRequested, RouteReceived, RouteWithdrawn,
                                Withdraw)
from meshsim.bgp.exports import MemoCache, OutIndex, PeerState, PrefixExport, sync_peer
from meshsim.bgp.policy import ExportContext, import_check, normalize_import
from meshsim.bgp.rib import AdjRibIn, BestChanged, LocRib, Path, PathKey, PeerInfo, Reason
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


class Speaker:
    """One node's BGP speaker. Feed it events with `handle(event, now)`; act on the
    outputs it returns, in order. It never performs I/O and never reads a clock.

    Exports are computed from the Loc-RIB, the best path only (BIRD exports the best route) or, to a
    peer with ADD-PATH send, every candidate (BIRD `RA_ANY`), and diffed against each established
    peer's Adj-RIB-Out, so an identical announcement is never repeated and only announced paths are
    withdrawn.

    Longer than ~250 lines on purpose: it is BIRD's nest/rt-table.c export loop plus the BGP protocol's
    import side in one place (events, exports, graceful-restart stale handling, views).
    """

    def __init__(self, config: SpeakerConfig, peers: Iterable[PeerInfo] = ()) -> None:
        self._config = config
        self._ctx = config.export_context()
        self._peers: dict[str, PeerState] = {}
        self._locrib = LocRib(config.local_as)
        self._originated: frozenset[IPv4Network] = frozenset()
        self._by_name: list[PeerState] = []  # every configured peer, by name
        self._ebgp_names: list[str] = []  # the configured eBGP peers
        self._up: list[PeerState] = []  # established peers, by name (the export fan-out)
        self._ebgp_up: list[PeerState] = []
        self._add_path_up: list[PeerState] = []
        self._out = OutIndex()
        self._memos: MemoCache = {}  # export decisions per candidate path, reused while it stays (exports.py)
        for peer in peers:
            if peer.name in self._peers:
                raise ValueError(f"duplicate peer name {peer.name!r}")
            self._peers[peer.name] = PeerState(peer)
        self._sort_peers()

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
        changed = False
        for name, info in sorted(wanted.items()):
            state = self._peers.get(name)
            if state is None:
                self._peers[name] = PeerState(info)
            elif state.info != info:
                state.info = info
                changed = True
        self._sort_peers()
        self._refresh_up()
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
        self._sort_peers()  # the local AS may have changed: which peers are eBGP with it
        self._refresh_up()
        return self._rebuild()

    # -- events --------------------------------------------------------------------------

    def handle(self, event: Event, now: float) -> list[Output]:
        match event:
            case PeerUp(peer=name, defer=defer, add_path_send=add_path):
                return self._peer_up(name, now, defer, add_path)
            case PeerDown(peer=name, graceful=graceful):
                return self._peer_down(name, graceful)
            case RouteReceived(peer=name, prefix=prefix, attrs=attrs, path_id=path_id):
                return self._route_received(name, prefix, attrs, path_id)
            case RouteWithdrawn(peer=name, prefix=prefix, path_id=path_id):
                return self._route_withdrawn(name, prefix, path_id)
            case EndOfRibReceived(peer=name) | FlushStale(peer=name):
                return self._flush_stale(name)
            case RefreshRequested(peer=name):
                return self._refresh(name)
            case Originate(prefixes=prefixes):
                return self._originate(frozenset(prefixes))
            case _:
                raise TypeError(f"not a speaker event: {event!r}")

    def _peer_up(self, name: str, now: float, defer: bool = False, add_path: bool = False) -> list[Output]:
        state = self._peers.get(name)
        if state is None:
            return []
        out: list[Output] = []
        if state.established:
            # A second PeerUp means the adapter saw a new session: reset the old one.
            out += self._peer_down(name, graceful=False)
        state.established_since = now
        state.deferred = defer
        state.add_path = add_path
        self._clear_out(state)
        self._mark_up(state)
        # Send the new peer everything export() allows from the Loc-RIB.
        if not defer:
            out += self._sync_all(state)
        return out

    def _peer_down(self, name: str, graceful: bool = False) -> list[Output]:
        state = self._peers.get(name)
        if state is None or not state.established:
            return []
        state.established_since = None
        self._clear_out(state)  # the session is gone, and with it what it was told
        self._mark_down(state)
        if graceful:
            # RFC 4724 §4.2 (BIRD bgp_handle_graceful_restart: rt_refresh_begin): keep the paths, stale.
            # A second restart before End-of-RIB first drops what is still stale from the first.
            out = self._flush_stale(name)
            state.stale = set(state.rib_in.paths())
            return out
        touched = {prefix for prefix, _ in state.rib_in.paths()}
        state.stale.clear()
        state.rib_in.clear()
        return self._propagate(self._locrib.drop_peer(name), touched)

    def _flush_stale(self, name: str) -> list[Output]:
        """BIRD rt_refresh_end(): withdraw the peer's paths still marked stale."""
        state = self._peers.get(name)
        if state is None or not state.stale:
            return []
        changes: list[BestChanged] = []
        touched: set[IPv4Network] = set()
        for prefix, path_id in sorted(state.stale):
            if state.rib_in.withdraw(prefix, path_id) is not None:
                changes += self._locrib.withdraw(prefix, name, path_id)
                touched.add(prefix)
        state.stale.clear()
        return self._propagate(changes, touched)

    def _refresh(self, name: str) -> list[Output]:
        """RFC 2918: re-advertise the whole Adj-RIB-Out to the peer."""
        state = self._peers.get(name)
        if state is None or not state.established or state.deferred:
            return []
        self._clear_out(state)
        return self._sync_all(state)

    def _sort_peers(self) -> None:
        self._by_name = [self._peers[n] for n in sorted(self._peers)]
        self._ebgp_names = [s.info.name for s in self._by_name if s.info.asn != self._config.local_as]

    def _refresh_up(self) -> None:
        """The fan-out lists from scratch (the configured peers changed)."""
        self._up = [s for s in self._by_name if s.established_since is not None]
        self._ebgp_up = [s for s in self._up if s.info.asn != self._config.local_as]
        self._add_path_up = [s for s in self._up if s.add_path]

    def _mark_up(self, state: PeerState) -> None:
        """One peer came up: the fan-out lists gain it in name order (a mesh node's peers come up one by one,
        so no full rebuild per session)."""
        key = _by_peer_name
        bisect.insort(self._up, state, key=key)
        if state.info.asn != self._config.local_as:
            bisect.insort(self._ebgp_up, state, key=key)
        if state.add_path:
            bisect.insort(self._add_path_up, state, key=key)

    def _mark_down(self, state: PeerState) -> None:
        for fan_out in (self._up, self._ebgp_up, self._add_path_up):
            i = bisect.bisect_left(fan_out, state.info.name, key=_by_peer_name)
            if i < len(fan_out) and fan_out[i] is state:
                del fan_out[i]

    def _clear_out(self, state: PeerState) -> None:
        for prefix, path_id in state.rib_out:
            self._out.release(prefix, path_id)
        state.rib_out.clear()

    # -- graceful restart of this node (bird -R) ---------------------------------------------------

    def release_exports(self) -> list[Output]:
        """End of our restart recovery: send every deferred peer what export() allows (RFC 4724 §4.1: a
        restarting speaker defers its advertisements until it has the routes of its peers)."""
        out: list[Output] = []
        for state in self._up:
            if state.deferred:
                state.deferred = False
                out += self._sync_all(state)
        return out

    def deferred(self, peer_name: str) -> bool:
        state = self._peers.get(peer_name)
        return state is not None and state.deferred

    def _route_received(self, name: str, prefix: IPv4Network, attrs: PathAttrs, path_id: int) -> list[Output]:
        state = self._peers.get(name)
        if state is None or not state.established:
            return [Dropped(name, prefix, "peer not established" if state else "unknown peer", path_id)]
        state.counters.updates_received += 1
        state.stale.discard((prefix, path_id))  # re-announced: no longer stale
        path = Path(prefix, normalize_import(attrs, state.info, self._ctx), state.info, path_id)
        why = import_check(path, self._ctx)
        if why is not None:
            state.counters.dropped += 1
            out: list[Output] = [Dropped(name, prefix, why, path_id)]
            # An UPDATE replaces the peer's earlier path for the prefix and path id (RFC 4271 §9.1.4
            # implicit withdraw, RFC 7911 §3); if the new one is ignored, the old one is gone.
            if state.rib_in.withdraw(prefix, path_id) is not None:
                out += self._propagate(self._locrib.withdraw(prefix, name, path_id), (prefix,))
            return out
        if state.rib_in.update(path) == path:
            return []  # the same path again: nothing changes
        return self._propagate(self._locrib.update(path), (prefix,))

    def _route_withdrawn(self, name: str, prefix: IPv4Network, path_id: int) -> list[Output]:
        state = self._peers.get(name)
        if state is None or not state.established:
            return [Dropped(name, prefix, "peer not established" if state else "unknown peer", path_id)]
        state.counters.withdrawals_received += 1
        state.stale.discard((prefix, path_id))
        if state.rib_in.withdraw(prefix, path_id) is None:
            return []
        return self._propagate(self._locrib.withdraw(prefix, name, path_id), (prefix,))

    def _originate(self, prefixes: frozenset[IPv4Network]) -> list[Output]:
        changes: list[BestChanged] = []
        for prefix in sorted(self._originated - prefixes):
            changes += self._locrib.withdraw(prefix, None)
        for prefix in sorted(prefixes - self._originated):
            changes += self._locrib.update(self._local_path(prefix))
        touched = self._originated ^ prefixes
        self._originated = prefixes
        return self._propagate(changes, touched)

    # -- exports ---------------------------------------------------------------------------

    def _local_path(self, prefix: IPv4Network) -> Path:
        return Path(prefix, PathAttrs(next_hop=self._config.router_id), None)

    def _propagate(self, changes: list[BestChanged], touched: Iterable[IPv4Network] = ()) -> list[Output]:
        """Each best-path change, followed by the exports it causes; then, for ADD-PATH peers, the exports
        of the `touched` prefixes whose other candidates changed while the best path stayed."""
        out: list[Output] = []
        for change in changes:
            out.append(change)
            out += self._sync_prefix(change.prefix)
        if self._add_path_up:
            done = {change.prefix for change in changes}
            for prefix in sorted(set(touched) - done):
                out += self._sync_prefix(prefix, add_path_only=True)
        return out

    def _sync_prefix(self, prefix: IPv4Network, add_path_only: bool = False) -> list[Output]:
        """Sync every established peer (or only the ADD-PATH ones) for one prefix."""
        targets = self._add_path_up if add_path_only else self._up
        if self._ctx.cluster_id is None and not self._out.get(prefix) and self._split_horizon(prefix):
            # iBGP split horizon (RFC 4271 §9.2): no path of the prefix may go to an iBGP peer, and no
            # Adj-RIB-Out holds the prefix to withdraw: only eBGP peers need a look.
            targets = [s for s in self._ebgp_up if s.add_path] if add_path_only else self._ebgp_up
        out: list[Output] = []
        if targets:
            view = PrefixExport(prefix, self._locrib, self._memos)
            for state in targets:
                if not state.deferred:
                    out += sync_peer(state, view, self._ctx, self._out)
        return out

    def _split_horizon(self, prefix: IPv4Network, add_path: bool | None = None) -> bool:
        """True when every path an iBGP peer could get for the prefix is iBGP-learned (we are no reflector):
        the best path without ADD-PATH peers (`add_path`: for one peer), else every candidate."""
        local_as = self._config.local_as
        if self._add_path_up if add_path is None else add_path:
            return all(p.source is not None and p.source.asn == local_as for p in self._locrib.candidates(prefix))
        best = self._locrib.best(prefix)
        source = best[0].source if best is not None else None
        return best is None or (source is not None and source.asn == local_as)

    def _sync_all(self, state: PeerState) -> list[Output]:
        """Send one peer everything export() allows from the Loc-RIB. A peer told nothing yet (a session that
        came up, a refresh) skips what iBGP split horizon keeps from it, as `_sync_prefix` does: in a full
        mesh that is every prefix but our own, which makes a node's cold start linear in its peers."""
        out: list[Output] = []
        local_as = self._config.local_as
        split = not state.rib_out and self._ctx.cluster_id is None and state.info.asn == local_as
        if split:  # only a prefix with a path originated here or learned over eBGP can go to an iBGP peer
            prefixes = self._locrib.prefixes_from([None, *self._ebgp_names])
        else:
            prefixes = self._locrib.prefixes()
        for prefix in prefixes:
            if split and self._split_horizon(prefix, state.add_path):
                continue
            out += sync_peer(state, PrefixExport(prefix, self._locrib, self._memos), self._ctx, self._out)
        return out

    def _rebuild(self) -> list[Output]:
        """Recompute the Loc-RIB from scratch under the current config and peers, then
        re-run import checks and exports everywhere. Paths that now fail the import
        check are dropped; paths dropped earlier cannot come back without a session
        reset (as in BIRD, which needs a reconfigure/restart for that). Route sources that
        stay keep their ids."""
        old = self._locrib.snapshot()
        self._memos.clear()  # the export context or the peers changed: every decision is made again
        locrib = LocRib(self._config.local_as, self._locrib.sources.carry_over())
        out: list[Output] = []
        for prefix in sorted(self._originated):
            locrib.update(self._local_path(prefix))
        for name in sorted(self._peers):
            state = self._peers[name]
            kept = state.rib_in.paths()
            state.rib_in = AdjRibIn(state.info)
            for (prefix, path_id), path in sorted(kept.items()):
                path = replace(path, source=state.info)
                why = import_check(path, self._ctx)
                if why is not None:
                    state.counters.dropped += 1
                    state.stale.discard((prefix, path_id))
                    out.append(Dropped(name, prefix, why, path_id))
                    continue
                state.rib_in.update(path)
                locrib.update(path)
        locrib.sources.prune()
        self._locrib = locrib
        new = locrib.snapshot()
        affected: set[IPv4Network] = set(old) | set(new) | set(self._out.prefixes())
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

    def _state(self, peer_name: str) -> PeerState:
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

    def add_path_send(self, peer_name: str) -> bool:
        """The current session with the peer sends every exportable path (ADD-PATH send negotiated)."""
        return self._state(peer_name).add_path

    def adj_rib_in(self, peer_name: str) -> dict[IPv4Network, Path]:
        """One path per prefix: the one with the lowest received path id (the only one without ADD-PATH);
        `adj_rib_in_paths` has them all."""
        return _first_per_prefix(self._state(peer_name).rib_in.paths())

    def adj_rib_in_paths(self, peer_name: str) -> dict[PathKey, Path]:
        """Every path the peer sent us and we accepted, by (prefix, received path id)."""
        return dict(sorted(self._state(peer_name).rib_in.paths().items()))

    def loc_rib(self) -> dict[IPv4Network, tuple[Path, Reason]]:
        return self._locrib.snapshot()

    def candidates(self, prefix: IPv4Network) -> tuple[Path, ...]:
        return self._locrib.candidates(prefix)

    def path_id(self, path: Path) -> int:
        """The path id `path` (a Loc-RIB candidate) is sent with to ADD-PATH peers: its route-source id."""
        return self._locrib.source_id(path)

    def adj_rib_out(self, peer_name: str) -> dict[IPv4Network, PathAttrs]:
        """One path per prefix: the one sent with the lowest path id (the only one without ADD-PATH);
        `adj_rib_out_paths` has them all."""
        return _first_per_prefix(self._state(peer_name).rib_out)

    def adj_rib_out_paths(self, peer_name: str) -> dict[PathKey, PathAttrs]:
        """Everything the peer was told, by (prefix, path id sent)."""
        return dict(sorted(self._state(peer_name).rib_out.items()))

    def originated(self) -> frozenset[IPv4Network]:
        return self._originated

    def counters(self) -> dict[str, PeerCounters]:
        return {name: replace(self._peers[name].counters) for name in sorted(self._peers)}

    def peer_counters(self, peer_name: str) -> PeerCounters:
        """The live counters of one peer (read them, do not keep them)."""
        return self._state(peer_name).counters

    def stale_count(self, peer_name: str) -> int:
        """How many paths of the peer are kept as stale (graceful restart)."""
        return len(self._state(peer_name).stale)

    def stale(self, peer_name: str) -> frozenset[IPv4Network]:
        """The prefixes of `peer_name` with a path kept as stale (graceful restart), empty when none."""
        return frozenset(prefix for prefix, _ in self._state(peer_name).stale)

    def stale_paths(self, peer_name: str) -> frozenset[PathKey]:
        """The (prefix, received path id) of every path of `peer_name` kept as stale."""
        return frozenset(self._state(peer_name).stale)


_V = TypeVar("_V")


def _by_peer_name(state: PeerState) -> str:
    return state.info.name


def _first_per_prefix(paths: dict[PathKey, _V]) -> dict[IPv4Network, _V]:
    out: dict[IPv4Network, _V] = {}
    for (prefix, _), value in sorted(paths.items(), key=lambda item: item[0], reverse=True):
        out[prefix] = value
    return dict(sorted(out.items()))
