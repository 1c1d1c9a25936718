"""Real clusters: worker processes, real BGP sessions on 127.x. Each test checks what a user relies on: converged
tables equal the expected ones line for line, sessions as designed, churn, stop/kill/restart with BGP's own timers
and graceful restart, a worker that dies, and that nothing is left running afterwards."""

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

import meshsim
from meshsim.fabric.local import WorkerFabric
from meshsim.model.cluster import Cluster
from meshsim.model.generate import cluster_yaml
from meshsim.model.resources import load_scenario
from meshsim.oracle.expected import expected_tables
from meshsim.run.harness import Harness
from meshsim.run.runner import run_scenario
from tests.conftest import ROOT, SCENARIOS
from tests.integration.helpers import (alive, leftover_processes, marked_env, marked_processes, pids_of,
                                       routes_view, sockets_on, table)

pytestmark = [pytest.mark.integration]


def _cluster(path: Path) -> Cluster:
    return Cluster.build(load_scenario([path]))


def _assert_cleaned(harness: Harness, pids: set[int]) -> None:
    assert not [p for p in pids if alive(p)], "worker or BIRD processes left behind"
    assert not leftover_processes(str(harness.fabric.workdir))


async def test_message_counts_of_each_phase_add_up(tmp_path):
    """Every UPDATE a node sends goes to a node of the cluster, so the cold start and each event must count as
    many received as sent, and a new block as many as compare's rule says (R(N-1)). Summaries are pushed when
    a table or session changes, and a reflector's second copy of a route changes neither: the cold start's
    last copies used to land in the first event's count (142 received against 98 sent, 2 RR + 48)."""
    path = tmp_path / "s.yaml"
    path.write_text(cluster_yaml("counts", 32, design="rr", subnet="192.168.9.0/24")
                    + "  events:\n  - {action: add-workloads, node: node3, count: 70}\n"
                      "  - {action: stop-node, node: node2}\n")
    result = await run_scenario([path], out=tmp_path / "out", progress=False, timeout=60)
    assert result.converged, result.cold
    for phase in (result.cold, *result.events):
        assert phase["update_messages_received"] == phase["update_messages_sent"] > 0, phase
    assert result.events[0]["update_messages_sent"] == 2 * (32 - 1)
    assert result.events[1]["withdrawals_received"] == result.events[1]["withdrawals_sent"] > 0


async def test_three_node_mesh_converges_to_the_expected_tables(tmp_path):
    out = tmp_path / "out"
    result = await run_scenario([SCENARIOS / "three-node-ipip.yaml"], out=out, progress=False, timeout=60)
    assert result.converged, result.cold
    expected = expected_tables(_cluster(SCENARIOS / "three-node-ipip.yaml"))
    for name, tbl in expected.items():
        assert (out / "routes" / f"{name}.ip").read_text().splitlines() == tbl.render_ip().splitlines()
        assert "via" in (out / "routes" / f"{name}.ip").read_text() and "tunl0" in tbl.render_ip()
    status = (out / "status" / "node1.txt").read_text()
    for peer in ("192.168.0.82", "192.168.0.83"):
        assert re.search(rf"^\| {re.escape(peer)} +\| node-to-node mesh \| up +\| \d\d:\d\d:\d\d \| Established \|$",
                         status, re.M), status
    report = (out / "report.json").read_text()
    assert '"schema": "meshsim.report/v2"' in report
    assert result.cold["sessions_established"] == result.cold["sessions_expected"] == 6
    # BIRD's `connect delay time 2` (jittered down by up to a quarter): nothing connects before 1.5 s
    assert result.cold["time_to_established_s"] >= 1.5
    assert result.cold["update_messages_received"] >= 6  # one UPDATE per block, plus End-of-RIB markers
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
    async with asyncio.timeout(120):
        async with meshsim.emulate(text=cluster_yaml("churn", 3, pods=2, subnet="192.168.0.0/24")) as emu:
            before = set(emu.expected_routes("node1"))
            added = await emu.add_workloads("node3", 70)
            assert added.converged and added["detail"] == "70 pods, 2 blocks on node3"
            new = [line for line in emu.expected_routes("node1") if line not in before]
            assert len(new) == 1 and new[0].startswith("10.244.") and "via 192.168.0.12 dev tunl0 proto bird onlink" \
                in new[0], new
            for other in ("node1", "node2"):
                assert new[0] in await emu.routes(other)
            removed = await emu.remove_workloads("node3", 70)
            assert removed.converged and removed["detail"] == "70 pods removed"
            for other in ("node1", "node2"):
                assert new[0].split()[0] not in " ".join(await emu.routes(other))
            pids = {w["pid"] for w in emu.report()["processes"]["workers"]}
    assert pids and not [p for p in pids if alive(p)]


