"""The harness computes the oracle's answer for an event before it tells the nodes, once per state of the model.

The oracle takes the runner 0.15 s of CPU at 50 nodes and seconds at 200; computed after the act it took a core
from the nodes inside the milliseconds an event is measured in (a 50-node stop ran 20-36 ms with it there). An
event is timed from `acted_at`, after the oracle, so its cost is not counted either."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from meshsim.model.cluster import Cluster
from meshsim.model.resources import load_scenario
from meshsim.run import harness as harness_module
from meshsim.run.harness import Harness
from tests.conftest import node_doc, pool_doc, scenario_doc
from tests.unit.fakefabric import FakeFabric


class Recording(FakeFabric):
    """Notes, at each act on the nodes, how many times the oracle had run by then."""

    def __init__(self, cluster: Cluster, runs: list[float]) -> None:
        super().__init__(cluster)
        self.runs = runs
        self.acts: list[tuple[str, int, float]] = []

    async def stop_node(self, name: str) -> None:
        self.acts.append(("stop", len(self.runs), time.time()))
        await super().stop_node(name)

    async def start_node(self, name: str, *, restart: bool = False, hold_bgp: bool = False) -> None:
        self.acts.append(("start", len(self.runs), time.time()))
        await super().start_node(name, restart=restart, hold_bgp=hold_bgp)

    async def push_local(self, name: str) -> None:
        self.acts.append(("local", len(self.runs), time.time()))


@pytest.fixture
def setup(write_yaml, monkeypatch) -> tuple[Cluster, list[float]]:
    path: Path = write_yaml(pool_doc(), *(node_doc(f"node{i}", f"192.168.0.{i}/24") for i in range(1, 5)),
                            scenario_doc())
    runs: list[float] = []
    real = harness_module.expected_tables

    def counted(*args, **kw):
        out = real(*args, **kw)
        runs.append(time.time())  # when this answer was ready
        return out

    monkeypatch.setattr(harness_module, "expected_tables", counted)
    return Cluster.build(load_scenario([path])), runs


async def test_each_event_has_its_answer_before_the_nodes_are_told(setup) -> None:
    cluster, runs = setup
    fabric = Recording(cluster, runs)
    async with Harness(cluster, fabric=fabric) as h:
        assert len(runs) == 1  # the cold start's, while BGP was held
        assert (await h.converge(5)).converged
        assert len(runs) == 1

        await h.stop_node("node2")
        kind, seen, told = fabric.acts[-1]
        assert (kind, seen) == ("stop", 2) and runs[-1] <= h.acted_at <= told
        assert "node2" not in h.expected() and len(runs) == 2  # converge() and the report reuse it

        await h.add_pods("node3", 70)  # a new block: node3's change is pushed after the oracle ran
        kind, seen, told = fabric.acts[-1]
        assert (kind, seen) == ("local", 3) and runs[-1] <= h.acted_at <= told
        assert any("10.244." in str(r.dst) for r in h.expected()["node1"].table.routes)
        assert len(runs) == 3

        await h.start_node("node2")
        assert [a[:2] for a in fabric.acts[-1:]] == [("start", 4)]
        assert set(h.expected()) == {"node1", "node2", "node3", "node4"} and len(runs) == 4


async def test_a_changed_model_is_never_answered_from_the_old_state(setup) -> None:
    cluster, runs = setup
    async with Harness(cluster, fabric=Recording(cluster, runs)) as h:
        before = h.expected()["node1"].digest
        await h.add_pods("node4", 70)
        after = h.expected()["node1"].digest
        assert after != before  # node4's pods took a second block, which the others now route to
        await h.remove_pods("node4", 70)
        h.expected()
        assert len(runs) == 3
