"""The export side of the speaker: what each peer was told, and bringing that in line with the Loc-RIB.

Owns: `PeerState` (one configured peer as the speaker sees it: Adj-RIB-In, Adj-RIB-Out, counters, stale marks,
ADD-PATH send), `OutIndex` (which path ids of a prefix some Adj-RIB-Out holds), `PrefixExport` (one prefix
exported to many peers) and `sync_peer()`, the diff of one peer's Adj-RIB-Out for one prefix: BIRD's
rt_notify for one protocol, with ADD-PATH (RFC 7911, BIRD `RA_ANY`) every exportable path with its
route-source id, else the best path with id 0. Pure: stdlib and meshsim.bgp only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Network

from meshsim.bgp.events import Announce, Output, PeerCounters, Withdraw
from meshsim.bgp.policy import ExportContext, Memo, export
from meshsim.bgp.rib import AdjRibIn, LocRib, Path, PathKey, PeerInfo
from meshsim.bgp.types import PathAttrs

__all__ = ["MemoCache", "OutIndex", "PeerState", "PrefixExport", "sync_peer"]


@dataclass
class PeerState:
    """One configured peer, as the speaker keeps it."""

    info: PeerInfo
    established_since: float | None = None
    rib_in: AdjRibIn = field(init=False)
    rib_out: dict[PathKey, PathAttrs] = field(default_factory=dict)
    """What the peer was told: (prefix, path id sent) -> attributes; the id is 0 without ADD-PATH send."""
    counters: PeerCounters = field(default_factory=PeerCounters)
    stale: set[PathKey] = field(default_factory=set)
    """Paths of `rib_in` kept from a session that went down gracefully, not re-announced yet."""
    deferred: bool = False
    """Exports to this peer wait for the end of our graceful-restart recovery."""
    add_path: bool = False
    """The current session negotiated ADD-PATH send: the peer gets every exportable path, not only the best."""

    def __post_init__(self) -> None:
        self.rib_in = AdjRibIn(self.info)

    @property
    def established(self) -> bool:
        return self.established_since is not None


class OutIndex:
    """prefix -> path id -> how many Adj-RIBs-Out hold that path: the ids a peer may have to be told to
    withdraw, and, when a prefix has none, the speaker's split-horizon fast path (nobody to withdraw from)."""

    def __init__(self) -> None:
        self._ids: dict[IPv4Network, dict[int, int]] = {}

    def get(self, prefix: IPv4Network) -> dict[int, int] | None:
        return self._ids.get(prefix)

    def add(self, prefix: IPv4Network, path_id: int) -> dict[int, int]:
        ids = self._ids.get(prefix)
        if ids is None:
            ids = self._ids[prefix] = {}
        ids[path_id] = ids.get(path_id, 0) + 1
        return ids

    def release(self, prefix: IPv4Network, path_id: int) -> None:
        ids = self._ids[prefix]
        n = ids[path_id] - 1
        if n:
            ids[path_id] = n
        else:
            del ids[path_id]
            if not ids:
                del self._ids[prefix]

    def prefixes(self) -> list[IPv4Network]:
        return list(self._ids)


MemoCache = dict[tuple[IPv4Network, int], tuple[Path, Memo]]
"""(prefix, route-source id) -> (the candidate, its policy memo): kept by the speaker across exports, valid while
that very Path object is the candidate and the export context stays (the speaker clears it on reconfiguration)."""


class PrefixExport:
    """One prefix being exported to many peers: its best path and candidates with their route-source ids,
    looked up once; the policy memo of each path (meshsim.bgp.policy.export_decision), from `memos` while the
    path is unchanged; and which path ids some Adj-RIB-Out holds."""

    __slots__ = ("prefix", "_locrib", "_best", "_all", "_memos", "_mine", "_sent")

    def __init__(self, prefix: IPv4Network, locrib: LocRib, memos: MemoCache) -> None:
        self.prefix = prefix
        self._locrib = locrib
        self._best: tuple[int, Path] | None | bool = False  # False: not looked up yet
        self._all: list[tuple[int, Path]] | None = None
        self._memos = memos
        self._mine: dict[int, Memo] = {}  # this export's memos by source id (no prefix hashing per peer)
        self._sent: dict[int, int] | None | bool = False

    def best(self) -> tuple[int, Path] | None:
        if self._best is False:
            entry = self._locrib.best(self.prefix)
            self._best = (self._locrib.source_id(entry[0]), entry[0]) if entry else None
        return self._best  # type: ignore[return-value]

    def all(self) -> list[tuple[int, Path]]:
        if self._all is None:
            self._all = self._locrib.sourced(self.prefix)
        return self._all

    def memo(self, source_id: int, path: Path) -> Memo:
        memo = self._mine.get(source_id)
        if memo is None:
            key = (self.prefix, source_id)
            entry = self._memos.get(key)
            if entry is None or entry[0] is not path:
                entry = self._memos[key] = (path, {})
            memo = self._mine[source_id] = entry[1]
        return memo

    def sent_ids(self, index: OutIndex) -> dict[int, int] | None:
        if self._sent is False:
            self._sent = index.get(self.prefix)
        return self._sent  # type: ignore[return-value]

    def add_sent(self, index: OutIndex, path_id: int) -> None:
        self._sent = index.add(self.prefix, path_id)


def sync_peer(state: PeerState, view: PrefixExport, ctx: ExportContext, index: OutIndex) -> list[Output]:
    """Bring one peer's Adj-RIB-Out for one prefix in line with the Loc-RIB: every exportable path with its
    route-source id (ADD-PATH send), or the best path with id 0; withdraw what was sent and is no longer
    wanted, announce what is new or changed, nothing else. Counts one per path (PeerCounters)."""
    info = state.info
    wanted: dict[int, PathAttrs] = {}
    if state.add_path:
        for source_id, path in view.all():
            attrs = export(path, info, ctx, view.memo(source_id, path))
            if attrs is not None:
                wanted[source_id] = attrs
    else:
        best = view.best()
        if best is not None:
            attrs = export(best[1], info, ctx, view.memo(best[0], best[1]))
            if attrs is not None:
                wanted[0] = attrs
    prefix, rib_out, name = view.prefix, state.rib_out, info.name
    out: list[Output] = []
    sent_ids = view.sent_ids(index)
    if sent_ids:
        for path_id in [i for i in sent_ids if i not in wanted and (prefix, i) in rib_out]:
            del rib_out[(prefix, path_id)]
            index.release(prefix, path_id)
            state.counters.withdrawals_sent += 1
            out.append(Withdraw(name, prefix, path_id))
    for path_id, attrs in wanted.items():
        key = (prefix, path_id)
        sent = rib_out.get(key)
        if sent is attrs or sent == attrs:
            continue
        if sent is None:
            view.add_sent(index, path_id)
        rib_out[key] = attrs
        state.counters.updates_sent += 1
        out.append(Announce(name, prefix, attrs, path_id))
    return out
