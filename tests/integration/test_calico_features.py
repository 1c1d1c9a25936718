"""Calico's BGP features on real sessions: every node in a network namespace of its own (`--isolation netns`), real
BIRD 2 nodes rendered from confd's templates next to meshsim nodes, and a real GoBGP ToR. Each test checks what a
user relies on: the ToR learns the service ranges from every node with the configured communities; a BGPFilter keeps
a pool's blocks off the ToR, or at home; a wrong password keeps exactly that session down while the others converge;
BIRD and meshsim nodes agree on the tables (the expected ones, line for line) for each feature.

Tests whose meshsim side needs what only the asyncio engine will do on the wire (TCP-MD5 passwords) are skipped
with that reason; their all-BIRD twins run today. Root only; BIRD and gobgpd come from scripts/system-deps.sh."""

from __future__ import annotations

import asyncio
import os
import shutil
from ipaddress import IPv4Network
from pathlib import Path

import pytest

from meshsim.model.cluster import Cluster
from meshsim.model.resources import load_scenario
from meshsim.oracle.expected import expected_external, expected_tables
from meshsim.run.harness import Harness
from meshsim.fabric.netns import NetnsFabric
from tests.integration.test_bird_interop import assert_clean, engine_pids, kernel_table

HAVE_BIRD = shutil.which("bird") is not None or os.path.exists("/usr/sbin/bird")
pytestmark = [
    pytest.mark.integration,
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create network namespaces"),
    pytest.mark.skipif(shutil.which("ip") is None, reason="iproute2 `ip` not installed"),
    pytest.mark.skipif(not HAVE_BIRD, reason="BIRD 2 not installed (scripts/system-deps.sh installs bird2)"),
]
NEEDS_GOBGP = pytest.mark.skipif(shutil.which("gobgpd") is None, reason="gobgpd not installed")
HTTP_PORT = 19279
TOR = ("10.10.0.250", 64513)
POOL = "10.244.0.0/16"


def calico(kind: str, name: str, spec: str) -> str:
    return f"apiVersion: projectcalico.org/v3\nkind: {kind}\nmetadata: {{name: {name}}}\nspec: {spec}\n"


def scenario(name: str, impl: dict[str, str], *, bgp: str = "{}", extra: tuple[str, ...] = (), pods: int = 2,
             pool: bool = True) -> str:
    """Nodes node1..nodeN at 10.10.0.1x/24 (implementation per node), one IPIP-Never pool (so BIRD's kernel table
    compares with the expected one line for line), the given BGPConfiguration spec and extra documents.
    restartWait 5s: a session that stays down by design (a wrong password) holds a restarting node's routes for
    BIRD's `graceful restart wait` (240 s, calico#7144), on meshsim and BIRD nodes alike; the tests wait 5 s."""
    docs = ([calico("IPPool", "pool1", f"{{cidr: {POOL}, blockSize: 26, ipipMode: Never}}")] if pool else []) + [
        calico("BGPConfiguration", "default", bgp), *extra]
    hosts = []
    for i, (node, implementation) in enumerate(sorted(impl.items()), start=1):
        docs.append(f"apiVersion: projectcalico.org/v3\nkind: Node\nmetadata:\n  name: {node}\n"
                    f"  labels: {{kubernetes.io/hostname: {node}}}\nspec: {{bgp: {{ipv4Address: 10.10.0.1{i}/24}}}}\n")
        hosts.append(f"    {node}: {{implementation: {implementation}}}")
    workloads = ", ".join(f"{n}: {pods}" for n in sorted(impl))
    docs.append(f"apiVersion: meshsim/v1\nkind: Scenario\nmetadata: {{name: {name}}}\nspec:\n  hosts:\n"
                + "\n".join(hosts) + f"\n  workloads: {{{workloads}}}\n  timers: {{holdTime: 9s, keepaliveTime: 3s, "
                "restartWait: 5s}\n")
    return "---\n".join(docs)


SERVICES = ("{serviceClusterIPs: [{cidr: 10.96.0.0/12}], communities: [{name: svc, value: '64512:100'}], "
            "prefixAdvertisements: [{cidr: 10.96.0.0/12, communities: [svc, '65000:7']}]}")
TOR_PEER = calico("BGPPeer", "tor", f"{{peerIP: {TOR[0]}, asNumber: {TOR[1]}}}")
TOR_PEER_FILTERED = calico("BGPPeer", "tor", f"{{peerIP: {TOR[0]}, asNumber: {TOR[1]}, filters: [pods-stay-home]}}")
POOL_FILTER = calico("BGPFilter", "pods-stay-home",
                     f"{{exportV4: [{{action: Reject, cidr: {POOL}, matchOperator: In}}]}}")