async def test_graceful_stop_crash_sigkill_and_restart(tmp_path):
    hold, keepalive = 6.0, 2.0
    path = tmp_path / "s.yaml"
    path.write_text(cluster_yaml("lifecycle", 3, hold="6s", keepalive="2s", subnet="192.168.7.0/24"))
    cluster = _cluster(path)
    block2 = str(cluster.affine_blocks("node2")[0])
    async with asyncio.timeout(240):
        async with Harness(cluster) as h:
            assert (await h.converge(60)).converged
            # graceful stop: Cease NOTIFICATION, routes withdrawn everywhere at once
            t = time.time()
            await h.stop_node("node2")
            conv = await h.converge(20, since=t)
            assert conv.converged and block2 not in await table(h, "node1")
            assert time.time() - t < hold, "a graceful stop is no faster than the hold timer"
            await h.start_node("node2")
            assert (await h.converge(30, since=time.time())).converged
            assert block2 in await table(h, "node1")
            # crash: the node goes silent (connections open); peers notice on the hold timer, and flush at once
            t = time.time()
            await h.kill_node("node2")
            await asyncio.sleep(hold * 0.75 - keepalive - 0.5)  # BIRD shortens timers by up to a quarter
            assert block2 in await table(h, "node1"), "withdrawn before the hold timer"
            conv = await h.converge(hold + 10, since=t)
            assert conv.converged
            removed_at = (await routes_view(h, "node1"))["removed_at"][block2]
            assert hold * 0.75 - keepalive - 0.5 <= removed_at - t <= hold + 2
            status = await h.fabric.get("node1", "/status")
            s = next(x for x in status["sessions"] if x["peer_node"] == "node2")
            assert s["state"] == "start" and "Hold timer expired" in s["info"]
            await h.start_node("node2")
            assert (await h.converge(60, since=time.time())).converged
            # SIGKILL: connections reset, no NOTIFICATION: graceful restart keeps node2's routes as stale
            t = time.time()
            until = await h.kill_node("node2", mode="sigkill")
            assert until is not None and 119 <= until - t <= 121  # BIRD's default restart time, 120 s
            await asyncio.sleep(1.0)
            assert block2 in await table(h, "node1"), "kept as stale (RFC 4724)"
            rib = await h.fabric.get("node1", "/rib")
            name = next(p.name for p in h.fabric.configs()["node1"].peers if p.peer_node == "node2")
            assert rib["adj_rib_in"][name][block2]["stale"] is True
            status = await h.fabric.get("node1", "/status")
            s = next(x for x in status["sessions"] if x["peer_node"] == "node2")
            assert s["state"] == "start" and s["stale_routes"] == 1
            assert (await h.converge(10, since=t)).converged  # the expected tables keep stale routes too
            # the node comes back (as calico-node starts BIRD: -R) and refreshes its routes; End-of-RIB ends it
            await h.start_node("node2")
            assert (await h.converge(30, since=time.time())).converged
            rib = await h.fabric.get("node1", "/rib")
            assert rib["adj_rib_in"][name][block2]["stale"] is False
            pids = pids_of(h)
    _assert_cleaned(h, pids)


