"""Routing information bases and BIRD's best-path selection.

Owns: `PeerInfo` (who a path came from), `Path`, `Reason`, `best_path()`, the per-peer
`AdjRibIn`, and the `LocRib`, which keeps every candidate path per prefix (one per source and received
ADD-PATH path id), numbers their sources (`meshsim.bgp.sources`) and returns `BestChanged`
diffs from each change (GoBGP's `TableManager.Update` shape).
Pure and synchronous: imports nothing but the stdlib and `meshsim.bgp.{types,sources}`; no asyncio,
no exabgp, no sockets, no clock. Export and import rules live in `meshsim.bgp.policy`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import TypeAlias

from meshsim.bgp.filters import Filter
from meshsim.bgp.sources import RouteSources, SourceKey
from meshsim.bgp.types import PathAttrs

__all__ = [
    "AdjRibIn",
    "BestChanged",
    "LocRib",
    "Path",
    "PathKey",
    "PeerInfo",
    "Reason",
    "RouteSources",
    "SourceKey",
    "best_path",
]


@dataclass(frozen=True)
class PeerInfo:
    """A configured BGP neighbour, as confd would render its `protocol bgp` block."""

    name: str
    """Calico protocol name, e.g. "Mesh_192_168_0_82", "Node_192_168_0_10", "Global_10_0_0_1"."""
    address: IPv4Address
    """The declared peer address (the node IP, never the 127.x the session runs on)."""
    router_id: IPv4Address
    """The peer's BGP identifier; equal to its address in meshsim."""
    asn: int
    rr_client: bool = False
    """True when this peer is *our* route-reflector client (`rr client;` in our config)."""
    import_filters: tuple[Filter, ...] = ()
    """The BGPFilters of the peer's BGPPeer, importV4 rules, in order (confd: called first in `import filter`)."""
    export_filters: tuple[Filter, ...] = ()
    """The same filters' exportV4 rules (called before calico_export_to_bgp_peers in `export filter`)."""
    keep_next_hop: bool = False
    """BGPPeer keepOriginalNextHop: `next hop keep;` toward an eBGP peer."""
    allow_local_as: int = 0
    """BGPPeer numAllowedLocalASNumbers: `allow local as N;` (our AS may appear N times in a received AS_PATH)."""


@dataclass(frozen=True)
class Path:
    """One path to a prefix: its attributes and where it came from."""

    prefix: IPv4Network
    attrs: PathAttrs
    source: PeerInfo | None
    """The neighbour it was learned from; None for a locally originated path."""
    path_id: int = 0
    """The Path Identifier the neighbour sent it with (RFC 7911 §3); 0 when the session has no ADD-PATH
    receive, and for local paths. One neighbour may send several paths of a prefix, one per path id."""

    @property
    def is_local(self) -> bool:
        return self.source is None


class Reason(enum.Enum):
    """The best-path step at which the winner beat the runner-up (GoBGP's BestPathReason).

    Members are listed in the order `best_path` applies them (after ONLY_PATH).
    """

    ONLY_PATH = "only-path"
    LOCAL_ORIGIN = "local-origin"
    LOCAL_PREF = "local-pref"
    AS_PATH = "as-path-length"
    ORIGIN = "origin"
    MED = "med"
    EXTERNAL = "external-over-internal"
    ROUTER_ID = "router-id"
    CLUSTER_LIST = "cluster-list-length"
    PEER_ADDRESS = "peer-address"


# --------------------------------------------------------------------------------------
# Best-path selection
#
# BIRD `bgp_rte_better()` (proto/bgp/attrs.c), applied as successive elimination: each
# step keeps only the candidates no other candidate beats at that step, and the step
# that leaves one candidate is the Reason. Every step but MED is a total order on a key,
# so this equals pairwise comparison; MED is compared only between paths from the same
# neighbouring AS (RFC 4271 §9.1.2.2 c), which is not transitive, and elimination is
# what makes the result independent of input order (BIRD's `deterministic med`).
# A comparator returns < 0 when `a` is better than `b`, > 0 when worse, 0 on a tie.
# --------------------------------------------------------------------------------------

_Comparator = Callable[[Path, Path, "int | None"], int]


def _cmp(x: object, y: object) -> int:
    return (x > y) - (x < y)  # type: ignore[operator]


