"""Importing a real cluster as its tools print it: a calicoctl dump (projectcalico.org/v3), a kubectl dump of a
Kubernetes-datastore cluster (core Nodes and Pods, crd.projectcalico.org/v1 kinds with IPAM state), and the IPAM
part of `calicoctl datastore migrate export`; what is read past comes back as one warning per topic."""

from __future__ import annotations

import subprocess
import sys
from ipaddress import IPv4Address, IPv4Network

import pytest

from meshsim.errors import ScenarioError
from meshsim.model.cluster import Cluster
from meshsim.model.resources import load_scenario
from meshsim.model.yamldoc import parse_duration, parse_go_duration
from meshsim.oracle.expected import expected_tables
from tests.conftest import ROOT, SCENARIOS, node_doc, pool_doc, scenario_doc

DUMPS = SCENARIOS / "dumps"
GOLDEN = ROOT / "tests" / "golden" / "dumps"
CALICOCTL = DUMPS / "calicoctl-v3.yaml"
KUBECTL = DUMPS / "kubectl-kdd.yaml"


def _routes(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "meshsim", "routes", *args], capture_output=True, text=True, timeout=60)


# -- calicoctl --------------------------------------------------------------------------------------


def test_calicoctl_dump_validates_with_one_warning_for_the_kinds_it_skips():
    sc = load_scenario([CALICOCTL])
    assert [n.name for n in sc.nodes] == ["cp-1", "worker-1", "worker-2"]
    assert sc.bgp.node_mesh_max_restart_time == 120.0  # nodeMeshMaxRestartTime: 2m0s
    assert sc.bgp.service_cluster_ips == (IPv4Network("10.96.0.0/12"),)
    [warning] = sc.warnings
    assert warning.topic == "skipped-kinds"
    assert "ClusterInformation x1, FelixConfiguration x2, Profile x3" in warning.message
    assert "not BGP routing" in warning.message


def test_calicoctl_dump_tables_use_the_blocks_the_dump_implies():
    """No IPAM state in a calicoctl dump: a node's block is the one its tunnel address and its pods lie in."""
    cluster = Cluster.build(load_scenario([CALICOCTL]))
    assert cluster.affine_blocks("cp-1") == (IPv4Network("10.244.60.64/26"),)
    assert cluster.tunnel_address("worker-1") == IPv4Address("10.244.142.192")
    assert [str(p.ip) for p in cluster.pods_on("worker-2")] == ["10.244.219.1", "10.244.219.2"]
    res = _routes(str(CALICOCTL))
    assert res.returncode == 0, res.stderr
    assert res.stdout == (GOLDEN / "calicoctl-v3.routes").read_text()
    assert res.stderr.startswith("meshsim: warning: skipped 6 documents")


# -- kubectl (Kubernetes datastore) -----------------------------------------------------------------


def test_kubectl_dump_reads_core_nodes_pods_and_calico_crds():
    sc = load_scenario([KUBECTL])
    by_name = {n.name: n for n in sc.nodes}
    assert by_name["k8s-cp-1"].address == IPv4Address("10.10.0.11")
    assert by_name["k8s-cp-1"].subnet == IPv4Network("10.10.0.0/24")
    assert by_name["k8s-worker-2"].ipip_tunnel_address == IPv4Address("192.168.200.1")
    assert by_name["k8s-cp-1"].label_map["kubernetes.io/hostname"] == "k8s-cp-1"
    # host-network kube-proxy and the finished batch pod have no endpoint
    assert sorted(e.pod for e in sc.endpoints if e.node == "k8s-cp-1") == ["coredns-76f75df574-8xq9z",
                                                                           "coredns-76f75df574-wd2ls"]
    assert not any(e.pod.startswith(("kube-proxy", "batch")) for e in sc.endpoints)
    assert len(sc.ipam_blocks) == 4 and len(sc.ipam_handles) == 9 and sc.reservations[0].reserved_cidrs == (
        IPv4Network("192.168.250.0/24"),)
    tor = sc.peers[0]
    assert tor.password == "s3cr3t-tor" and tor.filters == ("no-node-pod-routes-to-tor",)
    assert sc.bgp.prefix_advertisements[0].communities == ("64512:100", "64512:300:1")
    [warning] = sc.warnings
    assert "ClusterInformation x1, FelixConfiguration x1, KubeControllersConfiguration x1" in warning.message


