"""Real BIRD 2 nodes next to meshsim nodes, every node in a network namespace of its own (meshsim run --isolation
netns), and real GoBGP as a ToR. Each test checks what a user relies on: mixed clusters converge to the expected
tables, the tables BIRD installs in its namespace (`ip -n X route`) equal the expected ones line for line, BIRD
accepts reflected routes and reflects them itself, a ToR learns every block with the right next hops, and every
namespace, bridge, veth and process is gone afterwards, also when a run fails or is interrupted.

Root only (namespaces); BIRD and gobgpd come from scripts/system-deps.sh (`make test` runs it)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from meshsim.errors import RunError
from meshsim.oracle.expected import expected_tables
from meshsim.model.cluster import Cluster
from meshsim.model.resources import load_scenario
from meshsim.run.harness import Harness
from meshsim.fabric.netns import NetnsFabric
from tests.integration.helpers import alive, leftover_processes, pids_of

HAVE_BIRD = shutil.which("bird") is not None or os.path.exists("/usr/sbin/bird")
pytestmark = [
    pytest.mark.integration,
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create network namespaces"),
    pytest.mark.skipif(shutil.which("ip") is None, reason="iproute2 `ip` not installed"),
    pytest.mark.skipif(not HAVE_BIRD, reason="BIRD 2 not installed (scripts/system-deps.sh installs bird2 as root; "
                                             "the install failed or was skipped)"),
]
NEEDS_GOBGP = pytest.mark.skipif(shutil.which("gobgpd") is None,
                                 reason="gobgpd not installed (scripts/system-deps.sh installs it as root)")
HTTP_PORT = 19179  # not 9179: a concurrent loopback run of the same node names cannot answer for ours


def scenario(name: str, nodes: list[tuple[str, str, str]], *, pool: str = "Never", mesh: bool = True,
             rr: bool = False, tor: tuple[str, int] | None = None, pods: int = 2) -> str:
    """nodes: (name, address/prefix, implementation); names starting with rr are route reflectors (cluster 244.0.0.1)."""
    docs = [f"apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {{name: pool1}}\n"
            f"spec: {{cidr: 10.244.0.0/16, blockSize: 26, ipipMode: {pool}}}\n"]
    if not mesh:
        docs.append("apiVersion: projectcalico.org/v3\nkind: BGPConfiguration\nmetadata: {name: default}\n"
                    "spec: {nodeToNodeMeshEnabled: false}\n")
    if rr:
        docs.append("apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {name: peer-with-rrs}\n"
                    "spec: {nodeSelector: all(), peerSelector: route-reflector == 'true'}\n")
    if tor:
        docs.append(f"apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {{name: tor}}\n"
                    f"spec: {{peerIP: {tor[0]}, asNumber: {tor[1]}}}\n")
    hosts = []
    for n, addr, impl in nodes:
        if n.startswith("rr"):
            docs.append(f"apiVersion: projectcalico.org/v3\nkind: Node\nmetadata:\n  name: {n}\n"
                        f"  labels: {{route-reflector: 'true'}}\nspec: {{bgp: {{ipv4Address: {addr}, "
                        f"routeReflectorClusterID: 244.0.0.1}}}}\n")
        else:
            docs.append(f"apiVersion: projectcalico.org/v3\nkind: Node\nmetadata: {{name: {n}}}\n"
                        f"spec: {{bgp: {{ipv4Address: {addr}}}}}\n")
        hosts.append(f"    {n}: {{implementation: {impl}}}")
    workloads = ", ".join(f"{n}: {pods}" for n, _, _ in nodes if not n.startswith("rr"))
    docs.append(f"apiVersion: meshsim/v1\nkind: Scenario\nmetadata: {{name: {name}}}\nspec:\n  hosts:\n"
                + "\n".join(hosts) + f"\n  workloads: {{{workloads}}}\n  timers: {{holdTime: 9s, keepaliveTime: 3s}}\n")
    return "---\n".join(docs)


def msim_namespaces(run: str | None = None) -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    names = [line.split()[0] for line in out.splitlines() if line.strip()]
    return [n for n in names if n.startswith("msim-" + (f"{run}-" if run else ""))]


def engine_pids(h: Harness, fabric: NetnsFabric) -> set[int]:
    """Every worker, BIRD and gobgpd process this fabric started."""
    pids = pids_of(h)
    pids |= {p.pid for p in fabric.tors.procs.values()}
    return pids


def assert_clean(fabric: NetnsFabric, pids: set[int]) -> None:
    assert not [p for p in pids if alive(p)], "node, BIRD, ExaBGP or gobgpd processes left behind"
    assert not msim_namespaces(fabric.topology.run), "network namespaces left behind"
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert f"m{fabric.topology.run}" not in links, "links left in the host namespace"
    assert not fabric.workdir.exists(), "temp dir left behind"
    assert not leftover_processes(str(fabric.workdir))


def kernel_table(fabric: NetnsFabric, node: str) -> str:
    return subprocess.run(["ip", "-n", fabric.topology.node_ns(node), "route"], capture_output=True, text=True,
                          check=True).stdout


@pytest.fixture
def cluster_of(tmp_path: Path):
    def make(text: str) -> tuple[Cluster, Path]:
        path = tmp_path / "scenario.yaml"
        path.write_text(text)
        return Cluster.build(load_scenario([path])), path

    return make


@pytest.fixture
async def netns_harness():
    """Harness(es) on a NetnsFabric; whatever happens in the test, everything is stopped and checked gone."""
    made: list[tuple[Harness, NetnsFabric]] = []

    def make(cluster: Cluster, **kw) -> Harness:
        fabric = NetnsFabric(cluster, http_port=HTTP_PORT, **kw)
        h = Harness(cluster, fabric=fabric)
        made.append((h, fabric))
        return h

    yield make
    for h, fabric in made:
        pids = engine_pids(h, fabric)
        await h.close()
        assert_clean(fabric, pids)


@NEEDS_GOBGP
async def test_mesh_with_one_bird_node_and_a_tor(cluster_of, netns_harness):
    """A 3-node mesh where node2 is BIRD, plus an eBGP ToR: every table as expected, BIRD's kernel table equal to
    its expected table line for line, `calicoctl node status` from BIRD, pods added on the BIRD node reach every
    other node, and the ToR learns every block with its owner's path."""
    cluster, _ = cluster_of(scenario("mesh-bird", [("node1", "192.168.0.81/24", "meshsim"),
                                                   ("node2", "192.168.0.82/24", "bird"),
                                                   ("node3", "192.168.0.83/24", "meshsim")],
                                     tor=("192.168.0.250", 64513)))
    h = netns_harness(cluster)
    async with asyncio.timeout(90):
        await h.start()
        conv = await h.converge(45)
        assert conv.converged and conv.sessions_up == conv.sessions_expected == 6, conv.diffs
        fabric = h.fabric
        expected = expected_tables(cluster)
        assert kernel_table(fabric, "node2").splitlines() == expected["node2"].render_ip().splitlines()
        assert "dev eth0 proto bird" in kernel_table(fabric, "node2")
        # the ToR's session is no node-to-node session: convergence does not wait for it, this test does
        async with asyncio.timeout(30):
            while True:
                status = await fabric.get("node2", "/status")
                if all(s["state"] == "up" for s in status["sessions"]):
                    break
                await asyncio.sleep(0.2)
        assert status["implementation"] == "bird"
        assert {s["name"]: (s["state"], s["info"]) for s in status["sessions"]} == {
            "Mesh_192_168_0_81": ("up", "Established"), "Mesh_192_168_0_83": ("up", "Established"),
            "Global_192_168_0_250": ("up", "Established")}
        assert re.search(r"^\| 192\.168\.0\.81 +\| node-to-node mesh \| up +\| \d\d:\d\d:\d\d \| Established +\|$",
                         status["text"], re.M), status["text"]
        counters = await fabric.get("node2", "/counters")
        assert counters["totals"]["updates_received"] >= 2 and counters["usage"]["engine"] == "bird"
        config = await fabric.get("node2", "/config")
        assert "protocol bgp Mesh_192_168_0_81 from bgp_template" in config["bird.cfg"]
        # pods on the BIRD node: Felix-like routes in its namespace, its new block exported by BIRD
        await h.add_pods("node2", 70)
        conv = await h.converge(30, since=time.time() - 0.1)
        assert conv.converged, conv.diffs
        assert kernel_table(fabric, "node2").splitlines() == h.expected()["node2"].table.render_ip().splitlines()
        report = (await fabric.external_report())["external_peers"][0]
        assert report["ok"], report
        assert set(report["sessions"].values()) == {"established"} and len(report["sessions"]) == 3
        blocks = {str(b) for n in ("node1", "node2", "node3") for b in cluster.affine_blocks(n)}
        assert set(report["learned"]) == blocks and len(blocks) == 4
        for prefix, owner in report["expected"].items():  # eBGP: every node advertises, the owner with itself
            assert any(p["next_hop"] == owner and p["as_path"] == [64512] for p in report["learned"][prefix]["paths"])


