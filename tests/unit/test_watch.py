"""The long-poll watcher (meshsim/fabric/watch.py) against a fake node API: what the Observer relies on."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from meshsim.errors import RunError
from meshsim.fabric.watch import Watchers


class Sink:
    def __init__(self) -> None:
        self.records: list[tuple[str, int]] = []
        self.deaths: list[tuple[str, str]] = []
        self.changed = asyncio.Event()

    def record(self, name: str, summary: dict[str, Any]) -> None:
        self.records.append((name, summary["version"]))
        self.changed.set()

    def died(self, name: str, why: str) -> None:
        self.deaths.append((name, why))
        self.changed.set()


class FakeNode:
    """GET /state?after=V&timeout=S&summary=1 as the agent answers it: at once when its version > V, else when
    it changes or after S seconds."""

    def __init__(self) -> None:
        self.version = 0
        self.started = 1000.0
        self.changed = asyncio.Condition()
        self.paths: list[str] = []
        self.down: Exception | None = None

    async def bump(self) -> None:
        async with self.changed:
            self.version += 1
            self.changed.notify_all()

    async def get(self, name: str, path: str, timeout: float) -> Any:
        self.paths.append(path)
        if self.down is not None:
            raise self.down
        query = dict(kv.split("=") for kv in path.partition("?")[2].split("&"))
        assert query["summary"] == "1" and float(query["timeout"]) + 5 <= timeout
        after, wait = int(query["after"]), float(query["timeout"])
        if self.version <= after and wait > 0:
            async with self.changed:
                try:
                    await asyncio.wait_for(self.changed.wait_for(lambda: self.version > after), wait)
                except asyncio.TimeoutError:
                    pass
        return {"version": self.version, "name": name, "started": self.started}


async def until(cond, timeout: float = 3.0) -> None:
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.01)


async def test_every_new_version_is_delivered_once_and_nothing_after_stop():
    node, sink = FakeNode(), Sink()
    w = Watchers(node.get, min_interval=0.0)
    w.attach(sink)
    w.start("n1")
    w.start("n1")  # idempotent: one poll per node
    await until(lambda: sink.records == [("n1", 0)])
    for _ in range(3):
        await node.bump()
        await until(lambda: sink.records[-1] == ("n1", node.version))
    assert sink.records == [("n1", 0), ("n1", 1), ("n1", 2), ("n1", 3)]
    assert node.paths[0] == "/state?after=-1&timeout=0&summary=1"
    assert "/state?after=3&timeout=5&summary=1" in node.paths  # it waits at the node, it does not spin
    await w.stop("n1")
    await node.bump()
    await asyncio.sleep(0.05)
    assert sink.records[-1] == ("n1", 3) and not w.watching("n1")
    await w.close()


async def test_polls_are_spaced_so_a_busy_node_costs_few_requests():
    node, sink = FakeNode(), Sink()
    w = Watchers(node.get, min_interval=0.1)
    w.attach(sink)
    w.start("n1")

    async def churn() -> None:
        for _ in range(50):
            await node.bump()
            await asyncio.sleep(0.005)

    await churn()
    await until(lambda: bool(sink.records) and sink.records[-1][1] == node.version)
    await w.close()
    assert len(node.paths) <= 10, node.paths  # ~0.3 s of changes at most every 0.1 s, not 50 polls
    assert sink.records[-1] == ("n1", 50)


async def test_resend_gives_the_last_summary_again_while_watching():
    node, sink = FakeNode(), Sink()
    w = Watchers(node.get, min_interval=0.0)
    w.attach(sink)
    w.start("n1")
    await until(lambda: len(sink.records) == 1)
    w.resend("n1")
    assert sink.records == [("n1", 0), ("n1", 0)]
    await w.stop("n1")
    w.resend("n1")
    assert len(sink.records) == 2
    await w.close()


@pytest.mark.parametrize("error", [ConnectionRefusedError(111, "Connection refused"), asyncio.TimeoutError(),
                                   RunError("GET /state answered 500: boom")])
async def test_a_silent_node_is_reported_dead_once_with_the_error(error):
    node, sink = FakeNode(), Sink()
    w = Watchers(node.get, min_interval=0.0, dead_after=0.3, retry=0.05)
    w.attach(sink)
    w.start("n1")
    await until(lambda: len(sink.records) == 1)
    node.down = error
    await node.bump()  # ends the poll in flight; the next ones fail
    await until(lambda: sink.deaths, timeout=5)
    await asyncio.sleep(0.2)
    assert len(sink.deaths) == 1 and sink.deaths[0][0] == "n1"
    assert sink.deaths[0][1].startswith("stopped answering GET /state for 0 s: ")
    assert (type(error).__name__ if not str(error) else str(error)) in sink.deaths[0][1]
    assert not w.watching("n1")
    await w.close()


async def test_a_short_outage_is_not_a_death():
    node, sink = FakeNode(), Sink()
    w = Watchers(node.get, min_interval=0.0, dead_after=1.0, retry=0.05)
    w.attach(sink)
    w.start("n1")
    await until(lambda: len(sink.records) == 1)
    node.down = ConnectionResetError(104, "reset")
    await node.bump()  # ends the poll in flight; the next ones fail
    await asyncio.sleep(0.3)  # several failed polls, shorter than dead_after
    assert len(node.paths) >= 4
    node.down = None
    await node.bump()
    await until(lambda: sink.records[-1] == ("n1", 2))
    assert sink.deaths == []
    await w.close()


async def test_a_replaced_node_process_is_followed_from_its_new_version():
    node, sink = FakeNode(), Sink()
    w = Watchers(node.get, min_interval=0.0, poll_seconds=1)
    w.attach(sink)
    w.start("n1")
    for _ in range(5):
        await node.bump()
    await until(lambda: bool(sink.records) and sink.records[-1] == ("n1", 5))
    async with node.changed:  # the process restarted: a new start time, versions from scratch
        node.started, node.version = 2000.0, 1
    await until(lambda: sink.records[-1] == ("n1", 1), timeout=4)
    await node.bump()
    await until(lambda: sink.records[-1] == ("n1", 2))
    await w.close()


async def test_a_reply_that_is_no_summary_counts_as_no_answer():
    sink = Sink()

    async def get(name: str, path: str, timeout: float) -> Any:
        return "<html>not a node</html>"

    w = Watchers(get, dead_after=0.1, retry=0.02)
    w.attach(sink)
    w.start("n1")
    await until(lambda: sink.deaths)
    assert "not a node summary" in sink.deaths[0][1] and sink.records == []
    await w.close()