def test_kubectl_dump_reproduces_every_pod_line_for_line():
    """`meshsim routes` of the dump: each node's blocks, its pods on their cali devices, the borrowed /32 of the
    ingress pod (k8s-worker-2, from k8s-worker-1's block) and k8s-worker-2's tunnel address, which lies in none of
    its blocks, as a /32 via tunl0: a UGH row in `route -n`."""
    res = _routes(str(KUBECTL))
    assert res.returncode == 0, res.stderr
    assert res.stdout == (GOLDEN / "kubectl-kdd.routes").read_text()
    res = _routes(str(KUBECTL), "--node", "k8s-cp-1", "--format", "route")
    assert res.stdout == (GOLDEN / "kubectl-kdd.k8s-cp-1.route").read_text()
    assert "192.168.200.1   10.10.0.13      255.255.255.255 UGH   0      0        0 tunl0" in res.stdout
    assert "192.168.171.5   10.10.0.13      255.255.255.255 UGH   0      0        0 tunl0" in res.stdout


def test_ipam_state_is_the_truth():
    cluster = Cluster.build(load_scenario([KUBECTL]))
    # the tunnel address outside the node's blocks: no block claimed for it, exported as a /32
    assert cluster.tunnel_address("k8s-worker-2") == IPv4Address("192.168.200.1")
    assert IPv4Network("192.168.200.0/26") not in cluster.ipam.blocks
    assert IPv4Network("192.168.200.1/32") in cluster.originated("k8s-worker-2")
    # the borrowed pod: allocated in k8s-worker-1's block, running on k8s-worker-2
    alloc = cluster.ipam.allocations["default/ingress-nginx-controller-7d9c8b6f5-vt4rq"]
    assert alloc.block == IPv4Network("192.168.171.0/26") and alloc.node == "k8s-worker-2" and alloc.borrowed
    # tunnel addresses keep their IPAM handles
    assert cluster.ipam.allocations["ipip-tunnel-addr-k8s-cp-1"].ip == IPv4Address("192.168.84.128")
    # every node's pods are the dump's, on the CNI's veth names
    assert {p.key: p.interface for p in cluster.pods_on("k8s-worker-1")}["default/web-6b7f6d4d9c-2n7zq"] == \
        "calic4eb70eb59c"


def test_pods_added_on_top_of_the_dump_follow_calicos_free_ordinal_order(tmp_path):
    """The next address of a block is the first of its `unallocated` list as the dump has it (ordinals 2 and 0
    were released, so they are at the back), not the lowest free address."""
    extra = tmp_path / "scenario.yaml"
    extra.write_text(scenario_doc(workloads={"k8s-worker-2": 1}))
    cluster = Cluster.build(load_scenario([KUBECTL, extra]))
    new = [p for p in cluster.pods_on("k8s-worker-2") if not p.pinned]
    assert [str(p.ip) for p in new] == ["192.168.35.195"]


def test_ip_reservations_are_never_handed_out(write_yaml):
    path = write_yaml(pool_doc(cidr="10.244.0.0/24", block_size=26), node_doc("a", "10.0.0.1/24"),
                      "apiVersion: projectcalico.org/v3\nkind: IPReservation\nmetadata: {name: r}\n"
                      "spec: {reservedCIDRs: [10.244.0.0/26, 10.244.0.65]}\n",
                      scenario_doc(workloads={"a": 3}))
    cluster = Cluster.build(load_scenario([path]))
    ips = sorted(str(p.ip) for p in cluster.pods_on("a"))
    assert all(not ip.startswith("10.244.0.") or int(ip.split(".")[3]) >= 64 for ip in ips)
    assert "10.244.0.65" not in ips and str(cluster.tunnel_address("a")) != "10.244.0.65"


def test_services_are_advertised_but_kept_out_of_the_kernel():
    cluster = Cluster.build(load_scenario([KUBECTL]))
    ranges = {IPv4Network("10.96.0.0/12"), IPv4Network("172.20.0.0/24")}
    for node in ("k8s-cp-1", "k8s-worker-1", "k8s-worker-2"):
        svc = cluster.service_routes(node)
        assert set(svc.reject) == ranges and ranges <= set(svc.static)
    # the Local ingress service: its cluster IP and LB IP from the node running its endpoint only
    assert {IPv4Network("10.101.52.7/32"), IPv4Network("172.20.0.10/32")} <= set(
        cluster.service_routes("k8s-worker-2").static)
    assert IPv4Network("10.101.52.7/32") not in cluster.service_routes("k8s-worker-1").static
    for table in expected_tables(cluster).values():  # rejected for the kernel: no table line
        assert not any(line.startswith(("10.96.", "10.101.", "172.20.", "blackhole 10.96", "blackhole 172.20"))
                       for line in table.render_ip().splitlines())


# -- calicoctl datastore migrate export ----------------------------------------------------------------

