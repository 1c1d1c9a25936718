"""meshsim.engines.exabgp against real ExaBGP processes: two adapters, real TCP on 127.x.

A (passive) and B peer over unique random 127.77.x.{1,2} addresses on a high port,
each in its own tmp workdir. Covers: session up on both sides, an announce with
ORIGINATOR_ID / CLUSTER_LIST received with exactly those attributes, a withdraw, a
crash of A's ExaBGP (SIGKILL to its pid only) -> ExaBGPExited + ExaBGPStarted and the
session back up, a graceful stop of A -> B sees `down` with a Cease NOTIFICATION,
and no ExaBGP / relay process or socket left behind.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest
import pytest_asyncio
import structlog

from meshsim.bgp.types import Origin, PathAttrs
from meshsim.engines.exabgp import (
    EndOfRib,
    ExaBGP,
    ExaBGPExited,
    ExaBGPStarted,
    ExaNeighbor,
    RouteUpdate,
    SessionState,
    render_config,
)

pytestmark = pytest.mark.integration

AS = 64512
PREFIX = IPv4Network("10.244.1.0/26")
ATTRS = PathAttrs(
    next_hop=IPv4Address("192.168.0.81"),
    local_pref=100,
    origin=Origin.IGP,
    originator_id=IPv4Address("192.168.0.81"),
    cluster_list=(IPv4Address("192.168.0.200"), IPv4Address("192.168.0.201")),
)


# ----------------------------------------------------------------------------- helpers


@dataclass
class Events:
    """Events delivered by one adapter, with a bounded wait for a predicate."""

    items: list[object] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def __call__(self, event: object) -> None:
        self.items.append(event)
        self.changed.set()

    async def wait(self, pred: Callable[[object], bool], timeout: float, start: int = 0) -> object:
        deadline = time.monotonic() + timeout
        while True:
            for ev in self.items[start:]:
                if pred(ev):
                    return ev
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no matching event within {timeout} s; got {self.items[start:]!r}")
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), left)
            except asyncio.TimeoutError:
                pass


def state(peer: IPv4Address, st: str) -> Callable[[object], bool]:
    return lambda e: isinstance(e, SessionState) and e.peer_address == peer and e.state == st


def live_pids_mentioning(text: str) -> list[int]:
    """Pids of live (non-zombie) processes whose command line mentions `text`."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        if text.encode() in cmd:
            out.append(int(d))
    return out


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


