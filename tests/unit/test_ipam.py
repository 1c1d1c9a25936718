"""IPAM as Calico does it: block claims, a second block when one fills, borrowing, strict affinity, release."""

from __future__ import annotations

from ipaddress import IPv4Network

import pytest

from meshsim.errors import IpamError, ScenarioError
from meshsim.model.ipam import Ipam
from meshsim.model.cluster import Cluster, veth_name
from meshsim.model.resources import IPAMConfiguration, IPPool, load_scenario
from tests.conftest import node_doc, pool_doc, scenario_doc


def ipam(cidr="10.244.0.0/24", block=26, **cfg) -> Ipam:
    return Ipam([IPPool(name="p", cidr=IPv4Network(cidr), block_size=block)], {"a": {}, "b": {}, "c": {}},
                IPAMConfiguration(**cfg))


def test_first_pod_claims_a_block_and_takes_its_first_address():
    i = ipam()
    alloc = i.auto_assign("default/p1", "a")
    block = i.blocks_of("a")[0]
    assert block.cidr.prefixlen == 26 and alloc.ip == block.cidr.network_address and not alloc.borrowed
    assert i.auto_assign("default/p2", "a").ip == block.cidr.network_address + 1


def test_block_claim_order_is_deterministic_per_host_and_wraps_around():
    one, two = ipam(cidr="10.244.0.0/16"), ipam(cidr="10.244.0.0/16")
    for i in (one, two):
        for n in "abc":
            i.auto_assign(f"x/{n}", n)
    assert [b.cidr for b in one.blocks.values()] == [b.cidr for b in two.blocks.values()]
    # different hosts start their search at different blocks (Calico's randomBlockGenerator seeds on the host)
    assert len({b.cidr for b in one.blocks.values()}) == 3


def test_second_block_at_pod_65_with_block_size_26():
    i = ipam(cidr="10.244.0.0/16")
    for n in range(64):
        i.auto_assign(f"default/p{n}", "a")
    assert len(i.blocks_of("a")) == 1
    alloc = i.auto_assign("default/p64", "a")  # the 65th pod
    blocks = i.blocks_of("a")
    assert len(blocks) == 2 and alloc.block != i.allocations["default/p0"].block and not alloc.borrowed


def test_max_blocks_per_host_then_borrow():
    i = ipam(cidr="10.244.0.0/24", block=28, max_blocks_per_host=1)
    for n in range(16):
        i.auto_assign(f"d/a{n}", "a")
    i.auto_assign("d/b0", "b")  # b claims its own block
    alloc = i.auto_assign("d/a16", "a")  # a hit its limit: borrows from b's block
    assert alloc.borrowed and alloc.block == i.blocks_of("b")[0].cidr


def test_borrowing_when_the_pool_is_exhausted_exports_a_32():
    sc_cluster = _cluster(pool_doc(cidr="10.244.0.0/25", block_size=26, ipip="Never"), {"a": 60, "b": 60, "c": 2})
    borrowed = sc_cluster.ipam.borrowed()
    assert [a.node for a in borrowed] == ["c", "c"]
    assert sc_cluster.affine_blocks("c") == ()
    assert sc_cluster.originated("c") == frozenset(IPv4Network(a.ip) for a in borrowed)
    owner = sc_cluster.ipam.blocks[borrowed[0].block].affinity
    assert owner in ("a", "b") and IPv4Network(borrowed[0].block) in sc_cluster.originated(owner)


def test_strict_affinity_refuses_to_borrow():
    i = ipam(cidr="10.244.0.0/25", strict_affinity=True)
    for n in range(64):
        i.auto_assign(f"d/a{n}", "a")
    i.auto_assign("d/b0", "b")
    with pytest.raises(IpamError, match="strictAffinity"):
        i.auto_assign("d/c0", "c")


def test_strict_affinity_error_in_a_scenario_names_the_workloads_field(write_yaml):
    ipamcfg = ("apiVersion: projectcalico.org/v3\nkind: IPAMConfiguration\nmetadata: {name: default}\n"
               "spec: {strictAffinity: true}\n")
    path = write_yaml(pool_doc(cidr="10.244.0.0/26", ipip="Never"), ipamcfg, node_doc("a", "10.0.0.1/24"),
                      node_doc("b", "10.0.0.2/24"), scenario_doc(workloads={"a": 1, "b": 1}))
    with pytest.raises(ScenarioError) as info:
        Cluster.build(load_scenario([path]))
    assert info.value.field == "spec.workloads.b" and "strictAffinity" in info.value.message