MIGRATE = """\
apiVersion: projectcalico.org/v3
items:
- apiVersion: projectcalico.org/v3
  kind: IPPool
  metadata: {name: default-ipv4-ippool}
  spec: {cidr: 10.244.0.0/16, blockSize: 26, ipipMode: Always, natOutgoing: true, nodeSelector: all()}
kind: IPPoolList
metadata: {resourceVersion: "1"}
---
apiVersion: projectcalico.org/v3
items:
- apiVersion: projectcalico.org/v3
  kind: Node
  metadata: {name: n1}
  spec: {bgp: {ipv4Address: 10.0.0.1/24, ipv4IPIPTunnelAddr: 10.244.1.0}}
- apiVersion: projectcalico.org/v3
  kind: Node
  metadata: {name: n2}
  spec: {bgp: {ipv4Address: 10.0.0.2/24, ipv4IPIPTunnelAddr: 10.244.2.0}}
kind: NodeList
metadata: {resourceVersion: "2"}
---
===
{
  "kind": "ClusterInformation",
  "apiVersion": "projectcalico.org/v3",
  "metadata": {"name": "default"},
  "spec": {"clusterGUID": "abc", "calicoVersion": "v3.28.0", "datastoreReady": true}
}
===
{
  "block_affinities": [
    {"Key": "/calico/ipam/v2/host/n1/ipv4/block/10.244.1.0-26", "Value": {"state": "confirmed", "deleted": false}, "TTL": 0},
    {"Key": "/calico/ipam/v2/host/n2/ipv4/block/10.244.2.0-26", "Value": {"state": "confirmed", "deleted": false}, "TTL": 0}
  ],
  "blocks": [
    {"Key": "/calico/ipam/v2/assignment/ipv4/block/10.244.1.0-26", "TTL": 0,
     "Value": {"cidr": "10.244.1.0/26", "affinity": "host:n1", "strictAffinity": false,
               "allocations": [0, 1, null, null, null, null, null, null, null, null, null, null, null, null, null, null,
                               null, null, null, null, null, null, null, null, null, null, null, null, null, null, null, null,
                               null, null, null, null, null, null, null, null, null, null, null, null, null, null, null, null,
                               null, null, null, null, null, null, null, null, null, null, null, null, null, null, null, null],
               "unallocated": [2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25,
                               26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48,
                               49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63],
               "attributes": [{"handle_id": "ipip-tunnel-addr-n1", "secondary": {"node": "n1", "type": "ipipTunnelAddress"}},
                              {"handle_id": "k8s-pod-network.1234", "secondary": {"namespace": "default", "node": "n1", "pod": "web-1"}}],
               "deleted": false}}
  ],
  "handles": [
    {"Key": "/calico/ipam/v2/handle/ipip-tunnel-addr-n1", "Value": {"block": {"10.244.1.0/26": 1}, "deleted": false}, "TTL": 0}
  ],
  "config": {"Key": "/calico/ipam/v2/config", "Value": {"strict_affinity": false, "auto_allocate_blocks": true}, "TTL": 0}
}
"""


def test_calicoctl_datastore_migrate_export_is_read_with_its_ipam_state(tmp_path):
    path = tmp_path / "etcd-export.yaml"
    path.write_text(MIGRATE)
    sc = load_scenario([path])
    assert [b.cidr for b in sc.ipam_blocks] == [IPv4Network("10.244.1.0/26")]
    assert {a.node for a in sc.affinities} == {"n1", "n2"}
    assert sc.warnings[0].topic == "skipped-kinds" and "ClusterInformation x1" in sc.warnings[0].message
    cluster = Cluster.build(sc)
    assert [p.key for p in cluster.pods_on("n1")] == ["default/web-1"]  # from the allocation's attributes
    assert cluster.affine_blocks("n2") == (IPv4Network("10.244.2.0/26"),)  # an affinity with an empty block
    assert cluster.tunnel_address("n2") == IPv4Address("10.244.2.0") and not cluster.ipam.blocks_of("n2")[0].in_use


# -- resources and fields -----------------------------------------------------------------------------


def test_go_durations():
    assert parse_go_duration("2m0s") == 120.0 and parse_go_duration("1h0m0s") == 3600.0
    assert parse_go_duration("0s") == 0.0 and parse_go_duration("0") == 0.0 and parse_go_duration("1.5s") == 1.5
    assert parse_go_duration("300ms") == 0.3 and parse_go_duration("1h30m") == 5400.0
    assert parse_go_duration("90") is None and parse_go_duration("5 s") is None and parse_go_duration("1d") is None
    for bad in (".inf", ".nan", "-5s", float("inf"), float("nan"), -1, True, "1e400s"):
        assert parse_duration(bad) is None, bad
    assert parse_duration("9s") == 9.0 and parse_duration(9) == 9.0  # meshsim's own fields also take seconds


def test_a_calico_duration_field_wants_go_syntax(write_yaml):
    bgp = ("apiVersion: projectcalico.org/v3\nkind: BGPConfiguration\nmetadata: {name: default}\n"
           "spec: {nodeMeshMaxRestartTime: 120}\n")
    with pytest.raises(ScenarioError) as info:
        load_scenario([write_yaml(pool_doc(), node_doc("a", "10.0.0.1/24"), bgp)])
    assert info.value.field == "spec.nodeMeshMaxRestartTime" and "Go duration" in info.value.expected


