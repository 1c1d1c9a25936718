"""Property tests (Hypothesis): the scenario loader and the selector parser, fed generated garbage, either return a
value or raise a MeshsimError with a clear one-line message; never another exception, never a hang (each example
has a deadline)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings, strategies as st

from meshsim.errors import MeshsimError
from meshsim.model.cluster import Cluster
from meshsim.model.resources import load_scenario
from meshsim.model.selectors import parse as parse_selector
from tests.conftest import node_doc, pool_doc, scenario_doc

FUZZ = settings(max_examples=150, deadline=3000, suppress_health_check=[HealthCheck.too_slow], derandomize=True)


def _load_text(text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "s.yaml"
        path.write_bytes(text.encode("utf-8", "replace"))
        try:
            scenario = load_scenario([path])
            cluster = Cluster.build(scenario)
            from meshsim.oracle.expected import expected_tables

            expected_tables(cluster)
        except MeshsimError as exc:
            message = str(exc)
            assert message and "\n" not in message.strip() and len(message) < 3000, message[:200]


# -- YAML-ish text -------------------------------------------------------------------------------------

FRAGMENTS = st.sampled_from([
    "apiVersion: projectcalico.org/v3\n", "apiVersion: v1\n", "apiVersion: meshsim/v1\n", "kind: IPPool\n",
    "kind: Node\n", "kind: BGPPeer\n", "kind: IPAMBlock\n", "kind: Pod\n", "kind: Scenario\n", "kind: List\n",
    "metadata: {name: a}\n", "metadata:\n  name: n1\n", "spec:\n", "  cidr: 10.244.0.0/16\n", "  bgp: {ipv4Address: 10.0.0.1/24}\n",
    "items:\n", "- ", "  - ", "---\n", "===\n", "&a ", "*a", "*b", "!!str ", "!!binary ", "[", "]", "{", "}", ", ",
    ": ", "'", '"', "\n", "  ", "\t", "#", "|\n", ">\n", "? ", "1e999", ".inf", "0x1F", "0o17", "64512:10",
    "-" * 3, "null", "~", "yes", "1" * 80, "\u00e9", "\x00", "\ufeff",
])


@FUZZ
@given(st.lists(FRAGMENTS, max_size=40).map("".join))
def test_yaml_ish_text_never_crashes_the_loader(text: str) -> None:
    _load_text(text)


@FUZZ
@given(st.text(max_size=300))
def test_random_text_never_crashes_the_loader(text: str) -> None:
    _load_text(text)


# -- random values in valid documents ------------------------------------------------------------------

JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-2**70, max_value=2**70) | st.floats(allow_nan=True)
    | st.text(max_size=40) | st.sampled_from(["10.0.0.1", "10.0.0.0/8", "1.2.3.4/32", "fd00::/64", "2m0s", "all()",
                                              "host:a", "Always", "Never", "Accept", "In", "a:b:c", "1:2"]),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12)

FIELDS = [
    ("IPPool", "spec", ["cidr", "blockSize", "ipipMode", "natOutgoing", "nodeSelector", "disableBGPExport", "allowedUses",
                        "ipip"]),
    ("Node", "spec.bgp", ["ipv4Address", "asNumber", "routeReflectorClusterID", "ipv4IPIPTunnelAddr"]),
    ("BGPConfiguration", "spec", ["asNumber", "listenPort", "serviceClusterIPs", "communities", "prefixAdvertisements",
                                  "nodeMeshMaxRestartTime", "nodeMeshPassword", "bindMode", "ignoredInterfaces"]),
    ("BGPPeer", "spec", ["peerIP", "asNumber", "nodeSelector", "peerSelector", "password", "filters",
                         "maxRestartTime", "reachableBy", "numAllowedLocalASNumbers", "ttlSecurity"]),
    ("BGPFilter", "spec", ["exportV4", "importV4"]),
    ("IPAMBlock", "spec", ["cidr", "affinity", "allocations", "unallocated", "attributes"]),
    ("Scenario", "spec", ["hosts", "workloads", "timers", "events"]),
]


def _valid_docs() -> list[dict]:
    bgp = {"apiVersion": "projectcalico.org/v3", "kind": "BGPConfiguration", "metadata": {"name": "default"},
           "spec": {"asNumber": 64512}}
    peer = {"apiVersion": "projectcalico.org/v3", "kind": "BGPPeer", "metadata": {"name": "p"},
            "spec": {"peerIP": "10.0.0.9", "asNumber": 64513, "filters": ["f"]}}
    filt = {"apiVersion": "projectcalico.org/v3", "kind": "BGPFilter", "metadata": {"name": "f"},
            "spec": {"exportV4": [{"action": "Reject", "cidr": "10.244.0.0/16", "matchOperator": "In"}]}}
    block = {"apiVersion": "crd.projectcalico.org/v1", "kind": "IPAMBlock", "metadata": {"name": "b"},
             "spec": {"cidr": "10.244.0.0/30", "affinity": "host:a", "allocations": [0, None, None, None],
                      "unallocated": [1, 2, 3], "attributes": [{"handle_id": "h", "secondary": {"node": "a"}}]}}
    docs = [yaml.safe_load(t) for t in (pool_doc(block_size=30), node_doc("a", "10.0.0.1/24"),
                                        node_doc("b", "10.0.0.2/24"), scenario_doc(workloads={"a": 1}))]
    return docs + [bgp, peer, filt, block]


@FUZZ
@given(st.data())
def test_random_values_in_valid_documents_never_crash(data) -> None:
    docs = _valid_docs()
    for _ in range(data.draw(st.integers(min_value=1, max_value=3))):
        kind, base, fields = data.draw(st.sampled_from(FIELDS))
        doc = next(d for d in docs if d["kind"] == kind)
        target = doc
        for part in base.split("."):
            target = target.setdefault(part, {})
        if data.draw(st.booleans()):
            target[data.draw(st.sampled_from(fields))] = data.draw(JSONISH)
        else:
            target[data.draw(st.text(max_size=10))] = data.draw(JSONISH)
    _load_text(yaml.safe_dump_all(docs, allow_unicode=True))


# -- selectors ----------------------------------------------------------------------------------------

SELECTOR_BITS = st.sampled_from(["all()", "has(", "a", "b.c/d", "==", "!=", " in ", " not in ", "{", "}", "'x'",
                                 '"y"', ",", "(", ")", "!", "&&", "||", " ", "\\", "'", "\u00e9", "has(a)", "a == 'b'"])


@FUZZ
@given(st.one_of(st.text(max_size=80), st.lists(SELECTOR_BITS, max_size=30).map("".join)),
       st.dictionaries(st.sampled_from(["a", "b.c/d", "x"]), st.sampled_from(["b", "x", "y", ""]), max_size=3))
def test_selector_parser_returns_a_selector_or_a_selector_error(text: str, labels: dict[str, str]) -> None:
    try:
        sel = parse_selector(text)
    except MeshsimError as exc:
        assert "position" in str(exc)
        return
    assert isinstance(sel.matches(labels), bool)
    assert parse_selector(str(sel)) == sel  # its canonical rendering parses back to the same tree
