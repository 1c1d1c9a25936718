"""Convergence and session figures from node snapshots (pure: timestamps come in as data).

Owns `table_diff`, `Expected` (an expected table and its digest), `convergence(expected, snapshots,
since)` -> per-node and cluster figures, the expected session set, `totals`, and percentile helpers.
A node has converged when its actual table equals its expected table line for line (compared by an
order-independent digest of the lines, meshsim.routes.history); it converged *at* the last time its
table changed (nodes record the wall-clock time of every route change), so the figure does not depend
on how often we look.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable

from meshsim.model.peering import Peering, sessions
from meshsim.routes.history import table_digest
from meshsim.routes.routetable import RouteTable

COUNTER_KEYS = ("updates_sent", "updates_received", "withdrawals_sent", "withdrawals_received", "flaps")
"""The per-peer counters every engine reports (meshsim/engines/base.py uses this very tuple)."""


@dataclass(frozen=True)
class TableDiff:
    missing: tuple[str, ...]  # expected lines the node does not have
    extra: tuple[str, ...]  # lines the node has that are not expected

    @property
    def equal(self) -> bool:
        return not self.missing and not self.extra

    def to_json(self) -> dict[str, list[str]]:
        return {"missing": list(self.missing), "extra": list(self.extra)}


def table_diff(expected: RouteTable, actual_ip_text: str) -> TableDiff:
    exp = expected.render_ip().splitlines()
    act = actual_ip_text.splitlines()
    return TableDiff(tuple(line for line in exp if line not in act), tuple(line for line in act if line not in exp))


def expected_sessions(peerings: dict[str, list[Peering]], running: Iterable[str]) -> set[tuple[str, str]]:
    """(node, protocol name) of every session that should be Established among running nodes: configured at
    both ends, not both passive, same password (meshsim.model.peering.session_comes_up)."""
    return {(node, p.name) for node, lst in sessions(peerings, set(running)).items() for p in lst}


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    k = (len(values) - 1) * q
    lo, hi = math.floor(k), math.ceil(k)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def spread(values: list[float]) -> dict[str, float | None]:
    r = lambda v: None if v is None else round(v, 3)  # noqa: E731
    return {"min": r(min(values)) if values else None, "p50": r(percentile(values, 0.5)),
            "p95": r(percentile(values, 0.95)), "max": r(max(values)) if values else None}


@dataclass(frozen=True)
class Expected:
    """A node's expected table and its digest (what a node's summary is compared with)."""

    table: RouteTable
    digest: str

    @classmethod
    def of(cls, table: RouteTable) -> "Expected":
        return cls(table, table_digest(r.render_ip() for r in table.routes))


def expected_digests(tables: dict[str, RouteTable]) -> dict[str, Expected]:
    return {n: Expected.of(t) for n, t in tables.items()}


@dataclass
class Convergence:
    converged: bool
    equal: set[str]
    """Nodes whose table equals their expected table."""
    diffs: dict[str, TableDiff] = field(default_factory=dict)
    """How the other nodes differ, when their tables were fetched (`Observer.explain`)."""
    per_node: dict[str, float] = field(default_factory=dict)  # seconds after `since`
    time: float | None = None
    sessions_expected: int = 0
    sessions_up: int = 0
    sessions_time: float | None = None
    nodes: int = 0

    @property
    def nodes_converged(self) -> int:
        return len(self.equal)

    @property
    def differing(self) -> list[str]:
        return sorted(self.diffs) if self.diffs else []


def convergence(expected: dict[str, Expected], snapshots: dict[str, dict[str, Any]], since: float,
                want_sessions: set[tuple[str, str]]) -> Convergence:
    """Compare every running node's summary (its table digest, its sessions) with what is expected."""
    equal: set[str] = set()
    per_node: dict[str, float] = {}
    for name, exp in expected.items():
        snap = snapshots.get(name)
        if snap and snap["routes"]["digest"] == exp.digest:
            equal.add(name)
            last = snap["routes"].get("last_change") or since
            per_node[name] = max(0.0, last - since)
    up = 0
    last_up = since
    for node, proto in want_sessions:
        snap = snapshots.get(node)
        if not snap:
            continue
        s = snap["sessions"].get(proto)
        if s is not None and s[0] == "up":
            up += 1
            last_up = max(last_up, s[1] or since)
    converged = len(equal) == len(expected)
    return Convergence(
        converged=converged, equal=equal, per_node=per_node,
        time=max(per_node.values(), default=0.0) if converged else None,
        sessions_expected=len(want_sessions), sessions_up=up,
        sessions_time=(last_up - since) if up == len(want_sessions) else None, nodes=len(expected),
    )


def totals(snapshots: dict[str, dict[str, Any]]) -> dict[str, int]:
    """Counters added up over nodes (the keys every engine reports), plus UPDATE messages."""
    out = {k: 0 for k in COUNTER_KEYS}
    out["update_messages_sent"] = out["update_messages_received"] = 0
    for snap in snapshots.values():
        t = snap["counters"]["totals"]
        for k in COUNTER_KEYS:
            out[k] += t.get(k, 0)
        out["update_messages_sent"] += t.get("messages_sent", {}).get("update", 0)
        out["update_messages_received"] += t.get("messages_received", {}).get("update", 0)
    return out