def test_newer_calico_fields_and_ipv6_are_read_past_with_warnings(write_yaml):
    peer = ("apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {name: p}\n"
            "spec: {peerIP: 10.0.0.9, asNumber: 64513, keepaliveTime: 30s, nextHopMode: Auto}\n")
    v6 = "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: v6}\nspec: {cidr: 'fd00::/48'}\n"
    sc = load_scenario([write_yaml(pool_doc(), node_doc("a", "10.0.0.1/24"), peer, v6)])
    topics = {w.topic: w.message for w in sc.warnings}
    assert "BGPPeer spec.keepaliveTime" in topics["newer-fields"] and "BGPPeer spec.nextHopMode" in topics["newer-fields"]
    assert "IPPool v6" in topics["ipv6"] and [p.name for p in sc.pools] == ["pool1"]


def test_a_misspelled_field_of_a_modelled_kind_is_still_an_error(write_yaml):
    peer = ("apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {name: p}\n"
            "spec: {peerIP: 10.0.0.9, asNumber: 64513, keepOriginalNexthop: true}\n")
    with pytest.raises(ScenarioError) as info:
        load_scenario([write_yaml(pool_doc(), node_doc("a", "10.0.0.1/24"), peer)])
    assert info.value.field == "spec.keepOriginalNexthop" and "keepOriginalNextHop" in info.value.expected


def test_kubernetes_node_labels_merge_calicos_annotation_under_the_kubernetes_labels(write_yaml):
    node = ("apiVersion: v1\nkind: Node\nmetadata:\n  name: n1\n  labels: {zone: a, rack: r1}\n  annotations:\n"
            "    projectcalico.org/IPv4Address: 10.0.0.1/24\n    projectcalico.org/ASNumber: '1.10'\n"
            "    projectcalico.org/RouteReflectorClusterID: 244.0.0.1\n"
            "    projectcalico.org/labels: '{\"route-reflector\":\"true\",\"zone\":\"calico\"}'\n"
            "spec: {podCIDR: 10.85.0.0/24}\nstatus: {conditions: [], anything: [1, 2]}\n")
    sc = load_scenario([write_yaml(pool_doc(), node)])
    n = sc.nodes[0]
    assert n.label_map == {"route-reflector": "true", "zone": "a", "rack": "r1"}
    assert n.asn == 65546 and n.rr_cluster_id == IPv4Address("244.0.0.1")


def test_a_missing_secret_leaves_the_peering_without_a_password_and_says_so(write_yaml):
    peer = ("apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {name: tor}\n"
            "spec: {peerIP: 10.0.0.9, asNumber: 64513, password: {secretKeyRef: {name: bgp, key: tor}}}\n")
    sc = load_scenario([write_yaml(pool_doc(), node_doc("a", "10.0.0.1/24"), peer)])
    assert sc.peers[0].password is None
    assert any(w.topic == "secrets" and "secret bgp key tor" in w.message for w in sc.warnings)
    secret = "apiVersion: v1\nkind: Secret\nmetadata: {name: bgp, namespace: calico-system}\ndata: {tor: c2VjcmV0}\n"
    sc = load_scenario([write_yaml(pool_doc(), node_doc("a", "10.0.0.1/24"), peer, secret)])
    assert sc.peers[0].password == "secret" and not sc.warnings


def test_per_node_bgp_configuration_overrides_the_default_for_its_node(write_yaml):
    default = ("apiVersion: projectcalico.org/v3\nkind: BGPConfiguration\nmetadata: {name: default}\n"
               "spec: {listenPort: 177, logSeverityScreen: Info}\n")
    own = ("apiVersion: projectcalico.org/v3\nkind: BGPConfiguration\nmetadata: {name: node.a}\n"
           "spec: {listenPort: 180, communities: [{name: c, value: '1:2'}], "
           "prefixAdvertisements: [{cidr: 10.244.0.0/16, communities: [c]}]}\n")
    sc = load_scenario([write_yaml(pool_doc(), node_doc("a", "10.0.0.1/24"), node_doc("b", "10.0.0.2/24"), default,
                                   own)])
    assert sc.bgp_for("a").listen_port == 180 and sc.bgp_for("b").listen_port == 177
    assert sc.bgp_for("a").prefix_advertisements[0].communities == ("1:2",)
    assert sc.bgp_for("b").prefix_advertisements == ()


def test_cli_prints_warnings_on_stderr_and_results_on_stdout(tmp_path):
    res = subprocess.run([sys.executable, "-m", "meshsim", "validate", str(KUBECTL)], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stderr.count("meshsim: warning:") == 1 and "OK (scenario kubectl-kdd" in res.stdout
