"""`meshsim show` against real birdc output (tests/golden/birdc/, captured by scripts/capture-birdc.py).

The labs are two small Calico clusters (mesh.yaml: a 3-node mesh; rr.yaml: two route reflectors sharing a cluster
ID and three clients), run once with real BIRD 1.6.8 (the release Calico's fork is built on; its `show` code is
the same) and 2.0.12 daemons in network namespaces, and once as meshsim nodes, whose GET /status, /rib and
/routes were stored beside the BIRD outputs. Each golden output must come out of the renderer byte for byte,
with these normalisations, each for a value that necessarily differs between two runs:
- times and dates (BIRD prints when each protocol and route changed; the runs happened at different times), and
  the seconds left on the hold and keepalive timers;
- the `Route change stats` rows except for BIRD 1.6 in the mesh lab: BIRD counts every update it ever saw, so
  the numbers depend on the order in which sessions came up and routes arrived (the RR lab's reflectors send
  a route twice when the second reflector's session comes up later; BIRD 2 re-sends two routes to its kernel
  protocol at start); meshsim prints the steady state of a cold start, which the mesh lab's BIRD 1.6 counters
  are equal to. The `Routes:` counts (imported, exported, preferred) are never normalised.
The second half renders real BIRD 2 answers (what `meshsim show` does for an `implementation: bird` node) in both
formats and compares them with the same goldens; there kernel1's `Routes:` line differs for a real reason:
BIRD 2's kernel protocol exports device routes, BIRD 1.6's rejects them (krt_import_control), so it is
normalised in that comparison only.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from meshsim.model.cluster import Cluster
from meshsim.model.resources import load_scenario
from meshsim.report.birdc import BirdcError, Clock, parse_command, render
from meshsim.report.birdread import read_time, state_from_bird
from meshsim.report.birdtable import bird_state, network_order, node_facts

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "birdc"
INDEX = json.loads((GOLDEN / "index.json").read_text())
CASES = [(lab, fmt, node, name, command) for lab in ("mesh", "rr") for fmt in ("bird1", "bird2")
         for node, files in INDEX[lab][fmt].items() if node != "captured_at" for name, command in files.items()]
_CLUSTERS: dict[str, Cluster] = {}


def cluster(lab: str) -> Cluster:
    if lab not in _CLUSTERS:
        _CLUSTERS[lab] = Cluster.build(load_scenario([str(GOLDEN / f"{lab}.yaml")]))
    return _CLUSTERS[lab]


def normalise(text: str, *, stats: bool) -> str:
    text = re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d{3})?", "<datetime>", text)
    text = re.sub(r"\b\d\d:\d\d:\d\d(\.\d{3})?\b", "<time>", text)
    text = re.sub(r"(Hold|Keepalive) timer:(\s+)[\d.]+/", r"\1 timer:\2<left>/", text)
    if stats:
        text = re.sub(r"^(\s+(Import|Export) (updates|withdraws):).*$", r"\1 <counts>", text, flags=re.M)
    return text


def golden(lab: str, fmt: str, node: str, name: str) -> tuple[str, str]:
    text = (GOLDEN / lab / fmt / node / name).read_text()
    return text, text.split("\n", 1)[0].split()[1]  # "BIRD 1.6.8 ready." -> 1.6.8


@pytest.mark.parametrize("lab,fmt,node,name,command", CASES, ids=[f"{c[0]}-{c[1]}-{c[2]}-{c[3][:-4]}" for c in CASES])
def test_meshsim_state_prints_what_birdc_prints(lab: str, fmt: str, node: str, name: str, command: str) -> None:
    want, version = golden(lab, fmt, node, name)
    views = json.loads((GOLDEN / lab / "meshsim" / f"{node}.json").read_text())
    state = bird_state(node_facts(cluster(lab), node), views["status"], views["rib"], views["routes"], hostname="vm")
    got = render(state, command.split(), Clock(time.time(), time.localtime), dialect=fmt, version=version)
    exact_stats = (lab, fmt) == ("mesh", "bird1")
    assert normalise(got, stats=not exact_stats) == normalise(want, stats=not exact_stats)


@pytest.mark.parametrize("lab,fmt,node,name,command", CASES, ids=[f"{c[0]}-{c[1]}-{c[2]}-{c[3][:-4]}" for c in CASES])
def test_real_bird2_answers_print_in_either_format(lab: str, fmt: str, node: str, name: str, command: str) -> None:
    want, version = golden(lab, fmt, node, name)
    src = GOLDEN / lab / "bird2" / node
    clock = Clock(INDEX[lab]["bird2"]["captured_at"], time.localtime)
    state = state_from_bird(node_facts(cluster(lab), node), (src / "show-status.txt").read_text(),
                            (src / "show-protocols-all.txt").read_text(), (src / "show-route-all.txt").read_text(),
                            clock)
    got = render(state, command.split(), clock, dialect=fmt, version=version)

    def kernel_routes(text: str) -> str:
        return re.sub(r"(Output filter:  calico_kernel_programming\n\s+Routes:\s+\d+ imported, )\d+", r"\1<n>", text)

    assert kernel_routes(normalise(got, stats=True)) == kernel_routes(normalise(want, stats=True))


def test_times_are_bird_formats_and_old_ones_are_dates() -> None:
    clock = Clock(1_000_000.0, time.gmtime)  # 1970-01-12 13:46:40 UTC
    assert clock.short(999_000.25, "bird1") == "13:30:00"
    assert clock.short(999_000.25, "bird2") == "13:30:00.250"
    assert clock.short(1_000_000.0 - 21 * 3600, "bird1") == "1970-01-11"  # older than 20 hours: the date
    assert clock.long(999_000.25, "bird2") == "1970-01-12 13:30:00.250"
    assert read_time("13:30:00.250", clock) == pytest.approx(999_000.25)
    assert read_time("1970-01-11", clock) == 1_000_000.0 - 1_000_000.0 % 86400 - 86400


def test_networks_in_bird_fib_order() -> None:
    from ipaddress import IPv4Network

    from meshsim.report.birdtable import Rte

    nets = {IPv4Network(n): [Rte(IPv4Network(n), "static1", "static", 0.0)] for n in ("10.244.1.0/26", "10.244.3.0/26", "10.244.2.0/26", "10.99.0.0/24")}
    # the order BIRD 2.0.12 printed in /work/notes/bird-captures (net_hash_ip4 >> 22 buckets 17, 78, 111, 964)
    assert [str(n) for n in network_order(nets, "bird2")] == ["10.244.1.0/26", "10.244.3.0/26", "10.244.2.0/26",
                                                              "10.99.0.0/24"]


@pytest.mark.parametrize("words,error", [
    (["route", "via"], "unknown `show route` argument 'via'"),
    (["route", "for", "10.0.0.300"], "is not an IPv4 address"),
    (["interfaces"], "unknown command 'interfaces'"),
    ([], "no command"),
    (["protocols", "a", "b"], "one protocol name"),
])
def test_unknown_commands_say_what_is_known(words: list[str], error: str) -> None:
    with pytest.raises(BirdcError, match=re.escape(error)):
        parse_command(words)


def test_unknown_protocol_and_network_answer_as_birdc_does() -> None:
    views = json.loads((GOLDEN / "mesh" / "meshsim" / "node1.json").read_text())
    state = bird_state(node_facts(cluster("mesh"), "node1"), views["status"], views["rib"], views["routes"])
    clock = Clock(time.time(), time.localtime)
    assert render(state, ["protocols", "all", "Mesh_10_0_0_1"], clock).splitlines()[1:] == ["No protocols match"]
    assert render(state, ["route", "172.16.0.0/24"], clock, dialect="bird2").splitlines() == [
        "BIRD 2.0.12 ready.", "Network not in table"]
    assert "0.0.0.0/0" in render(state, ["route", "for", "172.16.0.1"], clock)  # longest match: the default route
    assert render(state, ["status"], clock).splitlines()[0] == "BIRD v0.3.3+birdv1.6.8 ready."  # Calico's banner