async def wait_gone(pids: list[int], timeout: float = 5.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = [p for p in pids if alive(p)]
        if not left:
            return []
        await asyncio.sleep(0.05)
    return [p for p in pids if alive(p)]


class Lab:
    """Builds adapters on unique 127.77.<net>.x addresses and one random high port; cleans up."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.net = random.randint(1, 254)
        self.port = random.randint(17900, 18900)
        self.adapters: list[ExaBGP] = []

    def ip(self, host: int) -> IPv4Address:
        return IPv4Address(f"127.77.{self.net}.{host}")

    def neighbor(self, me: int, peer: int, *, passive: bool, hold: int = 9) -> ExaNeighbor:
        return ExaNeighbor(
            peer_address=self.ip(peer), local_address=self.ip(me), peer_as=AS, local_as=AS,
            router_id=IPv4Address(f"192.168.0.{80 + me}"), passive=passive, connect_port=self.port,
            hold_time=hold, description=f"Mesh_192_168_0_{80 + peer}",
        )

    def adapter(self, name: str, me: int, neighbors: list[ExaNeighbor], **kw: object) -> tuple[ExaBGP, Events]:
        events = Events()
        x = ExaBGP(name=name, bind_address=self.ip(me), listen_port=self.port, neighbors=neighbors,
                   workdir=self.root / name, on_event=events, log=structlog.get_logger().bind(node=name),
                   restart_backoff=(0.2, 2.0), **kw)  # type: ignore[arg-type]
        self.adapters.append(x)
        return x, events


@pytest_asyncio.fixture
async def lab(tmp_path: Path) -> AsyncIterator[Lab]:
    lab = Lab(tmp_path)
    try:
        yield lab
    finally:
        # finalizer: whatever the test did, nothing of it may survive
        for x in lab.adapters:
            try:
                await asyncio.wait_for(x.kill(), 15)
            except Exception:  # noqa: BLE001 - last resort below
                pass
        for pid in live_pids_mentioning(str(tmp_path)):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


# ----------------------------------------------------------------------------- tests


def test_render_config_pure() -> None:
    n = ExaNeighbor(
        peer_address=IPv4Address("127.0.0.3"), local_address=IPv4Address("127.0.0.2"), peer_as=64512,
        local_as=64512, router_id=IPv4Address("192.168.0.81"), passive=False, connect_port=1791, hold_time=9,
        description="Mesh_192_168_0_82",
    )
    text = render_config([n], "/usr/bin/python3 -S -E /x/exabgp_relay.py /x/s.sock", default_port=1790)
    assert "run /usr/bin/python3 -S -E /x/exabgp_relay.py /x/s.sock;" in text
    for line in ("neighbor 127.0.0.3 {", "router-id 192.168.0.81;", "local-address 127.0.0.2;", "hold-time 9;",
                 "passive false;", "connect 1791;", "description Mesh_192_168_0_82;", "processes [ speaker ];",
                 "neighbor-changes;", "parsed;", "update;", "ipv4 unicast;"):
        assert line in text
    assert "connect" not in render_config([n], "/p r", default_port=1791)
    with pytest.raises(ValueError):
        render_config([ExaNeighbor(**{**n.__dict__, "hold_time": 2})], "/p r")
    with pytest.raises(ValueError):
        render_config([n], "/p a,b")


@pytest.mark.asyncio
async def test_session_routes_crash_restart_and_graceful_stop(lab: Lab) -> None:
    a_ip, b_ip = lab.ip(1), lab.ip(2)
    a, ea = lab.adapter("a", 1, [lab.neighbor(1, 2, passive=True)])
    b, eb = lab.adapter("b", 2, [lab.neighbor(2, 1, passive=False)])

    t0 = time.monotonic()
    await asyncio.gather(a.start(), b.start())
    startup = time.monotonic() - t0
    assert isinstance(ea.items[0], ExaBGPStarted) and ea.items[0].restarts == 0
    pids = {"a": a.pid, "a_relay": a.relay_pid, "b": b.pid, "b_relay": b.relay_pid}
    assert all(pids.values()), pids

    # session up on both sides
    await ea.wait(state(b_ip, "up"), 20)
    await eb.wait(state(a_ip, "up"), 20)
    up_at = time.monotonic() - t0
    print(f"\nstartup {startup:.2f} s, session up after {up_at:.2f} s; A: {a.process_stats()} B: {b.process_stats()}")

    # announce with ORIGINATOR_ID + CLUSTER_LIST -> B receives exactly those attributes
    mark = len(eb.items)
    await a.announce(b_ip, PREFIX, ATTRS)
    got = await eb.wait(lambda e: isinstance(e, RouteUpdate) and e.announced, 10, mark)
    assert got == RouteUpdate(peer_address=a_ip, announced=((PREFIX, ATTRS),), withdrawn=())

    # withdraw
    mark = len(eb.items)
    await a.withdraw(b_ip, PREFIX)
    got = await eb.wait(lambda e: isinstance(e, RouteUpdate) and e.withdrawn, 10, mark)
    assert got == RouteUpdate(peer_address=a_ip, announced=(), withdrawn=(PREFIX,))

    # a command ExaBGP rejects (unknown neighbor) is counted as an error, and nothing hangs
    await a.announce(IPv4Address("127.1.2.3"), PREFIX, ATTRS)
    assert await a.flush(10)
    assert a.acks_error == 1 and a.acks_done == 2 and a.commands_sent == 3, a.counters()

    # crash: SIGKILL to A's ExaBGP pid only -> ExaBGPExited, ExaBGPStarted, session back up
    mark_a, mark_b = len(ea.items), len(eb.items)
    old_pid, old_relay = a.pid, a.relay_pid
    assert old_pid is not None and old_relay is not None
    os.kill(old_pid, signal.SIGKILL)
    exited = await ea.wait(lambda e: isinstance(e, ExaBGPExited), 10, mark_a)
    assert exited == ExaBGPExited(returncode=-signal.SIGKILL, restarts=0)
    started = await ea.wait(lambda e: isinstance(e, ExaBGPStarted), 15, mark_a)
    assert isinstance(started, ExaBGPStarted) and started.restarts == 1 and started.pid != old_pid
    assert started.pid == a.pid and a.restarts == 1
    # the synthesized down for A's session, and B's own view of the lost session
    await ea.wait(state(b_ip, "down"), 5, mark_a)
    await eb.wait(state(a_ip, "down"), 15, mark_b)
    assert await wait_gone([old_pid, old_relay]) == [], "the crashed ExaBGP's relay must exit by itself"
    await ea.wait(state(b_ip, "up"), 30, mark_a)
    await eb.wait(state(a_ip, "up"), 30, mark_b)

    # ExaBGP replays no API route after a restart: the owner re-announces on `up`
    mark = len(eb.items)
    await a.announce(b_ip, PREFIX, ATTRS)
    got = await eb.wait(lambda e: isinstance(e, RouteUpdate) and e.announced, 10, mark)
    assert got.announced == ((PREFIX, ATTRS),)  # type: ignore[attr-defined]
    assert any(isinstance(e, EndOfRib) for e in eb.items)

    # graceful stop of A: B sees `down` with a Cease NOTIFICATION
    all_pids = [p for p in (a.pid, a.relay_pid, b.pid, b.relay_pid, *pids.values()) if p]
    mark = len(eb.items)
    t1 = time.monotonic()
    await a.stop()
    stop_a = time.monotonic() - t1
    down = await eb.wait(state(a_ip, "down"), 10, mark)
    assert isinstance(down, SessionState) and down.reason is not None and "notification received (6," in down.reason
    await a.stop()  # idempotent
    await b.stop()
    assert stop_a < 5, stop_a
    print(f"graceful stop of A {stop_a:.2f} s; B saw down: {down.reason!r}")

    # nothing left: no process, no socket
    assert await wait_gone(all_pids, 5) == []
    assert live_pids_mentioning(str(lab.root)) == []
    assert not a.socket_path.exists() and not b.socket_path.exists()
    assert a.pid is None and b.pid is None


@pytest.mark.asyncio
async def test_teardown_reconfigure_and_wedged_stop(lab: Lab) -> None:
    a_ip, b_ip, c_ip = lab.ip(1), lab.ip(2), lab.ip(3)
    a_to_b, a_to_c = lab.neighbor(1, 2, passive=True), lab.neighbor(1, 3, passive=True)
    a, ea = lab.adapter("a", 1, [a_to_b])
    b, eb = lab.adapter("b", 2, [lab.neighbor(2, 1, passive=False)])
    c, ec = lab.adapter("c", 3, [lab.neighbor(3, 1, passive=False, hold=3)], stop_timeout=1.0)
    await asyncio.gather(a.start(), b.start(), c.start())
    await eb.wait(state(a_ip, "up"), 20)
    await ea.wait(state(b_ip, "up"), 20)  # teardown acts only on sessions A holds established

    # teardown: Cease/2 to B, which reconnects by itself
    mark = len(eb.items)
    await a.teardown(b_ip, 2)
    down = await eb.wait(state(a_ip, "down"), 10, mark)
    assert isinstance(down, SessionState) and down.reason == "notification received (6,2)"
    await eb.wait(state(a_ip, "up"), 20, mark)

    # reconfigure: add C without flapping B
    mark_b = len(eb.items)
    await a.reconfigure([a_to_b, a_to_c])
    await ea.wait(state(c_ip, "up"), 20)
    await ec.wait(state(a_ip, "up"), 20)
    assert not [e for e in eb.items[mark_b:] if isinstance(e, SessionState)], eb.items[mark_b:]

    # reconfigure: remove B; C stays up
    mark_b, mark_c = len(eb.items), len(ec.items)
    await a.reconfigure([a_to_c])
    down = await eb.wait(state(a_ip, "down"), 10, mark_b)
    assert isinstance(down, SessionState) and down.reason == "notification received (6,3)"
    await asyncio.sleep(0.5)
    assert not [e for e in ec.items[mark_c:] if isinstance(e, SessionState)], ec.items[mark_c:]
    assert a.acks_error == 0, a.counters()

    # a wedged ExaBGP (SIGSTOP) cannot make stop() hang
    pids = [p for p in (c.pid, c.relay_pid) if p]
    os.kill(pids[0], signal.SIGSTOP)
    t0 = time.monotonic()
    await asyncio.wait_for(c.stop(), 15)
    took = time.monotonic() - t0
    print(f"\nstop() of a SIGSTOPped ExaBGP took {took:.2f} s")
    assert await wait_gone(pids) == []
    assert not c.socket_path.exists()
    await asyncio.gather(a.stop(), b.stop())
    assert live_pids_mentioning(str(lab.root)) == []


@pytest.mark.asyncio
async def test_start_failure_is_a_run_error_and_leaves_nothing(tmp_path: Path) -> None:
    """A port another process holds: start() raises RunError naming the problem, nothing survives."""
    import socket

    from meshsim.errors import RunError

    ip = IPv4Address(f"127.78.{random.randint(1, 254)}.1")
    holder = socket.socket()
    holder.bind((str(ip), 0))
    holder.listen()
    port = holder.getsockname()[1]
    x = ExaBGP(name="c", bind_address=ip, listen_port=port, neighbors=[], workdir=tmp_path / "c",
               on_event=lambda e: None, log=structlog.get_logger().bind(node="c"))
    try:
        with pytest.raises(RunError) as info:
            await x.start()
        assert "ExaBGP exited" in str(info.value)
        assert live_pids_mentioning(str(tmp_path)) == []
        assert not x.socket_path.exists()
    finally:
        holder.close()
        await x.kill()
