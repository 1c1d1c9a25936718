"""A node's new block reaches BGP only once BIRD has reloaded the config confd re-rendered for it (Calico: a change
of the node's blocks rewrites bird_aggr.cfg and BIRD reconfigures). The reload costs what BIRD 2.0.12 measured
(benchmarks/bird_reload.py), and the native engine waits that long before it originates the block. A graceful
stop sends its Ceases at BIRD's pace too (captured on BIRD 2.0.12)."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from dataclasses import replace
from ipaddress import IPv4Network
from pathlib import Path

import pytest
import structlog

from meshsim.agent.config import node_configs
from meshsim.agent.netctx import NetContext
from meshsim.bgp import fsm
from meshsim.bgp.router import StartAll, StopAll
from meshsim.bgp.timers import bird_reload_time, bird_shutdown_offsets
from meshsim.engines.native.engine import NativeEngine
from meshsim.model.cluster import Cluster
from meshsim.model.resources import load_scenario
from tests.conftest import SCENARIOS

NEW_BLOCK = "10.244.250.0/26"


@pytest.mark.parametrize(("peers", "measured_ms"), [(2, 7.6), (49, 53.7), (99, 102.6), (199, 177.7), (2, 6.2), (49, 54.8), (99, 103.6), (199, 186.4)])
def test_the_reload_time_follows_what_bird_measured(peers: int, measured_ms: float) -> None:
    assert abs(bird_reload_time(peers) * 1000 - measured_ms) < 8


def _engine() -> NativeEngine:
    cluster = Cluster.build(load_scenario([SCENARIOS / "three-node-ipip.yaml"]))
    config = node_configs(cluster, bgp_port=17900, http_port=9179, workdir=Path("/nonexistent"))["node1"]
    return NativeEngine(config, net=NetContext(None), log=structlog.wrap_logger(structlog.ReturnLogger()),
                        on_change=lambda: None)


def _with_new_block(engine: NativeEngine):
    local = engine.local
    return replace(local, blocks=(*local.blocks, NEW_BLOCK), affine=(*local.affine, NEW_BLOCK),
                   originate=(*local.originate, NEW_BLOCK))


@pytest.mark.asyncio
async def test_a_new_block_is_originated_once_bird_has_reloaded() -> None:
    engine = _engine()
    engine.router.handle(StartAll(), time.time())  # BGP runs (its connections are never made here)
    delay = bird_reload_time(len(engine.config.peers))
    t0 = time.monotonic()
    await engine.set_local(_with_new_block(engine))
    assert IPv4Network(NEW_BLOCK) not in engine.router.speaker.originated(), "BIRD is still reloading"
    while IPv4Network(NEW_BLOCK) not in engine.router.speaker.originated():
        await asyncio.sleep(0.001)
    assert time.monotonic() - t0 >= delay
    await engine.close()


@pytest.mark.asyncio
async def test_before_bgp_starts_a_block_is_there_at_once() -> None:
    engine = _engine()
    await engine.set_local(_with_new_block(engine))
    assert IPv4Network(NEW_BLOCK) in engine.router.speaker.originated()
    await engine.close()


def _mesh_engine(nodes: int) -> NativeEngine:
    from meshsim.model.generate import cluster_yaml

    path = Path(tempfile.mkdtemp(prefix="meshsim-test-")) / "mesh.yaml"
    try:
        path.write_text(cluster_yaml("pace", nodes))
        cluster = Cluster.build(load_scenario([path]))
    finally:
        shutil.rmtree(path.parent)
    config = node_configs(cluster, bgp_port=17900, http_port=9179, workdir=Path("/nonexistent"))["node1"]
    return NativeEngine(config, net=NetContext(None), log=structlog.wrap_logger(structlog.ReturnLogger()),
                        on_change=lambda: None)


def _record_stops(engine: NativeEngine) -> list[tuple[float, tuple[str, ...]]]:
    sent: list[tuple[float, tuple[str, ...]]] = []
    feed = engine.feed

    def recording(event: object) -> None:
        if isinstance(event, StopAll):
            sent.append((time.monotonic(), event.peers or ()))
        feed(event)

    engine.feed = recording  # type: ignore[method-assign]
    return sent


@pytest.mark.asyncio
async def test_a_graceful_stop_sends_its_ceases_as_bird_does_one_protocol_after_the_other() -> None:
    """BIRD 2.0.12, captured: a node of a 50-node mesh sends its 49 Ceases over 16 ms, 0.34 ms apart."""
    engine = _mesh_engine(50)
    engine.router.handle(StartAll(), time.time())
    sent = _record_stops(engine)
    t0 = time.monotonic()
    await engine.stop()
    names = [n for _, batch in sent for n in batch]
    assert names == sorted(engine.router.peers) and len(names) == 49  # each peer once, in BIRD's order
    offsets = bird_shutdown_offsets(49)
    assert abs(offsets[-1] - 48 * 0.00034) < 1e-9
    for when, batch in sent:
        assert when - t0 >= offsets[names.index(batch[-1])] - 0.0005  # none leaves before BIRD would send it
    assert sent[-1][0] - t0 >= offsets[-1] - 0.0005 and len(sent) > 1
    assert not engine.router.running
    assert {p.session.state for p in engine.router.peers.values()} == {fsm.ProtoState.DOWN}
    await engine.close()


@pytest.mark.asyncio
async def test_the_final_teardown_does_not_pace_its_ceases() -> None:
    engine = _mesh_engine(50)
    engine.router.handle(StartAll(), time.time())
    sent = _record_stops(engine)
    await engine.close()
    assert len(sent) == 1 and len(sent[0][1]) == 49