async def test_a_worker_that_dies_is_reported_with_its_nodes_and_their_peers_see_it(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(cluster_yaml("workerdeath", 6, subnet="192.168.8.0/24"))
    cluster = _cluster(path)
    async with asyncio.timeout(90):
        h = Harness(cluster, WorkerFabric(cluster, workers=2))
        try:
            await h.start()
            assert (await h.converge(60)).converged
            victim = h.fabric.workers[0]
            held = list(victim.nodes)
            os.kill(victim.pid, signal.SIGKILL)
            survivor = h.fabric.workers[1].nodes[0]
            # its nodes' sessions were closed by the kernel (no NOTIFICATION): the survivors keep their routes
            # as stale (graceful restart), as BIRD does when a peer's BIRD is SIGKILLed
            await asyncio.sleep(1.0)
            status = await h.fabric.get(survivor, "/status")
            gone = {s["peer_node"]: s for s in status["sessions"] if s["peer_node"] in held}
            assert gone and all(s["state"] == "start" and s["stale_routes"] >= 1 for s in gone.values()), gone
            with pytest.raises(Exception, match=r"worker 0 \(pid \d+\) exited with code -9.*it held"):
                await h.converge(5)
        finally:
            await h.close()
    assert not alive(victim.pid)


async def test_malformed_bytes_on_the_bgp_port_get_a_notification_and_other_sessions_stay_up(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(cluster_yaml("malformed", 3, subnet="192.168.6.0/24"))
    cluster = _cluster(path)
    async with asyncio.timeout(90):
        async with Harness(cluster) as h:
            assert (await h.converge(60)).converged
            cfg = h.fabric.configs()["node1"]
            port = cfg.bgp_port
            # a connection from an address that is no peer: Cease / Connection Rejected (RFC 4486 6/5)
            reader, writer = await asyncio.open_connection(cfg.session_address, port, local_addr=("127.0.0.1", 0))
            data = await asyncio.wait_for(reader.read(100), 5)
            writer.close()
            assert data[18] == 3 and data[19:21] == bytes([6, 5]), data
            # from node2's own address (a configured peer): garbage after a valid header -> the RFC's NOTIFICATION
            node2 = h.fabric.configs()["node2"].session_address
            reader, writer = await asyncio.open_connection(cfg.session_address, port, local_addr=(node2, 0))
            opened = await asyncio.wait_for(reader.read(4096), 5)  # node1 sends its OPEN at once (BIRD)
            assert opened[18] == 1
            writer.write(b"\x00" * 16 + b"\x00\x13\x04")  # marker not all ones: Connection Not Synchronized
            await writer.drain()
            data = await asyncio.wait_for(reader.read(4096), 5)
            writer.close()
            assert data[18] == 3 and data[19:21] == bytes([1, 1]), data
            status = await h.fabric.get("node1", "/status")
            others = {s["peer_node"]: s["state"] for s in status["sessions"]}
            assert others["node3"] == "up", "the other sessions stay Established"
            # (node2's real session was replaced by our connection's attempt: as BIRD does, it comes back)
            assert (await h.converge(30, since=time.time())).converged


async def test_many_nodes_share_few_workers(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(cluster_yaml("forty", 40, subnet="192.168.4.0/22"))
    cluster = _cluster(path)
    async with asyncio.timeout(180):
        async with Harness(cluster, WorkerFabric(cluster, workers=2)) as h:
            conv = await h.converge(120)
            assert conv.converged and conv.sessions_up == conv.sessions_expected == 40 * 39
            d = h.fabric.describe()
            assert len(d["workers"]) == 2 and sum(len(w["nodes"]) for w in d["workers"]) == 40
            usage = h.observer.snapshots["node1"]["counters"]["usage"]
            assert usage["engine"] == "meshsim" and usage["cpu_seconds"] > 0 and usage["rss_bytes"] > 0
            pids = pids_of(h)
    _assert_cleaned(h, pids)


def test_ctrl_c_stops_every_process_and_still_writes_the_report(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(cluster_yaml("interrupt", 3, subnet="192.168.9.0/24"))
    out = tmp_path / "out"
    mark = f"ctrl-c-{os.getpid()}"
    env = marked_env(mark)
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
    assert not marked_processes(mark), "processes left after Ctrl-C"
    assert not sockets_on({"127.168.9.10", "127.168.9.11", "127.168.9.12"}), "addresses held after Ctrl-C"
