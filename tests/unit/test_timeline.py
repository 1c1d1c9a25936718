"""Timeline validation: bad events are rejected before anything starts, naming file, event index and field."""

from __future__ import annotations

import pytest

from meshsim.errors import ScenarioError
from meshsim.model.resources import BGPConfiguration, IPPool, load_scenario
from meshsim.model.timeline import parse_timeline
from tests.conftest import SCENARIOS, node_doc, pool_doc, scenario_doc


def _steps(write_yaml, events: str):
    path = write_yaml(pool_doc(), node_doc("a", "10.0.0.1/24"), node_doc("b", "10.0.0.2/24"),
                      scenario_doc(events=events))
    return parse_timeline(load_scenario([path])), path


def _error(write_yaml, events: str) -> ScenarioError:
    with pytest.raises(ScenarioError) as info:
        _steps(write_yaml, events)
    return info.value


def test_every_action_parses(write_yaml):
    steps, _ = _steps(write_yaml, "[{action: add-workloads, node: a, count: 70}, "
                                  "{action: remove-workloads, node: a, count: 70}, {action: stop-node, node: b}, "
                                  "{action: kill-node, node: b}, {action: start-node, node: b, timeout: 20s}, "
                                  "{action: add-node, name: c, ipv4Address: 10.0.0.3/24, labels: {x: y}, workloads: 2},"
                                  " {action: disconnect, node: a, peer: c}, {action: sleep, duration: 500ms}, "
                                  "{action: kill-node, node: c, mode: sigkill, wait: false}]")
    assert [s.action for s in steps] == ["add-workloads", "remove-workloads", "stop-node", "kill-node", "start-node",
                                         "add-node", "disconnect", "sleep", "kill-node"]
    assert steps[4].timeout == 20 and steps[7].duration == 0.5 and not steps[8].wait and steps[8].mode == "sigkill"
    assert steps[5].resource.name == "c" and steps[5].count == 2


def test_apply_parses_calico_resources(write_yaml):
    steps, _ = _steps(write_yaml, "[{action: apply, resource: {apiVersion: projectcalico.org/v3, kind: IPPool, "
                                  "metadata: {name: pool1}, spec: {cidr: 10.244.0.0/16, ipipMode: CrossSubnet}}}, "
                                  "{action: apply, resource: {apiVersion: projectcalico.org/v3, kind: "
                                  "BGPConfiguration, metadata: {name: default}, spec: {nodeToNodeMeshEnabled: false}}}]")
    assert isinstance(steps[0].resource, IPPool) and steps[0].resource.ipip_mode == "CrossSubnet"
    assert isinstance(steps[1].resource, BGPConfiguration) and not steps[1].resource.node_to_node_mesh_enabled


def test_unknown_action(write_yaml):
    err = _error(write_yaml, "[{action: sleep, duration: 1s}, {action: reboot, node: a}]")
    assert err.field == "spec.events.1.action" and err.got == "reboot" and "add-workloads" in err.expected
    assert err.kind == "Scenario" and err.line is not None and err.path.endswith(".yaml")


def test_unknown_node(write_yaml):
    err = _error(write_yaml, "[{action: stop-node, node: zz}]")
    assert err.field == "spec.events.0.node" and err.got == "zz" and "a, b" in err.expected


def test_node_added_later_is_known_only_after_its_event(write_yaml):
    err = _error(write_yaml, "[{action: stop-node, node: c}, {action: add-node, name: c, ipv4Address: 10.0.0.3/24}]")
    assert err.field == "spec.events.0.node"


@pytest.mark.parametrize("count", ["-3", "0", "two", "1.5"])
def test_negative_or_bad_count(write_yaml, count):
    err = _error(write_yaml, f"[{{action: add-workloads, node: a, count: {count}}}]")
    assert err.field == "spec.events.0.count" and "positive integer" in err.message


def test_unparsable_duration(write_yaml):
    err = _error(write_yaml, "[{action: sleep, duration: soon}]")
    assert err.field == "spec.events.0.duration" and "5s" in err.expected
    err = _error(write_yaml, "[{action: stop-node, node: a, timeout: -1s}]")
    assert err.field == "spec.events.0.timeout"


def test_unknown_field_and_bad_mode(write_yaml):
    err = _error(write_yaml, "[{action: stop-node, node: a, force: true}]")
    assert err.field == "spec.events.0.force"
    err = _error(write_yaml, "[{action: kill-node, node: a, mode: gently}]")
    assert err.field == "spec.events.0.mode" and err.expected == "crash | sigkill"


def test_bad_apply_resource_names_the_nested_field(write_yaml):
    err = _error(write_yaml, "[{action: apply, resource: {apiVersion: projectcalico.org/v3, kind: IPPool, "
                             "metadata: {name: p}, spec: {cidr: 10.9.0.0/16, blockSize: 99}}}]")
    assert err.field == "spec.events.0.resource.spec.blockSize" and err.got == 99


def test_add_node_with_a_taken_address(write_yaml):
    err = _error(write_yaml, "[{action: add-node, name: c, ipv4Address: 10.0.0.2/24}]")
    assert err.field == "spec.events.0.ipv4Address"


@pytest.mark.parametrize("name", sorted(p.name for p in SCENARIOS.glob("*.yaml")))
def test_shipped_timelines_are_valid(name):
    parse_timeline(load_scenario([SCENARIOS / name]))


def test_cli_rejects_a_bad_timeline_before_starting(write_yaml, tmp_path):
    import subprocess
    import sys

    path = write_yaml(pool_doc(), node_doc("a", "10.0.0.1/24"), scenario_doc(events="[{action: sleep, duration: x}]"))
    proc = subprocess.run([sys.executable, "-m", "meshsim", "run", str(path), "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "spec.events.0.duration" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "o").exists()