def _by_local_origin(a: Path, b: Path, local_as: int | None) -> int:
    # BIRD nest rte_better(): a static/local route (preference 200) beats BGP (100).
    return _cmp(a.source is not None, b.source is not None)


def _by_local_pref(a: Path, b: Path, local_as: int | None) -> int:
    # RFC 4271 §9.1.1: degree of preference = LOCAL_PREF, higher is better.
    return _cmp(b.attrs.local_pref, a.attrs.local_pref)


def _by_as_path(a: Path, b: Path, local_as: int | None) -> int:
    # RFC 4271 §9.1.2.2 a): shorter AS_PATH.
    return _cmp(len(a.attrs.as_path), len(b.attrs.as_path))


def _by_origin(a: Path, b: Path, local_as: int | None) -> int:
    # RFC 4271 §9.1.2.2 b): lower ORIGIN (IGP < EGP < INCOMPLETE).
    return _cmp(int(a.attrs.origin), int(b.attrs.origin))


def _neighbour_as(path: Path, local_as: int | None) -> int | None:
    # BIRD bgp_get_neighbor(): first AS of the AS_PATH, or our own AS when it is empty.
    if path.attrs.as_path:
        return path.attrs.as_path[0]
    return local_as if local_as is not None else (path.source.asn if path.source else None)


def _by_med(a: Path, b: Path, local_as: int | None) -> int:
    # RFC 4271 §9.1.2.2 c): lower MED, only between paths from the same neighbouring AS;
    # a missing MED counts as 0 (BIRD `default bgp_med`, RFC 4271 §9.1.2.2 c).
    if _neighbour_as(a, local_as) != _neighbour_as(b, local_as):
        return 0
    return _cmp(a.attrs.med or 0, b.attrs.med or 0)


def _is_external(path: Path, local_as: int | None) -> bool:
    return path.source is not None and local_as is not None and path.source.asn != local_as


def _by_external(a: Path, b: Path, local_as: int | None) -> int:
    # RFC 4271 §9.1.2.2 d): prefer a path learned over eBGP to one learned over iBGP.
    # (Step e, IGP cost to the next hop, is skipped: every meshsim next hop is on-link.)
    return _cmp(not _is_external(a, local_as), not _is_external(b, local_as))


def _originator(path: Path) -> IPv4Address | None:
    # RFC 4456 §9: ORIGINATOR_ID replaces the peer's BGP Identifier when present.
    if path.attrs.originator_id is not None:
        return path.attrs.originator_id
    return path.source.router_id if path.source is not None else None


def _by_router_id(a: Path, b: Path, local_as: int | None) -> int:
    # RFC 4271 §9.1.2.2 f) with RFC 4456 §9: lowest ORIGINATOR_ID / BGP Identifier.
    oa, ob = _originator(a), _originator(b)
    if oa is None or ob is None:
        return 0
    return _cmp(oa, ob)


def _by_cluster_list(a: Path, b: Path, local_as: int | None) -> int:
    # RFC 4456 §9: shorter CLUSTER_LIST, inserted between RFC 4271 §9.1.2.2 f) and g).
    return _cmp(len(a.attrs.cluster_list), len(b.attrs.cluster_list))


def _by_peer_address(a: Path, b: Path, local_as: int | None) -> int:
    # RFC 4271 §9.1.2.2 g): lowest peer address. The protocol name (two sessions to one address) and
    # then the received path id (RFC 7911: two paths of one neighbour that tie on everything else)
    # break the last ties, so the order is total and input-order independent.
    if a.source is None or b.source is None:
        return 0
    return _cmp((a.source.address, a.source.name, a.path_id), (b.source.address, b.source.name, b.path_id))


BEST_PATH_STEPS: tuple[tuple[Reason, _Comparator], ...] = (
    (Reason.LOCAL_ORIGIN, _by_local_origin),
    (Reason.LOCAL_PREF, _by_local_pref),
    (Reason.AS_PATH, _by_as_path),
    (Reason.ORIGIN, _by_origin),
    (Reason.MED, _by_med),
    (Reason.EXTERNAL, _by_external),
    (Reason.ROUTER_ID, _by_router_id),
    (Reason.CLUSTER_LIST, _by_cluster_list),
    (Reason.PEER_ADDRESS, _by_peer_address),
)
"""BIRD `bgp_rte_better()` order. Note BIRD (and RFC 4456 §9) compares ORIGINATOR_ID
before CLUSTER_LIST length."""