async def test_bird_route_reflectors_with_meshsim_clients(cluster_of, netns_harness):
    cluster, _ = cluster_of(scenario("bird-rrs", [("rr1", "192.168.0.11/24", "bird"), ("rr2", "192.168.0.12/24", "bird"),
                                                 ("node1", "192.168.0.81/24", "meshsim"),
                                                 ("node2", "192.168.0.82/24", "meshsim"),
                                                 ("node3", "192.168.0.83/24", "meshsim")],
                                     mesh=False, rr=True))
    h = netns_harness(cluster)
    async with asyncio.timeout(90):
        await h.start()
        conv = await h.converge(45)
        assert conv.converged and conv.sessions_up == conv.sessions_expected == 14, conv.diffs
        fabric = h.fabric
        expected = expected_tables(cluster)
        for rr in ("rr1", "rr2"):
            assert kernel_table(fabric, rr).splitlines() == expected[rr].render_ip().splitlines()
            cfg = (await fabric.get(rr, "/config"))["bird.cfg"]
            node = cfg[cfg.index("protocol bgp Node_192_168_0_81 "):]
            assert "rr client;\n  rr cluster id 244.0.0.1;" in node[:node.index("\n}")]
        addresses = {n.name: str(n.address) for n in cluster.scenario.nodes}
        rib = await fabric.get("node1", "/rib")  # a meshsim client got BIRD's reflection
        for other in ("node2", "node3"):
            for block in cluster.affine_blocks(other):
                entry = rib["loc_rib"][str(block)]
                assert entry["next_hop"] == addresses[other] and entry["originator_id"] == addresses[other]
                assert entry["cluster_list"] == ["244.0.0.1"]


