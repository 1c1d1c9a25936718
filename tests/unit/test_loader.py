"""The scenario loader: Calico resources parsed, defaults applied, and every error path named."""

from __future__ import annotations

import subprocess
import sys
from ipaddress import IPv4Address, IPv4Network

import pytest

from meshsim.errors import ScenarioError
from meshsim.model.resources import load_scenario
from tests.conftest import SCENARIOS, node_doc, pool_doc, scenario_doc


def test_shipped_three_node_scenario_loads_with_calico_defaults():
    sc = load_scenario([SCENARIOS / "three-node-ipip.yaml"])
    assert sc.name == "three-node-ipip"
    assert [n.name for n in sc.nodes] == ["node1", "node2", "node3"]
    assert sc.nodes[0].address == IPv4Address("192.168.0.81")
    assert sc.nodes[0].subnet == IPv4Network("192.168.0.0/24")
    assert sc.pools[0].block_size == 26 and sc.pools[0].ipip_mode == "Always"
    assert sc.bgp.as_number == 64512 and sc.bgp.node_to_node_mesh_enabled
    assert sc.spec.timers.hold_time == 9 and sc.spec.timers.keepalive_time == 3
    assert dict(sc.spec.workloads) == {"node1": 3, "node2": 2, "node3": 2}


def test_defaults_without_bgpconfiguration_or_scenario_document(write_yaml):
    path = write_yaml(pool_doc(block_size=26), node_doc("a", "10.0.0.1/24"))
    sc = load_scenario([path])
    assert sc.bgp.as_number == 64512 and sc.bgp.node_to_node_mesh_enabled and sc.bgp.listen_port == 179
    assert sc.ipam.max_blocks_per_host == 20 and not sc.ipam.strict_affinity
    assert sc.spec.timers.hold_time == 240  # BIRD's default, what Calico runs
    assert sc.name == path.stem


def test_several_files_and_calicoctl_list_form(write_yaml):
    pools = write_yaml("apiVersion: projectcalico.org/v3\nkind: IPPoolList\nitems:\n"
                       "- metadata: {name: p1}\n  spec: {cidr: 10.244.0.0/16}\n")
    nodes = write_yaml("apiVersion: projectcalico.org/v3\nkind: NodeList\nitems:\n"
                       "- metadata: {name: a}\n  spec: {bgp: {ipv4Address: 10.0.0.1/24}}\n"
                       "- metadata: {name: b}\n  spec: {bgp: {ipv4Address: 10.0.0.2/24}}\n")
    sc = load_scenario([pools, nodes])
    assert [p.name for p in sc.pools] == ["p1"] and [n.name for n in sc.nodes] == ["a", "b"]


def test_crd_api_version_is_accepted(write_yaml):
    path = write_yaml(pool_doc().replace("projectcalico.org/v3", "crd.projectcalico.org/v1"),
                      node_doc("a", "10.0.0.1/24"))
    assert load_scenario([path]).pools[0].cidr == IPv4Network("10.244.0.0/16")


def _error(paths) -> ScenarioError:
    with pytest.raises(ScenarioError) as info:
        load_scenario(paths)
    return info.value


def test_wrong_block_size_names_file_document_field_and_range(write_yaml):
    path = write_yaml(node_doc("a", "10.0.0.1/24"), pool_doc(block_size=33))
    err = _error([path])
    assert err.path == str(path) and err.doc == 2 and err.kind == "IPPool" and err.field == "spec.blockSize"
    assert err.expected == "an integer 20..32" and err.got == 33
    assert str(err).startswith(f"{path}:")
    assert "document 2 (IPPool pool1)" in str(err) and "field spec.blockSize" in str(err)


def test_block_size_smaller_than_pool_prefix(write_yaml):
    err = _error([write_yaml(pool_doc(cidr="10.244.0.0/24", block_size=20), node_doc("a", "10.0.0.1/24"))])
    assert err.field == "spec.blockSize" and "do not fit" in err.message


def test_overlapping_pools(write_yaml):
    path = write_yaml(pool_doc(), pool_doc(cidr="10.244.128.0/17", name="pool2"), node_doc("a", "10.0.0.1/24"))
    err = _error([path])
    assert err.doc == 2 and err.field == "spec.cidr" and "overlaps IPPool pool1" in err.message


def test_node_without_address_is_left_out_with_a_warning(write_yaml):
    """confd leaves a node without an IPv4 BGP address out of the mesh; so does meshsim, and says so."""
    path = write_yaml(pool_doc(), node_doc("b", "10.0.0.2/24"),
                      "apiVersion: projectcalico.org/v3\nkind: Node\nmetadata: {name: a}\nspec: {}\n")
    sc = load_scenario([path])
    assert [n.name for n in sc.nodes] == ["b"]
    [warning] = sc.warnings
    assert warning.topic == "no-bgp-address" and "a" in warning.message and "left out" in warning.message
    err = _error([write_yaml(pool_doc(), "apiVersion: projectcalico.org/v3\nkind: Node\nmetadata: {name: a}\n"
                                         "spec: {}\n")])
    assert "declares no Node" in err.message and "IPv4 BGP address" in err.message


def test_node_address_without_prefix(write_yaml):
    err = _error([write_yaml(pool_doc(), node_doc("a", "10.0.0.1"))])
    assert err.field == "spec.bgp.ipv4Address" and "prefix" in err.message


def test_unknown_selector_operator(write_yaml):
    peer = ("apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {name: p}\n"
            "spec: {nodeSelector: all(), peerSelector: \"rr =~ 'true'\"}\n")
    err = _error([write_yaml(pool_doc(), node_doc("a", "10.0.0.1/24"), peer)])
    assert err.kind == "BGPPeer" and err.field == "spec.peerSelector" and "=~" in err.message
    assert "selector" in err.expected