def test_release_frees_the_address_for_reuse_in_calico_order():
    i = ipam()
    first = i.auto_assign("d/p0", "a")
    i.auto_assign("d/p1", "a")
    i.release("d/p0")
    # Calico appends released ordinals to the end of the free list: the next pod gets .2, not .0
    assert i.auto_assign("d/p2", "a").ip == first.ip + 2
    assert "d/p0" not in i.allocations


def test_release_of_an_emptied_second_block_gives_it_back():
    i = ipam(cidr="10.244.0.0/16")
    for n in range(65):
        i.auto_assign(f"d/p{n}", "a")
    second = i.allocations["d/p64"].block
    result = i.release("d/p64")
    assert result.released_block == second and len(i.blocks_of("a")) == 1
    # the last block of a node stays affine even when empty
    for n in range(64):
        assert i.release(f"d/p{n}").released_block is None
    assert len(i.blocks_of("a")) == 1


def test_pool_node_selector_limits_which_nodes_use_it():
    pools = [IPPool(name="rack1", cidr=IPv4Network("10.1.0.0/24"), node_selector="rack == '1'"),
             IPPool(name="rack2", cidr=IPv4Network("10.2.0.0/24"), node_selector="rack == '2'")]
    i = Ipam(pools, {"a": {"rack": "1"}, "b": {"rack": "2"}, "c": {}})
    assert i.auto_assign("d/a", "a").ip in pools[0].cidr
    assert i.auto_assign("d/b", "b").ip in pools[1].cidr
    with pytest.raises(IpamError, match="nodeSelector"):
        i.auto_assign("d/c", "c")


def test_pinned_affinity_and_endpoint(write_yaml):
    aff = ("apiVersion: projectcalico.org/v3\nkind: BlockAffinity\nmetadata: {name: a-blk}\n"
           "spec: {node: a, cidr: 10.244.42.64/26, state: confirmed}\n")
    wep = ("apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata: {name: w, namespace: web}\n"
           "spec: {node: a, pod: nginx, interfaceName: caliba60dafcd06, ipNetworks: ['10.244.42.68/32']}\n")
    cluster = _cluster_docs(pool_doc(), node_doc("a", "10.0.0.1/24"), aff, wep, scenario_doc(workloads={"a": 2}))
    assert cluster.affine_blocks("a") == (IPv4Network("10.244.42.64/26"),)
    pods = cluster.pods_on("a")
    # calico-node takes the tunl0 address first (IPIP pool), then pods fill the free ordinals in order
    assert str(cluster.tunnel_address("a")) == "10.244.42.64"
    assert [str(p.ip) for p in pods] == ["10.244.42.65", "10.244.42.66", "10.244.42.68"]
    assert next(p for p in pods if p.name == "nginx").interface == "caliba60dafcd06"


def test_veth_names_follow_calico():
    # libcalico-go: "cali" + sha1("<namespace>.<pod>")[:11]
    import hashlib

    assert veth_name("default", "nginx") == "cali" + hashlib.sha1(b"default.nginx").hexdigest()[:11]
    assert len(veth_name("kube-system", "coredns-1")) == 15  # IFNAMSIZ - 1


def test_allocation_is_deterministic_for_a_scenario(write_yaml):
    docs = (pool_doc(), node_doc("a", "10.0.0.1/24"), node_doc("b", "10.0.0.2/24"),
            scenario_doc(workloads={"a": 70, "b": 3}))
    one, two = _cluster_docs(*docs), _cluster_docs(*docs)
    assert [(p.key, p.ip, p.interface) for p in one.pods.values()] == \
        [(p.key, p.ip, p.interface) for p in two.pods.values()]


def _cluster(pool: str, workloads: dict[str, int]) -> Cluster:
    nodes = [node_doc(n, f"10.0.0.{i + 1}/24") for i, n in enumerate(workloads)]
    return _cluster_docs(pool, *nodes, scenario_doc(workloads=workloads))


_tmp_counter = [0]


def _cluster_docs(*docs: str) -> Cluster:
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "s.yaml"
        path.write_text("---\n".join(x if x.endswith("\n") else x + "\n" for x in docs))
        return Cluster.build(load_scenario([path]))



def test_ipip_nodes_hold_a_block_for_their_tunnel_address_even_without_pods(write_yaml):
    cluster = _cluster_docs(pool_doc(), node_doc("a", "10.0.0.1/24"), node_doc("b", "10.0.0.2/24"),
                            scenario_doc(workloads={"a": 1}))
    assert cluster.tunnel_address("b") is not None and len(cluster.affine_blocks("b")) == 1
    assert cluster.pods_on("a")[0].ip == cluster.tunnel_address("a") + 1
    never = _cluster_docs(pool_doc(ipip="Never"), node_doc("a", "10.0.0.1/24"), node_doc("b", "10.0.0.2/24"))
    assert never.tunnel_address("a") is None and never.affine_blocks("a") == ()