async def test_meshsim_route_reflector_with_bird_clients(cluster_of, netns_harness):
    """BIRD clients accept what the meshsim RR reflects (ORIGINATOR_ID, CLUSTER_LIST) and program it: IPIP
    CrossSubnet on one subnet, so every route is a plain `via NH dev eth0` and the kernel tables compare."""
    cluster, _ = cluster_of(scenario("meshsim-rr", [("rr1", "192.168.0.11/24", "meshsim"),
                                                   ("node1", "192.168.0.81/24", "bird"),
                                                   ("node2", "192.168.0.82/24", "bird"),
                                                   ("node3", "192.168.0.83/24", "bird")],
                                     pool="CrossSubnet", mesh=False, rr=True))
    h = netns_harness(cluster)
    async with asyncio.timeout(90):
        await h.start()
        conv = await h.converge(45)
        assert conv.converged and conv.sessions_up == conv.sessions_expected == 6, conv.diffs
        fabric = h.fabric
        expected = expected_tables(cluster)
        for n in ("node1", "node2", "node3"):
            assert kernel_table(fabric, n).splitlines() == expected[n].render_ip().splitlines()
        rib = await fabric.get("node1", "/rib")
        reflected = rib["adj_rib_in"]["Node_192_168_0_11"]
        for other in ("node2", "node3"):
            for block in cluster.affine_blocks(other):
                entry = reflected[str(block)]
                addr = str(cluster.scenario.node(other).address)
                assert entry["next_hop"] == addr and entry["originator_id"] == addr
                assert entry["cluster_list"] == ["244.0.0.1"]
        # a BIRD client going away is withdrawn from the others (BIRD sends Cease on shutdown)
        await h.stop_node("node3")
        conv = await h.converge(30, since=time.time())
        assert conv.converged, conv.diffs


