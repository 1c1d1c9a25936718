"""meshsim.engines.bird.confd: confd's BIRD configuration for a node, and BIRD's output read back (pure, no BIRD needed except
for the one syntax check, which skips without it)."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import textwrap
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from meshsim.engines.bird import confd as bird
from meshsim.engines.bird.control import since_timestamp
from meshsim.engines.bird.confd import BirdBlock, bird_input, render
from meshsim.model.cluster import Cluster
from meshsim.agent.config import node_configs
from meshsim.model.resources import load_scenario
from tests.conftest import ROOT

GOLDEN = ROOT / "tests" / "golden" / "bird"

# Calico's confd test harness loads these IPAM blocks for kube-master (its mock datastore, not input.yaml); they are
# not blocks of the test's pool, so they cannot come from a scenario's BlockAffinities.
CALICO_MOCK_BLOCKS = [BirdBlock(IPv4Network(c), s) for c, s in [
    ("10.0.0.0/30", None), ("10.1.0.0/24", None), ("10.2.0.1/32", None), ("192.168.221.192/26", None),
    ("192.168.221.64/26", "confirmed")]]

# projectcalico/calico v3.28.0, confd/tests/compiled_templates/<case>/<file>: the file's git blob id (`git ls-tree
# v3.28.0 <path>`) and the sha1 of its non-blank lines. Calico's own test compares with `diff --ignore-blank-lines`
# (confd/tests/test_suite_common.sh), and its compiled bird_aggr.cfg carries one blank line more than the template
# renders, so the comparison here is Calico's: equal once blank lines are dropped.
CALICO_COMPILED = {
    ("explicit_peering/route_reflector", "bird.cfg"): ("ce4f7de09894943f2c3014a5a15728f5e72c8183",
                                                        "a6f8abb195fc95cfaa77fd86f048e2c99a9fc622"),
    ("explicit_peering/route_reflector", "bird_aggr.cfg"): ("5a623513074db9c5c159918283910a29db85edf6",
                                                             "f4990a9c5c090ca3776d105b71636e98dc6335a2"),
    ("explicit_peering/route_reflector", "bird_ipam.cfg"): ("23a07585f21307ba5f25078dc87a81948b9258fb",
                                                             "f3a4855450b28688985b47ba5952e65305bc0e81"),
    ("mesh/ipip-always", "bird.cfg"): ("1bd9d150777fab570496c99b226a6c0febb6df2e",
                                       "43fc9492b851aa0431af9002a37415c90a6a007b"),
    ("mesh/ipip-always", "bird_ipam.cfg"): ("23a07585f21307ba5f25078dc87a81948b9258fb",
                                            "f3a4855450b28688985b47ba5952e65305bc0e81"),
    ("mesh/ipip-cross-subnet", "bird.cfg"): ("c9de101dcb049405e5fcece41d26ed5390dd1fc7",
                                             "5f6940afaa1dd375bd6af4257f46d16556f1361d"),
    ("mesh/ipip-cross-subnet", "bird_ipam.cfg"): ("f7dd96ff0756c4d40793c8ae5cba9e7ede05a004",
                                                  "df20c49fda9bcf2cd3b27827abcd891aff868636"),
    ("mesh/ipip-off", "bird_ipam.cfg"): ("45e216e04a7f0bbf8f85b2e0d6121a2ef785245a",
                                         "cacd71c997dd0311ba9714304f7b7c888b487019"),
}


def _nonblank_sha1(text: str) -> str:
    return hashlib.sha1("".join(line + "\n" for line in text.splitlines() if line.strip()).encode()).hexdigest()


def _mesh_case(tmp_path: Path, mode: str, third: str) -> Cluster:
    """Calico's mesh/* test inputs (mock_data/calicoctl/mesh/<case>/input.yaml) as a scenario."""
    docs = [f"apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {{name: ippool-1}}\n"
            f"spec: {{cidr: 192.168.0.0/16, ipipMode: {mode}, natOutgoing: true}}\n"]
    for name, ip in (("kube-master", "10.192.0.2"), ("kube-node-1", "10.192.0.3"), ("kube-node-2", third)):
        docs.append(f"apiVersion: projectcalico.org/v3\nkind: Node\nmetadata: {{name: {name}}}\n"
                    f"spec: {{bgp: {{ipv4Address: {ip}/16}}}}\n")
    path = tmp_path / f"{mode}.yaml"
    path.write_text("---\n".join(docs))
    return Cluster.build(load_scenario([path]))


