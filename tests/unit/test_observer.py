"""The runner's view of its nodes (meshsim/run/observer.py): summaries arrive pushed by workers and fetched by
`refresh`, in either order; an event's message counts are read once they stop moving."""

from __future__ import annotations

from typing import Any

from meshsim.report.metrics import COUNTER_KEYS
from meshsim.run import observer as obs
from meshsim.run.observer import Observer, message_counts


def summary(t: float, updates: int, started: float = 100.0) -> dict[str, Any]:
    return {"version": 3, "time": t, "started": started, "routes": {"changes": 1},
            "counters": {"totals": {**{k: 0 for k in COUNTER_KEYS}, "messages_sent": {"keepalive": int(t)},
                                    "messages_received": {"update": updates}},
                         "usage": {"rss_bytes": 1, "cpu_seconds": t}}}


class Fabric:
    """Answers GET /state with the next of `reads` (the last one again once they run out)."""

    def __init__(self, reads: list[int]) -> None:
        self.reads = reads
        self.paths: list[str] = []

    def attach(self, sink: Any) -> None:
        pass

    async def get(self, name: str, path: str, timeout: float = 10.0) -> Any:
        self.paths.append(path)
        n = len(self.paths)
        return summary(200.0 + n, self.reads[min(n, len(self.reads)) - 1])


def test_a_push_older_than_the_summary_held_does_not_replace_it() -> None:
    o = Observer(Fabric([0]))  # type: ignore[arg-type]
    o.record("n1", summary(t=10.0, updates=7))  # a fresh read
    o.record("n1", summary(t=9.0, updates=5))  # pushed before it, arriving after it
    assert message_counts(o.snapshots["n1"])["update_messages_received"] == 7
    o.record("n1", summary(t=11.0, updates=8))
    assert message_counts(o.snapshots["n1"])["update_messages_received"] == 8
    o.record("n1", summary(t=1.0, updates=0, started=500.0))  # the node started again: its counters restart
    assert message_counts(o.snapshots["n1"])["update_messages_received"] == 0


async def test_refresh_until_quiet_reads_until_the_counts_stop_moving(monkeypatch) -> None:
    monkeypatch.setattr(obs, "QUIET_PAUSE", 0.0)
    fabric = Fabric([96, 98, 98])  # two copies still in flight at the first read; keepalives move all along
    o = Observer(fabric)  # type: ignore[arg-type]
    await o.refresh_until_quiet(["n1"])
    assert message_counts(o.snapshots["n1"])["update_messages_received"] == 98
    assert fabric.paths == ["/state?summary=1&refresh=1"] * 3  # the engine's counters read anew each time


async def test_refresh_until_quiet_gives_up_when_messages_keep_flowing(monkeypatch) -> None:
    monkeypatch.setattr(obs, "QUIET_PAUSE", 0.01)
    fabric = Fabric(list(range(10_000)))  # a flapping session: never quiet
    o = Observer(fabric)  # type: ignore[arg-type]
    await o.refresh_until_quiet(["n1"], within=0.2)
    assert 2 < len(fabric.paths) < 100