@NEEDS_GOBGP
async def test_two_subnets_router_kernel_dataplane_and_offsubnet_tor(cluster_of, netns_harness):
    """Nodes in two subnets joined by the underlay router; IPIP CrossSubnet (off-subnet routes through the tunl0
    stand-in, `onlink`, as Calico programs them); meshsim nodes program their namespaces (`--dataplane kernel`);
    an iBGP ToR behind the router learns each block from its owner."""
    cluster, _ = cluster_of(scenario("two-subnets", [("a1", "192.168.0.81/24", "meshsim"),
                                                    ("a2", "192.168.0.82/24", "bird"),
                                                    ("b1", "192.168.1.81/24", "meshsim"),
                                                    ("b2", "192.168.1.82/24", "bird")],
                                     pool="CrossSubnet", tor=("10.10.10.1", 64512)))
    h = netns_harness(cluster, dataplane="kernel")
    async with asyncio.timeout(90):
        await h.start()
        conv = await h.converge(45)
        assert conv.converged and conv.sessions_up == conv.sessions_expected == 12, conv.diffs
        fabric = h.fabric
        assert fabric.topology.router is not None
        expected = expected_tables(cluster)
        for n in ("a2", "b2"):
            assert kernel_table(fabric, n).splitlines() == expected[n].render_ip().splitlines()
        assert "via 192.168.1.82 dev tunl0 proto bird onlink" in kernel_table(fabric, "a2")
        # meshsim nodes program their namespace: every BGP route and blackhole of the expected table is there
        # (pods stay simulated: an address on lo, not a `dev cali...` route)
        for n in ("a1", "b1"):
            want = [line for line in expected[n].render_ip().splitlines() if "proto bird" in line]
            async with asyncio.timeout(10):  # the kernel is programmed right after the simulated table
                while not all(line in kernel_table(fabric, n).splitlines() for line in want):
                    await asyncio.sleep(0.1)
            assert want
        report = (await fabric.external_report())["external_peers"][0]
        assert report["ok"] and report["best_via_owner"] == len(report["expected"]) == 4, report


async def test_bird_nodes_need_netns_isolation(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(scenario("loopback-bird", [("node1", "192.168.77.81/24", "bird"),
                                               ("node2", "192.168.77.82/24", "meshsim")]))
    res = subprocess.run([sys.executable, "-m", "meshsim", "run", str(path), "--timeout", "5"], capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 2 and "implementation: bird, which needs --isolation netns" in res.stderr


async def test_teardown_after_a_failed_start(cluster_of, tmp_path):
    """A node that cannot start (here: its HTTP address taken) fails the run; the namespaces go anyway."""
    import socket

    cluster, _ = cluster_of(scenario("fail", [("node1", "192.168.0.81/24", "bird"),
                                             ("node2", "192.168.0.82/24", "meshsim")]))
    fabric = NetnsFabric(cluster, http_port=HTTP_PORT)
    h = Harness(cluster, fabric=fabric)
    blocker = socket.socket()
    blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        blocker.bind(fabric.http_address("node2"))
        blocker.listen()
        with pytest.raises(RunError):
            async with asyncio.timeout(60):
                async with h:
                    pass
        assert not msim_namespaces(fabric.topology.run)
        # and a run that set up its namespaces, then failed, tears them down too
        fabric2 = NetnsFabric(cluster, http_port=HTTP_PORT + 1)
        h2 = Harness(cluster, fabric=fabric2)
        try:
            async with asyncio.timeout(60):
                async with h2:
                    assert msim_namespaces(fabric2.topology.run)
                    raise ValueError("boom")
        except ValueError:
            pass
        assert_clean(fabric2, engine_pids(h2, fabric2))
    finally:
        blocker.close()


@NEEDS_GOBGP
async def test_meshsim_run_netns_reports_the_tor_and_cleans_up_on_ctrl_c(tmp_path):
    path = tmp_path / "s.yaml"
    # (addresses whose 127.x twins no other test uses: the CLI serves HTTP on the default port)
    path.write_text(scenario("cli-netns", [("node1", "192.168.77.81/24", "bird"),
                                           ("node2", "192.168.77.82/24", "meshsim")], tor=("192.168.77.250", 64512)))
    before = set(msim_namespaces())
    out = tmp_path / "out"
    res = subprocess.run([sys.executable, "-m", "meshsim", "run", str(path), "--isolation", "netns", "--out", str(out),
                          "--timeout", "40"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "ToR 192.168.77.250 (gobgpd, AS 64512, iBGP): 2/2 sessions established; learned 2/2 blocks" in res.stdout
    report = json.loads((out / "report.json").read_text())
    assert report["mode"] == "netns" and report["external_peers"][0]["ok"]
    assert (out / "routes" / "node1.ip").read_text().count("proto bird") == 2  # blackhole + node2's block
    assert set(msim_namespaces()) == before
    # Ctrl-C while running: every namespace and process goes
    proc = subprocess.Popen([sys.executable, "-m", "meshsim", "run", str(path), "--isolation", "netns",
                             "--keep-running", "--timeout", "40"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(set(msim_namespaces()) - before) < 4:
            await asyncio.sleep(0.2)
        new = set(msim_namespaces()) - before
        assert len(new) >= 4, new  # fabric, 2 nodes, ToR
        await asyncio.sleep(2)
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert not (set(msim_namespaces()) & new)
    assert not subprocess.run(["pgrep", "-f", "meshsim-run-.*bird"], capture_output=True).stdout
    assert proc.returncode in (0, 1, 130)
