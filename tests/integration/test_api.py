"""The public API (meshsim.emulate, Emulation) on real clusters: each action records what the same timeline event
records, teardown leaves nothing behind when the block raises or is cancelled (also during the cold start), two
emulations side by side, a test's own BGP speaker (gobgpd, in netns) peering through peer_endpoint, and the
pytest plugin's failure report and teardown (run as a separate pytest session)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from typing import Any

import pytest

import meshsim
from meshsim.model.generate import cluster_yaml
from meshsim.run.runner import run_scenario
from tests.conftest import ROOT
from tests.integration.helpers import alive

pytestmark = [pytest.mark.integration]

RESTART = ("---\napiVersion: projectcalico.org/v3\nkind: BGPConfiguration\nmetadata: {name: default}\n"
           "spec: {nodeToNodeMeshEnabled: true, asNumber: 64512, nodeMeshMaxRestartTime: 3s}\n")


def small(name: str, subnet: str, nodes: int = 3, events: list[str] | None = None) -> str:
    """A full mesh with short timers (hold 3 s) and a 3 s graceful-restart time."""
    text = cluster_yaml(name, nodes, hold="3s", keepalive="1s", subnet=subnet).rstrip("\n")
    if events:
        text += "\n  events:\n" + "".join(f"    - {e}\n" for e in events).rstrip("\n")
    return text + "\n" + RESTART


def footprint(emu: meshsim.Emulation) -> dict[str, Any]:
    """What an emulation made on this machine: its worker pids, temp dirs, namespaces."""
    fabric = emu._harness.fabric
    return {"pids": [w.pid for w in fabric.workers if w.pid], "dirs": [str(fabric.workdir)] +
            ([str(emu._text_dir)] if emu._text_dir else []),
            "namespaces": list(getattr(fabric, "_made_ns", []))}


def assert_gone(made: dict[str, Any]) -> None:
    assert made["pids"], "nothing was started"
    assert not [p for p in made["pids"] if alive(p)], "worker processes left behind"
    assert not [d for d in made["dirs"] if os.path.exists(d)], "temp dirs left behind"
    if made["namespaces"]:
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert not [ns for ns in made["namespaces"] if ns in listed], "namespaces left behind"


EVENTS = ["{action: add-workloads, node: node3, count: 70}", "{action: remove-workloads, node: node3, count: 70}",
          "{action: stop-node, node: node2}", "{action: start-node, node: node2}",
          "{action: kill-node, node: node2}", "{action: start-node, node: node2}",
          "{action: kill-node, node: node2, mode: sigkill}", "{action: start-node, node: node2}",
          "{action: disconnect, node: node1, peer: node3}",
          "{action: add-node, name: node9, ipv4Address: 192.168.31.99/24, workloads: 2}",
          "{action: apply, resource: {apiVersion: projectcalico.org/v3, kind: Node, metadata: {name: node1, "
          "labels: {zone: a}}, spec: {bgp: {ipv4Address: 192.168.31.10/24}}}}"]


async def test_each_action_records_what_the_same_timeline_event_records(tmp_path):
    path = tmp_path / "timeline.yaml"
    path.write_text(small("rec", "192.168.31.0/24", events=EVENTS))
    timeline = await run_scenario([str(path)], progress=False, timeout=60)
    assert timeline.converged and len(timeline.events) == len(EVENTS), [e.get("error") for e in timeline.events]

    bare = tmp_path / "bare.yaml"
    bare.write_text(small("rec", "192.168.31.0/24"))
    async with asyncio.timeout(240):
        async with meshsim.emulate(bare, out=tmp_path / "out") as emu:
            records = [await emu.add_workloads("node3", 70), await emu.remove_workloads("node3", 70),
                       await emu.stop_node("node2"), await emu.start_node("node2"),
                       await emu.kill_node("node2"), await emu.start_node("node2"),
                       await emu.kill_node("node2", mode="sigkill"), await emu.start_node("node2"),
                       await emu.disconnect("node1", "node3"),
                       await emu.add_node("node9", "192.168.31.99/24", workloads=2),
                       await emu.apply({"apiVersion": "projectcalico.org/v3", "kind": "Node",
                                        "metadata": {"name": "node1", "labels": {"zone": "a"}},
                                        "spec": {"bgp": {"ipv4Address": "192.168.31.10/24"}}})]
            assert emu.nodes == ["node1", "node2", "node3", "node9"]
            report = emu.report()
    for mine, theirs in zip(records, timeline.events):
        assert mine.event == theirs["event"] and mine.converged, (mine.event, mine.get("not_converged"))
        assert set(mine) == set(theirs), (mine.event, set(mine) ^ set(theirs))
        if "stale" in theirs:
            assert set(mine["stale"]) == set(theirs["stale"])
    crash = records[4]
    assert 3 * 0.75 - 1 - 0.5 <= crash.convergence_s <= 3 + 3, crash.convergence_s  # the hold timer, 3 s
    assert records[0]["detail"].startswith("70 pods") and records[9].sessions_established == 6
    # report() is what report.json holds, written on teardown with `out`
    written = json.loads((tmp_path / "out" / "report.json").read_text())
    assert [e["event"] for e in report["events"]] == [e["event"] for e in written["events"]] == \
        [e["event"] for e in timeline.events]
    assert set(written["nodes"]) == {"node1", "node2", "node3", "node9"}
    assert (tmp_path / "out" / "routes" / "node9.ip").exists() and (tmp_path / "out" / "report.md").exists()


async def test_sigkill_returns_with_the_stale_routes_and_wait_converged_measures_their_expiry(tmp_path):
    async with meshsim.emulate(text=small("stale", "192.168.32.0/24")) as emu:
        block2 = [line for line in emu.expected_routes("node1") if "via 192.168.32.11" in line]
        killed = await emu.kill_node("node2", mode="sigkill")
        assert killed.converged and killed.stale["kept_s"] is None and 3 <= killed.stale["restart_time_s"] < 3.5
        assert block2 and set(block2) <= set(await emu.routes("node1"))  # kept as stale (RFC 4724)
        assert emu.running == ["node1", "node3"]
        waited = await emu.wait_converged(timeout=30)
        assert waited["converged"] and not [line for line in await emu.routes("node1") if "192.168.32.11" in line]
        assert 2.5 <= killed.stale["kept_s"] <= 6 and set(killed.stale["per_node_kept_s"]) == {"node1", "node3"}
        assert emu.report()["events"][0]["stale"]["kept_s"] == killed.stale["kept_s"]


async def test_bad_arguments_are_errors_naming_the_argument(tmp_path):
    async with meshsim.emulate(text=small("bad", "192.168.33.0/24")) as emu:
        with pytest.raises(meshsim.MeshsimError, match=r"Emulation.add_workloads\(\): field node: names no node"):
            await emu.add_workloads("nodeX", 3)
        with pytest.raises(meshsim.MeshsimError, match=r"field count: must be a positive integer"):
            await emu.add_workloads("node1", 0)
        with pytest.raises(meshsim.MeshsimError, match=r"field address: is already another node's address"):
            await emu.add_node("node7", "192.168.33.10/24")
        with pytest.raises(meshsim.MeshsimError, match="no external BGP peer"):
            emu.peer_endpoint("node1", "192.168.33.1")
        await emu.stop_node("node3")
        with pytest.raises(meshsim.EmulationError, match="node node3 is not running"):
            await emu.routes("node3")
        assert emu.report()["events"][0]["event"] == "stop-node node3"  # refused calls record nothing
    with pytest.raises(meshsim.MeshsimError, match=r"^<text>:4: document 1 \(IPPool p\): field spec.cidr"):
        async with meshsim.emulate(text="apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: p}\n"
                                        "spec: {cidr: nonsense}\n"):
            pass


async def test_teardown_when_the_block_raises(tmp_path):
    with pytest.raises(ZeroDivisionError):
        async with meshsim.emulate(text=small("raise", "192.168.34.0/24"), workers=2) as emu:
            made = footprint(emu)
            assert len(made["pids"]) == 2
            1 / 0
    assert_gone(made)


async def test_teardown_when_the_task_is_cancelled_in_the_block_or_during_the_cold_start(tmp_path):
    seen: dict[str, Any] = {}

    async def user(text: str, up: asyncio.Event) -> None:
        emu = meshsim.emulate(text=text)
        seen["emu"] = emu
        async with emu:
            up.set()
            await asyncio.sleep(3600)

    up = asyncio.Event()
    task = asyncio.create_task(user(small("cancel", "192.168.35.0/24"), up))
    await asyncio.wait_for(up.wait(), 60)
    made = footprint(seen["emu"])
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert_gone(made)

    # cancelled while the nodes start: as soon as the workers exist
    up = asyncio.Event()
    seen.clear()
    task = asyncio.create_task(user(small("cancel2", "192.168.36.0/24", nodes=6), up))
    deadline = time.monotonic() + 60
    while not (seen.get("emu") and seen["emu"]._harness and seen["emu"]._harness.fabric.workers
               and all(w.pid for w in seen["emu"]._harness.fabric.workers)):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    made = footprint(seen["emu"])
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not up.is_set()  # it was cancelled before its cold start converged
    assert_gone(made)


async def test_two_emulations_side_by_side_on_different_addresses(meshsim_cluster):
    a = await meshsim_cluster(text=small("left", "192.168.37.0/24"))
    b = await meshsim_cluster(text=small("right", "192.168.38.0/24", nodes=4), workers=1)
    assert a.http_address("node1")[0] != b.http_address("node1")[0]
    assert await a.routes("node1") == a.expected_routes("node1")
    assert await b.routes("node1") == b.expected_routes("node1")
    assert await a.routes("node1") != await b.routes("node1")
    await b.add_workloads("node4", 70)  # acting on one leaves the other alone
    assert await a.routes("node2") == a.expected_routes("node2")
    assert len((await b.status("node1"))["sessions"]) == 3 and len((await a.status("node1"))["sessions"]) == 2


PLUGIN_TEST = '''
import json, os
import pytest

CLUSTER = {cluster!r}

@pytest.mark.asyncio
async def test_fails_with_two_clusters(meshsim_cluster):
    a = await meshsim_cluster(text=CLUSTER, workers=1)
    b = await meshsim_cluster(text=CLUSTER.replace("192.168.40.", "192.168.41."), workers=1)
    made = [{{"pids": [w.pid for w in e._harness.fabric.workers], "dirs": [str(e._harness.fabric.workdir),
              str(e._text_dir)], "namespaces": []}} for e in (a, b)]
    open(os.environ["MADE"], "w").write(json.dumps(made))
    assert await a.routes("node1") == ["no such table"]
'''


def test_the_plugin_reports_tables_and_logs_of_a_failing_test_and_tears_down(tmp_path):
    (tmp_path / "test_user.py").write_text(PLUGIN_TEST.format(cluster=small("plug", "192.168.40.0/24")))
    made = tmp_path / "made.json"
    env = {**os.environ, "MADE": str(made)}
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "default",
                        "-o", "asyncio_default_fixture_loop_scope=function", "test_user.py",
                        f"--meshsim-out={tmp_path / 'reports'}"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    out = r.stdout
    assert r.returncode == 1 and "1 failed" in out, out[-3000:]
    for i in (0, 1):
        assert f"meshsim emulation {i}: node tables, status and logs" in out
    assert "routes: equal to the expected table" in out and "| node-to-node mesh | up" in out
    assert '"event": "session_established"' in out  # the log tail
    for emulation in json.loads(made.read_text()):
        assert_gone(emulation)
    reports = sorted((tmp_path / "reports").glob("*/*/report.json"))
    assert len(reports) == 2 and json.loads(reports[0].read_text())["converged"] is True


@pytest.mark.root
async def test_own_gobgpd_in_netns_peers_through_peer_endpoint_and_learns_the_blocks(tmp_path):
    if os.geteuid() != 0 or not shutil.which("gobgpd"):
        pytest.skip("needs root (namespaces) and gobgpd")
    text = small("gobgp", "192.168.42.0/24") + (
        "---\napiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {name: tor}\n"
        "spec: {node: node1, peerIP: 192.168.42.1, asNumber: 65001}\n")
    async with asyncio.timeout(180):
        async with meshsim.emulate(text=text, isolation="netns", external_peers="none", wait=False) as emu:
            made = footprint(emu)
            tor = emu.peer_endpoint("node1", "192.168.42.1")
            assert tor.netns and tor.local_address == "192.168.42.1" and tor.node_address == "192.168.42.10"
            conf = tmp_path / "gobgpd.toml"
            conf.write_text(
                f'[global.config]\n  as = {tor.peer_as}\n  router-id = "{tor.peer_router_id}"\n  port = -1\n'
                f'[[neighbors]]\n  [neighbors.config]\n    neighbor-address = "{tor.node_address}"\n'
                f'    peer-as = {tor.node_as}\n  [neighbors.transport.config]\n'
                f'    local-address = "{tor.local_address}"\n    remote-port = {tor.node_port}\n'
                '  [neighbors.ebgp-multihop.config]\n    enabled = true\n    multihop-ttl = 64\n')
            gobgpd = subprocess.Popen(tor.command("gobgpd", "-f", str(conf), "-t", "toml", "--pprof-disable",
                                                  "--api-hosts", "127.0.0.1:50071"),
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                await emu.wait_converged(timeout=60)
                want = set(emu.expected_advertised("node1", "192.168.42.1"))
                assert len(want) == 3
                learned: set[str] = set()
                deadline = time.monotonic() + 30
                while learned != want and time.monotonic() < deadline:
                    r = subprocess.run(tor.command("gobgp", "-u", "127.0.0.1", "-p", "50071", "global", "rib", "-a", "ipv4", "-j"),
                                       capture_output=True, text=True)
                    learned = set(json.loads(r.stdout or "{}"))
                    await asyncio.sleep(0.5)
                assert learned == want
            finally:
                gobgpd.kill()
                gobgpd.wait()
    assert_gone(made)


@pytest.mark.root
async def test_a_bird_node_in_netns_through_the_api(tmp_path):
    if os.geteuid() != 0 or not (shutil.which("bird") or os.path.exists("/usr/sbin/bird")):
        pytest.skip("needs root (namespaces) and BIRD 2")
    from tests.integration.test_bird_interop import scenario

    text = scenario("api-bird", [("node1", "192.168.43.81/24", "meshsim"), ("node2", "192.168.43.82/24", "bird"),
                                 ("node3", "192.168.43.83/24", "meshsim")])
    async with asyncio.timeout(180):
        async with meshsim.emulate(text=text, isolation="netns", dataplane="kernel") as emu:
            made = footprint(emu)
            assert emu.mode == "netns" and (await emu.status("node2"))["implementation"] == "bird"
            added = await emu.add_workloads("node2", 70)  # BIRD exports node2's new block
            assert added.converged and added.sessions_lost == 0
            for node in emu.nodes:
                assert await emu.routes(node) == emu.expected_routes(node)
            stopped = await emu.stop_node("node2")
            assert stopped.converged and stopped.sessions_lost == 4  # node2's 2 sessions, counted at both ends
            assert (await emu.start_node("node2")).converged
    assert_gone(made)


KEEP_TEST = '''
import pytest

CLUSTER = {cluster!r}


@pytest.mark.asyncio
async def test_passes(meshsim_cluster):
    emu = await meshsim_cluster(text=CLUSTER)
    assert await emu.routes("node1") == emu.expected_routes("node1")


@pytest.mark.asyncio
async def test_fails(meshsim_cluster):
    emu = await meshsim_cluster(text=CLUSTER)
    assert await emu.routes("node1") == []


def test_not_reached():
    pass
'''


def test_keep_leaves_a_failing_tests_cluster_up_as_a_run_until_meshsim_down(tmp_path):
    (tmp_path / "test_user.py").write_text(KEEP_TEST.format(cluster=small("keep", "192.168.44.0/24")))
    xdg = tmp_path / "xdg"
    xdg.mkdir(mode=0o700)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(xdg), "PYTHONPATH": str(ROOT)}
    env.pop("MESHSIM_RUNTIME_DIR", None)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "meshsim", *args], env=env, capture_output=True, text=True,
                              timeout=120)

    session = subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o",
                                "asyncio_default_fixture_loop_scope=function", "test_user.py", "--meshsim-keep"],
                               cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            listed = cli("inspect", "-o", "json")
            runs = json.loads(listed.stdout)["runs"] if listed.returncode == 0 else []
            if runs and runs[0]["state"] == "up" and runs[0]["health"]:
                break
            assert session.poll() is None and time.monotonic() < deadline, (listed.stdout, listed.stderr)
            time.sleep(0.5)
        (run,) = runs
        assert run["name"] == "keep" and run["runner"]["pid"] == session.pid and run["health"]["converged"]
        status = cli("status", "--run", "keep", "--node", "node1")
        assert status.returncode == 0 and "| node-to-node mesh | up" in status.stdout, status.stderr
        live = cli("routes", "--live", "--run", "keep", "--node", "node2")
        assert live.returncode == 0 and "proto bird" in live.stdout, live.stderr
        workers = [w["pid"] for w in run["workers"]]
        assert workers and all(alive(p) for p in workers)
        down = cli("down", "keep")
        assert down.returncode == 0, down.stdout + down.stderr
        out, _ = session.communicate(timeout=120)
    finally:
        if session.poll() is None:
            session.kill()
            session.communicate()
    assert session.returncode == 1 and "1 failed, 1 passed" in out, out[-3000:]
    assert "--meshsim-keep keeps its cluster(s) up as run(s) keep" in out
    assert "meshsim emulation 0: node tables, status and logs" in out  # the failure report all the same
    assert not [p for p in workers if alive(p)] and not list((xdg / "meshsim").glob("*.json"))
