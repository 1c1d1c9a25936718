"""The command line's views: `-o json|yaml` loads back to the model's data, `-o wide` adds columns, global flags
go before or after the subcommand, `meshsim show` prints birdc's text for a node, `meshsim examples` and
`peers --graph` write what they say."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from meshsim.cli import main
from meshsim.model.cluster import Cluster
from meshsim.model.resources import load_scenario
from meshsim.oracle.expected import expected_tables
from meshsim.report.views import ipam_data, peers_data, plain, routes_data, validate_data

ROOT = Path(__file__).resolve().parents[2]
RR = str(ROOT / "scenarios" / "rr-2x6.yaml")
BORROW = str(ROOT / "scenarios" / "borrowing.yaml")
GOLDEN = ROOT / "tests" / "golden" / "birdc"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def cluster(path: str) -> Cluster:
    return Cluster.build(load_scenario([path]))


@pytest.mark.parametrize("fmt,load", [("json", json.loads), ("yaml", yaml.safe_load)])
def test_json_and_yaml_load_back_to_the_models_data(capsys: pytest.CaptureFixture[str], fmt: str, load) -> None:
    c = cluster(RR)
    rc, out, _ = run(capsys, "peers", RR, "-o", fmt)
    assert rc == 0 and load(out) == peers_data(c.peerings())
    # and that data is the model's own: every field of every Peering
    first = c.peerings()["rr1"][0]
    assert {k: v for k, v in load(out)["rr1"][0].items() if k not in ("type", "passive_side")} == plain(first)
    assert load(out)["rr1"][1]["rr_client"] is True and load(out)["rr1"][1]["cluster_id"] == "244.0.0.1"

    rc, out, _ = run(capsys, "routes", RR, "--node", "node1", "-o", fmt)
    assert load(out) == routes_data(expected_tables(c), ["node1"])
    assert [r["line"] for r in load(out)["node1"]] == [r.render_ip() for r in expected_tables(c)["node1"].routes]

    rc, out, _ = run(capsys, "validate", RR, "-o", fmt)
    assert load(out) == validate_data(c, 0) and load(out)["sessions"] == 13

    b = cluster(BORROW)
    rc, out, _ = run(capsys, "ipam", BORROW, "-o", fmt)
    assert load(out) == ipam_data(b) and load(out)["borrowed"]


def test_wide_adds_calicoctl_columns(capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run(capsys, "validate", RR, "-o", "wide")
    assert "NAME                  CIDR            NAT     IPIPMODE   VXLANMODE   DISABLED   DISABLEBGPEXPORT   " \
           "SELECTOR" in out
    assert "NAME    ASN       IPV4              IPV6" in out and "NAME                         PEERIP   NODE    ASN" in out
    _, plain_out, _ = run(capsys, "peers", RR)
    _, wide, _ = run(capsys, "peers", RR, "-o", "wide")
    assert wide.splitlines()[0].startswith(plain_out.splitlines()[0].rstrip())
    assert wide.splitlines()[0].endswith("LOCAL ADDRESS   PORT") and "192.168.0.11    179" in wide


@pytest.mark.parametrize("argv", [["--log-level", "debug", "validate", RR], ["validate", RR, "--log-level", "debug"],
                                  ["validate", "--log-json", RR], ["--log-json", "validate", RR, "--log-level", "info"]])
def test_global_flags_before_or_after_the_subcommand(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    rc, out, _ = run(capsys, *argv)
    assert rc == 0 and "OK (scenario rr-2x6" in out


def test_global_flag_before_the_subcommand_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    from meshsim.cli import build_parser

    args = build_parser().parse_args(["--log-level", "debug", "validate", RR])
    assert args.log_level == "debug"
    assert build_parser().parse_args(["validate", RR, "--log-level", "info"]).log_level == "info"


def test_show_prints_birdc_for_a_running_node(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                                             tmp_path: Path) -> None:
    import os
    import time

    from meshsim.run import records

    views = json.loads((GOLDEN / "mesh" / "meshsim" / "node1.json").read_text())
    monkeypatch.setattr("meshsim.run.client.fetch_views",
                        lambda files, node, v=("status", "rib", "routes"), run=None: views)
    lab = str(GOLDEN / "mesh.yaml")
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))  # the run of the lab, as `meshsim up` records it
    records.write(records.RunRecord(name="mesh", run_id="r1", token="t", mode="local", state="up", scenario="mesh",
                                    files=records.files_key([lab]), started_at=time.time(),
                                    runner=records.ProcessRef.of(os.getpid())))
    rc, out, _ = run(capsys, "show", "node1", "protocols", "-f", lab)
    assert rc == 0 and out.splitlines()[:2] == ["BIRD v0.3.3+birdv1.6.8 ready.",
                                                "name     proto    table    state  since       info"]
    assert out.splitlines()[-1].startswith("Mesh_192_168_0_83 BGP      master   up     ")
    rc, out, _ = run(capsys, "show", "node1", "route", "for", "10.244.106.193", "-f", lab, "--format", "bird2")
    assert out.splitlines()[1:] == ["Table master4:", out.splitlines()[2], "\tvia 192.168.0.83 on eth0"]
    rc, out, _ = run(capsys, "show", "node1", "route", "-f", lab, "-o", "json")
    routes = json.loads(out)
    assert [r["prefix"] for r in routes][:2] == ["0.0.0.0/0", "10.244.202.64/26"] and routes[1]["protocol"] == "static1"
    rc, _, err = run(capsys, "show", "node1", "routes", "-f", lab)
    assert rc == 2 and "unknown command 'routes'" in err


def test_examples_lists_and_copies_the_shipped_scenarios(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rc, out, _ = run(capsys, "examples")
    shipped = sorted(p.relative_to(ROOT / "meshsim" / "examples").as_posix()
                     for p in (ROOT / "meshsim" / "examples").rglob("*.yaml"))
    assert rc == 0 and [line.split()[0] for line in out.splitlines()[:len(shipped)]] == shipped
    rc, out, _ = run(capsys, "examples", "--copy", str(tmp_path / "ex"))
    assert sorted(p.relative_to(tmp_path / "ex").as_posix() for p in (tmp_path / "ex").rglob("*.yaml")) == shipped
    rc, _, err = run(capsys, "examples", "--copy", str(tmp_path / "ex"))
    assert rc == 2 and "--force" in err
    assert (ROOT / "scenarios").resolve() == (ROOT / "meshsim" / "examples").resolve()  # README paths still work


def test_peers_graph_writes_dot_and_png(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rc, out, _ = run(capsys, "peers", RR, "--graph", str(tmp_path / "t.dot"))
    dot = (tmp_path / "t.dot").read_text()
    assert rc == 0 and 'subgraph "cluster_0" { label="RR cluster 244.0.0.1"; "rr1"; "rr2"; }' in dot
    assert dot.count(" -- ") == 13 and '"node1" -- "rr1" [style=bold' in dot
    pytest.importorskip("networkx")
    rc, _, _ = run(capsys, "peers", RR, "--graph", str(tmp_path / "t.png"))
    assert rc == 0 and (tmp_path / "t.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rc, _, err = run(capsys, "peers", RR, "--graph", str(tmp_path / "t.gif"))
    assert rc == 2 and "expected .png, .svg or .dot" in err


def test_topology_colours_sessions_by_live_state() -> None:
    from meshsim.report.topology import topology

    c = cluster(RR)
    status = {n: {"sessions": [{"name": p.name, "state": "up" if p.peer_node != "node6" else "start"}
                               for p in ps]} for n, ps in c.peerings().items()}
    vertices, edges = topology(c, status)
    roles = {v.name: v.role for v in vertices}
    assert roles["rr1"] == "route reflector" and roles["node1"] == "rr client"
    assert {e.state for e in edges if "node6" in (e.a, e.b)} == {"start"}
    assert sum(e.state == "up" for e in edges) == 11


def test_report_markdown_embeds_the_topology(tmp_path: Path) -> None:
    from meshsim.report.markdown import markdown
    from meshsim.report.topology import markdown_section

    section = markdown_section(cluster(RR), tmp_path)
    report = {"scenario": "rr-2x6", "started_at": "now", "mode": "loopback", "nodes": {}, "converged": True}
    md = markdown(report, [], topology=section)
    assert "## Topology" in md and "13 BGP sessions between 2 route reflectors, 6 rr clients" in md
    assert (tmp_path / "topology.svg").exists() or (tmp_path / "topology.dot").exists()
