"""The public API without a cluster: what `meshsim` exports, the pytest plugin staying inert and cheap, argument
checks that come before any process starts, records and errors, and the rule that on one machine an external BGP
peer is dialled and accepted at a 127.x address of its own, never at the address the manifest declares."""

from __future__ import annotations

import subprocess
import sys
from ipaddress import IPv4Address
from pathlib import Path

import pytest

import meshsim
from meshsim.agent.bodies import local_state
from meshsim.agent.config import LocalState, loopback_map, node_configs, peer_loopback_map
from meshsim.api import EmulationError, EventRecord, NotConverged, PeerEndpoint
from meshsim.errors import RunError
from meshsim.model.cluster import Cluster
from meshsim.model.resources import load_scenario
from tests.conftest import ROOT, node_doc, pool_doc, scenario_doc

TOR = ("apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {name: tor}\n"
       "spec: {peerIP: 192.168.0.1, asNumber: 65001}\n")


def test_meshsim_exports_the_api_and_ships_py_typed():
    for name in meshsim.__all__:
        assert getattr(meshsim, name) is not None, name
    assert meshsim.emulate is meshsim.api.emulate and issubclass(meshsim.NotConverged, meshsim.MeshsimError)
    assert (ROOT / "meshsim" / "py.typed").exists()
    assert '"py.typed"' in (ROOT / "pyproject.toml").read_text()
    with pytest.raises(AttributeError):
        meshsim.no_such_thing  # noqa: B018


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)


def test_the_pytest_plugin_is_cheap_to_load_and_inert_without_pytest_asyncio(tmp_path):
    cheap = _python("import sys, meshsim.pytest_plugin as p\n"
                    "assert hasattr(p, 'meshsim_cluster')\n"
                    "heavy = [m for m in ('meshsim.api', 'meshsim.run.harness', 'exabgp') if m in sys.modules]\n"
                    "assert not heavy, heavy\n")
    assert cheap.returncode == 0, cheap.stderr
    inert = _python("import sys\nsys.modules['pytest_asyncio'] = None  # as if not installed\n"
                    "import meshsim.pytest_plugin as p\nassert not hasattr(p, 'meshsim_cluster')\n")
    assert inert.returncode == 0, inert.stderr
    # another project's session without pytest-asyncio: the plugin loads (its option is there) and breaks nothing
    (tmp_path / "pytest.ini").write_text("[pytest]\nfilterwarnings = error\n")
    (tmp_path / "test_other.py").write_text("def test_other(request):\n"
                                            "    assert request.config.getoption('--meshsim-out') is None\n")
    run = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:asyncio", "-p", "no:cacheprovider", "-q"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert run.returncode == 0 and "1 passed" in run.stdout, run.stdout[-2000:] + run.stderr[-2000:]


def test_entry_point_is_declared():
    text = (ROOT / "pyproject.toml").read_text()
    assert '[project.entry-points.pytest11]\nmeshsim = "meshsim.pytest_plugin"' in text
    assert 'pytest = ["pytest>=8", "pytest-asyncio>=0.23"]' in text


async def test_mode_problems_are_said_before_anything_starts(write_yaml):
    bird = write_yaml(pool_doc(), node_doc("node1", "192.168.0.81/24"),
                      scenario_doc(hosts="  hosts:\n    node1: {implementation: bird}\n"))
    with pytest.raises(RunError, match='implementation: bird, which needs isolation="netns"'):
        await meshsim.emulate(bird).start()
    plain = write_yaml(pool_doc(), node_doc("node1", "192.168.0.81/24"), TOR)
    with pytest.raises(RunError, match='external_peers="gobgpd" needs isolation="netns"'):
        await meshsim.emulate(plain, external_peers="gobgpd").start()
    with pytest.raises(EmulationError, match="needs scenario files or text="):
        meshsim.emulate()
    emu = meshsim.emulate(plain)
    with pytest.raises(EmulationError, match=r"not running \(new\)"):
        emu.nodes  # noqa: B018


async def test_an_out_that_cannot_be_written_is_said_before_anything_starts(write_yaml, tmp_path, monkeypatch):
    """As `meshsim run --out` (issue 12, defect 1): no node starts, so none can be left running."""
    import meshsim.fabric.netns

    def no_fabric(*args, **kwargs):
        raise AssertionError("a fabric was made")

    monkeypatch.setattr(meshsim.fabric.netns, "fabric_factory", no_fabric)
    plain = write_yaml(pool_doc(), node_doc("node1", "192.168.0.81/24"))
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(RunError, match=r"--out .*afile: exists and is not a directory; nothing was started"):
        await meshsim.emulate(plain, out=afile).start()