@pytest.fixture
def cluster_of(tmp_path: Path):
    def make(text: str) -> Cluster:
        path = tmp_path / "scenario.yaml"
        path.write_text(text)
        return Cluster.build(load_scenario([path]))

    return make


@pytest.fixture
async def netns_harness():
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


async def tor_rib(fabric: NetnsFabric) -> dict[str, list[dict]]:
    """The ToR's RIB as gobgp prints it: prefix -> paths, each with its next hop and communities."""
    tor = fabric.topology.tors[0]
    raw = await fabric.tors._gobgp(tor, "global", "rib", "-a", "ipv4") or {}
    out: dict[str, list[dict]] = {}
    for prefix, paths in raw.items():
        for path in paths:
            entry = {"next_hop": None, "communities": []}
            for attr in path.get("attrs", []):
                if attr.get("type") == 3:
                    entry["next_hop"] = attr.get("nexthop")
                elif attr.get("type") == 8:  # COMMUNITIES, as 32-bit values
                    entry["communities"] += [f"{c >> 16}:{c & 0xFFFF}" for c in attr.get("communities", [])]
                elif attr.get("type") == 32:  # LARGE_COMMUNITY
                    entry["communities"] += [f"{v['global_admin']}:{v['local_data1']}:{v['local_data2']}"
                                             for v in attr.get("value", [])]
            out.setdefault(prefix, []).append(entry)
    return out


async def wait_for_tor(fabric: NetnsFabric, want: set[str], paths: int = 1,
                       seconds: float = 30) -> dict[str, list[dict]]:
    """The ToR's RIB once it holds every prefix in `want` from `paths` speakers (the ToR is outside the cluster:
    convergence does not wait for it)."""
    rib: dict[str, list[dict]] = {}
    for _ in range(int(seconds * 2)):
        rib = await tor_rib(fabric)
        if all(len(rib.get(p, [])) >= paths for p in want):
            return rib
        await asyncio.sleep(0.5)
    return rib


async def converge_and_compare(h: Harness, cluster: Cluster, bird_nodes: list[str]) -> None:
    conv = await h.converge(45)
    assert conv.converged and conv.sessions_up == conv.sessions_expected, conv.diffs
    expected = expected_tables(cluster)
    for node in bird_nodes:  # BIRD's kernel table is the expected table, line for line
        assert kernel_table(h.fabric, node).splitlines() == expected[node].render_ip().splitlines(), node


# -- service advertisement and communities ------------------------------------------------------------------


@NEEDS_GOBGP
async def test_all_bird_tor_learns_service_ranges_with_communities(cluster_of, netns_harness):
    cluster = cluster_of(scenario("svc-bird", {"node1": "bird", "node2": "bird", "node3": "bird"}, bgp=SERVICES,
                                  extra=(TOR_PEER,)))
    h = netns_harness(cluster)
    async with asyncio.timeout(120):
        await h.start()
        await converge_and_compare(h, cluster, ["node1", "node2", "node3"])
        rib = await wait_for_tor(h.fabric, {"10.96.0.0/12"}, paths=3)
        paths = rib["10.96.0.0/12"]
        assert {p["next_hop"] for p in paths} == {"10.10.0.11", "10.10.0.12", "10.10.0.13"}
        assert all(sorted(p["communities"]) == ["64512:100", "65000:7"] for p in paths), paths
        want = expected_external(cluster)[cluster.scenario.peers[0].peer_ip]
        assert {p for p in rib} == {str(p) for p in want}