def _rr_case() -> Cluster:
    return Cluster.build(load_scenario([GOLDEN / "route_reflector.yaml"]))


def _case_files(case: str, tmp_path: Path) -> dict[str, str]:
    if case == "explicit_peering/route_reflector":
        cluster = _rr_case()
    else:
        mode = {"mesh/ipip-always": "Always", "mesh/ipip-cross-subnet": "CrossSubnet", "mesh/ipip-off": "Never"}[case]
        cluster = _mesh_case(tmp_path, mode, "10.192.0.6" if mode == "CrossSubnet" else "10.192.0.4")
    inp = bird_input(cluster, "kube-master", blocks=CALICO_MOCK_BLOCKS)
    return render(inp, "bird1")


@pytest.mark.parametrize("case,name", sorted(CALICO_COMPILED))
def test_bird1_rendering_equals_calicos_compiled_templates(case: str, name: str, tmp_path: Path) -> None:
    text = _case_files(case, tmp_path)[name]
    blob, nonblank = CALICO_COMPILED[(case, name)]
    assert _nonblank_sha1(text) == nonblank, (
        f"differs from Calico v3.28.0 confd/tests/compiled_templates/{case}/{name} (blob {blob}):\n{text}")


def test_bird1_rendering_is_byte_exact_where_calicos_file_is_current(tmp_path: Path) -> None:
    """Calico's compiled bird.cfg and bird_ipam.cfg match its templates byte for byte, so ours do too."""
    for (case, name), (blob, _) in CALICO_COMPILED.items():
        if name != "bird_aggr.cfg":
            assert bird.git_blob_id(_case_files(case, tmp_path)[name]) == blob, (case, name)


def test_golden_bird2_config_is_what_we_render() -> None:
    files = render(bird_input(_rr_case(), "kube-master", blocks=CALICO_MOCK_BLOCKS), "bird2")
    for name, text in files.items():
        assert (GOLDEN / f"kube-master.{name}").read_text() == text, name


def test_bird2_differs_from_calicos_bird1_only_where_bird2_syntax_forces_it() -> None:
    """Every line the BIRD 2 rendering adds or drops is one of the documented differences (module docstring)."""
    inp = bird_input(_rr_case(), "kube-master", blocks=CALICO_MOCK_BLOCKS)
    one, two = render(inp, "bird1"), render(inp, "bird2")
    allowed_new = {"ipv4 {", "};", "ipv4;", "metric 0;", "import all;", "export filter calico_kernel_programming;",
                   "gateway recursive;", "add paths on;", "import filter {", "export filter {", "accept;",
                   "calico_export_to_bgp_peers(true);", "calico_export_to_bgp_peers(false);", "reject;",
                   "function calico_tunnel(string tunnel_dev) {", 'if ( tunnel_dev != "" && defined(bgp_next_hop) ) then {',
                   "ifname = tunnel_dev;", "onlink = true;", "gw = bgp_next_hop;", "}", 'calico_tunnel("tunl0");',
                   "if ( source = RTS_DEVICE ) then { reject; }"}
    allowed_gone = {"import all;", "export filter calico_kernel_programming;", "gateway recursive;", "add paths on;",
                    'krt_tunnel = "tunl0";'}

    def statements(text: str) -> list[str]:
        return [line.split("#")[0].strip() for line in text.splitlines() if line.split("#")[0].strip()]

    import difflib

    for name in bird.FILES:
        diff = list(difflib.ndiff(statements(one[name]), statements(two[name])))
        added = {d[2:] for d in diff if d.startswith("+ ")}
        removed = {d[2:] for d in diff if d.startswith("- ")}
        assert added <= allowed_new, (name, added - allowed_new)
        assert removed <= allowed_gone, (name, removed - allowed_gone)
    assert 'calico_tunnel("tunl0");' in two["bird_ipam.cfg"] and 'krt_tunnel =' not in two["bird_ipam.cfg"]
    assert "  metric 0;" in two["bird.cfg"]