def test_external_peers_map_to_loopback_addresses_of_their_own(write_yaml):
    path = write_yaml(pool_doc(), node_doc("node1", "192.168.0.81/24"), node_doc("node2", "192.168.0.82/24"), TOR,
                      "apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {name: rs}\n"
                      "spec: {peerIP: 10.1.0.81, asNumber: 65002}\n")
    cluster = Cluster.build(load_scenario([path]))
    nodes = loopback_map(cluster)
    peers = peer_loopback_map(cluster)
    assert peers[IPv4Address("192.168.0.1")] == IPv4Address("127.168.0.1")  # the last three octets, as for nodes
    # 10.1.0.81 would be 127.1.0.81; 192.168.0.81 (node1) is 127.168.0.81: no clash, kept
    assert peers[IPv4Address("10.1.0.81")] == IPv4Address("127.1.0.81")
    configs = node_configs(cluster, bgp_port=17900, http_port=9179, workdir=Path("/tmp/x"))
    for cfg in configs.values():
        external = {p.address: p for p in cfg.peers if p.peer_node is None}
        assert external["192.168.0.1"].session_address == "127.168.0.1"
        assert external["10.1.0.81"].session_address == "127.1.0.81"
        assert all(p.session_address.startswith("127.") for p in cfg.peers)  # never a manifest address
    assert not set(peers.values()) & set(nodes.values())
    # netns / compose pass the declared addresses: there the peer holds its declared address itself
    declared = {n.name: n.address for n in cluster.scenario.nodes}
    netns = node_configs(cluster, bgp_port=179, http_port=9179, workdir=Path("/tmp/x"), session_addresses=declared)
    assert {p.session_address for p in netns["node1"].peers if p.peer_node is None} == {"192.168.0.1", "10.1.0.81"}


def test_post_local_accepts_every_field_the_runner_sends(write_yaml):
    """POST /local carries LocalState.to_json(): service routes, rejected ranges, RR accept ranges, tunl0's address."""
    state = LocalState(blocks=("10.244.0.0/26",), affine=("10.244.0.0/26",), workloads=(("10.244.0.1", "cali1"),),
                       originate=("10.244.0.0/26",), static_routes=("10.96.0.10/32",), reject_cidrs=("10.96.0.0/12",),
                       rr_accept=("10.97.0.0/16",), tunnel="10.244.0.0")
    assert local_state(state.to_json()) == state
    assert local_state(LocalState().to_json()) == LocalState()
    from meshsim.agent.http import HttpError

    for bad in ({"tunnel": "x"}, {"static_routes": ["nope"]}, {"reject_cidrs": "10.0.0.0/8"}, {"other": []}):
        with pytest.raises(HttpError):
            local_state(bad)


def test_event_record_is_the_timeline_dict_with_typed_fields():
    rec = EventRecord({"index": 0, "action": "kill-node", "event": "kill-node node2 (sigkill)", "converged": True,
                       "convergence_s": 0.5, "per_node": {"node1": 0.5}, "update_messages_received": 3,
                       "blackouts": [], "stale": {"restart_time_s": 5}})
    assert rec.converged and rec.convergence_s == 0.5 and rec.per_node == {"node1": 0.5}
    assert rec.update_messages_received == 3 and rec.stale == {"restart_time_s": 5} and rec.not_converged == {}
    import json

    assert json.loads(json.dumps(rec))["event"] == "kill-node node2 (sigkill)"


def test_not_converged_names_the_nodes_and_how_they_differ():
    exc = NotConverged("the cold start", 30, {"nodes_differing": 1, "sessions_expected": 6, "sessions_established": 4,
                                              "not_converged": {"node2": {"missing": ["10.244.1.0/26 via x"],
                                                                          "extra": []}}},
                       hint="start your speaker")
    text = str(exc)
    assert text.startswith("the cold start did not converge within 30 s: 1 node(s) differ")
    assert "node2 missing 1 ['10.244.1.0/26 via x']" in text and "4/6 expected BGP sessions" in text
    assert "hint: start your speaker" in text and exc.not_converged["node2"]["missing"]


def test_peer_endpoint_runs_commands_in_its_namespace():
    ep = PeerEndpoint(node="node1", node_address="10.0.0.1", node_port=179, node_as=64512, node_router_id="10.0.0.1",
                      local_address="10.0.0.254", local_port=179, peer_as=65001, peer_router_id="10.0.0.254",
                      netns="msim-ab-tor0")
    assert ep.command("gobgpd", "-f", "x") == ["ip", "netns", "exec", "msim-ab-tor0", "gobgpd", "-f", "x"]
    assert PeerEndpoint(**{**ep.__dict__, "netns": None}).command("gobgp") == ["gobgp"]
    assert "password" not in repr(PeerEndpoint(**{**ep.__dict__, "password": "s3cret"}))