@NEEDS_GOBGP
async def test_mixed_tor_learns_services_and_a_filter_keeps_the_pool_off_it(cluster_of, netns_harness):
    """node2 runs BIRD, node1 and node3 meshsim: the ToR hears the service range from all three with the
    communities, and none of the pool's blocks (the ToR peering's export filter rejects them); inside the cluster
    the blocks still flow and every table is as expected."""
    cluster = cluster_of(scenario("svc-mixed", {"node1": "meshsim", "node2": "bird", "node3": "meshsim"},
                                  bgp=SERVICES, extra=(POOL_FILTER, TOR_PEER_FILTERED)))
    h = netns_harness(cluster)
    async with asyncio.timeout(120):
        await h.start()
        await converge_and_compare(h, cluster, ["node2"])
        rib = await wait_for_tor(h.fabric, {"10.96.0.0/12"}, paths=3)
        await asyncio.sleep(2)  # time for a wrongly exported block to show up too
        rib = await tor_rib(h.fabric)
        assert set(rib) == {"10.96.0.0/12"}, rib
        assert {p["next_hop"] for p in rib["10.96.0.0/12"]} == {"10.10.0.11", "10.10.0.12", "10.10.0.13"}
        assert all(sorted(p["communities"]) == ["64512:100", "65000:7"] for p in rib["10.96.0.0/12"])
        # a meshsim node heard the range from the BIRD node with its communities; its own route won (static)
        node1 = await h.fabric.get("node1", "/rib")
        heard = node1["adj_rib_in"]["Mesh_10_10_0_12"]["10.96.0.0/12"]
        assert sorted(heard["communities"]) == ["64512:100", "65000:7"]
        assert node1["loc_rib"]["10.96.0.0/12"]["from"] == "local"
        # and the BIRD node heard it from a meshsim node the same way
        node2 = await h.fabric.get("node2", "/rib")
        assert any(sorted(e.get("communities", [])) == ["64512:100", "65000:7"]
                   for name, routes in node2["adj_rib_in"].items() for p, e in routes.items() if p == "10.96.0.0/12")


@NEEDS_GOBGP
async def test_mixed_keep_original_next_hop_toward_an_ebgp_tor(cluster_of, netns_harness):
    """With keepOriginalNextHop, every node hands the eBGP ToR each block with its owner's address as next hop
    (`next hop keep`), BIRD and meshsim nodes alike; without it each would put itself."""
    peer = calico("BGPPeer", "tor", f"{{peerIP: {TOR[0]}, asNumber: {TOR[1]}, keepOriginalNextHop: true}}")
    cluster = cluster_of(scenario("keep-nh", {"node1": "meshsim", "node2": "bird", "node3": "meshsim"}, extra=(peer,)))
    owners = {str(b): str(cluster.scenario.node(n).address) for n in ("node1", "node2", "node3")
              for b in cluster.affine_blocks(n)}
    want = expected_external(cluster)[cluster.scenario.peers[0].peer_ip]
    assert all(r.attrs.next_hop == cluster.scenario.node(
        next(n for n in ("node1", "node2", "node3") if p in cluster.affine_blocks(n))).address
               for p, routes in want.items() for r in routes)
    h = netns_harness(cluster)
    async with asyncio.timeout(120):
        await h.start()
        await converge_and_compare(h, cluster, ["node2"])
        rib = await wait_for_tor(h.fabric, set(owners), paths=3)  # every node's copy of every block
        for prefix, owner in owners.items():
            assert [p["next_hop"] for p in rib[prefix]] == [owner] * 3, (prefix, rib[prefix])


async def test_mixed_local_service_is_a_slash32_from_the_node_with_its_endpoint(cluster_of, netns_harness):
    """A LoadBalancer Service with externalTrafficPolicy Local whose endpoint runs on the BIRD node: its /32 (a
    single-address serviceLoadBalancerIPs entry, so no reject CIDR covers it) is blackholed by BIRD on node2 and
    reaches the meshsim nodes' kernel tables `via node2`."""
    svc = ("apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: default}\n"
           "spec: {type: LoadBalancer, externalTrafficPolicy: Local, clusterIP: 10.96.7.7, loadBalancerIP: 192.0.2.10}\n"
           "status: {loadBalancer: {ingress: [{ip: 192.0.2.10}]}}\n")
    eps = ("apiVersion: v1\nkind: Endpoints\nmetadata: {name: web, namespace: default}\n"
           "subsets: [{addresses: [{ip: 10.244.0.5, nodeName: node2}]}]\n")
    bgp = "{serviceClusterIPs: [{cidr: 10.96.0.0/12}], serviceLoadBalancerIPs: [{cidr: 192.0.2.10/32}]}"
    cluster = cluster_of(scenario("svc-local", {"node1": "meshsim", "node2": "bird", "node3": "meshsim"}, bgp=bgp,
                                  extra=(svc, eps)))
    expected = expected_tables(cluster)
    assert "192.0.2.10 via 10.10.0.12 dev eth0 proto bird " in expected["node1"].render_ip().splitlines()
    assert "blackhole 192.0.2.10 proto bird " in expected["node2"].render_ip().splitlines()
    h = netns_harness(cluster)
    async with asyncio.timeout(120):
        await h.start()
        await converge_and_compare(h, cluster, ["node2"])


