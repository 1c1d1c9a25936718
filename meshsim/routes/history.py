"""A node's route table as it changes over time, whoever programs it (meshsim's Felix agent or real BIRD).

Owns `RouteHistory`: the current `ip route` line of every destination, when each was last added,
changed or removed, a bounded log of every change (what blackouts are measured from), a change count,
and `table_digest`, an order-independent digest of the table's lines that is kept up to date
incrementally, so a runner can tell whether a node holds its expected table without fetching it.
Pure: time is a parameter.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Iterable, Mapping

LOG_LIMIT = 50_000


def line_hash(line: str) -> int:
    """A route line's 64-bit hash (the same in every process: no PYTHONHASHSEED)."""
    return int.from_bytes(hashlib.blake2b(line.encode(), digest_size=8).digest(), "big")


def table_digest(lines: Iterable[str]) -> str:
    """The digest of a table given as `ip route` lines (each without its newline; trailing space kept):
    XOR of the lines' hashes, so it does not depend on order and updates in O(1) per change."""
    acc = 0
    for line in lines:
        acc ^= line_hash(line)
    return f"{acc:016x}"


class RouteHistory:
    """The table a node holds now, and how it got there."""

    def __init__(self) -> None:
        self.lines: dict[str, str] = {}  # dst ("10.244.1.0/26") -> `ip route` line (no newline)
        self.changed_at: dict[str, float] = {}
        self.removed_at: dict[str, float] = {}
        self.log: deque[tuple[float, str, str, str]] = deque(maxlen=LOG_LIMIT)  # (time, add|chg|del, dst, line)
        self.changes = 0
        self.last_change: float | None = None
        self._digest = 0

    @property
    def digest(self) -> str:
        return f"{self._digest:016x}"

    def apply(self, changes: Mapping[str, str | None], now: float) -> int:
        """Set each destination's line (None: removed). Returns how many routes really changed."""
        n = 0
        for dst, line in changes.items():
            old = self.lines.get(dst)
            if old == line:
                continue
            n += 1
            if old is not None:
                self._digest ^= line_hash(old)
            if line is None:
                del self.lines[dst]
                self.removed_at[dst] = now
                self.log.append((now, "del", dst, old or ""))
            else:
                self._digest ^= line_hash(line)
                self.lines[dst] = line
                self.changed_at[dst] = now
                self.log.append((now, "chg" if old is not None else "add", dst, line))
        if n:
            self.changes += n
            self.last_change = now
        return n

    def replace_all(self, lines: Mapping[str, str], now: float, read_since: float | None = None) -> int:
        """Make the table exactly `lines` (a full re-read, e.g. `ip route` of a BIRD node).

        `read_since`: when the re-read began. A destination changed at or after that moment (by an event
        stream such as `ip monitor route`, applied while the re-read was in flight) is left as it is: the
        snapshot may predate that change, and would otherwise undo it until the next re-read."""
        changes: dict[str, str | None] = {dst: None for dst in self.lines if dst not in lines}
        changes.update(lines)
        if read_since is not None:
            changes = {dst: line for dst, line in changes.items()
                       if max(self.changed_at.get(dst, float("-inf")),
                              self.removed_at.get(dst, float("-inf"))) < read_since}
        return self.apply(changes, now)

    def since(self, t: float) -> list[tuple[float, str, str, str]]:
        return [e for e in self.log if e[0] >= t]
