"""BirdEngine.set_local orders confd's and Felix's parts as Calico does: a new block reaches BIRD (`birdc configure`)
before its pods' routes, a released block after them (no BIRD started: the two steps are recorded)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import structlog

from meshsim.agent.config import LocalState, NodeConfig
from meshsim.engines.bird.engine import BirdEngine

ONE = LocalState(blocks=("10.244.1.0/26",), affine=("10.244.1.0/26",),
                 workloads=(("10.244.1.1", "cali0000000001"),))
TWO = LocalState(blocks=("10.244.1.0/26", "10.244.1.64/26"), affine=("10.244.1.0/26", "10.244.1.64/26"),
                 workloads=(("10.244.1.1", "cali0000000001"), ("10.244.1.65", "cali0000000065")))


def engine(tmp_path: Path, local: LocalState) -> tuple[BirdEngine, list[str]]:
    cfg = NodeConfig(name="node1", address="192.168.0.1", subnet="192.168.0.0/24", interface="eth0",
                     gateway="192.168.0.254", session_address="192.168.0.1", bgp_port=179, http_port=9179, asn=64512,
                     cluster_id=None, hold_time=9, keepalive_time=3, pools=(), peers=(), local=local,
                     workdir=str(tmp_path), netns="ms-test", implementation="bird")
    eng = BirdEngine(cfg, log=structlog.get_logger(), on_change=lambda: None)
    steps: list[str] = []

    async def program() -> None:
        steps.append("pods:" + ",".join(ip for ip, _ in eng.local.workloads))

    async def configure() -> None:
        steps.append("configure:" + ",".join(eng.config.local.affine))

    eng.program_workloads = program  # type: ignore[method-assign]
    eng.configure = configure  # type: ignore[method-assign]
    return eng, steps


def test_a_new_block_is_configured_before_its_pods_routes(tmp_path: Path) -> None:
    eng, steps = engine(tmp_path, ONE)
    asyncio.run(eng.set_local(TWO))
    assert steps == ["configure:10.244.1.0/26,10.244.1.64/26", "pods:10.244.1.1,10.244.1.65"]


def test_a_released_block_leaves_the_config_after_its_pods(tmp_path: Path) -> None:
    eng, steps = engine(tmp_path, TWO)
    asyncio.run(eng.set_local(ONE))
    assert steps == ["pods:10.244.1.1", "configure:10.244.1.0/26"]


def test_pods_within_known_blocks_are_programmed_then_configured(tmp_path: Path) -> None:
    eng, steps = engine(tmp_path, ONE)
    more = LocalState(blocks=ONE.blocks, affine=ONE.affine, workloads=(*ONE.workloads, ("10.244.1.2", "cali2")))
    asyncio.run(eng.set_local(more))
    assert steps == ["pods:10.244.1.1,10.244.1.2", "configure:10.244.1.0/26"]
