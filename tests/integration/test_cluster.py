"""Real clusters: node processes, real ExaBGP, real TCP on 127.x. Each test checks what a user relies on:
converged tables equal the expected ones line for line, sessions as designed, churn, stop/kill/restart,
ExaBGP crashes, and that nothing is left running afterwards."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from meshsim.oracle.expected import expected_tables
from meshsim.model.cluster import Cluster
from meshsim.model.resources import load_scenario
from meshsim.run.harness import Harness
from meshsim.run.runner import run_scenario
from tests.conftest import ROOT, SCENARIOS
from meshsim.model.generate import cluster_yaml
from tests.integration.helpers import alive, leftover_processes, pids_of

pytestmark = [pytest.mark.integration]


def _cluster(path: Path) -> Cluster:
    return Cluster.build(load_scenario([path]))


def _assert_cleaned(harness: Harness, pids: set[int]) -> None:
    assert not [p for p in pids if alive(p)], "node or ExaBGP processes left behind"
    assert not harness.fabric.workdir.exists(), "temp dir left behind"
    assert not leftover_processes(str(harness.fabric.workdir))


async def test_three_node_mesh_converges_to_the_expected_tables(tmp_path):
    out = tmp_path / "out"
    result = await run_scenario([SCENARIOS / "three-node-ipip.yaml"], out=out, progress=False, timeout=60)
    assert result.converged, result.cold
    expected = expected_tables(_cluster(SCENARIOS / "three-node-ipip.yaml"))
    for name, table in expected.items():
        assert (out / "routes" / f"{name}.ip").read_text().splitlines() == table.render_ip().splitlines()
        assert "via" in (out / "routes" / f"{name}.ip").read_text() and "tunl0" in table.render_ip()
    status = (out / "status" / "node1.txt").read_text()
    for peer in ("192.168.0.82", "192.168.0.83"):
        assert re.search(rf"^\| {re.escape(peer)} +\| node-to-node mesh \| up +\| \d\d:\d\d:\d\d \| Established \|$",
                         status, re.M), status
    report = (out / "report.json").read_text()
    assert '"schema": "meshsim.report.markdown/v1"' in report
    assert result.cold["sessions_established"] == result.cold["sessions_expected"] == 6
    assert result.cold["time_to_converged_s"] > 0
    assert not leftover_processes(str(out)) and not leftover_processes("meshsim-run-")


async def test_route_reflectors_reflect_with_originator_id_and_cluster_list():
    cluster = _cluster(SCENARIOS / "rr-2x6.yaml")
    async with asyncio.timeout(90):
        async with Harness(cluster) as h:
            conv = await h.converge(60)
            assert conv.converged and conv.sessions_up == conv.sessions_expected == 26
            addresses = {n.name: str(n.address) for n in cluster.scenario.nodes}
            clients = [f"node{i}" for i in range(1, 7)]
            for me in clients:
                status = await h.fabric.get(me, "/status")
                peers = {s["peer_node"]: s for s in status["sessions"]}
                assert set(peers) == {"rr1", "rr2"}  # no client peers with another client
                assert all(s["type"] == "node specific" and s["state"] == "up" for s in peers.values())
                rib = await h.fabric.get(me, "/rib")
                for other in clients:
                    if other == me:
                        continue
                    for block in cluster.affine_blocks(other):
                        entry = rib["loc_rib"][str(block)]
                        assert entry["next_hop"] == addresses[other]  # RFC 4456 §10: next hop kept
                        assert entry["originator_id"] == addresses[other]  # RFC 4456 §8
                        assert entry["cluster_list"] == ["244.0.0.1"]
                        assert entry["from"].startswith("Node_192_168_0_1")
            pids = pids_of(h)
    _assert_cleaned(h, pids)


async def test_pod_churn_claims_a_second_block_and_withdraws_it(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(cluster_yaml("churn", 3, pods=2, subnet="192.168.0.0/24"))
    cluster = _cluster(path)
    async with asyncio.timeout(120):
        async with Harness(cluster) as h:
            assert (await h.converge(60)).converged
            before = set(cluster.affine_blocks("node3"))
            await h.add_pods("node3", 70)
            new_blocks = set(cluster.affine_blocks("node3")) - before
            assert len(new_blocks) == 1
            (new_block,) = new_blocks
            t = time.time()
            conv = await h.converge(30, since=t)
            assert conv.converged, {n: d.to_json() for n, d in conv.diffs.items() if not d.equal}
            for other in ("node1", "node2"):
                ip = h.snapshot(other)["routes"]["ip"]
                assert f"{new_block} via 192.168.0.12 dev tunl0 proto bird onlink" in ip
            await h.remove_pods("node3", 70)
            assert set(cluster.affine_blocks("node3")) == before
            conv = await h.converge(30, since=time.time())
            assert conv.converged
            for other in ("node1", "node2"):
                assert str(new_block) not in h.snapshot(other)["routes"]["ip"]
            pids = pids_of(h)
    _assert_cleaned(h, pids)


async def test_graceful_stop_kill_and_restart(tmp_path):
    hold, keepalive = 6.0, 2.0
    path = tmp_path / "s.yaml"
    path.write_text(cluster_yaml("lifecycle", 3, hold="6s", keepalive="2s", subnet="192.168.7.0/24"))
    cluster = _cluster(path)
    block2 = str(cluster.affine_blocks("node2")[0])
    async with asyncio.timeout(150):
        async with Harness(cluster) as h:
            assert (await h.converge(60)).converged
            # graceful stop: Cease NOTIFICATION, routes withdrawn everywhere at once
            t = time.time()
            await h.stop_node("node2")
            conv = await h.converge(20, since=t)
            assert conv.converged and block2 not in h.snapshot("node1")["routes"]["ip"]
            graceful = time.time() - t
            assert graceful < hold, f"graceful stop took {graceful:.1f}s, no faster than the hold timer"
            # restart: rejoins, tables back to expected
            await h.start_node("node2")
            assert (await h.converge(30, since=time.time())).converged
            assert block2 in h.snapshot("node1")["routes"]["ip"]
            # crash: node and its ExaBGP frozen then SIGKILLed; peers notice on the hold timer
            t = time.time()
            await h.kill_node("node2")
            await asyncio.sleep(hold - keepalive - 1.0)
            assert block2 in (await h.fabric.get("node1", "/routes"))["ip"], "withdrawn before the hold timer"
            conv = await h.converge(hold + 10, since=t)
            assert conv.converged
            removed_at = h.snapshot("node1")["routes"]["removed_at"][block2]
            assert hold - keepalive - 0.5 <= removed_at - t <= hold + 3
            await h.start_node("node2")
            assert (await h.converge(30, since=time.time())).converged
            pids = pids_of(h)
    _assert_cleaned(h, pids)


async def test_crashed_exabgp_is_restarted_and_routes_return(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(cluster_yaml("exacrash", 3, subnet="192.168.8.0/24"))
    cluster = _cluster(path)
    block1 = str(cluster.affine_blocks("node1")[0])
    async with asyncio.timeout(90):
        async with Harness(cluster) as h:
            assert (await h.converge(60)).converged
            usage = (await h.fabric.get("node1", "/counters"))["usage"]["exabgp"]
            old_pid = usage["pid"]
            os.kill(old_pid, signal.SIGKILL)
            deadline = time.monotonic() + 30
            while True:
                usage = (await h.fabric.get("node1", "/counters"))["usage"]["exabgp"]
                if usage["restarts"] >= 1 and usage["pid"] and usage["pid"] != old_pid:
                    break
                assert time.monotonic() < deadline, "ExaBGP was not restarted"
                await asyncio.sleep(0.2)
            conv = await h.converge(30, since=time.time())
            assert conv.converged
            assert block1 in h.snapshot("node2")["routes"]["ip"]
            status = await h.fabric.get("node1", "/status")
            assert all(s["state"] == "up" for s in status["sessions"])
            pids = pids_of(h) | {old_pid}
    _assert_cleaned(h, pids)


def test_ctrl_c_stops_every_process_and_still_writes_the_report(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(cluster_yaml("interrupt", 3, subnet="192.168.9.0/24"))
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "meshsim", "run", str(path), "--out", str(out), "--keep-running"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        deadline = time.monotonic() + 60
        while True:  # wait until the nodes answer and the cluster converged
            if proc.poll() is not None:
                pytest.fail(f"meshsim run exited early: {proc.communicate()}")
            try:
                from urllib.request import urlopen

                with urlopen("http://127.168.9.10:9179/status", timeout=2) as r:
                    if r.read().count(b"Established") >= 2:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "cluster did not come up"
            time.sleep(0.3)
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert (out / "report.json").exists() and (out / "routes" / "node1.ip").exists()
    assert '"interrupted": true' in (out / "report.json").read_text()
    time.sleep(0.5)
    assert not leftover_processes("meshsim-run-"), "processes left after Ctrl-C"