# -- filters between nodes ------------------------------------------------------------------------------------


async def test_mixed_filter_keeps_a_pools_blocks_at_home(cluster_of, netns_harness):
    """A second pool for node3 only, and a BGPPeer between all nodes (mesh off) whose filter rejects that pool on
    export: node3 (meshsim) keeps its pool2 block to itself; node2 (BIRD) sends its blocks but rejects pool2 too."""
    extra = (calico("IPPool", "pool2", "{cidr: 10.245.0.0/16, blockSize: 26, ipipMode: Never, "
                                       "nodeSelector: \"kubernetes.io/hostname == 'node3'\"}"),
             calico("IPPool", "pool1", f"{{cidr: {POOL}, blockSize: 26, ipipMode: Never, "
                                       "nodeSelector: \"kubernetes.io/hostname != 'node3'\"}"),
             calico("BGPFilter", "pool2-stays-home",
                    "{exportV4: [{action: Reject, cidr: 10.245.0.0/16, matchOperator: In}]}"),
             calico("BGPPeer", "everyone", "{nodeSelector: all(), peerSelector: all(), filters: [pool2-stays-home]}"))
    cluster = cluster_of(scenario("filter-home", {"node1": "meshsim", "node2": "bird", "node3": "meshsim"},
                                  bgp="{nodeToNodeMeshEnabled: false}", extra=extra, pool=False))
    node3_pool2 = [b for b in cluster.affine_blocks("node3") if b.subnet_of(IPv4Network("10.245.0.0/16"))]
    assert node3_pool2, "node3 should hold a block of pool2"
    expected = expected_tables(cluster)
    assert not any("10.245." in line for n in ("node1", "node2") for line in expected[n].render_ip().splitlines())
    h = netns_harness(cluster)
    async with asyncio.timeout(120):
        await h.start()
        await converge_and_compare(h, cluster, ["node2"])


# -- passwords ----------------------------------------------------------------------------------------------

PASSWORD_DOCS = (
    "apiVersion: v1\nkind: Secret\nmetadata: {name: bgp, namespace: calico-system}\n"
    "stringData: {one: alpha, two: beta}\n",
    calico("BGPPeer", "n1-to-n2", "{node: node1, peerIP: 10.10.0.12, asNumber: 64512, "
                                  "password: {secretKeyRef: {name: bgp, key: one}}}"),
    calico("BGPPeer", "n2-to-n1", "{node: node2, peerIP: 10.10.0.11, asNumber: 64512, "
                                  "password: {secretKeyRef: {name: bgp, key: two}}}"),
    calico("BGPPeer", "n3-to-all", "{node: node3, peerSelector: all(), password: {secretKeyRef: {name: bgp, key: one}}}"),
)


async def test_all_bird_wrong_password_keeps_one_session_down(cluster_of, netns_harness):
    """node1 and node2 hold different passwords for their session (two BGPPeers, each end keeps its own): it never
    establishes (TCP-MD5), while node3's sessions with both (same password at both ends) come up and every table
    converges to the expected one, where node1 lacks node2's blocks (no route reflector passes them on)."""
    cluster = cluster_of(scenario("password-bird", {"node1": "bird", "node2": "bird", "node3": "bird"},
                                  bgp="{nodeToNodeMeshEnabled: false}", extra=PASSWORD_DOCS))
    expected = expected_tables(cluster)
    node2_block = cluster.affine_blocks("node2")[0]
    assert not any(line.startswith(str(node2_block)) for line in expected["node1"].render_ip().splitlines())
    h = netns_harness(cluster)
    async with asyncio.timeout(120):
        await h.start()
        await converge_and_compare(h, cluster, ["node1", "node2", "node3"])
        await asyncio.sleep(3)  # a wrongly accepted session would be up by now
        status = {s["name"]: s["state"] for s in (await h.fabric.get("node1", "/status"))["sessions"]}
        assert status["Node_10_10_0_12"] != "up" and status["Node_10_10_0_13"] == "up", status
        cfg = (await h.fabric.get("node1", "/config"))["bird.cfg"]
        assert 'password "alpha";' in cfg


async def test_mixed_wrong_password_keeps_one_session_down(cluster_of, netns_harness):
    cluster = cluster_of(scenario("password-mixed", {"node1": "meshsim", "node2": "bird", "node3": "meshsim"},
                                  bgp="{nodeToNodeMeshEnabled: false}", extra=PASSWORD_DOCS))
    h = netns_harness(cluster)
    async with asyncio.timeout(120):
        await h.start()
        await converge_and_compare(h, cluster, ["node2"])


