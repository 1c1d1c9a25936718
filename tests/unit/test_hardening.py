"""Bad and hostile input never reaches a traceback (issue 12, items 5, 7 and 8): Calico's rule for names, file names
that fit, bounded YAML alias expansion and nesting, short error messages, and clear errors for inputs that used to
be internal errors (exit 3)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from meshsim.agent.config import loopback_map, node_configs
from meshsim.errors import ScenarioError
from meshsim.model.cluster import Cluster
from meshsim.model.names import FILE_NAME_MAX, file_stem, name_problem
from meshsim.model.resources import load_scenario
from tests.conftest import node_doc, pool_doc, scenario_doc

# the 477-byte "billion laughs" of the issue's probe: 9 levels of 9 aliases, 387 million values once expanded
ALIAS_BOMB = "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n" + "".join(
    f"{b}: &{b} [*{a},*{a},*{a},*{a},*{a},*{a},*{a},*{a},*{a}]\n" for a, b in zip("abcdefgh", "bcdefghi"))


def _error(write_yaml, *docs: str) -> ScenarioError:
    with pytest.raises(ScenarioError) as info:
        load_scenario([write_yaml(*docs)])
    return info.value


def _cli(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "meshsim", *args], capture_output=True, text=True, timeout=60)


# -- names (item 5) ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["", "../x", "/tmp/x/node1", "a" * 300, "Node1", "node_1", "-node", "node.", "a..b"])
def test_calicos_rule_for_names(write_yaml, name):
    err = _error(write_yaml, pool_doc(), node_doc("ok", "10.0.0.2/24"),
                 f"apiVersion: projectcalico.org/v3\nkind: Node\nmetadata: {{name: '{name}'}}\n"
                 "spec: {bgp: {ipv4Address: 10.0.0.1/24}}\n")
    assert err.field == "metadata.name" and "DNS-1123 subdomain" in err.expected
    assert len(str(err)) < 800


def test_valid_names_pass_and_a_253_character_one_fits_a_file_name():
    assert name_problem("ip-10-0-0-1.ec2.internal") is None and name_problem("a" * 253) is None
    assert name_problem("a" * 254) is not None
    stem = file_stem("a" * 253)
    for suffix in (".txt", ".route", ".ip", ".log", ".log.1"):
        assert len((stem + suffix).encode()) <= FILE_NAME_MAX
    assert file_stem("node1") == "node1"
    assert file_stem("a" * 253) != file_stem("a" * 252 + "b")  # distinct names, distinct files
    for bad in ("../x", "/tmp/x", ""):
        with pytest.raises(ValueError):
            file_stem(bad)


def test_add_node_events_and_references_follow_the_same_rule(write_yaml):
    doc = scenario_doc(events="[{action: add-node, name: ../evil, ipv4Address: 10.0.0.9/24}]")
    path = write_yaml(pool_doc(), node_doc("a", "10.0.0.1/24"), doc)
    from meshsim.model.timeline import parse_timeline

    with pytest.raises(ScenarioError) as info:
        parse_timeline(load_scenario([path]))
    assert "DNS-1123" in (info.value.expected or "")
    err = _error(write_yaml, pool_doc(), node_doc("a", "10.0.0.1/24"), scenario_doc(workloads={"/etc/x": 1}))
    assert "not a valid resource name" in err.message


def test_node_working_directories_use_the_file_stem(tmp_path, write_yaml):
    long = "n" * 253
    cluster = Cluster.build(load_scenario([write_yaml(pool_doc(), node_doc(long, "10.0.0.1/24"))]))
    cfg = node_configs(cluster, bgp_port=17900, http_port=9179, workdir=tmp_path)[long]
    assert Path(cfg.workdir).parent == tmp_path and len(Path(cfg.workdir).name) < 240


# -- YAML (item 7) -------------------------------------------------------------------------------------


def test_a_yaml_alias_bomb_fails_fast_with_a_clear_error(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(ALIAS_BOMB)
    assert len(ALIAS_BOMB.encode()) < 600
    start = time.monotonic()
    with pytest.raises(ScenarioError) as info:
        load_scenario([path])
    assert time.monotonic() - start < 5
    assert "aliases" in info.value.message and "1,000,000" in info.value.message
    res = _cli(["validate", str(path)])
    assert res.returncode == 2 and "Traceback" not in res.stderr and len(res.stderr) < 600


def test_self_referencing_alias_and_deep_nesting_are_errors(write_yaml):
    err = _error(write_yaml, "a: &x [*x]\n")
    assert "names no anchor" in err.message
    err = _error(write_yaml, "a: " + "[" * 5000 + "]" * 5000 + "\n")
    assert "nest" in err.message


def test_error_messages_never_echo_huge_values(write_yaml):
    huge = "x" * 200_000
    err = _error(write_yaml, pool_doc(extra=f"  natOutgoing: {huge}\n"), node_doc("a", "10.0.0.1/24"))
    text = str(err)
    assert len(text) < 800 and "more characters" in text and err.field == "spec.natOutgoing"
    err = _error(write_yaml, pool_doc(), node_doc("a", "10.0.0.1/24"),
                 "apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {name: p}\n"
                 f"spec: {{peerSelector: \"{'a' * 100_000} ==\"}}\n")
    assert len(str(err)) < 1200


# -- former internal errors (item 8) ---------------------------------------------------------------------


@pytest.mark.parametrize("text,where", [
    ("just a scalar\n", "a document must be a mapping"),
    ("- a\n- list\n", "a document must be a mapping"),
    ("apiVersion: projectcalico.org/v3\nkind: [x]\nmetadata: {name: a}\n", "must be a string"),
    ("---\n---\n", "declares no Node"),
    ("apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: p}\nspec: {cidr: 10.0.0.0/16, blockSize: "
     + "1" * 5000 + "}\n", "must be an integer"),
    ("apiVersion: projectcalico.org/v3\nkind: IPPoolList\nitems: 7\n", "must be a list"),
    ("apiVersion: projectcalico.org/v3\nkind: IPPoolList\nitems: [1]\n", "must be a mapping"),
    ("\x00\x01", "YAML syntax error"),
    ("{a: 1, a: 2}\n", "duplicate key"),
    ("? [a]\n: b\n", "mapping key must be a plain string"),
    ("a: !!binary aGVsbG8=\n", "not supported"),
])
def test_bad_documents_are_clear_errors(tmp_path, text, where):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ScenarioError) as info:
        load_scenario([path])
    assert where in str(info.value)
    res = _cli(["validate", str(path)])
    assert res.returncode == 2 and "internal error" not in res.stderr and "Traceback" not in res.stderr


@pytest.mark.parametrize("hold", [".inf", ".nan", "-5s", "-.inf", "100000s", "1e400"])
def test_hold_time_must_be_a_real_bgp_hold_time(write_yaml, hold):
    doc = scenario_doc().replace("holdTime: 9s", f"holdTime: {hold}")
    err = _error(write_yaml, pool_doc(), node_doc("a", "10.0.0.1/24"), doc)
    assert err.field == "spec.timers.holdTime"


def test_not_utf8_is_a_clear_error(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"kind: \xff\xfe\n")
    with pytest.raises(ScenarioError) as info:
        load_scenario([path])
    assert "UTF-8" in info.value.message


def test_nodes_whose_addresses_share_a_127_mapping_get_distinct_session_addresses(write_yaml):
    """10.255.0.3/8 and 11.255.0.3/8 both map to 127.255.0.3; the second node gets another address, decided when
    the scenario is loaded, so a scenario that validates can run."""
    path = write_yaml(pool_doc(cidr="192.168.0.0/16"), node_doc("a", "10.255.0.3/8"), node_doc("b", "11.255.0.3/8"),
                      node_doc("c", "12.254.0.1/8"), node_doc("d", "10.0.0.0/8"))
    cluster = Cluster.build(load_scenario([path]))
    loop = loopback_map(cluster)
    assert str(loop["a"]) == "127.255.0.3" and len(set(loop.values())) == 4
    assert all(str(a).startswith("127.") and str(a) != "127.0.0.1" for a in loop.values())
    assert str(loop["c"]) == "127.254.0.1"  # a direct mapping is not taken by an earlier fallback
    res = _cli(["validate", str(path)])
    assert res.returncode == 0, res.stderr
