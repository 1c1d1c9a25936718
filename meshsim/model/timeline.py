"""A scenario's timeline: the typed, validated events of `spec.events`.

Owns the event types and `parse_timeline(scenario) -> list[Step]`. Everything is checked before any
process starts: unknown actions, unknown nodes (nodes added by an earlier `add-node` count), negative
or missing counts, unparsable durations and bad `apply` resources are errors naming the file, the
event index and the field. Pure: no asyncio, no clock.

    - {action: add-workloads, node: node3, count: 70}
    - {action: remove-workloads, node: node3, count: 70}
    - {action: stop-node, node: node2}              # graceful: NOTIFICATION Cease, routes withdrawn
    - {action: kill-node, node: node2}              # host crash: silent until peers' hold timers expire
    - {action: kill-node, node: node2, mode: sigkill}   # SIGKILL: TCP closes, peers notice at once
    - {action: start-node, node: node2}             # (re)join
    - {action: add-node, name: node9, ipv4Address: 192.168.0.99/24, labels: {}, workloads: 2}
    - {action: disconnect, node: node4, peer: node5}   # tear one session down; it comes back on its own
    - {action: apply, resource: {apiVersion: projectcalico.org/v3, kind: IPPool, ...}}
    - {action: sleep, duration: 5s}
Every event but `sleep` waits for convergence (or its own `timeout`) before the next, unless `wait: false`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from meshsim.errors import ScenarioError
from meshsim.model.resources import BGPConfiguration, BGPPeer, IPAMConfiguration, IPPool, Node, Scenario, parse_resource
from meshsim.model.names import NAME_RULE, name_problem
from meshsim.model.yamldoc import Doc, parse_duration

ACTIONS = ("add-workloads", "remove-workloads", "stop-node", "kill-node", "start-node", "add-node", "disconnect",
           "apply", "sleep")
COMMON = ("action", "timeout", "wait", "name_", "label")
FIELDS: dict[str, tuple[str, ...]] = {
    "add-workloads": ("node", "count"),
    "remove-workloads": ("node", "count"),
    "stop-node": ("node",),
    "kill-node": ("node", "mode"),
    "start-node": ("node",),
    "add-node": ("name", "ipv4Address", "labels", "asNumber", "routeReflectorClusterID", "workloads"),
    "disconnect": ("node", "peer"),
    "apply": ("resource",),
    "sleep": ("duration",),
}


@dataclass(frozen=True)
class Step:
    """One validated event."""

    index: int
    action: str
    node: str | None = None
    count: int = 0
    peer: str | None = None
    mode: str = "crash"
    duration: float = 0.0
    resource: Any = None  # a parsed resource for `apply`, a Node for `add-node`
    timeout: float | None = None
    wait: bool = True
    label: str = ""

    def describe(self) -> str:
        match self.action:
            case "add-workloads" | "remove-workloads":
                return f"{self.action} {self.node} x{self.count}"
            case "disconnect":
                return f"disconnect {self.node} from {self.peer}"
            case "apply":
                r = self.resource
                return f"apply {type(r).__name__} {getattr(r, 'name', '')}".rstrip()
            case "add-node":
                return f"add-node {self.resource.name}"
            case "sleep":
                return f"sleep {self.duration:g}s"
            case "kill-node":
                return f"kill-node {self.node}" + (" (sigkill)" if self.mode == "sigkill" else "")
        return f"{self.action} {self.node}"


def parse_timeline(scenario: Scenario, node_names: list[str] | None = None) -> list[Step]:
    """Validate `scenario.spec.events` against the scenario's nodes (or `node_names`, e.g. a generated cluster)."""
    spec = scenario.spec
    path = spec.origin.path if spec.origin else (scenario.files[0] if scenario.files else "<scenario>")
    docn = spec.origin.doc if spec.origin else None
    known = list(node_names if node_names is not None else [n.name for n in scenario.nodes])
    addresses = {str(n.address) for n in scenario.nodes}
    steps = []
    for ev in spec.events:
        raw = dict(ev.fields)
        base = f"spec.events.{ev.index}"

        def err(fieldname: str | None, message: str, expected: str | None = None, got: Any = None) -> ScenarioError:
            return ScenarioError(path, message, doc=docn, kind="Scenario", name=spec.name,
                                 field=f"{base}.{fieldname}" if fieldname else base, expected=expected, got=got,
                                 line=ev.line)

        action = ev.action
        if action not in ACTIONS:
            raise err("action", "is not a known action", expected=" | ".join(ACTIONS), got=action)
        allowed = set(FIELDS[action]) | {"action", "timeout", "wait", "label"}
        for key in raw:
            if key not in allowed:
                raise err(key, f"is not a field of {action}", expected="one of " + ", ".join(sorted(allowed)))

        def node_field(key: str = "node") -> str:
            value = raw.get(key)
            if value is None:
                raise err(key, "is required", expected="a node name")
            if value not in known:
                raise err(key, "names no node of the scenario at this point of the timeline",
                          expected="one of " + ", ".join(known), got=value)
            return str(value)

        def count_field(key: str = "count", required: bool = True) -> int:
            value = raw.get(key)
            if value is None:
                if required:
                    raise err(key, "is required", expected="a positive integer")
                return 0
            if isinstance(value, bool) or not isinstance(value, int) or value < (1 if required else 0):
                raise err(key, "must be a positive integer" if required else "must be a non-negative integer",
                          expected="a positive integer" if required else "an integer >= 0", got=value)
            return value

        timeout = None
        if "timeout" in raw:
            timeout = parse_duration(raw["timeout"])
            if timeout is None or timeout <= 0:
                raise err("timeout", "is not a valid duration", expected="a duration like 30s", got=raw["timeout"])
        wait = raw.get("wait", True)
        if not isinstance(wait, bool):
            raise err("wait", "must be true or false", got=wait)
        label = str(raw.get("label", ""))
        common = {"index": ev.index, "action": action, "timeout": timeout, "wait": wait, "label": label}
        match action:
            case "add-workloads" | "remove-workloads":
                steps.append(Step(node=node_field(), count=count_field(), **common))
            case "stop-node" | "start-node":
                steps.append(Step(node=node_field(), **common))
            case "kill-node":
                mode = raw.get("mode", "crash")
                if mode not in ("crash", "sigkill"):
                    raise err("mode", "is not a kill mode", expected="crash | sigkill", got=mode)
                steps.append(Step(node=node_field(), mode=mode, **common))
            case "disconnect":
                node = node_field()
                peer = node_field("peer")
                if peer == node:
                    raise err("peer", "a node cannot disconnect from itself", got=peer)
                steps.append(Step(node=node, peer=peer, **common))
            case "sleep":
                duration = parse_duration(raw.get("duration"))
                if duration is None:
                    raise err("duration", "is not a valid duration", expected="a duration like 5s, 500ms",
                              got=raw.get("duration"))
                steps.append(Step(duration=duration, **{**common, "wait": False}))
            case "add-node":
                node = _add_node(raw, err, known, addresses, scenario)
                count = count_field("workloads", required=False)
                known.append(node.name)
                addresses.add(str(node.address))
                steps.append(Step(node=node.name, resource=node, count=count, **common))
            case "apply":
                resource = raw.get("resource")
                if not isinstance(resource, dict):
                    raise err("resource", "is required", expected="a Calico resource mapping (apiVersion, kind, "
                              "metadata, spec)", got=resource)
                doc = Doc(path, docn or 0, resource)
                try:
                    parsed = parse_resource(doc)
                except ScenarioError as exc:
                    raise err(f"resource.{exc.field}" if exc.field else "resource", exc.message, exc.expected,
                              exc.got) from None
                if not isinstance(parsed, (IPPool, Node, BGPConfiguration, BGPPeer, IPAMConfiguration)):
                    raise err("resource.kind", "cannot be applied during a run",
                              expected="IPPool, Node, BGPConfiguration, BGPPeer or IPAMConfiguration",
                              got=type(parsed).__name__)
                if isinstance(parsed, BGPPeer) and parsed.password_ref is not None:
                    parsed = replace(parsed, password=scenario.secret(parsed.password_ref))
                if isinstance(parsed, BGPConfiguration) and parsed.node_mesh_password_ref is not None:
                    parsed = replace(parsed, node_mesh_password=scenario.secret(parsed.node_mesh_password_ref))
                if isinstance(parsed, BGPConfiguration) and parsed.node is not None:
                    raise err("resource.metadata.name", "a per-node BGPConfiguration cannot be applied during a run",
                              expected="default", got=parsed.name)
                if isinstance(parsed, Node) and parsed.name not in known:
                    known.append(parsed.name)
                steps.append(Step(resource=parsed, **common))
    return steps