async def test_mixed_mesh_password_on_every_session(cluster_of, netns_harness):
    secret = ("apiVersion: v1\nkind: Secret\nmetadata: {name: bgp, namespace: calico-system}\n"
              "stringData: {mesh: gamma}\n")
    cluster = cluster_of(scenario("mesh-password", {"node1": "meshsim", "node2": "bird", "node3": "meshsim"},
                                  bgp="{nodeMeshPassword: {secretKeyRef: {name: bgp, key: mesh}}}", extra=(secret,)))
    h = netns_harness(cluster)
    async with asyncio.timeout(120):
        await h.start()
        await converge_and_compare(h, cluster, ["node2"])


@NEEDS_GOBGP
async def test_mixed_tor_with_a_wrong_password_stays_down_while_the_cluster_converges(cluster_of, netns_harness):
    secret = ("apiVersion: v1\nkind: Secret\nmetadata: {name: bgp, namespace: calico-system}\n"
              "stringData: {tor: not-the-tors}\n")
    peer = calico("BGPPeer", "tor", f"{{peerIP: {TOR[0]}, asNumber: {TOR[1]}, "
                                    "password: {secretKeyRef: {name: bgp, key: tor}}}")
    cluster = cluster_of(scenario("tor-password", {"node1": "meshsim", "node2": "bird", "node3": "meshsim"},
                                  extra=(secret, peer)))
    h = netns_harness(cluster)
    async with asyncio.timeout(120):
        await h.start()
        await converge_and_compare(h, cluster, ["node2"])
        assert await tor_rib(h.fabric) == {}


# -- IPAM state from a dump -----------------------------------------------------------------------------------


async def test_mixed_kubectl_dump_tables_line_for_line(netns_harness, tmp_path):
    path = Path(__file__).resolve().parents[2] / "scenarios" / "dumps" / "kubectl-kdd.yaml"
    # the dump's ToR peer has a password the emulated ToR does not: that session stays down, and BIRD's
    # recovery (bird -R) would hold routes for 240 s; the test waits 5 s (spec.timers.restartWait)
    timers = tmp_path / "timers.yaml"
    timers.write_text("apiVersion: meshsim/v1\nkind: Scenario\nmetadata: {name: kdd}\n"
                      "spec: {timers: {restartWait: 5s}}\n")
    cluster = Cluster.build(load_scenario([path, timers]))
    h = netns_harness(cluster)
    async with asyncio.timeout(120):
        await h.start()
        await converge_and_compare(h, cluster, [])


async def test_bird_renders_every_peer_option_it_is_given(cluster_of, netns_harness):
    """maxRestartTime, ttlSecurity (GTSM: both ends must send TTL 255, so BIRD nodes only) and ignoredInterfaces
    reach a running BIRD through its node config, and BIRD runs with them: the sessions come up and the tables
    converge."""
    extra = (calico("BGPPeer", "options", "{nodeSelector: all(), peerSelector: all(), maxRestartTime: 30s, "
                                          "ttlSecurity: 1}"),)
    cluster = cluster_of(scenario("options", {"node1": "bird", "node2": "bird", "node3": "bird"},
                                  bgp="{nodeToNodeMeshEnabled: false, ignoredInterfaces: [dummy*]}", extra=extra))
    h = netns_harness(cluster)
    async with asyncio.timeout(120):
        await h.start()
        await converge_and_compare(h, cluster, ["node1", "node2", "node3"])
        cfg = (await h.fabric.get("node1", "/config"))["bird.cfg"]
        assert "graceful restart time 30;" in cfg and "ttl security on;" in cfg and '-"dummy*"' in cfg


def test_the_tor_rib_reader_decodes_gobgp_communities():
    raw = {"10.96.0.0/12": [{"attrs": [{"type": 3, "nexthop": "10.10.0.11"},
                                       {"type": 8, "communities": [(64512 << 16) + 100]},
                                       {"type": 32, "value": [{"global_admin": 65000, "local_data1": 7,
                                                                "local_data2": 1}]}]}]}

    class FakeTors:
        async def _gobgp(self, *_args):
            return raw

    class Fake:
        topology = type("T", (), {"tors": [object()]})()
        tors = FakeTors()

    rib = asyncio.run(tor_rib(Fake()))  # type: ignore[arg-type]
    assert rib == {"10.96.0.0/12": [{"next_hop": "10.10.0.11", "communities": ["64512:100", "65000:7:1"]}]}
