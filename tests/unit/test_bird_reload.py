"""A node's new block reaches BGP only once BIRD has reloaded the config confd re-rendered for it (Calico: a change
of the node's blocks rewrites bird_aggr.cfg and BIRD reconfigures). The reload costs what BIRD 2.0.12 measured
(benchmarks/bird_reload.py), and the native engine waits that long before it originates the block."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from ipaddress import IPv4Network
from pathlib import Path

import pytest
import structlog

from meshsim.agent.config import node_configs
from meshsim.agent.netctx import NetContext
from meshsim.bgp.router import StartAll
from meshsim.bgp.timers import bird_reload_time
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