def test_the_golden_config_has_what_calico_renders_for_a_route_reflector() -> None:
    text = (GOLDEN / "kube-master.bird.cfg").read_text()
    assert "router id 10.192.0.2;" in text and "template bgp bgp_template {" in text
    assert "# This node (kube-master) is configured as a route reflector with cluster ID 10.0.0.1;" in text
    for peer in ("10_192_0_3", "10_192_0_4"):
        block = text[text.index(f"protocol bgp Node_{peer} "):]
        block = block[:block.index("\n}")]
        assert "rr client;" in block and "rr cluster id 10.0.0.1;" in block and "calico_export_to_bgp_peers(true);" in block
    ebgp = text[text.index("protocol bgp Node_172_19_4_87 "):]
    assert "calico_export_to_bgp_peers(false);" in ebgp and "rr client" not in ebgp[:ebgp.index("\n}")]
    aggr = (GOLDEN / "kube-master.bird_aggr.cfg").read_text()
    assert "   route 192.168.221.64/26 blackhole;" in aggr and "route 10.2.0.1/32" not in aggr  # no /32 blackholes


@pytest.mark.skipif(shutil.which("bird") is None, reason="BIRD not installed (apt-get install bird2)")
def test_bird2_accepts_the_golden_config(tmp_path: Path) -> None:
    for name in bird.FILES:
        (tmp_path / name).write_text((GOLDEN / f"kube-master.{name}").read_text())
    res = subprocess.run(["bird", "-p", "-c", str(tmp_path / "bird.cfg")], capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr


def test_mesh_passive_and_timers_and_pending_blocks(tmp_path: Path) -> None:
    cluster = _mesh_case(tmp_path, "Never", "10.192.0.4")
    inp = bird_input(cluster, "kube-node-1", blocks=[BirdBlock(IPv4Network("192.168.1.0/26"), "confirmed"),
                                                     BirdBlock(IPv4Network("192.168.2.0/26"), "pending")])
    files = render(inp, "bird2")
    cfg = files["bird.cfg"]
    m2 = cfg[cfg.index("protocol bgp Mesh_10_192_0_2 "):]
    m4 = cfg[cfg.index("protocol bgp Mesh_10_192_0_4 "):]
    assert "passive on" not in m2[:m2.index("\n}")]  # "10.192.0.2" < "10.192.0.3": we connect
    assert "passive on; # Mesh is unidirectional" in m4[:m4.index("\n}")]
    assert "# Skipping ourselves (10.192.0.3)" in cfg
    assert "hold time 9;" not in cfg  # scenario timers: BIRD's defaults here
    aggr = files["bird_aggr.cfg"]
    assert "route 192.168.2.0/26 blackhole;" in aggr and "# Block 192.168.2.0/26 is pending" in aggr
    assert "if ( net = 192.168.2.0/26 )" not in aggr and "if ( net = 192.168.1.0/26 ) then { accept; }" in aggr
    assert 'calico_tunnel("");' in files["bird_ipam.cfg"]


def test_input_from_a_node_config_matches_the_cluster_view(tmp_path: Path) -> None:
    cluster = _rr_case()
    cfg = node_configs(cluster, bgp_port=179, http_port=9179, workdir=tmp_path)["kube-master"]
    a = bird.bird_input_from_config(cfg)
    b = bird_input(cluster, "kube-master")
    assert [(p.name, p.address, p.asn, p.rr_client, p.passive) for p in sorted(a.peers, key=lambda p: p.name)] == \
        [(p.name, p.address, p.asn, p.rr_client, p.passive) for p in sorted(b.peers, key=lambda p: p.name)]
    assert a.cluster_id == IPv4Address("10.0.0.1") and a.network == IPv4Network("10.192.0.0/16")


SHOW_PROTOCOLS = textwrap.dedent("""\
    BIRD 2.0.12 ready.
    Name       Proto      Table      State  Since         Info
    static1    Static     master4    up     09:39:43.617
    kernel1    Kernel     master4    up     09:39:43.617
    Mesh_192_168_0_82 BGP        ---        up     09:39:45.607  Established
    Mesh_192_168_0_83 BGP        ---        start  09:39:45.607  Active        Socket: Connection refused
    """)

SHOW_PROTOCOLS_ALL = textwrap.dedent("""\
    Name       Proto      Table      State  Since         Info
    Mesh_192_168_0_82 BGP        ---        up     09:39:45.607  Established
      Description:    Connection to BGP peer
      BGP state:          Established
        Neighbor address: 192.168.0.82
        Neighbor AS:      64512
        Neighbor ID:      192.168.0.82
      Channel ipv4
        State:          UP
        Routes:         1 imported, 2 exported, 1 preferred
        Route change stats:     received   rejected   filtered    ignored   accepted
          Import updates:              1          0          0          0          1
          Import withdraws:            0          0        ---          0          0
          Export updates:              6          1          3        ---          2
          Export withdraws:            1        ---        ---        ---          1
    """)

SHOW_ROUTE_ALL = "\n".join([
    "BIRD 2.0.12 ready.", "Table master4:",
    "10.244.106.192/26    unicast [Node_192_168_0_11 09:55:07.501 from 192.168.0.11] * (100) [i]",
    "\tvia 192.168.0.83 on eth0", "\tType: BGP univ", "\tBGP.origin: IGP", "\tBGP.as_path: ",
    "\tBGP.next_hop: 192.168.0.83", "\tBGP.local_pref: 100", "\tBGP.originator_id: 192.168.0.83",
    "\tBGP.cluster_list: 244.0.0.1",
    "                     unicast [Node_192_168_0_12 09:55:07.558 from 192.168.0.12] (100) [i]",
    "\tvia 192.168.0.83 on eth0", "\tBGP.next_hop: 192.168.0.83", "\tBGP.cluster_list: 244.0.0.1",
    "10.244.1.0/26        blackhole [static1 09:39:43.617] * (200)", "\tType: static univ",
    "192.168.0.0/24       unicast [direct1 09:54:42.571] ! (240)", "\tdev eth0", ""])


def test_parse_show_protocols() -> None:
    rows = {r.name: r for r in bird.parse_protocols(SHOW_PROTOCOLS)}
    assert rows["Mesh_192_168_0_82"].state == "up" and rows["Mesh_192_168_0_82"].info == "Established"
    assert rows["Mesh_192_168_0_83"].info == "Active Socket: Connection refused"
    assert rows["static1"].proto == "Static" and rows["static1"].info == ""


def test_parse_show_protocols_all() -> None:
    d = bird.parse_protocols_all(SHOW_PROTOCOLS_ALL)["Mesh_192_168_0_82"]
    assert d.bgp_state == "Established" and d.neighbor_address == "192.168.0.82"
    assert d.routes == {"imported": 1, "exported": 2, "preferred": 1}
    assert d.stats["export updates"]["accepted"] == 2 and d.stats["import withdraws"]["filtered"] is None


def test_parse_show_route_all() -> None:
    routes = bird.parse_routes(SHOW_ROUTE_ALL)
    assert [(str(r.prefix), r.protocol, r.primary) for r in routes] == [
        ("10.244.106.192/26", "Node_192_168_0_11", True), ("10.244.106.192/26", "Node_192_168_0_12", False),
        ("10.244.1.0/26", "static1", True), ("192.168.0.0/24", "direct1", False)]
    attrs = bird.bgp_attrs(routes[0])
    assert attrs["next_hop"] == "192.168.0.83" and attrs["originator_id"] == "192.168.0.83"
    assert attrs["cluster_list"] == ["244.0.0.1"] and attrs["as_path"] == [] and routes[0].source == "192.168.0.11"
    assert routes[2].kind == "blackhole" and routes[3].dev == "eth0"


def test_since_and_control_socket_reply() -> None:
    import time

    now = time.mktime((2026, 5, 1, 10, 0, 0, 0, 0, -1))
    assert since_timestamp("09:39:45.500", now) == pytest.approx(now - 20 * 60 - 14.5)
    assert since_timestamp("23:59:59.000", now) < now  # yesterday's
    text, code = bird.split_reply(["2002-Name       Proto", "1002-static1    Static", " more", "0000 "])
    assert text == "Name       Proto\nstatic1    Static\nmore\n" and code == 0
    assert bird.split_reply(["9001 syntax error, unexpected CF_SYM_UNDEFINED"])[1] == 9001
