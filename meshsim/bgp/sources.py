"""Route sources and their daemon-wide ids: the ADD-PATH Path Identifiers this node sends.

Owns `SourceKey` and `RouteSources` (BIRD's `rte_src` ids). Pure: stdlib only.
"""

from __future__ import annotations

import heapq
from typing import TypeAlias

__all__ = ["RouteSources", "SourceKey"]

SourceKey: TypeAlias = tuple[str | None, int]
"""(protocol name, received path id) of a route source; (None, 0) for this node's own paths."""


class RouteSources:
    """Daemon-wide route-source ids: the Path Identifiers we send with ADD-PATH (RFC 7911 §3).

    BIRD gives every route source one id from a single allocator, lowest free first, 0 reserved
    (nest/rt-attr.c `rt_get_source`, 1.6 `rte_src_alloc_id`, 2.0 `idm_alloc`), and frees it when the
    source's last route goes (`rt_unlock_source`). A BGP protocol is one source per received path id
    (1.6 proto/bgp/packets.c `bgp_rte_update`: `rt_get_source(&p->p, path_id)`; 0 without ADD-PATH
    receive), and an ADD-PATH sender writes the route's source id into every path it sends
    (attrs.c `bgp_rt_notify`: `src->global_id`). meshsim does the same, with one source for all of
    this node's own paths (BIRD has one per protocol: static blackholes, kernel /32s) and one per
    (neighbour, received path id). An id is held while the Loc-RIB has a path of its source; so ids
    are small, stable while the source lives, never 0, and reused after the source is gone.
    """

    def __init__(self) -> None:
        self._ids: dict[SourceKey, int] = {}
        self._refs: dict[SourceKey, int] = {}
        self._free: list[int] = []  # heap of released ids below _next
        self._next = 1

    def acquire(self, key: SourceKey) -> int:
        """One more path of `key`: its id (allocated with the first)."""
        sid = self._ids.get(key)
        if sid is None:
            sid = self._ids[key] = heapq.heappop(self._free) if self._free else self._allocate()
        self._refs[key] = self._refs.get(key, 0) + 1
        return sid

    def _allocate(self) -> int:
        sid = self._next
        self._next += 1
        return sid

    def release(self, key: SourceKey) -> None:
        """One path of `key` fewer; its id is freed with the last one."""
        n = self._refs[key] - 1
        if n:
            self._refs[key] = n
        else:
            del self._refs[key]
            heapq.heappush(self._free, self._ids.pop(key))

    def id_of(self, key: SourceKey) -> int:
        return self._ids[key]

    def carry_over(self) -> RouteSources:
        """A copy holding the same ids with no paths, for rebuilding a Loc-RIB: re-acquired sources keep their
        ids; call `prune()` afterwards to free the ids of sources that did not come back."""
        copy = RouteSources()
        copy._ids = dict(self._ids)
        copy._free = list(self._free)
        copy._next = self._next
        return copy

    def prune(self) -> None:
        for key in [k for k in self._ids if k not in self._refs]:
            heapq.heappush(self._free, self._ids.pop(key))

    def __len__(self) -> int:
        return len(self._ids)