def _stable_key(path: Path) -> tuple[int, IPv4Address, str, int, str]:
    src = path.source
    if src is None:
        return (0, IPv4Address(0), "", path.path_id, repr(path.attrs))
    return (1, src.address, src.name, path.path_id, repr(path.attrs))


def best_path(paths: Sequence[Path], local_as: int | None = None) -> tuple[Path, Reason] | None:
    """The best of `paths` and the step that decided it, or None if there are none.

    `local_as` enables RFC 4271 §9.1.2.2 d) (eBGP over iBGP) and gives the neighbour AS
    of paths with an empty AS_PATH; without it every path is treated as internal.
    The result does not depend on the order of `paths`.
    """
    return _select(list(dict.fromkeys(paths)), local_as)


def _select(candidates: Sequence[Path], local_as: int | None) -> tuple[Path, Reason] | None:
    """`best_path` of distinct paths. Elimination keeps, at each step, the candidates no other one beats, so
    the winner does not depend on the order; two candidates (the common case of a prefix learned twice) need
    only one comparison per step, since every comparator is antisymmetric."""
    if not candidates:
        return None
    if len(candidates) == 1:
        return candidates[0], Reason.ONLY_PATH
    if len(candidates) == 2:
        a, b = candidates
        for reason, compare in BEST_PATH_STEPS:
            c = compare(a, b, local_as)
            if c:
                return (a if c < 0 else b), reason
        return min(candidates, key=_stable_key), Reason.PEER_ADDRESS
    for reason, compare in BEST_PATH_STEPS:
        survivors = [
            p for p in candidates if not any(compare(q, p, local_as) < 0 for q in candidates)
        ]
        if len(survivors) == 1:
            return survivors[0], reason
        candidates = survivors
    # Only identical (source, path id) pairs remain (cannot happen in a LocRib, which keys by them).
    return min(candidates, key=_stable_key), Reason.PEER_ADDRESS


# --------------------------------------------------------------------------------------
# RIBs
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BestChanged:
    """The best path to `prefix` changed (BIRD's rt_notify(new, old)). `reason` is None
    when there is no longer a path."""

    prefix: IPv4Network
    old: Path | None
    new: Path | None
    reason: Reason | None


PathKey: TypeAlias = tuple[IPv4Network, int]
"""(prefix, path id): one path of one neighbour in an Adj-RIB-In, or one path sent in an Adj-RIB-Out."""

class AdjRibIn:
    """The paths one neighbour has sent us and we accepted (after the import check), keyed by
    (prefix, path id) (RFC 7911 §3: with ADD-PATH a neighbour sends several paths per prefix,
    an UPDATE replaces only the path with the same id). Without ADD-PATH receive every id is 0,
    which is also the default of `get`, `withdraw` and `prefix in rib`."""

    def __init__(self, peer: PeerInfo) -> None:
        self.peer = peer
        self._paths: dict[PathKey, Path] = {}

    def update(self, path: Path) -> Path | None:
        """Store `path` (implicitly replacing an earlier one with its id); return the one replaced."""
        key = (path.prefix, path.path_id)
        old = self._paths.get(key)
        self._paths[key] = path
        return old

    def withdraw(self, prefix: IPv4Network, path_id: int = 0) -> Path | None:
        return self._paths.pop((prefix, path_id), None)

    def get(self, prefix: IPv4Network, path_id: int = 0) -> Path | None:
        return self._paths.get((prefix, path_id))

    def clear(self) -> list[Path]:
        dropped = list(self._paths.values())
        self._paths.clear()
        return dropped

    def paths(self) -> dict[PathKey, Path]:
        return dict(self._paths)

    def __contains__(self, key: object) -> bool:
        """`(prefix, path_id) in rib`; a bare prefix means path id 0."""
        return (key if isinstance(key, tuple) else (key, 0)) in self._paths

    def __len__(self) -> int:
        return len(self._paths)


def _source_key(source: PeerInfo | str | None) -> str | None:
    if source is None or isinstance(source, str):
        return source
    return source.name