def test_yaml_syntax_error_names_file_and_line(write_yaml):
    path = write_yaml(pool_doc(), "kind: Node\nmetadata: {name: a\nspec: x\n")
    err = _error([path])
    assert err.path == str(path) and "YAML syntax error" in err.message and err.line is not None


def test_missing_file(tmp_path):
    err = _error([tmp_path / "nope.yaml"])
    assert err.message == "file not found" and err.path.endswith("nope.yaml")


def test_unknown_kind(write_yaml):
    err = _error([write_yaml(pool_doc(), "apiVersion: projectcalico.org/v3\nkind: NetworkPolicyy\n"
                                         "metadata: {name: x}\n")])
    assert err.field == "kind" and err.got == "NetworkPolicyy" and "IPPool" in err.expected
    err = _error([write_yaml(pool_doc(), "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\n")])
    assert err.field == "kind" and err.got == "Deployment" and "apps/v1" in err.message


def test_unknown_field(write_yaml):
    err = _error([write_yaml(pool_doc(extra="  blocksize: 26\n"), node_doc("a", "10.0.0.1/24"))])
    assert err.field == "spec.blocksize" and "blockSize" in err.expected


def test_unknown_value(write_yaml):
    err = _error([write_yaml(pool_doc(ipip="Sometimes"), node_doc("a", "10.0.0.1/24"))])
    assert err.field == "spec.ipipMode" and err.expected == "Always | CrossSubnet | Never"


def test_ipip_and_vxlan_not_both(write_yaml):
    err = _error([write_yaml(pool_doc(extra="  vxlanMode: Always\n"), node_doc("a", "10.0.0.1/24"))])
    assert err.field == "spec.vxlanMode"


def test_wrong_api_version(write_yaml):
    err = _error([write_yaml(pool_doc().replace("projectcalico.org/v3", "v1"), node_doc("a", "10.0.0.1/24"))])
    assert err.field == "apiVersion" and "projectcalico.org/v3" in err.expected


def test_duplicate_node_names_and_addresses(write_yaml):
    err = _error([write_yaml(pool_doc(), node_doc("a", "10.0.0.1/24"), node_doc("a", "10.0.0.2/24"))])
    assert "duplicate Node name" in err.message
    err = _error([write_yaml(pool_doc(), node_doc("a", "10.0.0.1/24"), node_doc("b", "10.0.0.1/24"))])
    assert "duplicate node address" in err.message and err.field == "spec.bgp.ipv4Address"


def test_workloads_for_unknown_node(write_yaml):
    err = _error([write_yaml(pool_doc(), node_doc("a", "10.0.0.1/24"), scenario_doc(workloads={"zz": 3}))])
    assert err.kind == "Scenario" and err.field == "spec.workloads.zz" and "'a'" not in (err.expected or "x'")


def test_negative_workload_count(write_yaml):
    err = _error([write_yaml(pool_doc(), node_doc("a", "10.0.0.1/24"), scenario_doc(workloads={"a": -1}))])
    assert err.field == "spec.workloads.a" and err.got == -1


def test_unparsable_duration(write_yaml):
    doc = scenario_doc().replace("holdTime: 9s", "holdTime: soon")
    err = _error([write_yaml(pool_doc(), node_doc("a", "10.0.0.1/24"), doc)])
    assert err.field == "spec.timers.holdTime" and "duration" in err.expected


def test_block_affinity_must_be_a_block_of_a_pool(write_yaml):
    aff = ("apiVersion: projectcalico.org/v3\nkind: BlockAffinity\nmetadata: {name: x}\n"
           "spec: {node: a, cidr: 10.244.1.0/24, state: confirmed}\n")
    err = _error([write_yaml(pool_doc(), node_doc("a", "10.0.0.1/24"), aff)])
    assert err.kind == "BlockAffinity" and err.field == "spec.cidr" and err.expected == "a /26"


def test_workload_endpoint_outside_pools(write_yaml):
    wep = ("apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata: {name: w, namespace: default}\n"
           "spec: {node: a, pod: p, interfaceName: cali0123456789a, ipNetworks: ['172.16.0.5/32']}\n")
    err = _error([write_yaml(pool_doc(), node_doc("a", "10.0.0.1/24"), wep)])
    assert err.kind == "WorkloadEndpoint" and err.field == "spec.ipNetworks.0" and "no IPPool" in err.message


def test_bgppeer_needs_peerip_or_selector(write_yaml):
    peer = "apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {name: p}\nspec: {node: a}\n"
    err = _error([write_yaml(pool_doc(), node_doc("a", "10.0.0.1/24"), peer)])
    assert "exactly one of peerIP and peerSelector" in err.message


@pytest.mark.parametrize("args", [["validate"], ["routes", "--node", "node1"], ["peers"], ["ipam"]])
def test_cli_bad_input_is_one_line_and_exit_code_2(tmp_path, args):
    bad = tmp_path / "bad.yaml"
    bad.write_text(pool_doc(block_size=40) + "---\n" + node_doc("node1", "10.0.0.1/24"))
    proc = subprocess.run([sys.executable, "-m", "meshsim", args[0], str(bad), *args[1:]], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("meshsim: error: ") and "spec.blockSize" in lines[0]


def test_cli_missing_file_exit_2(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "meshsim", "validate", str(tmp_path / "x.yaml")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "file not found" in proc.stderr and "Traceback" not in proc.stderr