def _add_node(raw: dict[str, Any], err, known: list[str], addresses: set[str], scenario: Scenario) -> Node:
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise err("name", "is required", expected="a new node name")
    problem = name_problem(name)
    if problem is not None:
        raise err("name", f"is not a valid resource name: it {problem}", expected=NAME_RULE, got=name)
    if name in known:
        raise err("name", "a node with this name already exists", got=name)
    text = raw.get("ipv4Address")
    if not isinstance(text, str) or "/" not in text:
        raise err("ipv4Address", "is required", expected="an address with prefix like 192.168.0.99/24", got=text)
    try:
        address = IPv4Address(text.split("/")[0])
        subnet = IPv4Network(text, strict=False)
    except ValueError:
        raise err("ipv4Address", "is not a valid address/prefix", expected="like 192.168.0.99/24", got=text) from None
    if str(address) in addresses:
        raise err("ipv4Address", "is already another node's address", got=text)
    labels = raw.get("labels") or {}
    if not isinstance(labels, dict):
        raise err("labels", "must be a mapping", got=labels)
    asn = raw.get("asNumber")
    if asn is not None and (isinstance(asn, bool) or not isinstance(asn, int) or asn < 1):
        raise err("asNumber", "must be an AS number", got=asn)
    cid = raw.get("routeReflectorClusterID")
    try:
        cluster_id = IPv4Address(cid) if cid is not None else None
    except ValueError:
        raise err("routeReflectorClusterID", "is not a valid cluster ID", expected="an IPv4-style ID", got=cid) \
            from None
    return Node(name=name, address=address, subnet=subnet,
                labels=tuple(sorted((str(k), str(v)) for k, v in labels.items())), asn=asn, rr_cluster_id=cluster_id)
