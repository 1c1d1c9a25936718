"""Timelines on real clusters: the measured outcome of each event, and every shipped scenario run for real."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import meshsim
from meshsim.oracle.expected import expected_tables
from meshsim.model.generate import cluster_yaml
from meshsim.model.cluster import Cluster
from meshsim.model.resources import load_scenario
from meshsim.run.runner import run_scenario
from tests.conftest import SCENARIOS
from tests.integration.helpers import leftover_processes

pytestmark = [pytest.mark.integration]


async def test_kill_is_noticed_on_the_hold_timer_and_a_graceful_stop_much_faster(tmp_path):
    text = cluster_yaml("hold", 4, hold="6s", keepalive="2s", subnet="192.168.20.0/24")
    async with meshsim.emulate(text=text, out=tmp_path / "out", timeout=60) as emu:
        stop = await emu.stop_node("node2")
        start = await emu.start_node("node2")
        kill = await emu.kill_node("node2")
        restart = await emu.start_node("node2")
    hold, keepalive = 6.0, 2.0
    # a killed (silent) node's routes go only when the hold timer expires, and not before
    assert hold - keepalive - 0.5 <= kill.convergence_s <= hold + 3, kill.convergence_s
    assert kill.sessions_lost == 6 and kill["per_node_s"]["min"] >= hold - keepalive - 0.5
    # a graceful stop (Cease NOTIFICATION) converges much faster than a kill
    assert stop.convergence_s * 5 < kill.convergence_s, (stop.convergence_s, kill.convergence_s)
    assert stop.sessions_lost == 6 and not stop.blackouts
    assert start.sessions_established == 6 and restart.sessions_established == 6
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["converged"] is True
    assert [e["action"] for e in report["events"]] == ["stop-node", "start-node", "kill-node", "start-node"]
    md = (tmp_path / "out" / "report.md").read_text()
    assert "kill-node node2" in md and "## Events" in md
    assert (tmp_path / "out" / "convergence.png").stat().st_size > 1000


async def test_mesh_to_rr_migration_ends_as_expected_and_reports_blackouts(tmp_path):
    result = await run_scenario([str(SCENARIOS / "mesh-to-rr.yaml")], out=tmp_path / "out", progress=False,
                                timeout=60)
    assert result.converged, [(e["event"], e.get("not_converged")) for e in result.events]
    by_event = {e["event"]: e for e in result.events}
    # node1 leaves the mesh the moment it becomes a reflector; its new sessions need a moment: a blackout
    rr1 = by_event["apply Node node1"]
    assert rr1["blackouts"] and all(b["seconds"] > 0 for b in rr1["blackouts"])
    # every other node loses node1's block for a moment, and node1 loses theirs (all its sessions are new)
    lost_node1_block = {b["node"] for b in rr1["blackouts"] if b["route"] == rr1_block(tmp_path)}
    assert lost_node1_block and "node1" not in lost_node1_block
    # turning the mesh off afterwards loses nothing: the reflected paths are already there
    assert by_event["apply BGPConfiguration default"]["blackouts"] == []
    # the end state: 2 RRs + 4 clients, every client peering with both RRs only
    final = json.loads((tmp_path / "out" / "report.json").read_text())["nodes"]
    for client in ("node3", "node4", "node5", "node6"):
        assert set(final[client]["sessions"]) == {"Node_192_168_0_10", "Node_192_168_0_11"}
        assert all(s["state"] == "up" for s in final[client]["sessions"].values())
        status = (tmp_path / "out" / "status" / f"{client}.txt").read_text()
        assert status.count("| node specific |") == 2 and "node-to-node mesh" not in status


def rr1_block(tmp_path: Path) -> str:
    return str(Cluster.build(load_scenario([SCENARIOS / "mesh-to-rr.yaml"])).affine_blocks("node1")[0])


def _shipped() -> list[Path]:
    return sorted(SCENARIOS.glob("*.yaml")) + sorted((SCENARIOS / "golden").glob("*.yaml"))


@pytest.mark.parametrize("path", _shipped(), ids=lambda p: str(p.relative_to(SCENARIOS)))
async def test_every_shipped_scenario_runs_and_converges(tmp_path, path):
    scenario = load_scenario([path])
    if len(scenario.nodes) > 12:  # the large ones at reduced size: same design, 6 clients (+ 2 reflectors)
        design = "rr" if any(n.rr_cluster_id for n in scenario.nodes) else "mesh"
        small = tmp_path / f"{path.stem}-small.yaml"
        small.write_text(cluster_yaml(f"{path.stem}-small", 8 if design == "rr" else 6, design=design))
        path = small
    out = tmp_path / "out"
    result = await run_scenario([str(path)], out=out, progress=False, timeout=90)
    assert result.error is None, result.error
    assert result.converged, (result.cold.get("not_converged"), [e.get("not_converged") for e in result.events])
    if not result.events:  # the final tables are exactly the expected ones
        expected = expected_tables(Cluster.build(load_scenario([path])))
        for name, table in expected.items():
            assert (out / "routes" / f"{name}.ip").read_text() == table.render_ip()
    assert not leftover_processes("meshsim-run-")