class LocRib:
    """Every candidate path per prefix (one per source and received path id) and the current best.

    Each mutation returns the `BestChanged` diffs it caused (empty when the best path stayed the
    same; a change of another candidate returns nothing, an ADD-PATH exporter asks `sourced()`).
    `sources` numbers the sources of the candidates (`RouteSources`).
    """

    def __init__(self, local_as: int | None = None, sources: RouteSources | None = None) -> None:
        self.local_as = local_as
        self.sources = sources if sources is not None else RouteSources()
        self._candidates: dict[IPv4Network, dict[SourceKey, Path]] = {}
        self._best: dict[IPv4Network, tuple[Path, Reason]] = {}
        self._by_peer: dict[str | None, set[PathKey]] = {}
        self._sorted: list[IPv4Network] | None = None

    # -- mutations ---------------------------------------------------------------------

    def update(self, path: Path) -> list[BestChanged]:
        name = _source_key(path.source)
        key = (name, path.path_id)
        cands = self._candidates.get(path.prefix)
        if cands is None:
            cands = self._candidates[path.prefix] = {}
            self._sorted = None
        if key not in cands:
            self.sources.acquire(key)
            self._by_peer.setdefault(name, set()).add((path.prefix, path.path_id))
        cands[key] = path
        return self._recompute(path.prefix)

    def withdraw(self, prefix: IPv4Network, source: PeerInfo | str | None, path_id: int = 0) -> list[BestChanged]:
        name = _source_key(source)
        if not self._remove(prefix, name, path_id):
            return []
        self._by_peer[name].discard((prefix, path_id))
        return self._recompute(prefix)

    def _remove(self, prefix: IPv4Network, name: str | None, path_id: int) -> bool:
        cands = self._candidates.get(prefix)
        key = (name, path_id)
        if cands is None or key not in cands:
            return False
        del cands[key]
        if not cands:
            del self._candidates[prefix]
            self._sorted = None
        self.sources.release(key)
        return True

    def drop_peer(self, peer_name: str) -> list[BestChanged]:
        """Remove every path of `peer_name` (all its path ids)."""
        touched: set[IPv4Network] = set()
        for prefix, path_id in self._by_peer.pop(peer_name, set()):
            self._remove(prefix, peer_name, path_id)
            touched.add(prefix)
        changes: list[BestChanged] = []
        for prefix in sorted(touched):
            changes.extend(self._recompute(prefix))
        return changes

    def update_many(self, paths: Iterable[Path]) -> list[BestChanged]:
        changes: list[BestChanged] = []
        for path in paths:
            changes.extend(self.update(path))
        return changes

    def _recompute(self, prefix: IPv4Network) -> list[BestChanged]:
        old = self._best.get(prefix)
        cands = self._candidates.get(prefix)
        result = _select(tuple(cands.values()), self.local_as) if cands else None
        if result is None:
            self._best.pop(prefix, None)
        else:
            self._best[prefix] = result
        old_path = old[0] if old else None
        new_path, reason = result if result else (None, None)
        if old_path == new_path:
            return []
        return [BestChanged(prefix, old_path, new_path, reason)]

    # -- queries -----------------------------------------------------------------------

    def best(self, prefix: IPv4Network) -> tuple[Path, Reason] | None:
        return self._best.get(prefix)

    def candidates(self, prefix: IPv4Network) -> tuple[Path, ...]:
        return tuple(self._candidates.get(prefix, {}).values())

    def sourced(self, prefix: IPv4Network) -> list[tuple[int, Path]]:
        """The candidates of `prefix` with their route-source ids (the path ids an ADD-PATH sender uses),
        by id."""
        ids = self.sources.id_of
        return sorted(((ids(key), path) for key, path in self._candidates.get(prefix, {}).items()),
                      key=lambda item: item[0])

    def source_id(self, path: Path) -> int:
        return self.sources.id_of((_source_key(path.source), path.path_id))

    def prefixes(self) -> list[IPv4Network]:
        """Every prefix with a candidate, sorted (kept between changes of the set: a route reflector replays
        the whole table to each peer that comes up)."""
        if self._sorted is None:
            self._sorted = sorted(self._candidates)
        return list(self._sorted)

    def prefixes_from(self, sources: Iterable[str | None]) -> list[IPv4Network]:
        """The prefixes with a candidate from one of `sources` (peer names; None: originated here), sorted."""
        found: set[IPv4Network] = set()
        for name in sources:
            found.update(prefix for prefix, _ in self._by_peer.get(name, ()))
        return sorted(found)

    def snapshot(self) -> dict[IPv4Network, tuple[Path, Reason]]:
        return dict(sorted(self._best.items()))

    def __contains__(self, prefix: object) -> bool:
        return prefix in self._best

    def __len__(self) -> int:
        return len(self._best)
