"""`meshsim compare` end to end with a stand-in for `run_scenario` (no processes): the plan runs the user's
own nodes, the RR variant has the selector's reflectors, and comparison.md / comparison.json open with the
verdict, then crossovers, what-ifs and the models, with every figure where the user looks for it."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from meshsim.errors import ScenarioError
from meshsim.model.cluster import Cluster
from meshsim.model.resources import load_scenario
from meshsim.model.timeline import parse_timeline
from meshsim.oracle.advertisements import advertisements
from meshsim.run.compare import compare, plan
from tests.conftest import node_doc, pool_doc, scenario_doc

ZONE = "topology.kubernetes.io/zone"


@pytest.fixture
def cluster_file(write_yaml) -> Path:
    nodes = [node_doc("alpha", "10.1.0.11/24", {ZONE: "z1"}), node_doc("bravo", "10.1.0.12/24", {ZONE: "z1"}),
             node_doc("charlie", "10.1.1.13/24", {ZONE: "z2", "rr-candidate": "yes"}),
             node_doc("delta", "10.1.1.14/24", {ZONE: "z2"}),
             node_doc("echo", "10.1.0.15/24", {ZONE: "z1", "rr-candidate": "yes"})]
    events = "[{action: add-workloads, node: bravo, count: 70}, {action: stop-node, node: alpha}]"
    return write_yaml(pool_doc(), *nodes, scenario_doc("shop", {n: 2 for n in
                                                                ("alpha", "bravo", "charlie", "delta", "echo")},
                                                       events=events))


async def fake_run(files, *, out, progress=False, timeout=0):
    """What run_scenario would write, from the model: sessions and advertisements counted, usage made up
    (CPU and memory grow with sessions), one blackout per reflector step of a migration."""
    sc = load_scenario(files)
    a = advertisements(Cluster.build(sc))
    n = len(sc.nodes)
    nodes = {}
    for node in sc.nodes:
        s = a.sessions_by_node[node.name]
        nodes[node.name] = {"answered": True, "cpu_seconds": 0.5 + 0.02 * s, "rss_bytes": (40 + 0.3 * s) * 2**20,
                            "exabgp": {"cpu_seconds": 0.1, "rss_bytes": 20 * 2**20}}
    events = []
    for step in parse_timeline(sc):
        bo = [{"node": sc.nodes[-1].name, "route": "10.244.0.0/26", "seconds": 0.8}] \
            if "becomes a route reflector" in step.label else []
        events.append({"index": step.index, "event": step.describe(), "action": step.action, "label": step.label,
                       "converged": True, "convergence_s": 0.1 * n, "updates_received": a.per_new_block[
                           sc.nodes[0].name].total, "withdrawals_received": 0, "blackouts": bo})
    report = {"converged": True, "nodes": nodes, "totals": {"updates_received": a.cold.total},
              "cold_start": {"sessions_expected": 2 * a.sessions, "time_to_established_s": 1.0,
                             "time_to_converged_s": 1.0 + 0.05 * n, "updates_received": int(0.9 * a.cold.total)},
              "events": events}
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report))
    return SimpleNamespace(error=None, interrupted=False)  # the RunResult fields compare reads


def test_plan_runs_the_users_nodes_and_the_selectors_reflectors(cluster_file):
    p = plan([str(cluster_file)], selector="rr-candidate == 'yes'", sizes=[8])
    base = p.case("mesh", 5)
    assert base.files == (str(cluster_file),)  # the user's file, run as it is
    rr = p.case("rr", 5)
    assert rr.reflectors == ("charlie", "echo") and p.choice.names == ("charlie", "echo")
    assert {n.name for n in rr.scenario.nodes if n.rr_cluster_id} == {"charlie", "echo"}
    big = p.case("rr", 8)
    assert big.reflectors == ("charlie", "echo") and len(big.scenario.nodes) == 8
    mig = next(c for c in p.cases if c.kind == "migration")
    assert [e.get("label") for e in mig.scenario.spec.events][-1] == "turn the mesh off"


def test_plan_refuses_what_cannot_be_run(cluster_file):
    with pytest.raises(ScenarioError, match="must hold the 2 route reflectors"):
        plan([str(cluster_file)], sizes=[2])
    with pytest.raises(ScenarioError, match="--reflector-selector"):
        plan([str(cluster_file)], selector="nobody == 'x'")


def test_compare_writes_the_verdict_first_then_growth_and_models(tmp_path, cluster_file):
    out = tmp_path / "cmp"
    data = asyncio.run(compare([str(cluster_file)], out=out, sizes=[8, 12], selector="rr-candidate == 'yes'",
                               what_if=[1000], progress=False, runner=fake_run))
    md = (out / "comparison.md").read_text()
    saved = json.loads((out / "comparison.json").read_text())
    # the verdict comes first, at the user's size, in numbers
    assert md.index("## Verdict at your size: 5 nodes") < md.index("## As the cluster grows") < md.index("## Models")
    v = {i["key"]: i for i in saved["verdict"]["items"]}
    assert (v["sessions"]["mesh"], v["sessions"]["rr"], v["sessions"]["lower"]) == (10, 7, "rr")
    assert (v["block_advertisements"]["mesh"], v["block_advertisements"]["rr"]) == (4, 8)
    assert v["block_advertisements"]["lower"] == "mesh" and v["block_advertisements"]["ratio"] == 2
    assert "| BGP sessions | 10 (4 per node) | 7 (2 per client, 4 on the busiest) | RR (2) | 1.43x | exact |" in md
    assert saved["verdict"]["migration"]["blackouts"] == 2
    assert "worst 0.8 s" in md
    # the user's own nodes, names and addresses, and the reflectors the selector chose
    for name, addr in (("alpha", "10.1.0.11"), ("charlie", "10.1.1.13"), ("echo", "10.1.0.15")):
        assert f"| {name} | {addr} |" in md
    assert "| charlie | 10.1.1.13 | 10.1.1.0/24 | z2 | reflector |" in md
    rr_file = out / "designs" / "rr-5.yaml"
    assert {n.name for n in load_scenario([rr_file]).nodes if n.rr_cluster_id} == {"charlie", "echo"}
    # what-if 1000 with 2 reflectors: exact sessions and the rule's advertisements
    p = saved["predictions"]["1000"]
    assert (p["sessions"]["mesh"], p["sessions"]["rr"]) == (499_500, 1_997)
    assert (p["cold_advertisements"]["mesh"], p["cold_advertisements"]["rr"]) == (999_000, 1_997_998)
    assert "N=1,000" in md and "499,500 / 1,997" in md
    # fitted metrics carry their form and error; the sessions crossover is stated
    assert saved["models"]["rss_total_mib"]["mesh"]["kind"] == "fit"
    assert saved["crossovers"]["sessions"]["lower_everywhere"] == "rr"
    assert "cold start: UPDATE messages received" in md and "k*A(N)" in md
    assert sorted(data["sizes"]) == [5, 8, 12]
    assert (out / "comparison.png").exists() and (out / "scaling.png").exists()


@pytest.mark.parametrize("args,message", [
    (["--reflector-selector", "rr =="], "field --reflector-selector: invalid selector"),
    (["--nodes", "1"], "field --nodes: a cluster needs at least 2 nodes"),
    (["--what-if", "10,x"], "field --what-if: is not a comma-separated list"),
    (["--reflectors", "5"], "field --reflectors: route reflectors must be at least 1 and fewer than"),
])
def test_bad_command_lines_get_one_clear_line_and_exit_2(tmp_path, cluster_file, capsys, args, message):
    from meshsim.cli import main

    assert main(["compare", str(cluster_file), "--out", str(tmp_path / "o"), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()  # nothing ran, nothing written


def test_a_route_reflector_cluster_is_compared_with_its_full_mesh():
    from tests.conftest import SCENARIOS

    p = plan([str(SCENARIOS / "rr-2x6.yaml")], sizes=[10])
    assert p.base_design == "rr" and p.choice.names == ("rr1", "rr2")
    mesh = p.case("mesh", 8).scenario
    assert mesh.bgp.node_to_node_mesh_enabled and not any(n.rr_cluster_id for n in mesh.nodes)
    assert [pe.name for pe in mesh.peers] == []  # the BGPPeer to the reflectors is gone with them
    assert p.case("rr", 8).files  # the user's own file, as it is
    big = p.case("rr", 10)
    assert big.reflectors == ("rr1", "rr2") and len(big.scenario.nodes) == 10
    mig = next(c for c in p.cases if c.kind == "migration").scenario
    assert [dict(e.fields)["label"] for e in mig.spec.events] == [
        "BGPPeer peer-with-route-reflectors", "rr1 becomes a route reflector", "rr2 becomes a route reflector",
        "turn the mesh off"]
    with pytest.raises(ScenarioError, match="already runs route reflectors"):
        plan([str(SCENARIOS / "rr-2x6.yaml")], reflectors=3)


def test_a_run_that_breaks_is_recorded_and_the_others_still_run(tmp_path, cluster_file):
    async def breaks_on_rr(files, *, out, **kw):
        if out.name.startswith("rr-5"):
            raise KeyError("node")
        return await fake_run(files, out=out, **kw)

    from structlog.testing import capture_logs

    with capture_logs() as logs:
        data = asyncio.run(compare([str(cluster_file)], out=tmp_path / "o", progress=False, runner=breaks_on_rr))
    assert [e["run"] for e in logs if e["event"] == "run_failed"] == ["rr-5-1"]
    runs = {r["case"]: r for r in data["runs"]}
    assert runs["rr-5"]["error"] == "KeyError: 'node'" and not runs["rr-5"]["converged"]
    assert runs["mesh-to-rr"]["converged"] and runs["mesh-5"]["error"] is None
    assert "**Did not converge:** route reflectors at 5 nodes" in (tmp_path / "o" / "comparison.md").read_text()
