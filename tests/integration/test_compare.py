"""`meshsim compare` on a small cluster file, for real: the file's own nodes run as a mesh, the route
reflectors its selector chose run as the other design, the live migration is measured, one generated size
follows, and the report opens with the verdict and predicts a 1000-node cluster."""

from __future__ import annotations

import json

import pytest

from meshsim.model.resources import load_scenario
from meshsim.run.compare import compare
from tests.conftest import node_doc, pool_doc, scenario_doc
from tests.integration.helpers import ctrl_c_when, leftover_processes

pytestmark = [pytest.mark.integration]
ZONE = "topology.kubernetes.io/zone"


async def test_compare_runs_the_users_cluster_in_both_designs(tmp_path, write_yaml):
    nodes = [node_doc("web-a", "192.168.31.21/24", {ZONE: "east"}),
             node_doc("web-b", "192.168.31.22/24", {ZONE: "east", "rr-candidate": "true"}),
             node_doc("db-a", "192.168.31.23/24", {ZONE: "west", "rr-candidate": "true"}),
             node_doc("db-b", "192.168.31.24/24", {ZONE: "west"})]
    path = write_yaml(pool_doc(), *nodes, scenario_doc("tiny", {"web-a": 2, "web-b": 2, "db-a": 2, "db-b": 2},
                                                       events="[{action: add-workloads, node: web-a, count: 70}]"))
    out = tmp_path / "cmp"
    data = await compare([str(path)], out=out, sizes=[5], selector="rr-candidate == 'true'", what_if=[1000],
                         timeout=60, progress=False)
    md = (out / "comparison.md").read_text()
    saved = json.loads((out / "comparison.json").read_text())
    assert all(r["converged"] and r["error"] is None for r in saved["runs"]), saved["runs"]
    assert [r["case"] for r in saved["runs"]] == ["mesh-4", "rr-4", "mesh-to-rr", "mesh-5", "rr-5"]
    # the user's own nodes ran: their names and addresses are in the report and in the runs' tables
    for name, addr in (("web-a", "192.168.31.21"), ("db-b", "192.168.31.24")):
        assert f"| {name} | {addr} |" in md
    mesh_run = json.loads((out / "runs" / "mesh-4-1" / "report.json").read_text())
    assert set(mesh_run["nodes"]) == {"web-a", "web-b", "db-a", "db-b"}
    # the RR variant has the reflectors the selector chose, and ran with them
    rr = load_scenario([out / "designs" / "rr-4.yaml"])
    assert {n.name for n in rr.nodes if n.rr_cluster_id} == {"web-b", "db-a"}
    rr_run = json.loads((out / "runs" / "rr-4-1" / "report.json").read_text())
    assert set(rr_run["nodes"]["web-a"]["sessions"]) == {"Node_192_168_31_22", "Node_192_168_31_23"}
    # measured sessions equal the exact counts: 6 in the mesh, 1 + 2 x 2 with reflectors
    assert (data["medians"]["mesh"]["4"]["sessions"], data["medians"]["rr"]["4"]["sessions"]) == (6, 5)
    # the verdict first, then the migration measured with Calico's documented steps
    assert md.index("## Verdict at your size: 4 nodes") < md.index("## As the cluster grows")
    assert [s["label"] for s in saved["verdict"]["migration"]["steps"]] == [
        "BGPPeer peer-with-route-reflectors", "web-b becomes a route reflector", "db-a becomes a route reflector",
        "turn the mesh off"]
    # what-if 1000 nodes with 2 reflectors
    p = saved["predictions"]["1000"]
    assert (p["sessions"]["mesh"], p["sessions"]["rr"]) == (499_500, 1_997)
    assert (p["cold_advertisements"]["mesh"], p["cold_advertisements"]["rr"]) == (999_000, 1_997_998)
    assert not leftover_processes("meshsim-run-")


def test_ctrl_c_stops_the_whole_comparison_and_keeps_what_was_measured(tmp_path, write_yaml):
    """The run under way takes Ctrl-C (it stops its nodes and writes its report); the comparison must then stop
    too, not go on with the next run, and write comparison.md from what it measured (issue 9: compare used to
    start the next run, and SIGTERM left a temp dir behind)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    nodes = [node_doc(f"n{i}", f"192.168.32.{20 + i}/24") for i in range(1, 4)]
    path = write_yaml(pool_doc(), *nodes, scenario_doc("slow", {"n1": 1, "n2": 1, "n3": 1},
                                                       events="[{action: sleep, duration: 60s}]"))
    out = tmp_path / "cmp"
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen([sys.executable, "-m", "meshsim", "compare", str(path), "--no-migration", "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=root,
                            env={**os.environ, "PYTHONPATH": str(root), "TMPDIR": str(tmp_path)}, start_new_session=True)
    # the first run is in its 60 s sleep soon after its directory appears
    _, err = ctrl_c_when(proc, lambda: (out / "runs" / "mesh-3-1").exists(), within=120, settle=3)
    assert proc.returncode == 130, err
    assert f"what was measured is in {out / 'comparison.md'}" in err and "Traceback" not in err
    saved = json.loads((out / "comparison.json").read_text())
    assert saved["interrupted"] and [r["case"] for r in saved["runs"]] == ["mesh-3"]
    assert not (out / "runs" / "rr-3-1").exists(), "the next run must not start"
    assert not leftover_processes("meshsim-run-")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("meshsim-run-")]
